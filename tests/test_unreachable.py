"""An app that cannot be reached in time: connect timeouts, and browsers that leave meanwhile."""

from __future__ import annotations

from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

from tests.support.clients import http, raw_connection, ws_connect
from tests.support.harness import TrackingFactory, autobahn_timers_expired
from tests.support.processes import Blackhole
from wsse import Settings, Target, WSSEResource, make_site

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class ConnectTimeout(TestCase):
    ws_deflate = False

    def setUp(self) -> None:
        self.blackhole = Blackhole()
        settings = Settings(
            target=Target("http", "127.0.0.1", self.blackhole.port),
            connect_timeout=0.5,
            ws_deflate=self.ws_deflate,
        )
        self.proxy = WSSEResource(settings, reactor=reactor)
        self.factory = TrackingFactory(make_site(self.proxy))
        self.listening = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port
        self.addCleanup(self._stop)

    async def _stop(self) -> None:
        await self.proxy.close()
        await self.listening.stopListening()
        await self.factory.closed()
        await autobahn_timers_expired()
        self.blackhole.close()

    async def test_an_http_request_gets_a_504(self) -> None:
        response = await http(self.port, target=b"/x")
        self.assertEqual(response.status, 504)
        self.assertNotIn(str(self.blackhole.port).encode(), response.body)

    async def test_a_websocket_gets_a_504(self) -> None:
        with self.assertRaises(ConnectionError) as raised:
            await ws_connect(self.port, "/ws", deflate=self.ws_deflate)
        self.assertIn("[504]", str(raised.exception))

    async def _leave_while_connecting(self, request: bytes) -> None:
        client = await raw_connection(self.port, request)
        await task.deferLater(reactor, 0.1, lambda: None)
        client.transport.loseConnection()
        await client.done
        # Past the connect timeout: whatever wsse does then must not touch the
        # browser's finished request (trial fails the test on a logged error).
        await task.deferLater(reactor, 0.8, lambda: None)

    async def test_a_browser_leaving_while_wsse_connects_is_quietly_dropped(self) -> None:
        await self._leave_while_connecting(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")

    async def test_a_websocket_browser_leaving_while_wsse_connects_is_quietly_dropped(self) -> None:
        await self._leave_while_connecting(UPGRADE)


class ConnectTimeoutDeflating(ConnectTimeout):
    ws_deflate = True
