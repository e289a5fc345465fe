"""
wsse's memory while large bodies and floods pass through it: measured, not assumed.

wsse runs as its own process (C{python -m wsse}) so that its resident memory is
its own; the app and the clients run in the test's reactor.  Every case moves
far more data than the allowed growth, so a proxy that buffered would fail.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IProtocolFactory, IPushProducer
from twisted.trial.unittest import TestCase
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from tests.support.app import RawAppFactory, app_site
from tests.support.clients import http, parse_response, raw_connection, ws_connect
from tests.support.harness import TrackingFactory, autobahn_timers_expired
from tests.support.pageclient import PageClient
from tests.support.processes import free_port, rss_kib, wait_for_port

MIB = 1024 * 1024
# What wsse may grow by while hundreds of MiB pass through it.
ALLOWED_GROWTH_KIB = 32 * 1024


@implementer(IPushProducer)
class Flood:
    """An app response of C{total} bytes, written only while the connection takes them."""

    def __init__(self, request: Request, total: int, chunk: bytes) -> None:
        self.request = request
        self.remaining = total
        self.sent = 0
        self.chunk = chunk
        self.paused = False
        self.done: defer.Deferred[None] = request.notifyFinish()
        request.registerProducer(self, True)
        reactor.callLater(0, self.resumeProducing)

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.remaining > 0:
            piece = self.chunk[: self.remaining]
            self.remaining -= len(piece)
            self.sent += len(piece)
            self.request.write(piece)
        if self.remaining == 0 and not self.request.finished:
            self.request.unregisterProducer()
            self.request.finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.remaining = 0


class WsseProcess(TestCase):
    """The app in this reactor (L{App} unless C{make_app} says otherwise), wsse as a process in front of it."""

    timeout = 300
    extra_options: list[str] = []

    def make_app(self) -> IProtocolFactory:
        self.app, self.ws, site = app_site()
        return site

    def setUp(self) -> None:
        self.app_factory = TrackingFactory(self.make_app())
        self.app_port = reactor.listenTCP(0, self.app_factory, interface="127.0.0.1")
        self.port = free_port()
        self.wsse = subprocess.Popen(
            [
                sys.executable, "-m", "wsse",
                "--target", f"http://127.0.0.1:{self.app_port.getHost().port}",
                "--listen", f"tcp:{self.port}:interface=127.0.0.1",
                "--log-level", "warning",
                *self.extra_options,
            ]
        )  # fmt: skip
        wait_for_port(self.port, process=self.wsse)
        self.floods: list[Flood] = []
        self.addCleanup(self._stop)

    async def _stop(self) -> None:
        self.wsse.terminate()
        self.wsse.wait(10)
        await self.app_port.stopListening()
        await self.app_factory.closed()
        await autobahn_timers_expired()

    def route_flood(self, path: bytes, total: int, content_type: bytes, head: bytes = b"") -> None:
        def handler(request: Request) -> int:
            request.setHeader(b"content-type", content_type)
            if head:
                request.write(head)
            self.floods.append(Flood(request, total, b"<p>" + b"x" * (64 * 1024 - 3)))
            return NOT_DONE_YET

        self.app.route(path, handler)

    async def baseline(self) -> int:
        for _ in range(3):
            await http(self.port, target=b"/warm-up")
        return rss_kib(self.wsse.pid)

    async def app_floods_a_stalled_reader(self, before: int, label: str) -> None:
        """The app's socket sends 256 MiB to a reader that stopped: wsse must hold it back."""
        app_socket = self.ws.open[0]
        chunk = os.urandom(256 * 1024)  # incompressible, or permessage-deflate would shrink it
        for _ in range(256 * MIB // len(chunk)):
            app_socket.sendMessage(chunk, isBinary=True)
        # The app's kernel and user buffers fill; wsse must not take the rest.
        await task.deferLater(reactor, 3.0, lambda: None)
        grown = rss_kib(self.wsse.pid) - before
        # What the app's transport could not write yet (Twisted's own counters).
        backlog = len(app_socket.transport.dataBuffer) + app_socket.transport._tempDataLen
        print(f"{label}: wsse grew {grown} KiB; {backlog / MIB:.0f} MiB held back in the app")
        self.assertLess(grown, ALLOWED_GROWTH_KIB)
        self.assertGreater(backlog, 128 * MIB)

    async def download(self, target: bytes, headers: bytes = b"") -> tuple[int, int]:
        """Read a whole response as fast as possible; the byte count and wsse's peak growth."""
        client = await raw_connection(
            self.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
        )
        received = 0
        peak = 0

        def count(data: bytes) -> None:
            nonlocal received
            received += len(data)

        client.dataReceived = count
        while not self.floods or self.floods[-1].remaining > 0:
            peak = max(peak, rss_kib(self.wsse.pid))
            await task.deferLater(reactor, 0.2, lambda: None)
        await self.floods[-1].done
        while received < self.floods[-1].sent:
            await task.deferLater(reactor, 0.05, lambda: None)
        client.transport.loseConnection()
        return received, max(peak, rss_kib(self.wsse.pid))


class HTTPMemory(WsseProcess):
    async def test_a_1_gib_download_does_not_grow_wsse(self) -> None:
        self.route_flood(b"/big", 1024 * MIB, b"application/octet-stream")
        before = await self.baseline()
        received, peak = await self.download(b"/big")
        self.assertGreaterEqual(received, 1024 * MIB)
        print(f"1 GiB download: wsse RSS {before} KiB before, {peak} KiB at peak")
        self.assertLess(peak - before, ALLOWED_GROWTH_KIB)

    async def test_a_256_mib_page_streams_through_the_injector(self) -> None:
        self.route_flood(
            b"/page", 256 * MIB, b"text/html", head=b"<!doctype html><html><head><title>big</title>"
        )
        before = await self.baseline()
        received, peak = await self.download(b"/page", b"Sec-Fetch-Dest: document\r\n")
        self.assertGreater(received, 256 * MIB)
        print(f"256 MiB page: wsse RSS {before} KiB before, {peak} KiB at peak")
        self.assertLess(peak - before, ALLOWED_GROWTH_KIB)

    async def test_a_small_gzip_page_that_decodes_to_256_mib_does_not_grow_wsse(self) -> None:
        page = b"<!doctype html><html><head><title>bomb</title><p>" + b"x" * (256 * MIB)
        compressed = gzip.compress(page, compresslevel=9)

        def bomb(request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/html")
            request.setHeader(b"content-encoding", b"gzip")
            return compressed

        self.app.route(b"/bomb", bomb)
        before = await self.baseline()
        client = await raw_connection(
            self.port,
            b"GET /bomb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Sec-Fetch-Dest: document\r\nAccept-Encoding: gzip\r\n\r\n",
        )
        peak = before
        while not client.done.called:
            peak = max(peak, rss_kib(self.wsse.pid))
            await task.deferLater(reactor, 0.1, lambda: None)
        response = parse_response(await client.done)
        body = gzip.decompress(response.body)
        self.assertEqual(len(body), len(page) + body.index(b"<title>") - page.index(b"<title>"))
        print(
            f"{len(compressed) // 1024} KiB gzip page of 256 MiB: wsse RSS {before} KiB before, {peak} KiB at peak"
        )
        self.assertLess(peak - before, ALLOWED_GROWTH_KIB)

    async def test_a_browser_that_stops_reading_pauses_the_app(self) -> None:
        self.route_flood(b"/big", 1024 * MIB, b"application/octet-stream")
        before = await self.baseline()
        client = await raw_connection(self.port, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        await client.first_data
        client.transport.pauseProducing()
        sent = -1
        while sent != self.floods[0].sent:  # until the app is held back
            sent = self.floods[0].sent
            await task.deferLater(reactor, 1.0, lambda: None)
        grown = rss_kib(self.wsse.pid) - before
        print(f"stalled reader: app sent {sent / MIB:.1f} MiB of 1024, wsse grew {grown} KiB")
        self.assertLess(sent, 128 * MIB)
        self.assertTrue(self.floods[0].paused)
        self.assertLess(grown, ALLOWED_GROWTH_KIB)
        client.transport.abortConnection()
        await self.assertFailure(self.floods[0].done, Exception)


class WebSocketMemory(WsseProcess):
    deflate = False

    async def test_a_websocket_reader_that_stops_pauses_the_app(self) -> None:
        deflate = self.deflate
        before = await self.baseline()
        client = await ws_connect(self.port, deflate=deflate)
        client.transport.pauseProducing()  # the browser stops reading
        while not self.ws.open:
            await task.deferLater(reactor, 0.01, lambda: None)
        await self.app_floods_a_stalled_reader(before, f"websocket flood (deflate={deflate})")
        client.transport.abortConnection()

    async def test_an_app_that_stops_reading_pauses_the_browser(self) -> None:
        before = await self.baseline()
        client = await ws_connect(self.port, deflate=self.deflate)
        while not self.ws.open:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.ws.open[0].transport.pauseProducing()  # the app stops reading
        chunk = os.urandom(256 * 1024)
        # 64 MiB (twice what wsse may grow by): a client masks every frame,
        # which is slow in Python.
        for _ in range(64 * MIB // len(chunk)):
            client.sendMessage(chunk, isBinary=True)
        await task.deferLater(reactor, 3.0, lambda: None)
        grown = rss_kib(self.wsse.pid) - before
        backlog = len(client.transport.dataBuffer) + client.transport._tempDataLen
        print(
            f"websocket upload flood (deflate={self.deflate}): wsse grew {grown} KiB; "
            f"{backlog / MIB:.0f} MiB held back in the browser"
        )
        self.assertLess(grown, ALLOWED_GROWTH_KIB)
        self.assertGreater(backlog, 32 * MIB)
        client.transport.abortConnection()


class DeflatingWebSocketMemory(WebSocketMemory):
    deflate = True
    extra_options = ["--ws-deflate"]


class UploadMemory(WsseProcess):
    """Uploads through a wsse process to an app that reads its socket itself."""

    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory(keep_data=False)
        return self.raw

    async def _upload(self, total: int) -> Any:
        client = await raw_connection(
            self.port, b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total
        )
        producer = Upload(client.transport, total)
        client.transport.registerProducer(producer, True)
        producer.resumeProducing()
        return client, producer

    async def test_a_1_gib_upload_does_not_grow_wsse(self) -> None:
        before = rss_kib(self.wsse.pid)
        total = 1024 * MIB
        client, producer = await self._upload(total)
        peak = before
        app = await self.raw.connected.get()
        while app.received < total:
            peak = max(peak, rss_kib(self.wsse.pid))
            await task.deferLater(reactor, 0.2, lambda: None)
        print(f"1 GiB upload: wsse RSS {before} KiB before, {peak} KiB at peak")
        self.assertLess(peak - before, ALLOWED_GROWTH_KIB)
        client.transport.abortConnection()

    async def test_an_app_that_stops_reading_pauses_the_upload(self) -> None:
        self.raw.paused = True
        before = rss_kib(self.wsse.pid)
        client, producer = await self._upload(1024 * MIB)
        sent = -1
        while sent != producer.sent:  # until the browser is held back
            sent = producer.sent
            await task.deferLater(reactor, 1.0, lambda: None)
        grown = rss_kib(self.wsse.pid) - before
        print(f"stalled app: browser sent {sent / MIB:.1f} MiB of 1024, wsse grew {grown} KiB")
        self.assertLess(sent, 128 * MIB)
        self.assertLess(grown, ALLOWED_GROWTH_KIB)
        client.transport.abortConnection()


@implementer(IPushProducer)
class Upload:
    """A browser sending a body as fast as its connection takes it."""

    def __init__(self, transport: Any, total: int) -> None:
        self.transport = transport
        self.remaining = total
        self.sent = 0
        self.paused = False
        self.chunk = b"u" * (64 * 1024)

    def resumeProducing(self) -> None:
        self.paused = False
        while not self.paused and self.remaining > 0:
            piece = self.chunk[: self.remaining]
            self.remaining -= len(piece)
            self.sent += len(piece)
            self.transport.write(piece)

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.remaining = 0


class FallbackMemory(WsseProcess):
    async def test_a_page_that_stops_reading_its_stream_pauses_the_app(self) -> None:
        before = await self.baseline()
        page = PageClient(self.port)
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        await page.open(1, "/ws/echo")
        assert page.stream is not None
        page.stream.transport.pauseProducing()  # the browser stops reading its events
        await self.app_floods_a_stalled_reader(before, "fallback flood")
