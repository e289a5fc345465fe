"""
The allocator setting of the wsse process (L{wsse._allocator}), by its effect:
page faults while buffers the size of wsse's reads and sends come and go.

Each case runs in a fresh interpreter, since the setting is the process's.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.processes import ROOT, free_port

# Four 256 KiB pieces joined into 1 MiB, sent from the second byte on (a copy),
# and dropped, as a big page's reads and sends are; prints the page faults per
# round once the first rounds are past.  The process first loads what the
# daemon loads: the allocator's choices depend on what the heap holds.
_WORKLOAD = """
import os, resource
import wsse.tap
{setup}
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for round in range(300):
    if round == 50:
        before = faults()
    pieces = [os.urandom(16) * (262144 // 16) for _ in range(4)]
    whole = b"".join(pieces)
    sent = whole[1:]
    del pieces, whole, sent
print((faults() - before) / 250)
"""


def _faults_per_round(setup: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _WORKLOAD.replace("{setup}", setup)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.split()[-1])


def test_without_it_big_buffers_fault_their_pages_in_again_and_again() -> None:
    assert _faults_per_round("") > 50


def test_with_it_big_buffers_reuse_pages_the_process_has() -> None:
    setup = "from wsse._allocator import keep_big_buffers\nassert keep_big_buffers()\n"
    assert _faults_per_round(setup) < 5


def test_the_daemon_s_service_sets_it() -> None:
    setup = (
        "from wsse.tap import Options, makeService\n"
        "options = Options()\n"
        f"options.parseOptions(['--target-port', '8080', '--listen-port', '{free_port()}',"
        " '--host', '127.0.0.1'])\n"
        "makeService(options)\n"
    )
    assert _faults_per_round(setup) < 5
