"""
Real WebSocket passthrough: an autobahn app behind wsse, an autobahn client in front.

The same expectations hold for the byte splice (the default) and for the
message relay that offers permessage-deflate (C{--ws-deflate}).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.support.app import RawAppFactory
from tests.support.clients import (
    WSClient,
    carried,
    http,
    parse_response,
    raw_connection,
    ws_connect,
    ws_frame,
)
from tests.support.harness import ProxyTestCase


class RelayTests:
    """
    Mixed into a ProxyTestCase; C{deflate} says which relay is under test, and
    C{carried} whether sockets dial with their query carried in the path.
    """

    deflate = False
    carried = False

    async def connect(self, path: str = "/ws/echo", **kwargs: Any) -> Any:
        if self.carried:
            path = carried(path)
        return await ws_connect(self.port, path, deflate=self.deflate, **kwargs)  # type: ignore[attr-defined]

    async def close(
        self, client: Any, code: int = 1000, reason: str | None = None
    ) -> tuple[bool, int | None, str | None]:
        client.sendCloseFrame(code=code, reasonUtf8=reason.encode() if reason else None)
        return await client.closed

    async def test_messages_of_every_size_and_kind_arrive_exactly(self) -> None:
        client = await self.connect()
        texts = [
            "",
            "a",
            "line\nbreak\r\nand\rreturn\x00nul",
            "😀 caf\u00e9 \u4e2d",
            "x" * 125,
            "y" * 126,
            "z" * 65536,
        ]
        for text in texts:
            client.sendMessage(text.encode(), isBinary=False)
            self.assertEqual(await client.messages.get(), (text.encode(), False))
        for size in [0, 1, 125, 126, 65535, 65536, 1 << 20, 16 << 20]:
            payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
            client.sendMessage(payload, isBinary=True)
            self.assertEqual(await client.messages.get(), (payload, True))
        await self.close(client)

    async def test_fragmented_messages_arrive_whole(self) -> None:
        client = await self.connect()
        client.sendMessage(b"!fragments 7 one message sent in seven frames by the app")
        self.assertEqual(
            await client.messages.get(), (b"one message sent in seven frames by the app", False)
        )
        client.beginMessage(isBinary=True)
        for piece in [b"and ", b"one from ", b"the client"]:
            client.sendMessageFrame(piece)
        client.endMessage()
        self.assertEqual(await client.messages.get(), (b"and one from the client", True))
        await self.close(client)

    async def test_ping_and_pong_work_both_ways(self) -> None:
        client = await self.connect()
        pongs: defer.Deferred[bytes] = defer.Deferred()
        client.onPong = pongs.callback
        client.sendPing(b"from the client")
        self.assertEqual(await pongs, b"from the client")
        client.sendMessage(b"!ping from-the-app")
        self.assertEqual(await client.messages.get(), (b"pong from-the-app", False))
        await self.close(client)

    async def test_the_app_chooses_the_subprotocol_and_sets_cookies(self) -> None:
        client = await self.connect(protocols=["v1", "v2"])
        self.assertEqual(client.websocket_protocol_in_use, "v2")
        handshake = self.ws.handshakes[-1]  # type: ignore[attr-defined]
        self.assertEqual(handshake.protocols, ["v1", "v2"])
        cookies = client.response.headers["set-cookie"]
        self.assertIn("ws1=a; Path=/", cookies)
        self.assertIn("ws2=b; Path=/", cookies)
        await self.close(client)

    async def test_the_handshake_carries_what_the_browser_sent(self) -> None:
        client = await self.connect(
            path="/ws/echo?a=%20b&c&d=%2F",
            headers={"Cookie": "session=s3cr3t", "Authorization": "Bearer t0k3n"},
            useragent="TestBrowser/1.0",
            origin="http://page.example",
        )
        handshake = self.ws.handshakes[-1]  # type: ignore[attr-defined]
        self.assertEqual(self.ws.uris[-1], "/ws/echo?a=%20b&c&d=%2F")  # type: ignore[attr-defined]
        headers = handshake.headers
        self.assertEqual(headers["cookie"], "session=s3cr3t")
        self.assertEqual(headers["authorization"], "Bearer t0k3n")
        self.assertEqual(headers["user-agent"], "TestBrowser/1.0")
        self.assertEqual(headers["origin"], "http://page.example")
        self.assertEqual(headers["host"], f"127.0.0.1:{self.port}")  # type: ignore[attr-defined]
        self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(headers["x-forwarded-proto"], "http")
        self.assertEqual(headers["x-forwarded-host"], f"127.0.0.1:{self.port}")  # type: ignore[attr-defined]
        await self.close(client)

    async def test_the_app_s_refusal_status_reaches_the_browser(self) -> None:
        for path, status in [("/ws/deny", 403), ("/ws/missing", 404)]:
            with self.assertRaises(ConnectionError) as raised:  # type: ignore[attr-defined]
                await self.connect(path=path)
            self.assertIn(f"[{status}]", str(raised.exception))  # type: ignore[attr-defined]

    async def test_an_app_slow_to_accept_still_gets_its_socket(self) -> None:
        client = await self.connect(path="/ws/slow")
        client.sendMessage(b"late but open")
        self.assertEqual(await client.messages.get(), (b"late but open", False))
        await self.close(client)

    async def test_close_codes_and_reasons_pass_from_the_browser(self) -> None:
        for code, reason in [
            (1000, "done"),
            (1001, "going away"),
            (1008, "policy"),
            (4000, "client-bye"),
            (4999, ""),
        ]:
            client = await self.connect()
            app_closed = self.ws.next_close()  # type: ignore[attr-defined]
            was_clean, echoed, _ = await self.close(client, code, reason or None)
            self.assertTrue(was_clean)
            self.assertEqual(echoed, code)
            self.assertEqual(await app_closed, (True, code, reason or None))

    async def test_a_close_without_a_code_passes_as_such(self) -> None:
        client = await self.connect()
        app_closed = self.ws.next_close()  # type: ignore[attr-defined]
        client.sendCloseFrame()
        was_clean, code, _ = await client.closed
        self.assertTrue(was_clean)
        self.assertEqual(await app_closed, (True, None, None))

    async def test_close_codes_and_reasons_pass_from_the_app(self) -> None:
        for code, reason in [
            (1000, "bye"),
            (1001, "restarting"),
            (1008, "nope"),
            (1011, "oops"),
            (4001, "app-bye"),
        ]:
            client = await self.connect()
            client.sendMessage(f"!close {code} {reason}".encode())
            self.assertEqual(await client.closed, (True, code, reason))

    async def test_a_vanished_browser_closes_the_app_s_socket(self) -> None:
        client = await self.connect()
        app_closed = self.ws.next_close()  # type: ignore[attr-defined]
        client.transport.abortConnection()
        was_clean, code, _ = await app_closed
        self.assertFalse(was_clean)
        self.assertEqual(code, 1006)

    async def test_a_vanished_app_closes_the_browser_s_socket(self) -> None:
        client = await self.connect()
        while not self.ws.open:  # type: ignore[attr-defined]
            await task.deferLater(reactor, 0.01, lambda: None)
        self.ws.open[0].transport.abortConnection()  # type: ignore[attr-defined]
        was_clean, code, _ = await client.closed
        self.assertFalse(was_clean)
        self.assertEqual(code, 1006)

    async def test_an_app_that_is_down_gets_the_browser_a_502(self) -> None:
        await self.app_port.stopListening()  # type: ignore[attr-defined]
        with self.assertRaises(ConnectionError) as raised:  # type: ignore[attr-defined]
            await self.connect()
        self.assertIn("[502]", str(raised.exception))  # type: ignore[attr-defined]


class SlowAppTests:
    deflate = False

    async def test_an_app_too_slow_to_answer_the_handshake_is_a_504(self) -> None:
        with self.assertRaises(ConnectionError) as raised:  # type: ignore[attr-defined]
            await ws_connect(self.port, "/ws/slow", deflate=self.deflate)  # type: ignore[attr-defined]
        self.assertIn("[504]", str(raised.exception))  # type: ignore[attr-defined]


class SpliceSlowApp(SlowAppTests, ProxyTestCase):
    overrides = {"response_timeout": 0.5}


class DeflateSlowApp(SlowAppTests, ProxyTestCase):
    deflate = True
    overrides = {"response_timeout": 0.5, "ws_deflate": True}


UPGRADE = (
    b"GET /plain HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Splice(RelayTests, ProxyTestCase):
    async def test_a_refused_upgrade_ends_the_connection(self) -> None:
        """Nothing sent after the app's refusal can reach the app past wsse."""
        client = await raw_connection(self.port, UPGRADE)
        await client.first_data
        client.transport.write(
            b"GET /second HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
        )
        response = parse_response(await client.done)
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"connection"), [b"close"])
        self.assertEqual(response.raw.count(b"HTTP/1.1 "), 1)
        self.assertEqual([seen.uri for seen in self.app.seen], [b"/plain"])

    async def test_a_non_websocket_upgrade_is_plain_http(self) -> None:
        response = await http(
            self.port, target=b"/h", headers=[(b"Upgrade", b"h2c"), (b"Connection", b"Upgrade")]
        )
        self.assertEqual(response.status, 200)
        self.assertEqual(self.app.seen[-1].header(b"upgrade"), [])

    async def test_the_browser_sees_no_extension_the_app_did_not_grant(self) -> None:
        client = await ws_connect(self.port, deflate=True)
        # The app accepts no compression, so neither does the browser's socket.
        self.assertEqual(client.websocket_extensions_in_use, [])
        await self.close(client)


class Deflate(RelayTests, ProxyTestCase):
    deflate = True
    overrides = {"ws_deflate": True}

    async def test_the_browser_gets_permessage_deflate_though_the_app_grants_none(self) -> None:
        client = await self.connect()
        self.assertEqual(
            [e.EXTENSION_NAME for e in client.websocket_extensions_in_use], ["permessage-deflate"]
        )
        self.assertNotIn("sec-websocket-extensions", self.ws.handshakes[-1].headers)
        await self.close(client)

    async def test_browsers_that_offer_no_compression_get_the_splice(self) -> None:
        client = await ws_connect(self.port)
        self.assertEqual(client.websocket_extensions_in_use, [])
        client.sendMessage(b"hi")
        self.assertEqual(await client.messages.get(), (b"hi", False))
        await self.close(client)


class CarriedSplice(RelayTests, ProxyTestCase):
    """Every relay test again, each socket's URL carried in the path."""

    carried = True

    async def test_anything_but_a_carried_url_is_refused(self) -> None:
        upgrade = UPGRADE.replace(b"/plain", b"%s").replace(b"Upgrade\r\n", b"Upgrade, close\r\n")
        for target, status in [
            (carried("/ws/echo?a=1").encode() + b"?b=2", 400),  # a query of its own
            (carried("/ws/echo?a=1").encode() + b"/more", 400),
            (b"/__wsse/ws/" + base64.b64encode(b"/ws/echo?a=1>>>"), 400),  # not base64url
            (carried("ws/echo?no-slash").encode(), 400),
            (carried("/ws/echo?a=\x01").encode(), 400),  # a control character
        ]:
            client = await raw_connection(self.port, upgrade.replace(b"%s", target))
            response = parse_response(await client.done)
            self.assertEqual(response.status, status, target)
        plain = await http(self.port, target=carried("/ws/echo?a=1").encode())
        self.assertEqual(plain.status, 400)
        self.assertEqual(self.ws.uris, [])


class CarriedDeflate(RelayTests, ProxyTestCase):
    deflate = True
    carried = True
    overrides = {"ws_deflate": True}


class DeflateLimits(ProxyTestCase):
    overrides = {"ws_deflate": True, "max_message_size": 1024 * 1024}

    async def test_a_message_over_the_limit_closes_with_1009(self) -> None:
        client = await ws_connect(self.port, deflate=True)
        client.sendMessage(b"small", isBinary=True)
        self.assertEqual(await client.messages.get(), (b"small", True))
        client.sendMessage(os.urandom(2 * 1024 * 1024), isBinary=True)
        _, code, _ = await client.closed
        self.assertEqual(code, 1009)


def log_lines(case: TestCase) -> list[str]:
    """Every log line from here to the end of the test, formatted."""
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        lines.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return lines


class SpliceChecks(ProxyTestCase):
    """
    The splice reads frame headers: a frame or message over --max-message-size
    closes its socket with 1009, and a header a browser may not send with
    1002, while every other socket carries on.
    """

    overrides = {"max_message_size": 1000}

    def setUp(self) -> None:
        super().setUp()
        self.lines = log_lines(self)

    def logged(self, text: str) -> None:
        self.assertTrue(any(text in line for line in self.lines), (text, self.lines[-5:]))

    async def bystander_echoes(self, bystander: WSClient, payload: bytes) -> None:
        bystander.sendMessage(payload, isBinary=True)
        self.assertEqual(await bystander.messages.get(), (payload, True))

    async def test_messages_up_to_the_limit_pass_whole_in_one_frame_or_several(self) -> None:
        client = await ws_connect(self.port)
        client.sendMessage(b"z" * 1000, isBinary=True)
        self.assertEqual(await client.messages.get(), (b"z" * 1000, True))
        client.beginMessage(isBinary=True)
        for part in (b"a" * 400, b"b" * 400, b"c" * 200):
            client.sendMessageFrame(part)
        client.endMessage()
        self.assertEqual(await client.messages.get(), (b"a" * 400 + b"b" * 400 + b"c" * 200, True))
        text = "f" * 980  # the command itself stays within the limit too
        client.sendMessage(f"!fragments 4 {text}".encode())
        self.assertEqual(await client.messages.get(), (text.encode(), False))
        client.sendCloseFrame(code=1000)
        self.assertEqual((await client.closed)[1], 1000)

    async def test_a_frame_over_the_limit_from_the_browser_closes_with_1009(self) -> None:
        bystander = await ws_connect(self.port)
        client = await ws_connect(self.port)
        app_closed = self.ws.next_close()
        client.sendMessage(b"x" * 1001, isBinary=True)
        self.assertEqual((await client.closed)[1], 1009)
        self.assertEqual((await app_closed)[1], 1001)  # as when a browser goes away
        self.logged("the browser sent a frame of 1001 bytes, over 1000; closing with 1009")
        await self.bystander_echoes(bystander, b"y" * 1000)
        bystander.sendCloseFrame(code=1000)
        await bystander.closed

    async def test_a_message_over_the_limit_in_frames_from_the_browser_closes_with_1009(
        self,
    ) -> None:
        bystander = await ws_connect(self.port)
        client = await ws_connect(self.port)
        app_closed = self.ws.next_close()
        client.beginMessage(isBinary=True)
        client.sendMessageFrame(b"x" * 600)
        client.sendMessageFrame(b"x" * 600)  # each frame within the limit, not the message
        client.endMessage()
        self.assertEqual((await client.closed)[1], 1009)
        self.assertEqual((await app_closed)[1], 1001)
        self.assertEqual(self.ws.closes[-1][1], 1001)
        self.logged("the browser sent a message of 1200 bytes or more, over 1000")
        await self.bystander_echoes(bystander, b"y" * 1000)
        bystander.sendCloseFrame(code=1000)
        await bystander.closed

    async def test_a_frame_over_the_limit_from_the_app_closes_with_1009(self) -> None:
        bystander = await ws_connect(self.port)
        client = await ws_connect(self.port)
        app_closed = self.ws.next_close()
        client.sendMessage(b"!flood 1001")  # one binary message of 1001 bytes
        self.assertEqual((await client.closed)[1], 1009)
        self.assertEqual((await app_closed)[1], 1009)
        self.logged("the app sent a frame of 1001 bytes, over 1000; closing with 1009")
        await self.bystander_echoes(bystander, b"y" * 1000)
        bystander.sendCloseFrame(code=1000)
        await bystander.closed

    async def test_frames_a_browser_may_not_send_close_with_1002(self) -> None:
        bystander = await ws_connect(self.port)
        text = ws_frame(0x01, b"part")  # the first frame of a text message
        for garbage, why in [
            (ws_frame(0x83, b"abc"), "the reserved opcode 0x3"),
            (ws_frame(0x8B, b""), "the reserved opcode 0xb"),
            (ws_frame(0xC1, b"abc"), "reserved bits set"),  # RSV1, no extension granted
            (ws_frame(0x81, b"abc", masked=False), "an unmasked frame"),
            (ws_frame(0x89, b"p" * 126), "a control frame fragmented or over 125 bytes"),
            (ws_frame(0x09, b"p"), "a control frame fragmented or over 125 bytes"),
            (ws_frame(0x80, b"abc"), "a continuation frame with no message under way"),
            (text + ws_frame(0x81, b"new"), "a new message inside a fragmented one"),
            (b"\xff" * 64, "the reserved opcode 0xf"),
        ]:
            client = await ws_connect(self.port)
            app_closed = self.ws.next_close()
            client.transport.write(garbage)
            self.assertEqual((await client.closed)[1], 1002, why)
            self.assertEqual((await app_closed)[1], 1001, why)
            self.logged(f"the browser sent a frame with {why}" if "opcode" in why else why)
            await self.bystander_echoes(bystander, why.encode())
        bystander.sendCloseFrame(code=1000)
        await bystander.closed


# The answer to UPGRADE's key (RFC 6455 section 1.3).
ACCEPTED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
)


class SpliceChecksRawApp(ProxyTestCase):
    """The same checks, with an app that writes exactly the frames a test gives it."""

    overrides = {"max_message_size": 1000}

    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory()
        return self.raw

    async def upgraded(self, answer: bytes) -> tuple[Any, Any]:
        """A raw browser upgraded through wsse to an app that answers with C{answer}."""
        self.raw.answer_at_once = answer
        browser = await raw_connection(self.port, UPGRADE)
        await browser.first_data
        app = self.raw.connections[-1]
        return browser, app

    async def test_an_app_s_message_over_the_limit_in_frames_closes_with_1009(self) -> None:
        first = ws_frame(0x01, b"a" * 600, masked=False)
        rest = ws_frame(0x80, b"b" * 600, masked=False)  # 1200 bytes in all
        browser, app = await self.upgraded(ACCEPTED + b"\r\n" + first + rest)
        received = await browser.done
        # The first frame was relayed, then a close 1009 at its end, not the second frame.
        self.assertEqual(received, ACCEPTED + b"\r\n" + first + b"\x88\x02\x03\xf1")
        while app not in self.raw.lost:
            await task.deferLater(reactor, 0.01, lambda: None)
        close = app.data.split(b"\r\n\r\n", 1)[1]
        self.assertEqual(close[:2], b"\x88\x82")  # masked, as a client's must be
        self.assertEqual(bytes(b ^ close[2 + i % 4] for i, b in enumerate(close[6:])), b"\x03\xf1")

    async def test_an_app_s_frame_over_the_limit_closes_before_its_payload_comes(self) -> None:
        header = ws_frame(0x82, b"", masked=False, length=1 << 40)  # no payload follows
        browser, _ = await self.upgraded(ACCEPTED + b"\r\n" + header)
        self.assertEqual(await browser.done, ACCEPTED + b"\r\n" + b"\x88\x02\x03\xf1")

    async def test_an_app_s_message_just_within_the_limit_passes_in_frames(self) -> None:
        frames = (
            ws_frame(0x01, b"a" * 500, masked=False)
            + ws_frame(0x89, b"ping", masked=False)  # between the frames of a message
            + ws_frame(0x80, b"b" * 500, masked=False)
            + ws_frame(0x88, b"\x03\xe8", masked=False)
        )
        browser, app = await self.upgraded(ACCEPTED + b"\r\n" + frames)
        browser.transport.write(ws_frame(0x88, b"\x03\xe8"))
        while len(app.data.split(b"\r\n\r\n", 1)[1]) < 8:
            await task.deferLater(reactor, 0.01, lambda: None)
        app.transport.loseConnection()
        self.assertEqual(await browser.done, ACCEPTED + b"\r\n" + frames)

    async def test_reserved_bits_pass_once_the_app_grants_an_extension(self) -> None:
        answer = ACCEPTED + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        browser, app = await self.upgraded(answer)
        compressed = ws_frame(0xC1, b"\xf2\x48\x05\x00")  # RSV1: a compressed message
        browser.transport.write(compressed)
        while not app.data.endswith(compressed):
            await task.deferLater(reactor, 0.01, lambda: None)
        app.transport.loseConnection()
        self.assertEqual(await browser.done, answer)
