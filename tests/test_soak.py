"""
The soak script, for 2 minutes: 50 fallback and 50 native sockets through the
relay that cuts every connection after 10 s, with client drops and two app
restarts.  The 30-minute run (500 + 500) is bench/soak.py's default and is
not run here.

Asserted: every count the guarantees say must be 0 is 0 (see
C{bench/soak.py}'s C{checks}), messages went both ways on both transports,
and the memory verdict is computed, reported and counted in the exit status.
That verdict is not asserted flat here: two minutes are still wsse's warm-up
(see L{test_two_minute_soak}).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.support.processes import ROOT

ARTIFACTS = ROOT / "test-artifacts" / "soak"


def soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_counting() -> None:
    """The soak's bookkeeping sees a hole, a duplicate, a reordering and a lost tail."""
    soak = soak_module()
    totals = soak.Totals()
    healthy = soak.Instance("fallback", restarts=0)
    healthy.opened = True
    sent = [healthy.message(4) for _ in range(6)]
    for index in (0, 2, 1, 1, 4):  # 1 late, 1 twice, 3 never, 5 not yet
        healthy.received(sent[index])
    for tick in (0, 1, 3, 3):
        healthy.received(b"t %d" % tick)
    healthy.finish(totals, "end")
    faulted = soak.Instance("fallback", restarts=0)
    faulted.opened = True
    faulted.received(b"h 1")  # the app's hello; then 3 messages in flight when it died
    for _ in range(3):
        faulted.message(0)
    faulted.finish(totals, "restart")
    report = totals.as_json()
    assert report["sent"] == 9
    assert report["received"] == 4
    assert report["reordered"] == 1
    assert report["duplicated"] == 1
    assert report["gaps"] == 1  # 3: missing while 4 arrived
    assert report["lost"] == 1  # 5: the tail of a socket no fault touched
    assert report["lost_to_fault"] == {"restart": 3}
    assert (report["tick_gaps"], report["tick_duplicated"]) == (1, 1)
    growing = [(5.0 * n, 50_000 + 1_000 * n) for n in range(24)]  # 1 MiB more every 5 s
    checks = soak.checks(
        {
            "fallback": report,
            "native": soak.Totals().as_json(),
            "page_failures": {},
            "memory": soak.flatness(growing, 0.10),
        }
    )
    assert soak.failed({"checks": checks}) == [
        "fallback lost (no fault)",
        "fallback duplicated",
        "fallback reordered",
        "fallback gaps",
        "fallback tick gaps",
        "fallback tick duplicated",
        soak.MEMORY_CHECK,
    ]


def test_memory_verdict() -> None:
    """Flat after warm-up passes, growth after it fails, too few samples is a skip that says so."""
    soak = soak_module()
    warm_then_flat = [
        (5.0 * n, 50_000 + (4_000 * n if n < 8 else 32_000 + n % 2)) for n in range(24)
    ]
    assert soak.flatness(warm_then_flat, 0.10)["flat"] is True
    growing = [(5.0 * n, 50_000 + 1_000 * n) for n in range(24)]
    assert soak.flatness(growing, 0.10)["flat"] is False
    counts = {"fallback": soak.Totals().as_json(), "native": soak.Totals().as_json()}
    report = {**counts, "page_failures": {}, "memory": soak.flatness(growing[:5], 0.10)}
    report["checks"] = soak.checks(report)
    assert report["checks"][soak.MEMORY_CHECK] == {
        "value": None,
        "ok": None,
        "skipped": "too few samples",
    }
    assert soak.failed(report) == []


def test_two_minute_soak() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report_path = ARTIFACTS / "soak-ci.json"
    report_path.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        "--duration",
        "120",
        "--fallback",
        "50",
        "--native",
        "50",
        "--cut-every",
        "10",
        "--drop-rate",
        "0.1",
        "--restart-every",
        "40",
        "--log-dir",
        str(ARTIFACTS),
        "--json",
        str(report_path),
    ]
    # A bound for a hung run only (2 min of soak, the drain and start-up take ~2.5 min).
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    (ARTIFACTS / "soak-ci.txt").write_text(done.stdout + done.stderr)
    print(done.stdout)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads(Path(report_path).read_text())

    memory = report["checks"].pop(soak_module().MEMORY_CHECK)
    failed = {name: c["value"] for name, c in report["checks"].items() if not c["ok"]}
    assert failed == {}, done.stdout
    # The memory verdict is computed (24 samples, and more in the drain) and
    # reported, and the exit status follows it; it is not asserted flat: two
    # minutes are still wsse's warm-up (in the 30-minute run RSS rose for
    # several minutes before it held), so the thirds compared here are both
    # warm-up, and a run of this size has grown 4.5 MiB between them, near
    # its 6.3 MiB allowance.  The 30-minute run's exit status holds wsse to it.
    assert memory["ok"] in (True, False), memory
    assert ("FLAT" if memory["ok"] else "GROWING") in done.stdout
    assert done.returncode == (0 if memory["ok"] else 1), done.stdout

    for transport in ("fallback", "native"):
        counts = report[transport]
        assert counts["sent"] > 0, (transport, counts)
        assert counts["received"] > 0, (transport, counts)
        assert counts["ticks_received"] > 0, (transport, counts)
    # The faults happened: the relay cut connections, the app restarted, streams resumed.
    assert report["relay"]["cuts"] > 0
    assert report["app_restarts"] >= 1
    assert report["stream_resumes"] > 0
    assert report["wsse_exit"] is None  # wsse was still running at the end
