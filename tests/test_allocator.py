"""
The allocator setting of the wsse process (L{wsse._allocator}), by its effect:
page faults while buffers the size of wsse's reads and sends come and go.

Each case runs in a fresh interpreter, since the setting is the process's.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.support.processes import ROOT, free_port

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the setting is glibc's (mallopt)"
)

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


def _faults_per_round(setup: str, **environ: str) -> float:
    # The allocator as glibc sets it by default, unless the case says otherwise.
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("MALLOC_") and name != "GLIBC_TUNABLES"
    }
    done = subprocess.run(
        [sys.executable, "-c", _WORKLOAD.replace("{setup}", setup)],
        cwd=ROOT,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout.split()[-1])


_SET = "from wsse._allocator import keep_big_buffers\nassert keep_big_buffers()\n"


def test_without_it_big_buffers_fault_their_pages_in_again_and_again() -> None:
    assert _faults_per_round("") > 50


def test_with_it_big_buffers_reuse_pages_the_process_has() -> None:
    assert _faults_per_round(_SET) < 5


@pytest.mark.parametrize(
    "name, value",
    [
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
    ],
)
def test_an_allocator_the_operator_tuned_is_left_alone(name: str, value: str) -> None:
    setup = "from wsse._allocator import keep_big_buffers\nassert not keep_big_buffers()\n"
    assert _faults_per_round(setup, **{name: value}) > 50


def test_the_daemon_s_service_sets_it() -> None:
    setup = (
        "from wsse.tap import Options, makeService\n"
        "options = Options()\n"
        f"options.parseOptions(['--target-port', '8080', '--listen-port', '{free_port()}',"
        " '--host', '127.0.0.1'])\n"
        "makeService(options)\n"
    )
    assert _faults_per_round(setup) < 5
