"""
Bad input gets a precise answer and a log line, and changes nothing else.

One process serves a bystander page (a fallback socket) and a plain
WebSocket, both sending numbered messages to the echo app all along, while
other clients send what they should not: malformed and truncated POST bodies,
wrong content types, unknown sessions, bad sequence numbers and
Last-Event-IDs, text that is not UTF-8, oversized headers, conflicting
Content-Length and Transfer-Encoding, garbage instead of a WebSocket
handshake.  Each gets its answer and a log line; after each, every message
the bystanders sent meanwhile has come back exactly once, in order.
"""

from __future__ import annotations

import struct

from twisted.internet import defer, reactor
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from tests.support.clients import http, parse_response, raw_exchange, ws_connect
from tests.support.pageclient import PageClient
from tests.test_bridge import BINARY, TEXT, BridgeTestCase
from wsse import _protocol


class BadInput(BridgeTestCase):
    def setUp(self) -> object:
        self.lines: list[str] = []

        def observer(event: LogEvent) -> None:
            self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return super().setUp()

    async def start_bystanders(self) -> None:
        """A page with a fallback socket and a native socket, both chatting from now on."""
        self.bystander = await self.page()
        await self.bystander.open(1, "/ws/echo")
        self.native = await ws_connect(self.port, "/ws/echo")
        self.sent = 0  # numbered messages sent on each bystander socket
        self.echoed = 0  # of them, those checked back
        self.chat()
        self.addCleanup(self.quiet)

    def chat(self) -> None:
        """
        Both bystanders send numbered messages back to back (the page keeping
        one POST in flight, as the shim does), so bad input lands mid-conversation.
        """
        self.chatting = True
        self.chatter = defer.ensureDeferred(self._chat())

    async def _chat(self) -> None:
        while self.chatting:
            self.sent += 1
            message = b"%d" % self.sent
            self.native.sendMessage(message)
            self.assertEqual(await self.bystander.post([(TEXT, 1, message)]), 204)

    async def quiet(self) -> None:
        """Stop chatting once the POST in flight is answered (its failure fails the test)."""
        self.chatting = False
        await self.chatter

    async def bystanders_carry_on(self) -> None:
        """
        Every message the bystanders sent since the last check comes back on
        each, exactly once and in order (a duplicate or a reordering shows up
        as the wrong number, a loss as a timeout); then they chat on.
        """
        await self.quiet()
        for n in range(self.echoed + 1, self.sent + 1):
            event = await defer.ensureDeferred(self.bystander.next_for(1)).addTimeout(10, reactor)
            self.assertEqual((event.name, event.data["d"]), ("text", str(n)))
            echo = await self.native.messages.get().addTimeout(10, reactor)
            self.assertEqual(echo, (b"%d" % n, False))
        self.echoed = self.sent
        self.chat()

    def logged(self, text: str) -> None:
        """A line logged since the last call says C{text}."""
        self.assertTrue(any(text in line for line in self.lines), (text, self.lines[-5:]))
        self.lines.clear()

    async def fresh_page(self) -> PageClient:
        page = PageClient(self.port)
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        await page.open(1, "/ws/echo")
        return page

    async def post_raw(
        self, page: PageClient, body: bytes, content_type: bytes = _protocol.FRAMES_CONTENT_TYPE
    ) -> int:
        headers = [
            (b"Content-Type", content_type),
            *((name, value) for name, values in page.credentials().items() for value in values),
            (b"Sec-Fetch-Site", b"same-origin"),
        ]
        return (await http(self.port, b"POST", b"/__wsse/send", headers, body)).status

    async def test_each_bad_input_is_answered_and_logged_and_nothing_else_changes(self) -> None:
        await self.start_bystanders()
        await self.bystanders_carry_on()

        # Frames: truncated, garbage, a frame longer than the body.
        for body in [
            b"\x00\x00\x00",
            b"garbage!" * 3,
            struct.pack(">QBII", 0, TEXT, 1, 100) + b"x",
        ]:
            page = await self.fresh_page()
            self.assertEqual(await self.post_raw(page, body), 400)
            self.logged("fallback frames refused")
            await self.bystanders_carry_on()

        page = await self.fresh_page()
        body = _protocol.encode_frames(page.seq, [(TEXT, 1, b"x")])
        for content_type in [b"text/plain", b"application/x-www-form-urlencoded", b""]:
            self.assertEqual(await self.post_raw(page, body, content_type), 415)
            self.logged("wrong content type")
        await self.bystanders_carry_on()

        # Unknown and made-up sessions.
        ghost = PageClient(self.port)
        ghost.session = "A" * 22
        self.assertEqual(await ghost.post([(TEXT, 1, b"x")]), 410)
        self.logged("no such session")
        self.assertEqual(await ghost.connect(), 410)
        self.logged("no such session")
        await self.bystanders_carry_on()

        # A sequence number from the future, and a Last-Event-ID that is not one.
        page = await self.fresh_page()
        self.assertEqual(await page.post([(TEXT, 1, b"x")], seq=page.seq + 7), 409)
        self.logged("fallback frames refused")
        page = await self.fresh_page()
        response = await http(
            self.port,
            b"GET",
            b"/__wsse/events",
            [
                *((name, value) for name, values in page.credentials().items() for value in values),
                (b"Last-Event-ID", b"x1"),
            ],
        )
        self.assertEqual(response.status, 400)
        self.logged("bad Last-Event-ID")
        await self.bystanders_carry_on()

        # Text that is not UTF-8 closes that socket (1007), not the page's others.
        page = await self.fresh_page()
        await page.open(2, "/ws/echo")
        await page.post([(TEXT, 1, b"caf\xc3")])
        closed = await page.next_for(1)
        self.assertEqual((closed.name, closed.data["code"]), ("close", 1007))
        self.logged("not UTF-8")
        # Split across parts, a character is fine; a broken one at the end is not.
        await page.post([(_protocol.FRAME_TEXT_PART, 2, b"caf\xc3"), (TEXT, 2, b"\xa9")])
        self.assertEqual((await page.next_for(2)).data["d"], "café")
        await page.post([(BINARY, 2, b"\xff\xfe")])  # binary is any bytes
        self.assertEqual((await page.next_for(2)).name, "binary")
        await self.bystanders_carry_on()
        # Text from the app that is not UTF-8 closes its socket with 1007 as
        # well, arriving whole in one read or over several.
        page = await self.fresh_page()
        await page.open(2, "/ws/echo")
        await page.post([(TEXT, 1, b"!invalid 20"), (TEXT, 2, b"!invalid 300000")])
        for socket in (1, 2):
            closed = await page.next_for(socket)
            self.assertEqual((closed.name, closed.data["code"]), ("close", 1007))
        self.logged("text that is not UTF-8")
        await self.bystanders_carry_on()

        # Smuggling: Content-Length and Transfer-Encoding together, twice a length.
        for head in [
            b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
            b"Content-Length: 4\r\nContent-Length: 40\r\n",
            b"Transfer-Encoding: chunked, identity\r\n",
        ]:
            smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
            raw = await raw_exchange(
                self.port,
                b"POST /upload HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n0\r\n\r\n" + smuggled,
            )
            self.assertEqual(parse_response(raw).status, 400, head)
            self.assertNotIn(b"/smuggled", b" ".join(s.uri for s in self.app.seen))
            # The reason, and nothing of the request: it was never served.
            self.assertFalse(
                [line for line in self.lines if "/smuggled" in line or "/upload" in line]
            )
            self.logged(
                "bad request (400): conflicting or unsupported Content-Length / Transfer-Encoding"
            )
        await self.bystanders_carry_on()

        # Garbage where a WebSocket handshake or its frames should be.
        raw = await raw_exchange(
            self.port,
            b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: not-a-key\r\n\r\n",
        )
        self.assertEqual(parse_response(raw).status, 400)
        garbage = await ws_connect(self.port, "/ws/echo")
        garbage.transport.write(b"\xff" * 64)  # not a frame the app can read
        closed = await garbage.closed
        self.assertEqual(closed[1], 1002)  # wsse reads the header; the app never gets it
        self.logged("the browser sent a frame with the reserved opcode 0xf; closing with 1002")
        await self.bystanders_carry_on()

        # Oversized headers.
        seen = len(self.app.seen)
        for big in [
            [(b"X-Big", b"a" * 20000)],
            [(b"X-Big-%d" % i, b"a" * 1000) for i in range(20)],
        ]:
            self.assertEqual((await http(self.port, b"GET", b"/x", big)).status, 431)
            self.logged("request head over 16384 bytes (431)")
        self.assertEqual(len(self.app.seen), seen)
        await self.bystanders_carry_on()
