"""
Side-by-side measurements for the passthrough's streaming and WebSocket relays.

Runs the bench app directly and behind wsse (byte splice, and the message relay
of --ws-deflate), in one run on one machine, and prints a Markdown table of
medians over repetitions, with ratios to the direct figures.

    .venv/bin/python bench/relay.py [--repeat 5] [--messages 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import free_port, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


async def echo_rate(port: int, messages: int, size: int, deflate: bool) -> float:
    """Messages per second for a pipelined echo: send them all, read them all."""
    payload = b"x" * size
    compression = "deflate" if deflate else None
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws", max_size=None, compression=compression
    ) as ws:
        started = time.perf_counter()

        async def send() -> None:
            for _ in range(messages):
                await ws.send(payload)

        sender = asyncio.create_task(send())
        for _ in range(messages):
            await ws.recv()
        await sender
        return messages / (time.perf_counter() - started)


async def round_trip(port: int, count: int, deflate: bool) -> list[float]:
    """One message at a time: seconds from send to echo."""
    compression = "deflate" if deflate else None
    times = []
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=compression) as ws:
        for _ in range(count):
            started = time.perf_counter()
            await ws.send(b"x" * 64)
            await ws.recv()
            times.append(time.perf_counter() - started)
    return times


async def event_latency(port: int, count: int) -> list[float]:
    """Seconds from the app writing an event to this client reading it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /events?n={count}&every=0.01 HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    await writer.drain()
    latencies: list[float] = []
    buffer = b""
    while len(latencies) < count:
        data = await reader.read(65536)
        if not data:
            break
        now = time.monotonic()
        buffer += data
        while b"data: " in buffer and b"\n\n" in buffer[buffer.index(b"data: ") :]:
            start = buffer.index(b"data: ") + 6
            end = buffer.index(b"\n\n", start)
            latencies.append(now - float(buffer[start:end]))
            buffer = buffer[end + 2 :]
    writer.close()
    return latencies


def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process=process)
    return process


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--messages", type=int, default=20000)
    options = parser.parse_args()

    app_port, splice_port, deflate_port = free_port(), free_port(), free_port()
    python = sys.executable
    processes = [start([python, "bench/app.py", str(app_port)], app_port)]
    target = f"http://127.0.0.1:{app_port}"
    wsse = [python, "-m", "wsse", "--target", target, "--log-level", "warning", "--listen"]
    processes.append(start([*wsse, f"tcp:{splice_port}:interface=127.0.0.1"], splice_port))
    processes.append(
        start([*wsse, f"tcp:{deflate_port}:interface=127.0.0.1", "--ws-deflate"], deflate_port)
    )
    paths = {
        "app directly": (app_port, False),
        "wsse, byte splice": (splice_port, False),
        "wsse --ws-deflate (message relay, deflate to the client)": (deflate_port, True),
    }
    try:
        rows = []
        for name, (port, deflate) in paths.items():
            rates = {
                size: [
                    asyncio.run(echo_rate(port, options.messages, size, deflate))
                    for _ in range(options.repeat)
                ]
                for size in (100, 4096)
            }
            trips = asyncio.run(round_trip(port, 2000, deflate))
            rows.append(
                (
                    name,
                    statistics.median(rates[100]),
                    statistics.median(rates[4096]),
                    percentile(trips, 0.5) * 1e6,
                    percentile(trips, 0.99) * 1e6,
                )
            )
        events = {
            "app directly": asyncio.run(event_latency(app_port, 500)),
            "wsse": asyncio.run(event_latency(splice_port, 500)),
        }
    finally:
        for process in processes:
            process.terminate()
            process.wait()

    direct = rows[0]
    print(
        f"WebSocket echo, {options.messages} pipelined messages, median of {options.repeat} runs\n"
    )
    print("| path | 100 B msg/s | 4 KiB msg/s | round trip p50 (us) | p99 (us) |")
    print("|---|---|---|---|---|")
    for name, small, large, p50, p99 in rows:
        print(
            f"| {name} | {small:,.0f} ({small / direct[1]:.2f}x) | {large:,.0f} ({large / direct[2]:.2f}x)"
            f" | {p50:.0f} | {p99:.0f} |"
        )
    print("\nServer-sent events, 500 events 10 ms apart: app write to client read\n")
    print("| path | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---|---|---|")
    for name, values in events.items():
        print(
            f"| {name} | {percentile(values, 0.5) * 1e3:.2f} | {percentile(values, 0.99) * 1e3:.2f}"
            f" | {max(values) * 1e3:.2f} |"
        )


if __name__ == "__main__":
    main()
