"""
wsse side by side with nginx, ws-sse-proxy 0.1.3 (twice: as pip installs it,
and with uvicorn[standard]) and the app reached directly, in one run on one
machine, every case interleaved across contenders with their order rotated per
repetition, printed as Markdown tables of median, min and max.

    .venv/bin/python bench/compare.py [--repeat 5] [--smoke] [--out results.json] [--only http|ws]

HTTP is measured by wrk (keep-alive; C{-t1 -c1} and C{-t2 -c50}); WebSocket by
a client of raw blocking sockets in this process (hand-made frames, masked
with a zero key), so the client costs little and does no parsing beyond
counting bytes.  The CPU share of every process (contender, app, client) is
sampled from /proc around each run.  C{--smoke} is a one-minute version for
CI: one repetition, 1 s runs, no timing verdicts worth reading.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fallback  # noqa: E402
from contenders import (
    CONTENDERS,
    NO_WEBSOCKET,
    Running,
    bench_app,
    contender,
    log_trouble,
)  # noqa: E402

WRK = shutil.which("wrk") or "/usr/bin/wrk"
WSSP = ("ws-sse-proxy", "ws-sse-proxy+uvicorn[standard]")


@dataclass(frozen=True)
class Case:
    """One measurement: an id for the JSON, a title for the table, its kind."""

    id: str
    kind: str  # "http", "ws" or "fallback"
    title: str


HTTP_PAGES = {"json": "/json", "small-html": "/small.html", "1mb-html": "/big.html"}
HTTP_CASES = [
    Case(f"http-{page}-c{c}", "http", f"{page} c={c}") for page in HTTP_PAGES for c in (1, 50)
]
WS_CASES = [
    Case("ws-rtt-64", "ws", "echo round trip, 64 B"),
    Case("ws-rtt-64k", "ws", "echo round trip, 64 KiB"),
    Case("ws-echo-16", "ws", "echo, 64 B, 16 in flight"),
    Case("ws-push-64", "ws", "app push, 64 B messages"),
    Case("ws-push-64k", "ws", "app push, 64 KiB messages"),
    Case("ws-connect", "ws", "connect to first message"),
]
FALLBACK_CASES = [
    Case("fb-rtt-64", "fallback", "fallback echo round trip, 64 B"),
    Case("fb-push-64", "fallback", "fallback app push, 64 B messages"),
    Case("fb-push-64k", "fallback", "fallback app push, 64 KiB messages"),
    Case("fb-burst", "fallback", "fallback client to app, a burst of 64 B sends"),
    Case("fb-serial", "fallback", "fallback client to app, one POST at a time"),
    Case("fb-connect", "fallback", "fallback open to first message (new page)"),
]
#: The contenders with a fallback, and the protocol their shim speaks.
FALLBACK_SPEAKERS = {"wsse": "wsse", **{name: "wssp" for name in WSSP}}


@dataclass(frozen=True)
class Settings:
    """Durations and counts, full or smoke."""

    http_seconds: float
    ws_seconds: float
    #: Round trips and connects run for ws_seconds but take at least this many samples.
    min_samples: int
    #: Messages in a fallback burst, and sent one POST at a time.
    burst: int
    serial: int

    @classmethod
    def of(cls, smoke: bool) -> Settings:
        if smoke:
            return cls(http_seconds=1, ws_seconds=0.5, min_samples=20, burst=200, serial=20)
        return cls(http_seconds=5, ws_seconds=2, min_samples=200, burst=5000, serial=500)


class Cannot(Exception):
    """The contender cannot run this case (e.g. it refuses a WebSocket upgrade)."""


# -- CPU sampling -------------------------------------------------------------------


class Meter:
    """CPU seconds of every process around one run, as shares of one core."""

    def __init__(self, app: Running, proxy: Running) -> None:
        self.app, self.proxy = app, proxy

    def __enter__(self) -> Meter:
        self.wall = time.perf_counter()
        self.app_cpu = self.app.cpu_seconds()
        self.proxy_cpu = self.proxy.cpu_seconds() if self.proxy.pid != self.app.pid else 0.0
        self.client_cpu = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.wall
        self.shares = {
            "app": (self.app.cpu_seconds() - self.app_cpu) / wall,
            "client": (time.process_time() - self.client_cpu) / wall,
        }
        if self.proxy.pid != self.app.pid:
            self.shares["proxy"] = (self.proxy.cpu_seconds() - self.proxy_cpu) / wall


# -- HTTP: wrk ----------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50 and p99 (seconds) and error counts from C{wrk --latency}."""
    result: dict[str, float] = {}
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not rate:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    result["rps"] = float(rate.group(1))
    for q in ("50", "99"):
        match = re.search(rf"^\s+{q}%\s+(\S+)", output, re.M)
        if match:
            result[f"p{q}"] = _duration(match.group(1))
    total = re.search(r"(\d+) requests in", output)
    result["requests"] = float(total.group(1)) if total else 0.0
    errors = 0
    socket_errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx:
        errors += int(non2xx.group(1))
    result["failed"] = float(errors)
    return result


def run_wrk(url: str, connections: int, seconds: float) -> tuple[dict[str, float], float]:
    """One wrk run; its result and its own CPU share (from wait4's rusage)."""
    threads = 1 if connections == 1 else 2
    args = [
        WRK,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        output = process.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if process.returncode is None:
            process.kill()
            process.wait()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}:\n{output}")
    return parse_wrk(output), (usage.ru_utime + usage.ru_stime) / wall


def http_case(case: Case, app: Running, proxy: Running, settings: Settings) -> dict[str, Any]:
    page = case.id.split("-c")[0].removeprefix("http-")
    connections = int(case.id.rsplit("-c", 1)[1])
    url = f"http://127.0.0.1:{proxy.port}{HTTP_PAGES[page]}"
    with Meter(app, proxy) as meter:
        result, wrk_share = run_wrk(url, connections, settings.http_seconds)
    cpu = dict(meter.shares)
    cpu["client"] = wrk_share  # wrk is the client here, not this process
    return {**result, "cpu": cpu}


# -- WebSocket: raw sockets ------------------------------------------------------------

_HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
)


def _header(opcode: int, n: int, mask: bool) -> bytes:
    first = 0x80 | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n < 65536:
        head = bytes([first, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + n.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if mask else b"")


def client_frame(size: int) -> bytes:
    """A binary frame from the client, masked with a zero key (payload unchanged)."""
    return _header(0x2, size, True) + b"x" * size


def server_frame_length(size: int) -> int:
    """Bytes on the wire of one unmasked binary frame of C{size} bytes."""
    return len(_header(0x2, size, False)) + size


def ws_open(port: int, path: str, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """A WebSocket on a raw socket: the socket and any bytes read past the 101's head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(_HANDSHAKE.format(path=path, port=port).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise Cannot(f"closed during handshake: {data[:60]!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if " 101 " not in status + " ":
            raise Cannot(f"upgrade refused: {status}")
        return sock, rest
    except BaseException:
        sock.close()
        raise


def _read_at_least(sock: socket.socket, buffer: memoryview, wanted: int) -> None:
    got = 0
    while got < wanted:
        n = sock.recv_into(buffer)
        if n == 0:
            raise RuntimeError("connection closed early")
        got += n


def ws_round_trips(port: int, size: int, seconds: float, least: int) -> dict[str, float]:
    """One message at a time for C{seconds} (and C{least} times): p50/p99 of send-to-echo."""
    sock, rest = ws_open(port, "/echo")
    buffer = memoryview(bytearray(1 << 20))
    frame = client_frame(size)
    expect = server_frame_length(size)
    times = []
    try:
        for _ in range(10):  # warm-up, not counted
            sock.sendall(frame)
            _read_at_least(sock, buffer, expect)
        deadline = time.perf_counter() + seconds
        while len(times) < least or time.perf_counter() < deadline:
            started = time.perf_counter()
            sock.sendall(frame)
            _read_at_least(sock, buffer, expect)
            times.append(time.perf_counter() - started)
    finally:
        sock.close()
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}


def ws_echo_window(port: int, size: int, window: int, seconds: float) -> dict[str, float]:
    """Echo with C{window} messages in flight for C{seconds}: messages per second."""
    sock, _ = ws_open(port, "/echo")
    buffer = memoryview(bytearray(1 << 20))
    frame = client_frame(size)
    expect = server_frame_length(size)
    try:
        started = time.perf_counter()
        deadline = started + seconds
        sock.sendall(frame * window)
        sent, received, done = window, 0, 0
        while done < sent:
            n = sock.recv_into(buffer)
            if n == 0:
                raise RuntimeError("connection closed early")
            received += n
            complete = received // expect
            new, done = complete - done, complete
            if new and time.perf_counter() < deadline:
                sock.sendall(frame * new)
                sent += new
        elapsed = time.perf_counter() - started
    finally:
        sock.close()
    return {"msgs": done / elapsed, "MBps": done * size / elapsed / 1e6}


def ws_push(port: int, size: int, seconds: float) -> dict[str, float]:
    """The app pushes C{size}-byte messages without end; count what arrives in C{seconds}."""
    sock, rest = ws_open(port, f"/push?size={size}&count=1000000000000")
    buffer = memoryview(bytearray(1 << 20))
    try:
        received = len(rest)
        started = time.perf_counter()
        deadline = started + seconds
        while True:
            n = sock.recv_into(buffer)
            if n == 0:
                raise RuntimeError("connection closed early")
            received += n
            now = time.perf_counter()
            if now >= deadline:
                break
        elapsed = now - started
    finally:
        sock.close()
    messages = received // server_frame_length(size)
    return {"msgs": messages / elapsed, "MBps": messages * size / elapsed / 1e6}


def ws_connects(port: int, seconds: float, least: int) -> dict[str, float]:
    """Fresh connections for C{seconds} (and C{least} of them): connect() to the first message."""
    buffer = memoryview(bytearray(65536))
    expect = server_frame_length(64)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < least or time.perf_counter() < deadline:
        started = time.perf_counter()
        sock, rest = ws_open(port, "/push?size=64&count=1")
        try:
            if len(rest) < expect:
                _read_at_least(sock, buffer, expect - len(rest))
            times.append(time.perf_counter() - started)
        finally:
            sock.close()
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}


def ws_case(case: Case, app: Running, proxy: Running, settings: Settings) -> dict[str, Any]:
    if proxy.name in NO_WEBSOCKET:
        # Still ask, so the table shows what it answers rather than an assumption.
        try:
            sock, _ = ws_open(proxy.port, "/echo")
        except Cannot as e:
            raise Cannot(str(e)) from None
        sock.close()
    port = proxy.port
    runs: dict[str, Callable[[], dict[str, float]]] = {
        "ws-rtt-64": lambda: ws_round_trips(port, 64, settings.ws_seconds, settings.min_samples),
        "ws-rtt-64k": lambda: ws_round_trips(
            port, 65536, settings.ws_seconds, settings.min_samples
        ),
        "ws-echo-16": lambda: ws_echo_window(port, 64, 16, settings.ws_seconds),
        "ws-push-64": lambda: ws_push(port, 64, settings.ws_seconds),
        "ws-push-64k": lambda: ws_push(port, 65536, settings.ws_seconds),
        "ws-connect": lambda: ws_connects(port, settings.ws_seconds, settings.min_samples),
    }
    with Meter(app, proxy) as meter:
        result = runs[case.id]()
    return {**result, "cpu": meter.shares}


# -- the fallback: bench/fallback.py ------------------------------------------------------


def fallback_case(case: Case, app: Running, proxy: Running, settings: Settings) -> dict[str, Any]:
    protocol = FALLBACK_SPEAKERS[proxy.name]
    port, seconds, least = proxy.port, settings.ws_seconds, settings.min_samples
    runs: dict[str, Callable[[], Any]] = {
        "fb-rtt-64": lambda: fallback.round_trips(port, protocol, 64, seconds, least),
        "fb-push-64": lambda: fallback.push(port, protocol, 64, seconds),
        "fb-push-64k": lambda: fallback.push(port, protocol, 65536, seconds),
        "fb-burst": lambda: fallback.burst(port, protocol, settings.burst, False),
        "fb-serial": lambda: fallback.burst(port, protocol, settings.serial, True),
        "fb-connect": lambda: fallback.connects(port, protocol, seconds, least // 4),
    }
    with Meter(app, proxy) as meter:
        result = asyncio.run(runs[case.id]())
    return {**result, "cpu": meter.shares}


# -- statistics and tables ----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median/min/max of every metric over the repetitions that produced numbers."""
    good = [r for r in runs if "cannot" not in r and "error" not in r]
    out: dict[str, Any] = {"runs": len(runs), "ok": len(good)}
    cannot = [r["cannot"] for r in runs if "cannot" in r]
    errors = [r["error"] for r in runs if "error" in r]
    if cannot:
        out["cannot"] = cannot[0]
    if errors:
        out["errors"] = errors
    if good:
        for key in good[0]:
            if key == "cpu":
                for who in good[0]["cpu"]:
                    out[f"cpu_{who}"] = spread([r["cpu"][who] for r in good])
            else:
                out[key] = spread([float(r[key]) for r in good])
    return out


def fmt(value: float, unit: str) -> str:
    if unit == "s->us":
        return f"{value * 1e6:,.0f}"
    if unit == "s->ms":
        return f"{value * 1e3:,.2f}"
    if unit == "%":
        return f"{value * 100:.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def cell(stats: dict[str, Any], key: str, unit: str) -> str:
    """'median (min–max)'."""
    if key not in stats:
        return "—"
    s = stats[key]
    return f"{fmt(s['median'], unit)} ({fmt(s['min'], unit)}–{fmt(s['max'], unit)})"


def ratio(stats: dict[str, Any], ref: dict[str, Any] | None, key: str) -> str:
    if ref is None or key not in stats or key not in ref or not ref[key]["median"]:
        return "—"
    return f"{stats[key]['median'] / ref[key]['median']:.2f}x"


def faster_wssp(summary: dict[str, dict[str, Any]], key: str, higher: bool) -> str | None:
    """The ws-sse-proxy variant with the better median of C{key} in this case."""
    have = [n for n in WSSP if key in summary.get(n, {})]
    if not have:
        return None
    pick = max if higher else min
    return pick(have, key=lambda n: summary[n][key]["median"])


def cpu_cell(stats: dict[str, Any]) -> str:
    parts = []
    for who in ("proxy", "app", "client"):
        key = f"cpu_{who}"
        parts.append(fmt(stats[key]["median"], "%") if key in stats else "—")
    return " / ".join(parts)


# Per case: the headline metric, its unit, whether higher is better, and extra columns.
HEADLINE: dict[str, tuple[str, str, bool, list[tuple[str, str, str]]]] = {
    "http": ("rps", "", True, [("p50 (ms)", "p50", "s->ms"), ("p99 (ms)", "p99", "s->ms")]),
    "ws-rtt-64": ("p50", "s->us", False, [("p99 (us)", "p99", "s->us")]),
    "ws-rtt-64k": ("p50", "s->us", False, [("p99 (us)", "p99", "s->us")]),
    "ws-echo-16": ("msgs", "", True, []),
    "ws-push-64": ("msgs", "", True, [("MB/s", "MBps", "")]),
    "ws-push-64k": ("msgs", "", True, [("MB/s", "MBps", "")]),
    "ws-connect": ("p50", "s->ms", False, [("p99 (ms)", "p99", "s->ms")]),
    "fb-rtt-64": ("p50", "s->us", False, [("p99 (us)", "p99", "s->us")]),
    "fb-push-64": ("msgs", "", True, [("MB/s", "MBps", "")]),
    "fb-push-64k": ("msgs", "", True, [("MB/s", "MBps", "")]),
    "fb-burst": ("msgs", "", True, []),
    "fb-serial": ("msgs", "", True, []),
    "fb-connect": ("p50", "s->ms", False, [("p99 (ms)", "p99", "s->ms")]),
}
#: Counted in every fallback case; the table shows the largest count of any repetition.
LOSSES = ("lost", "duplicated", "reordered")
HEADLINE_NAME = {
    "rps": "req/s",
    "msgs": "msgs/s",
    "p50": "p50",
}


def table(cases: list[Case], summary: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One Markdown table per kind; rows are case x contender."""
    lines = []
    for case in cases:
        key, unit, higher, extra = HEADLINE["http" if case.kind == "http" else case.id]
        label = HEADLINE_NAME[key] + (
            " (us)" if unit == "s->us" else " (ms)" if unit == "s->ms" else ""
        )
        lines.append(f"\n**{case.title}**\n")
        counted = case.kind == "fallback"
        header = ["contender", label, *[e[0] for e in extra], "x ws-sse-proxy best", "x nginx"]
        header.append("CPU % proxy / app / client")
        if counted:
            header.append("lost / dup / reordered (max)")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        per = summary[case.id]
        best = faster_wssp(per, key, higher)
        for name in CONTENDERS:
            if name not in per or not per[name]["runs"]:
                continue
            stats = per[name]
            if "cannot" in stats:
                row = [name, "cannot", *["—" for _ in extra], "—", "—", "—"]
            elif stats["ok"] == 0:
                row = [name, "error", *["—" for _ in extra], "—", "—", "—"]
                row += ["—"] if counted else []
            else:
                row = [
                    name
                    + (" ⚠" if "errors" in stats or stats.get("failed", {}).get("max") else ""),
                    cell(stats, key, unit),
                    *[cell(stats, k, u) for _, k, u in extra],
                    ratio(stats, per.get(best) if best else None, key),
                    ratio(stats, per.get("nginx"), key),
                    cpu_cell(stats),
                ]
            if counted:
                row.append(
                    " / ".join(f"{stats[k]['max']:.0f}" if k in stats else "—" for k in LOSSES)
                )
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def targets(
    summary: dict[str, dict[str, dict[str, Any]]], rss: dict[str, Any]
) -> list[dict[str, Any]]:
    """The issue's targets, each with the figure behind it and PASS/MISS."""
    out: list[dict[str, Any]] = []

    def med(case: str, name: str | None, key: str) -> float | None:
        if name is None:
            return None
        stats = summary.get(case, {}).get(name, {})
        return stats[key]["median"] if key in stats else None

    def add(
        name: str,
        value: float | None,
        bound: float | None,
        ok: Callable[[float, float], bool],
        shown: str,
    ) -> None:
        if value is None or bound is None:
            out.append({"target": name, "figure": "not measured", "verdict": "—"})
        else:
            out.append(
                {
                    "target": name,
                    "figure": shown.format(v=value, b=bound),
                    "verdict": "PASS" if ok(value, bound) else "MISS",
                }
            )

    case = "http-json-c50"
    if case in summary:
        best = faster_wssp(summary[case], "rps", True)
        w, b = med(case, "wsse", "rps"), med(case, best, "rps")
        add(
            "HTTP small JSON c=50: wsse req/s >= 12x ws-sse-proxy",
            w,
            b,
            lambda v, b: v >= 12 * b,
            "{v:,.0f} vs {b:,.0f} = " + (f"{w / b:.1f}x" if w and b else "?"),
        )
        fast = faster_wssp(summary[case], "p99", False)
        w, b = med(case, "wsse", "p99"), med(case, fast, "p99")
        add(
            "HTTP small JSON c=50: wsse p99 <= 1/10 ws-sse-proxy's",
            w,
            b,
            lambda v, b: v <= b / 10,
            "{v:.4f} s vs {b:.4f} s = " + (f"1/{b / w:.1f}" if w and b else "?"),
        )
    case = "http-1mb-html-c50"
    if case in summary:
        best = faster_wssp(summary[case], "rps", True)
        w, b = med(case, "wsse", "rps"), med(case, best, "rps")
        add(
            "1 MB HTML c=50: wsse req/s >= 5x ws-sse-proxy",
            w,
            b,
            lambda v, b: v >= 5 * b,
            "{v:,.0f} vs {b:,.0f} = " + (f"{w / b:.1f}x" if w and b else "?"),
        )
    if "wsse" in rss and "after_http" in rss["wsse"]:
        value = rss["wsse"]["after_http"] / 1024
        add(
            "wsse RSS after the whole HTTP run < 80 MiB",
            value,
            80.0,
            lambda v, b: v < b,
            "{v:.1f} MiB",
        )
    case = "ws-echo-16"
    if case in summary:
        w, n = med(case, "wsse", "msgs"), med(case, "nginx", "msgs")
        add(
            "WebSocket echo msgs/s (16 in flight) >= 0.8x nginx",
            w,
            n,
            lambda v, b: v >= 0.8 * b,
            "{v:,.0f} vs {b:,.0f} = " + (f"{w / n:.2f}x" if w and n else "?"),
        )
    for case, size in (("ws-rtt-64", "64 B"), ("ws-rtt-64k", "64 KiB")):
        if case in summary:
            w, n = med(case, "wsse", "p50"), med(case, "nginx", "p50")
            add(
                f"WebSocket RTT p50 {size} <= 1.5x nginx",
                w,
                n,
                lambda v, b: v <= 1.5 * b,
                "{v:.6f} s vs {b:.6f} s = " + (f"{w / n:.2f}x" if w and n else "?"),
            )
    case = "fb-rtt-64"
    if case in summary:
        for key in ("p50", "p99"):
            fast = faster_wssp(summary[case], key, False)
            w, b = med(case, "wsse", key), med(case, fast, key)
            add(
                f"Fallback echo RTT {key} <= ws-sse-proxy's",
                w,
                b,
                lambda v, b: v <= b,
                "{v:.6f} s vs {b:.6f} s = " + (f"{w / b:.2f}x" if w and b else "?"),
            )
        w, n = med(case, "wsse", "p50"), med("ws-rtt-64", "nginx", "p50")
        add(
            "Fallback echo RTT p50 <= 3x a real WebSocket's through nginx",
            w,
            n,
            lambda v, b: v <= 3 * b,
            "{v:.6f} s vs {b:.6f} s = " + (f"{w / n:.2f}x" if w and n else "?"),
        )
    for case, key, unit, size in (
        ("fb-push-64", "msgs", "msgs/s", "64 B"),
        ("fb-push-64k", "MBps", "MB/s", "64 KiB"),
    ):
        if case in summary:
            best = faster_wssp(summary[case], key, True)
            w, b = med(case, "wsse", key), med(case, best, key)
            add(
                f"Fallback app push {size}: {unit} >= 1.2x ws-sse-proxy",
                w,
                b,
                lambda v, b: v >= 1.2 * b,
                "{v:,.1f} vs {b:,.1f} = " + (f"{w / b:.2f}x" if w and b else "?"),
            )
    if "fb-burst" in summary and "fb-serial" in summary:
        best = faster_wssp(summary["fb-serial"], "msgs", True)
        w, b = med("fb-burst", "wsse", "msgs"), med("fb-serial", best, "msgs")
        reordered = summary["fb-burst"].get("wsse", {}).get("reordered", {}).get("max")
        add(
            "Fallback client to app: burst msgs/s >= 10x ws-sse-proxy one POST at a time, none reordered",
            w,
            b,
            lambda v, b: v >= 10 * b and reordered == 0,
            "{v:,.0f} vs {b:,.0f} = "
            + (f"{w / b:.1f}x" if w and b else "?")
            + f", {'?' if reordered is None else f'{reordered:.0f}'} reordered",
        )
    ws = [c.id for c in WS_CASES if c.id in summary]
    if ws:
        shown = all("cannot" in summary[c].get(n, {}) for c in ws for n in WSSP)
        out.append(
            {
                "target": "ws-sse-proxy WebSocket cases shown as 'cannot'",
                "figure": "every case" if shown else "not every case",
                "verdict": "PASS" if shown else "MISS",
            }
        )
    return out


# -- the run ------------------------------------------------------------------------------


def verify(proxies: dict[str, Running]) -> dict[str, dict[str, int]]:
    """Each page through each contender once: 200 and its size (the injectors add their shim)."""
    sizes: dict[str, dict[str, int]] = {}
    for name, proxy in proxies.items():
        sizes[name] = {}
        for page, path in HTTP_PAGES.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{proxy.port}{path}", timeout=30) as r:
                if r.status != 200:
                    raise RuntimeError(f"{name} {path}: {r.status}")
                sizes[name][page] = len(r.read())
    return sizes


def rotated(names: list[str], by: int) -> Iterator[str]:
    by %= len(names)
    yield from names[by:] + names[:by]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions (default 5; 1 with --smoke)"
    )
    parser.add_argument("--smoke", action="store_true", help="one short repetition, for CI")
    parser.add_argument("--out", type=Path, help="write every figure as JSON here")
    parser.add_argument(
        "--only", choices=("http", "ws", "fallback"), help="run only one kind of case"
    )
    parser.add_argument("--contenders", help="comma-separated subset of " + ",".join(CONTENDERS))
    parser.add_argument(
        "--render", type=Path, metavar="RESULTS_JSON", help="print the tables of a saved run"
    )
    options = parser.parse_args(argv)
    if options.render:
        saved = json.loads(options.render.read_text())
        cases = [Case(**c) for c in saved["cases"]]
        print(render(cases, saved["summary"], saved["rss_kib"], saved["targets"], saved["meta"]))
        return 0
    repeat = options.repeat or (1 if options.smoke else 5)
    settings = Settings.of(options.smoke)
    names = options.contenders.split(",") if options.contenders else list(CONTENDERS)
    for name in names:
        if name not in CONTENDERS:
            parser.error(f"unknown contender {name!r}")
    cases = [c for c in HTTP_CASES + WS_CASES + FALLBACK_CASES if options.only in (None, c.kind)]

    started = time.time()
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c.id: {n: [] for n in names} for c in cases}
    rss: dict[str, dict[str, int]] = {}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="wsse-bench-") as tmp:
        app = stack.enter_context(bench_app())
        proxies = {name: stack.enter_context(contender(name, app, Path(tmp))) for name in names}
        sizes = verify(proxies)
        measured = {n: p for n, p in proxies.items() if n != "direct"}  # direct is the app
        for name, proxy in measured.items():
            rss[name] = {"start": proxy.rss_kib()}
        rss["app"] = {"start": app.rss_kib()}
        for kind in ("http", "ws", "fallback"):
            kind_cases = [c for c in cases if c.kind == kind]
            for rep in range(repeat):
                for case in kind_cases:
                    for name in rotated(names, rep):
                        if kind == "fallback" and name not in FALLBACK_SPEAKERS:
                            continue
                        proxy = proxies[name]
                        run = {"http": http_case, "ws": ws_case, "fallback": fallback_case}[kind]
                        try:
                            result = run(case, app, proxy, settings)
                        except Cannot as e:
                            result = {"cannot": str(e)}
                        except Exception as e:  # noqa: BLE001 - recorded, the suite goes on
                            result = {"error": f"{type(e).__name__}: {e}"}
                        runs[case.id][name].append(result)
                        print(
                            f"[{time.time() - started:6.0f}s] rep {rep + 1}/{repeat} {case.id:18} {name:32} {short(result)}",
                            file=sys.stderr,
                            flush=True,
                        )
                        time.sleep(0 if options.smoke else 0.2)  # let sockets settle
            if kind_cases:
                for name, proxy in measured.items():
                    rss[name][f"after_{kind}"] = proxy.rss_kib()
                rss["app"][f"after_{kind}"] = app.rss_kib()
        logs = {name: log_trouble(proxy.log) for name, proxy in measured.items()}
        descriptions = {name: proxy.description for name, proxy in proxies.items()}
        descriptions["app"] = app.description

    summary = {case: {name: summarize(r) for name, r in per.items()} for case, per in runs.items()}
    verdicts = targets(summary, rss)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.time() - started),
        "repeat": repeat,
        "smoke": options.smoke,
        "settings": settings.__dict__,
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        "python": platform.python_version(),
        "contenders": descriptions,
        "response_sizes": sizes,
        "logs": logs,
        "client_max_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    report = render(cases, summary, rss, verdicts, meta)
    print(report)
    if options.out:
        options.out.write_text(
            json.dumps(
                {
                    "meta": meta,
                    "cases": [c.__dict__ for c in cases],
                    "runs": runs,
                    "summary": summary,
                    "rss_kib": rss,
                    "targets": verdicts,
                },
                indent=1,
            )
        )
    return 0


def short(result: dict[str, Any]) -> str:
    """One line of progress for stderr."""
    if "cannot" in result:
        return f"cannot: {result['cannot']}"
    if "error" in result:
        return f"ERROR {result['error'][:200]}"
    shown = {k: (f"{v:.6g}") for k, v in result.items() if k != "cpu"}
    cpu = " ".join(f"{k}={v * 100:.0f}%" for k, v in result["cpu"].items())
    return f"{shown} cpu {cpu}"


def render(
    cases: list[Case],
    summary: dict[str, Any],
    rss: dict[str, Any],
    verdicts: list[dict[str, Any]],
    meta: dict[str, Any],
) -> str:
    out = [
        f"# wsse benchmark ({'smoke, ' if meta['smoke'] else ''}{meta['repeat']} repetitions, {meta['date']})\n"
    ]
    out.append(
        f"Machine: {meta['machine']} at the end; Python {meta['python']}; run took {meta['seconds']} s.\n"
    )
    out.append("Contenders:\n")
    for name, text in meta["contenders"].items():
        out.append(f"- {name}: {text}")
    out.append(
        "\nCells are median (min–max) over the repetitions. Ratios are of medians: to the"
        " faster ws-sse-proxy variant in that case and to nginx. CPU is the share of one"
        " core used during the run by the proxy (all its processes), the app and the"
        " client (wrk for HTTP; this process's raw-socket client for WebSocket), medians."
        " A ⚠ marks a contender with failed requests or runs (see the JSON).\n"
    )
    sizes = meta.get("response_sizes", {})
    if sizes:
        pages = list(next(iter(sizes.values())))
        out.append("Response bytes per page (the injectors add their shim to HTML):\n")
        out.append("| contender | " + " | ".join(pages) + " |")
        out.append("|" + "---|" * (len(pages) + 1))
        for name, per in sizes.items():
            out.append(f"| {name} | " + " | ".join(f"{per[p]:,}" for p in pages) + " |")
        out.append("")
    http = [c for c in cases if c.kind == "http"]
    ws = [c for c in cases if c.kind == "ws"]
    if http:
        out.append("## HTTP passthrough (wrk, keep-alive)")
        out.append(table(http, summary))
    if ws:
        out.append("\n## Real WebSocket passthrough")
        out.append(table(ws, summary))
    fb = [c for c in cases if c.kind == "fallback"]
    if fb:
        out.append("\n## The fallback (event stream and POSTs, as each shim speaks it)")
        out.append(table(fb, summary))
    out.append("\n## Memory (RSS, MiB)\n")
    phases = [
        p
        for p in ("start", "after_http", "after_ws", "after_fallback")
        if any(p in v for v in rss.values())
    ]
    out.append("| process | " + " | ".join(phases) + " |")
    out.append("|" + "---|" * (len(phases) + 1))
    for name, values in rss.items():
        out.append(
            f"| {name} | "
            + " | ".join(f"{values[p] / 1024:.1f}" if p in values else "—" for p in phases)
            + " |"
        )
    logs = meta.get("logs", {})
    if logs:
        out.append("\n## Contenders' logs\n")
        out.append("| contender | lines | warnings/errors | first of them |")
        out.append("|---|---|---|---|")
        for name, log in logs.items():
            first = log["first"][0].replace("|", "\\|") if log["first"] else ""
            out.append(f"| {name} | {log['lines']:,} | {log['trouble']:,} | {first[:160]} |")
    out.append("\n## Targets\n")
    out.append("| target | figure (medians) | verdict |")
    out.append("|---|---|---|")
    for v in verdicts:
        out.append(f"| {v['target']} | {v['figure']} | {v['verdict']} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
