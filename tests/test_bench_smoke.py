"""
Keeps the benchmark harness working: runs C{bench/compare.py --smoke} as CI
would and checks that every case produced figures for every contender that can
run it, and that the fallback cases lost and duplicated nothing (nor reordered,
through wsse).  No timing assertions: the figures of a one-minute run on a shared
machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANNOT_WEBSOCKET = ("ws-sse-proxy", "ws-sse-proxy+uvicorn[standard]")


def test_smoke_run_completes(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "bench/compare.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # the first run also makes ws-sse-proxy's two virtualenvs
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "## Targets" in done.stdout
    results = json.loads(out.read_text())
    cases = results["cases"]
    assert {c["kind"] for c in cases} == {"http", "ws", "fallback"}
    contenders = set(results["meta"]["contenders"]) - {"app"}
    assert contenders == {"direct", "wsse", "nginx", *CANNOT_WEBSOCKET}
    for case in cases:
        per = results["summary"][case["id"]]
        for name in contenders:
            stats = per[name]
            if case["kind"] == "fallback" and name in ("direct", "nginx"):
                assert stats["runs"] == 0, (case["id"], name, stats)  # they have no fallback
                continue
            if case["kind"] == "ws" and name in CANNOT_WEBSOCKET:
                assert "cannot" in stats, (case["id"], name, stats)
                continue
            assert stats["ok"] == stats["runs"] >= 1, (case["id"], name, stats)
            headline = "rps" if case["kind"] == "http" else None
            numbers = [k for k, v in stats.items() if isinstance(v, dict) and "median" in v]
            assert numbers, (case["id"], name, stats)
            if headline:
                assert stats[headline]["median"] > 0, (case["id"], name, stats)
            if case["kind"] == "fallback" and case["id"] != "fb-connect":
                # counted, and in the smoke run as in a full one nothing may go missing
                for count in ("lost", "duplicated"):
                    assert stats[count]["max"] == 0, (case["id"], name, stats)
                if name == "wsse":
                    assert stats["reordered"]["max"] == 0, (case["id"], name, stats)
    assert "after_http" in results["rss_kib"]["wsse"]
