"""
wsse's own limits on fallback sockets: the socket past a limit closes with
the code that says which (1008 for a page's share, 1013 for the process's,
1009 for a message too big) and everything else carries on.
"""

from __future__ import annotations

from tests.test_bridge import TEXT, BridgeTestCase
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
