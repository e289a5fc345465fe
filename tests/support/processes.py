"""
Starting wsse (and other servers) as real processes on loopback.

Used where a test needs wsse's own memory figure or its real command line;
everything else runs wsse in the test's reactor.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Site

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(
                f"process exited with {process.returncode} before listening on {port}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise LookupError(f"no VmRSS for {pid}")


@contextmanager
def running(
    args: list[str],
    port: int,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    timeout: float = 20.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; wait until it listens on C{port}."""
    output = open(log, "wb") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(
        args,
        stdout=output,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
    try:
        wait_for_port(port, timeout, process=process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not None:
            output.close()  # type: ignore[union-attr]


@contextmanager
def conformance_app(artifacts: Path) -> Iterator[int]:
    """The conformance app (L{tests.support.conformance_app}) as a process; its port."""
    artifacts.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "tests.support.conformance_app", "--port", str(port)]
    with running(command, port, log=artifacts / "app.log"):
        yield port


def wsse_command(*options: str) -> list[str]:
    """The console script form of wsse with the given options (foreground)."""
    return [sys.executable, "-m", "wsse", *options]


@contextmanager
def wsse_process(app_port: int, log: Path, *options: str) -> Iterator[int]:
    """wsse in front of the app on 127.0.0.1:C{app_port}, as its own process; its port."""
    port = free_port()
    command = wsse_command(
        "--target",
        f"http://127.0.0.1:{app_port}",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        *options,
    )
    with running(command, port, log=log):
        yield port


class Blackhole:
    """
    A port where connections hang: it listens, but its accept queue is kept
    full, so the kernel drops further connection attempts and a client's
    connect only ends by its own timeout.
    """

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = int(self._listener.getsockname()[1])
        self._fillers = []
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", self.port))
            self._fillers.append(filler)
        time.sleep(0.1)

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()


@contextmanager
def http_server_thread(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """A small HTTP server in a thread of the test process, on 127.0.0.1: its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def serve_resource(root: Resource, argv: list[str] | None = None, description: str = "") -> None:
    """The C{main} of the tests' apps run as processes: C{--port N}, on 127.0.0.1, logging to stdout."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from twisted.internet import reactor
    from twisted.python import log

    log.startLogging(sys.stdout)
    reactor.listenTCP(args.port, Site(root), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
