"""
Faults, with real processes and sockets on loopback: the app restarting, hanging
or too slow, a browser vanishing, and wsse itself stopped by SIGTERM (alone and
under the init script).

wsse runs as its own process wherever a signal or a restart matters; the app
runs in the test's reactor where the test must see how its sockets close, and
as a process (this module, run as C{python -m tests.test_faults PORT}) where it
must crash and come back on the same port.  Waits are bounded generously and
nothing is measured in time: every check is a status, a close code or a count.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.app import app_site
from tests.support.clients import carried, http, raw_exchange, ws_connect
from tests.support.harness import ProxyTestCase, TrackingFactory, autobahn_timers_expired
from tests.support.pageclient import PageClient
from tests.support.processes import ROOT, free_port, wsse_command
from wsse import _protocol

OPEN = _protocol.FRAME_OPEN
TEXT = _protocol.FRAME_TEXT


async def pause(seconds: float = 0.05) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port now."""
    try:
        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=2), Protocol()
        )
    except ConnectError:
        return False
    protocol.transport.loseConnection()
    return True


async def until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    """Poll C{predicate} (sync or async) until true; fail after C{timeout} (an upper bound only)."""
    waited = 0.0
    while True:
        result = predicate()
        if isinstance(result, defer.Deferred) or hasattr(result, "__await__"):
            result = await result
        if result:
            return
        if waited > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pause()
        waited += 0.05


class Process:
    """A server process the test starts, signals and reaps without blocking its reactor."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self._output = open(log, "wb")
        self.process = subprocess.Popen(
            args, stdout=self._output, stderr=subprocess.STDOUT, cwd=ROOT
        )

    async def listening(self) -> None:
        async def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}: {self.text()}")
            return await accepts(self.port)

        await until(up, f"a listener on {self.port}")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    async def exited(self, timeout: float = 30.0) -> int:
        await until(lambda: self.process.poll() is not None, "the process to exit", timeout)
        self._output.close()
        return self.process.returncode

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        await self.exited()

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class Faults(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wsse-faults-"))
        self.addCleanup(shutil.rmtree, self.dir, True)

    def wsse(self, target: int, *options: str, name: str = "wsse") -> Process:
        port = free_port()
        process = Process(
            wsse_command(
                "--target",
                f"http://127.0.0.1:{target}",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--log-level",
                "debug",
                *options,
            ),
            port,
            self.dir / f"{name}.log",
        )
        self.addCleanup(process.stop)
        return process

    def app_process(self, port: int, name: str) -> Process:
        process = Process(
            [sys.executable, "-m", "tests.test_faults", str(port)], port, self.dir / f"{name}.log"
        )
        self.addCleanup(process.stop)
        return process

    def app_in_reactor(self) -> int:
        """The tests' app in this reactor (C{self.app}, C{self.ws}), so its closes can be seen."""
        self.app, self.ws, site = app_site()
        self.app_factory = TrackingFactory(site)
        port = reactor.listenTCP(0, self.app_factory, interface="127.0.0.1")
        self.addCleanup(self._stop_app, port)
        return int(port.getHost().port)

    async def _stop_app(self, port: Any) -> None:
        await defer.maybeDeferred(port.stopListening)
        await self.app_factory.closed()
        await autobahn_timers_expired()

    async def page(self, port: int) -> PageClient:
        page = PageClient(port)
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        return page


class AppRestarts(Faults):
    """The app crashes and comes back on the same port."""

    async def test_native_sockets_close_1006_http_is_502_until_it_is_back(self) -> None:
        app_port = free_port()
        app = self.app_process(app_port, "app-1")
        await app.listening()
        wsse = self.wsse(app_port)
        await wsse.listening()
        client = await ws_connect(wsse.port, "/ws/echo")
        client.sendMessage(b"before")
        self.assertEqual(await client.messages.get(), (b"before", False))

        app.signal(signal.SIGKILL)
        await app.exited()
        was_clean, code, _ = await client.closed
        self.assertEqual((was_clean, code), (False, 1006))
        self.assertEqual((await http(wsse.port, target=b"/x")).status, 502)
        with self.assertRaises(ConnectionError) as refused:
            await ws_connect(wsse.port, "/ws/echo")
        self.assertIn("[502]", str(refused.exception))

        again = self.app_process(app_port, "app-2")
        await again.listening()
        self.assertEqual((await http(wsse.port, target=b"/x")).status, 200)
        client = await ws_connect(wsse.port, "/ws/echo")
        client.sendMessage(b"after")
        self.assertEqual(await client.messages.get(), (b"after", False))
        client.sendClose(1000)
        self.assertEqual((await client.closed)[1], 1000)

    async def test_fallback_sockets_close_1006_and_new_ones_open_once_it_is_back(self) -> None:
        app_port = free_port()
        app = self.app_process(app_port, "app-1")
        await app.listening()
        wsse = self.wsse(app_port)
        await wsse.listening()
        page = await self.page(wsse.port)
        self.assertEqual((await page.open(1, "/ws/echo")).name, "open")

        app.signal(signal.SIGKILL)
        await app.exited()
        closed = await page.next_for(1)
        self.assertEqual(
            (closed.name, closed.data["code"], closed.data["clean"]), ("close", 1006, False)
        )
        failed = await page.open(2, "/ws/echo")
        self.assertEqual((failed.name, failed.data["code"]), ("close", 1006))

        again = self.app_process(app_port, "app-2")
        await again.listening()
        self.assertEqual((await page.open(3, "/ws/echo")).name, "open")
        await page.post([(TEXT, 3, b"after")])
        self.assertEqual((await page.next_for(3)).data["d"], "after")


class AppHangs(ProxyTestCase):
    """An app that never answers: each request gets a 504, and wsse keeps nothing of it."""

    overrides = {"response_timeout": 0.3}
    hung = 20

    async def test_hung_requests_are_504_and_leave_no_connection_behind(self) -> None:
        held: list[Request] = []
        self.app.route(b"/hang", lambda request: held.append(request) or NOT_DONE_YET)
        responses = await defer.gatherResults(
            [defer.ensureDeferred(http(self.port, target=b"/hang")) for _ in range(self.hung)]
        )
        self.assertEqual([r.status for r in responses], [504] * self.hung)
        self.assertEqual(len(held), self.hung)
        # Every request to the app was given up: its connection closed, none pooled.
        await until(lambda: not self.app_factory.protocols, "the app's connections to close")
        self.assertEqual(self.app_factory.accepted, self.hung)

    async def test_hung_websocket_handshakes_are_504_and_leave_no_connection_behind(self) -> None:
        for _ in range(5):
            with self.assertRaises(ConnectionError) as refused:
                await ws_connect(self.port, "/ws/slow")
            self.assertIn("[504]", str(refused.exception))
        await until(lambda: not self.app_factory.protocols, "the app's connections to close")
        self.assertEqual(self.app_factory.accepted, 5)

    async def test_hung_fallback_handshakes_fail_and_leave_no_connection_behind(self) -> None:
        page = PageClient(self.port)
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        for number in range(1, 6):
            failed = await page.open(number, "/ws/slow")
            self.assertEqual((failed.name, failed.data["code"]), ("close", 1006))
        await until(lambda: not self.app_factory.protocols, "the app's connections to close")
        self.assertEqual(self.app_factory.accepted, 5)


class BrowserVanishes(Faults):
    async def test_a_fallback_page_gone_past_the_grace_period_closes_the_app_s_sockets(
        self,
    ) -> None:
        app_port = self.app_in_reactor()
        wsse = self.wsse(app_port, "--grace", "1", "--heartbeat", "0.5")
        await wsse.listening()
        page = await self.page(wsse.port)
        for number in (1, 2):
            self.assertEqual((await page.open(number, "/ws/echo")).name, "open")
        await page.drop_stream()
        await until(lambda: len(self.ws.closes) == 2, "the app's sockets to close")
        self.assertEqual([close[:2] for close in self.ws.closes], [(False, 1006)] * 2)
        self.assertEqual(await page.connect(), 410)

    async def test_a_native_socket_whose_connection_drops_closes_the_app_s(self) -> None:
        app_port = self.app_in_reactor()
        wsse = self.wsse(app_port)
        await wsse.listening()
        client = await ws_connect(wsse.port, "/ws/echo")
        await until(lambda: self.ws.open, "the app's socket to open")
        app_closed = self.ws.next_close()
        client.transport.abortConnection()
        self.assertEqual((await app_closed)[:2], (False, 1006))
        await until(lambda: not self.app_factory.protocols, "the app's connection to close")


class WSSEStops(Faults):
    """SIGTERM: every socket closes with 1001 on both sides, requests under way are answered."""

    async def stopped(self, wsse: Process) -> None:
        wsse.signal(signal.SIGTERM)
        self.assertEqual(await wsse.exited(), 0)
        log = wsse.text()
        self.assertNotIn("Traceback", log)
        self.assertNotIn("cut what was still open", log)

    async def app_sockets_closed(self, count: int) -> None:
        """The app saw each of its sockets closed with 1001, cleanly."""
        await until(lambda: len(self.ws.closes) >= count, "the app's sockets to close")
        self.assertEqual([close[:2] for close in self.ws.closes], [(True, 1001)] * count)

    async def test_native_sockets_close_1001_both_ways(self) -> None:
        app_port = self.app_in_reactor()
        wsse = self.wsse(app_port)
        await wsse.listening()
        clients = [await ws_connect(wsse.port, path) for path in ("/ws/a", "/ws/b?x=1")]
        clients.append(await ws_connect(wsse.port, carried("/ws/c?y=2")))
        for client in clients:
            client.sendMessage(b"x" * 100_000)  # frames under way as the signal comes
        await until(lambda: len(self.ws.open) == 3, "the app's sockets to open")
        await self.stopped(wsse)
        for client in clients:
            was_clean, code, _ = await client.closed
            self.assertEqual((was_clean, code), (True, 1001))
        await self.app_sockets_closed(3)

    async def test_deflated_sockets_close_1001_both_ways(self) -> None:
        app_port = self.app_in_reactor()
        wsse = self.wsse(app_port, "--ws-deflate")
        await wsse.listening()
        client = await ws_connect(wsse.port, "/ws/echo", deflate=True)
        await until(lambda: self.ws.open, "the app's socket to open")
        await self.stopped(wsse)
        self.assertEqual((await client.closed)[:2], (True, 1001))
        await self.app_sockets_closed(1)

    async def test_fallback_sockets_close_1001_on_the_stream_and_to_the_app(self) -> None:
        app_port = self.app_in_reactor()
        wsse = self.wsse(app_port)
        await wsse.listening()
        page = await self.page(wsse.port)
        for number in (1, 2):
            self.assertEqual((await page.open(number, "/ws/echo")).name, "open")
        await self.stopped(wsse)
        closes = sorted([(await page.next_for(n)).data for n in (1, 2)], key=lambda d: d["s"])
        self.assertEqual(
            closes,
            [{"s": n, "code": 1001, "reason": "", "clean": True} for n in (1, 2)],
        )
        await self.app_sockets_closed(2)
        await page.stream.done  # the stream ended with the events, not cut

    async def test_a_request_under_way_is_answered_before_wsse_exits(self) -> None:
        app_port = self.app_in_reactor()
        held: list[Request] = []
        self.app.route(b"/held", lambda request: held.append(request) or NOT_DONE_YET)
        wsse = self.wsse(app_port)
        await wsse.listening()
        arrived = self.app.next_request()
        answer = defer.ensureDeferred(http(wsse.port, b"POST", b"/held", body=b"payload"))
        self.assertEqual((await arrived).body, b"payload")
        wsse.signal(signal.SIGTERM)

        async def refused() -> bool:
            return not await accepts(wsse.port)

        await until(refused, "wsse to stop listening")
        self.assertIsNone(wsse.process.poll())  # still draining
        held[0].write(b"answered")
        held[0].finish()
        response = await answer
        self.assertEqual((response.status, response.body), (200, b"answered"))
        self.assertEqual(await wsse.exited(), 0)

    async def test_a_request_still_unanswered_after_the_drain_timeout_is_cut(self) -> None:
        app_port = self.app_in_reactor()
        self.app.route(b"/never", lambda request: NOT_DONE_YET)
        wsse = self.wsse(app_port)
        await wsse.listening()
        arrived = self.app.next_request()
        answer = defer.ensureDeferred(
            raw_exchange(wsse.port, b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        )
        await arrived
        wsse.signal(signal.SIGTERM)
        self.assertEqual(await wsse.exited(), 0)
        self.assertEqual(await answer, b"")
        self.assertIn("cut what was still open", wsse.text())

    async def test_after_a_stop_the_next_wsse_serves_on_the_same_port(self) -> None:
        app_port = self.app_in_reactor()
        wsse = self.wsse(app_port)
        await wsse.listening()
        client = await ws_connect(wsse.port, "/ws/echo")
        await self.stopped(wsse)
        self.assertEqual((await client.closed)[1], 1001)
        port = wsse.port
        again = Process(wsse.process.args, port, self.dir / "again.log")  # type: ignore[arg-type]
        self.addCleanup(again.stop)
        await again.listening()
        client = await ws_connect(port, "/ws/echo")
        client.sendMessage(b"again")
        self.assertEqual(await client.messages.get(), (b"again", False))
        client.sendClose(1000)
        await client.closed


def test_a_restart_under_the_init_script_closes_sockets_1001_and_comes_back(
    tmp_path: Path,
) -> None:
    """etc/init.d/wsse restart with a socket open: it closes 1001, and the new daemon serves."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.support.processes import running
    from tests.test_daemon import Prefix

    app_port = free_port()
    with running([sys.executable, "-m", "tests.test_faults", str(app_port)], app_port):
        prefix = Prefix(tmp_path / "prefix", app_port)
        try:
            assert prefix.run("start").returncode == 0
            url = f"ws://127.0.0.1:{prefix.port}/ws/echo"
            with connect(url, open_timeout=10, close_timeout=10) as ws:
                ws.send("before")
                assert ws.recv(timeout=10) == "before"
                restarted = prefix.run("restart")
                assert restarted.returncode == 0, restarted.stdout
                try:
                    ws.recv(timeout=10)
                    raise AssertionError("the socket stayed open across the restart")
                except ConnectionClosed as closed:
                    assert closed.rcvd is not None and closed.rcvd.code == 1001, closed
            with connect(url, open_timeout=10, close_timeout=10) as ws:
                ws.send("after")
                assert ws.recv(timeout=10) == "after"
            log = prefix.logfile.read_text()
            assert "Traceback" not in log, log
            assert "cut what was still open" not in log, log
        finally:
            prefix.cleanup()


def _frame(opcode: int, payload: bytes, masked: bool) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | size])
    elif size < 65536:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, (0x80 if masked else 0) | 127]) + size.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + payload


def test_the_splice_follows_frame_boundaries_however_the_bytes_are_cut() -> None:
    """What lets a stopping wsse put its close frame between two frames, never inside one."""
    from wsse._wsrelay import _FrameCursor

    for masked in (False, True):
        frames = [
            _frame(0x1, b"", masked),
            _frame(0x2, b"a" * 125, masked),
            _frame(0x2, b"b" * 126, masked),
            _frame(0x0, b"c" * 70_000, masked),
            _frame(0x9, b"ping", masked),
            _frame(0x8, b"\x03\xe8", masked),
        ]
        stream = b"".join(frames)
        ends = {sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))}
        for cut in (1, 3, 7, 1000):
            cursor = _FrameCursor()
            seen = 0
            for start in range(0, len(stream), cut):
                piece = stream[start : start + cut]
                while piece:
                    # Up to the next boundary; from one, a byte into the next frame.
                    took = cursor.feed(piece, stop_at_boundary=True) or cursor.feed(piece[:1])
                    seen += took
                    piece = piece[took:]
                    assert cursor.at_boundary == (seen in ends), (masked, cut, seen)
            assert seen == len(stream) and cursor.at_boundary
            assert cursor.close_seen


def test_a_close_frame_is_seen_only_once_whole() -> None:
    from wsse._wsrelay import _FrameCursor

    close = _frame(0x8, b"\x03\xe9", masked=True)
    cursor = _FrameCursor()
    cursor.feed(_frame(0x1, b"text", masked=True) + close[:-1])
    assert not cursor.close_seen and not cursor.at_boundary
    cursor.feed(close[-1:])
    assert cursor.close_seen and cursor.at_boundary


def _serve_app(port: int) -> None:
    """The tests' app (HTTP echo, WebSocket under /ws) as its own process."""
    app, ws, site = app_site()
    app.route(b"/x", lambda request: json.dumps({"pid": os.getpid()}).encode())
    reactor.listenTCP(port, site, interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    _serve_app(int(sys.argv[1]))
