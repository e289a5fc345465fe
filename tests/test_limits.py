"""
wsse's own limits on sockets: the socket past a limit closes with the code
that says which (1008 for a page's share, 1013 for the process's, 1009 for a
message too big), a native upgrade past the process's gets 503, and
everything else carries on.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor, task

from tests.support.clients import WSClient, parse_response, raw_exchange, ws_connect
from tests.test_bridge import TEXT, BridgeTestCase
from tests.test_wsrelay import UPGRADE, log_lines
from wsse._protocol import FRAME_CLOSE as CLOSE


class SocketsPerPage(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "max_page_sockets": 3}

    async def test_a_page_past_its_share_gets_1008_and_its_other_sockets_work(self) -> None:
        page = await self.page()
        for number in (1, 2, 3):
            self.assertEqual((await page.open(number, "/ws/echo")).name, "open")
        refused = await page.open(4, "/ws/echo")
        self.assertEqual(
            (refused.name, refused.data["code"], refused.data["clean"]), ("close", 1008, True)
        )
        self.assertEqual(len(self.ws.handshakes), 3)  # the app never saw the fourth
        await page.post([(TEXT, 2, b"still here")])
        self.assertEqual((await page.next_for(2)).data["d"], "still here")
        # Another page has its own share.
        other = await self.page()
        self.assertEqual((await other.open(1, "/ws/echo")).name, "open")
        # A closed socket frees its place.
        await page.post([(CLOSE, 1, b"\x03\xe8")])
        self.assertEqual((await page.next_for(1)).data["code"], 1000)
        self.assertEqual((await page.open(5, "/ws/echo")).name, "open")


class SocketsInAll(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "max_sockets": 2}

    async def test_past_the_process_s_limit_a_socket_gets_1013_until_one_closes(self) -> None:
        first, second = await self.page(), await self.page()
        self.assertEqual((await first.open(1, "/ws/echo")).name, "open")
        self.assertEqual((await second.open(1, "/ws/echo")).name, "open")
        refused = await second.open(2, "/ws/echo")
        self.assertEqual((refused.name, refused.data["code"]), ("close", 1013))
        await first.post([(TEXT, 1, b"unaffected")])
        self.assertEqual((await first.next_for(1)).data["d"], "unaffected")
        await first.post([(CLOSE, 1, b"\x03\xe8")])
        self.assertEqual((await first.next_for(1)).data["code"], 1000)
        self.assertEqual((await second.open(3, "/ws/echo")).name, "open")


class MessageSize(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "max_message_size": 1000}

    async def test_a_message_too_big_closes_its_socket_with_1009_both_ways(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.open(2, "/ws/echo")
        await page.send(1, b"x" * 1001)
        closed = await page.next_for(1)
        self.assertEqual((closed.name, closed.data["code"]), ("close", 1009))
        await page.post([(TEXT, 2, b"y" * 1000)])
        self.assertEqual((await page.next_for(2)).data["d"], "y" * 1000)

    async def test_a_message_too_big_from_the_app_closes_its_socket_with_1009(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.open(2, "/ws/echo")
        await page.post([(TEXT, 1, b"!flood 1001")])
        closed = await page.next_for(1)
        self.assertEqual((closed.name, closed.data["code"]), ("close", 1009))
        await page.post([(TEXT, 2, b"!flood 1000")])
        self.assertEqual(len((await page.next_for(2)).data["d"]), 1336)  # 1000 bytes in base64


class NativeSocketsInAll(BridgeTestCase):
    """Native sockets, spliced or relayed by --ws-deflate, count in --max-sockets too."""

    overrides = {"heartbeat": 0.2, "max_sockets": 2}
    deflate = False

    def setUp(self) -> None:
        super().setUp()
        self.lines = log_lines(self)

    async def native(self, path: str = "/ws/echo") -> WSClient:
        return await ws_connect(self.port, path, deflate=self.deflate)

    async def refused(self) -> None:
        """A native upgrade now gets 503 with Retry-After, and the app never sees it."""
        handshakes = len(self.ws.handshakes)
        upgrade = UPGRADE.replace(b"/plain", b"/ws/echo").replace(
            b"Upgrade\r\n", b"Upgrade, close\r\n"
        )
        if self.deflate:
            upgrade = upgrade.replace(
                b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
            )
        response = parse_response(await raw_exchange(self.port, upgrade))
        self.assertEqual(response.status, 503)
        self.assertEqual(response.header(b"retry-after"), [b"5"])
        self.assertEqual(response.body, b"too many sockets open, try again later\n")
        self.assertEqual(len(self.ws.handshakes), handshakes)
        self.assertTrue(any("as many as --max-sockets allows (503)" in line for line in self.lines))

    async def echoes(self, client: WSClient, payload: bytes) -> None:
        client.sendMessage(payload)
        self.assertEqual(await client.messages.get(), (payload, False))

    async def close(self, client: Any, code: int = 1000) -> None:
        client.sendCloseFrame(code=code)
        await client.closed

    async def count_is(self, expected: int) -> None:
        """The process's count reaches C{expected} (a socket's end takes a turn or two)."""
        bridge = self.proxy._bridge
        for _ in range(500):
            if bridge.socket_count == expected:
                return
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(bridge.socket_count, expected)

    async def test_a_native_upgrade_past_the_limit_gets_503_and_the_others_echo(self) -> None:
        first, second = await self.native(), await self.native()
        await self.refused()
        await self.echoes(first, b"first")
        await self.echoes(second, b"second")
        await self.close(first)
        await self.count_is(1)
        third = await self.native()
        await self.echoes(third, b"third")
        await self.close(second)
        await self.close(third)
        await self.count_is(0)

    async def test_fallback_and_native_sockets_share_the_count(self) -> None:
        page = await self.page()
        self.assertEqual((await page.open(1, "/ws/echo")).name, "open")
        native = await self.native()
        await self.count_is(2)
        await self.refused()
        refused = await page.open(2, "/ws/echo")
        self.assertEqual((refused.name, refused.data["code"]), ("close", 1013))
        await self.echoes(native, b"still here")
        await self.close(native)
        await self.count_is(1)
        self.assertEqual((await page.open(3, "/ws/echo")).name, "open")
        await page.post([(CLOSE, 1, b"\x03\xe8"), (CLOSE, 3, b"\x03\xe8")])
        self.assertEqual((await page.next_for(1)).data["code"], 1000)
        self.assertEqual((await page.next_for(3)).data["code"], 1000)
        await self.count_is(0)

    async def test_the_count_comes_back_however_a_socket_ends(self) -> None:
        # The browser vanishes.
        client = await self.native()
        app_closed = self.ws.next_close()
        client.transport.abortConnection()
        await app_closed
        await self.count_is(0)
        # The app vanishes.
        client = await self.native()
        while not self.ws.open:
            await task.deferLater(reactor, 0.01, lambda: None)
        self.ws.open[0].transport.abortConnection()
        await client.closed
        await self.count_is(0)
        # The app closes, and refuses a handshake.
        client = await self.native()
        client.sendMessage(b"!close 1000 bye")
        await client.closed
        with self.assertRaises(ConnectionError):
            await self.native("/ws/deny")
        await self.count_is(0)
        # The app is down.
        await self.app_port.stopListening()
        with self.assertRaises(ConnectionError):
            await self.native()
        await self.count_is(0)

    async def test_the_count_comes_back_when_wsse_stops(self) -> None:
        first, second = await self.native(), await self.native()
        await self.count_is(2)
        await self.proxy.close()
        self.assertEqual(((await first.closed)[1], (await second.closed)[1]), (1001, 1001))
        await self.count_is(0)

    async def test_the_count_comes_back_when_wsse_cuts_its_sockets(self) -> None:
        first, second = await self.native(), await self.native()
        await self.count_is(2)
        self.proxy.abort()
        self.assertEqual(((await first.closed)[1], (await second.closed)[1]), (1006, 1006))
        await self.count_is(0)


class DeflatingSocketsInAll(NativeSocketsInAll):
    overrides = {"heartbeat": 0.2, "max_sockets": 2, "ws_deflate": True}
    deflate = True


class NativeSocketsTimedOut(BridgeTestCase):
    overrides = {"max_sockets": 1, "response_timeout": 0.3}

    async def test_a_handshake_the_app_does_not_answer_in_time_frees_its_place(self) -> None:
        for _ in range(2):
            with self.assertRaises(ConnectionError) as raised:
                await ws_connect(self.port, "/ws/slow")
            self.assertIn("[504]", str(raised.exception))
        for _ in range(100):
            if not self.proxy._bridge.socket_count:
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(self.proxy._bridge.socket_count, 0)
