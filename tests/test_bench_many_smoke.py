"""
Keeps the many-sockets benchmark working: runs C{bench/many.py --smoke} (50 and
200 fallback sockets on wsse and on ws-sse-proxy) as CI would and checks that
every case opened every socket, every socket got its own echo back and every
socket received the broadcast, in the printed table and in the JSON.  No
timing or memory assertions: the figures of a short run on a shared machine
mean nothing.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_run_completes(tmp_path: Path) -> None:
    out = tmp_path / "many.json"
    done = subprocess.run(
        [sys.executable, "bench/many.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,  # the first run also makes ws-sse-proxy's virtualenv
    )
    assert done.returncode == 0, done.stderr[-4000:]

    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if re.match(r"\| (wsse|ws-sse-proxy) \| [\d,]+ \| ", line)
    ]
    # The results table's rows (the logs' table has five columns).
    rows = [row for row in rows if len(row) == 10]
    seen = {(row[0], row[1]) for row in rows}
    assert seen == {(name, n) for name in ("wsse", "ws-sse-proxy") for n in ("50", "200")}, rows
    for name, n, opened, _setup, _rss, echoed, _echo, broadcast, _bs, _cpu in rows:
        assert opened == n, (name, n, opened)
        assert echoed == f"{n}/{n}", (name, n, echoed)
        assert broadcast == f"{n}/{n}", (name, n, broadcast)
    assert "## Target" in done.stdout

    results = json.loads(out.read_text())
    for name, per in results["summary"].items():
        for n, stats in per.items():
            assert "failure" not in stats, (name, n, stats)
            assert stats["opened"] == stats["echoed"] == stats["broadcast"] == int(n), stats
            assert stats["rss_per_socket_kib"] > 0, stats
    for name, per in results["runs"].items():
        for n, runs in per.items():
            for run in runs:
                assert run["unexpected_messages"] == 0, (name, n, run)
                assert run["closed_early"] == 0, (name, n, run)
