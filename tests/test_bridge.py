"""
The fallback's server side over real sockets: a page client speaking the
protocol as the shim does, wsse, and a real autobahn app.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.logger import Logger

from tests.support.harness import ProxyTestCase
from tests.support.pageclient import PageClient
from wsse import _logging, _protocol, _site

TEXT, BINARY, CLOSE = _protocol.FRAME_TEXT, _protocol.FRAME_BINARY, _protocol.FRAME_CLOSE


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack(">H", code) + reason.encode()


class BridgeTestCase(ProxyTestCase):
    overrides = {"heartbeat": 0.2}
    polling = False

    async def page(self) -> PageClient:
        page = PageClient(self.port, polling=self.polling)
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        return page


class Sockets(BridgeTestCase):
    async def test_a_socket_opens_with_the_app_s_subprotocol_and_echoes_exactly(self) -> None:
        page = await self.page()
        opened = await page.open(1, "/ws/echo?room=1", ["v1", "v2"])
        self.assertEqual((opened.name, opened.data["protocol"]), ("open", "v2"))
        texts = ["", "a", "line\nbreak\r\nand\rreturn\x00nul", "😀 caf\u00e9 \u4e2d", "x" * 100_000]
        for text in texts:
            await page.post([(TEXT, 1, text.encode())])
            event = await page.next_for(1)
            self.assertEqual((event.name, event.data["d"]), ("text", text))
        for size in [0, 1, 65536, 16 << 20]:
            payload = bytes(range(256)) * (size // 256)
            await page.send(1, payload, binary=True)
            event = await page.next_for(1)
            self.assertEqual(event.name, "binary")
            self.assertEqual(base64.b64decode(event.data["d"]), payload)

    async def test_the_app_s_messages_of_every_kind_arrive_in_order(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"!burst 3000")])
        for n in range(3000):
            event = await page.next_for(1)
            self.assertEqual((event.name, event.data["d"]), ("text", str(n)))
        await page.post([(TEXT, 1, b"!mixed")])
        got = [await page.next_for(1) for _ in range(5)]
        self.assertEqual(
            [(e.name, e.data["d"]) for e in got],
            [
                ("text", "first"),
                ("binary", base64.b64encode(b"\x00\xff").decode()),
                ("text", "in three frames"),
                ("text", "b" * 100_000),
                ("text", "last"),
            ],
        )

    async def test_the_server_says_which_frames_it_applied_before_their_echo(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"one"), (TEXT, 1, b"two")])
        echo = await page.next_for(1)
        self.assertEqual(echo.data["d"], "one")
        sent = next(e for e in page.order if e.name == "sent" and e.data["seq"] == page.seq - 1)
        self.assertLess(page.order.index(sent), page.order.index(echo))

    async def test_a_message_sent_in_parts_reaches_the_app_as_one_message(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        text = "é" * 1000  # parts split in the middle of a character
        data = text.encode()
        await page.post(
            [
                (_protocol.FRAME_TEXT_PART, 1, data[:999]),
                (_protocol.FRAME_TEXT_PART, 1, data[999:1500]),
            ]
        )
        await page.post([(TEXT, 1, data[1500:])])
        self.assertEqual((await page.next_for(1)).data["d"], text)
        payload = bytes(range(256)) * 4000
        parts = [payload[i : i + 200_000] for i in range(0, len(payload), 200_000)]
        for part in parts[:-1]:
            self.assertEqual(await page.post([(_protocol.FRAME_BINARY_PART, 1, part)]), 204)
        self.assertEqual(await page.post([(BINARY, 1, parts[-1])]), 204)
        self.assertEqual(base64.b64decode((await page.next_for(1)).data["d"]), payload)
        await page.post([(TEXT, 1, b"whole again")])
        self.assertEqual((await page.next_for(1)).data["d"], "whole again")

    async def test_frames_in_one_post_arrive_in_order(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"%d" % n) for n in range(200)])
        received = [(await page.next_for(1)).data["d"] for _ in range(200)]
        self.assertEqual(received, [str(n) for n in range(200)])

    async def test_many_sockets_share_one_stream(self) -> None:
        page = await self.page()
        for n in range(1, 9):
            await page.open(n, "/ws/echo")
        await page.post([(TEXT, n, b"to %d" % n) for n in range(1, 9)])
        received = {}
        for _ in range(8):
            event = await page.events.get()
            received[event.data["s"]] = event.data["d"]
        self.assertEqual(received, {n: f"to {n}" for n in range(1, 9)})

    async def test_the_handshake_carries_what_the_browser_s_would_have(self) -> None:
        page = await self.page()
        key = page.headers[b"Cookie"][0]
        page.headers[b"Cookie"] = [b"session=s3cr3t; " + key]  # wsse's own cookie: not the app's
        page.headers[b"Authorization"] = [b"Bearer t0k3n"]
        await page.open(1, "/ws/echo?a=%20b&c&d=%2F", ["v2"])
        handshake = self.ws.handshakes[-1]
        self.assertEqual(self.ws.uris[-1], "/ws/echo?a=%20b&c&d=%2F")
        headers = handshake.headers
        self.assertEqual(headers["cookie"], "session=s3cr3t")
        self.assertEqual(headers["authorization"], "Bearer t0k3n")
        self.assertEqual(headers["origin"], f"http://127.0.0.1:{self.port}")
        self.assertEqual(headers["user-agent"], "PageClient/1.0")
        self.assertEqual(headers["host"], f"127.0.0.1:{self.port}")
        self.assertEqual(headers["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(headers["x-forwarded-proto"], "http")
        self.assertEqual(headers["x-forwarded-host"], f"127.0.0.1:{self.port}")
        self.assertNotIn("x-wsse-session", headers)
        self.assertNotIn("content-type", headers)

    async def test_a_refused_socket_fails_with_1006(self) -> None:
        page = await self.page()
        closed = await page.open(1, "/ws/deny")
        self.assertEqual(closed.name, "close")
        self.assertEqual((closed.data["code"], closed.data["clean"]), (1006, False))

    async def test_a_path_that_could_split_the_request_line_is_refused(self) -> None:
        page = await self.page()
        closed = await page.open(1, "/ws/echo HTTP/1.1\r\nHost: other")
        self.assertEqual((closed.name, closed.data["code"]), ("close", 1006))
        self.assertEqual(self.ws.handshakes, [])

    async def test_no_url_from_the_page_can_reach_another_host(self) -> None:
        page = await self.page()
        for number, url in enumerate(
            ["//evil.example/ws/echo", "/@evil.example/ws/echo", "/http://evil.example/ws/echo"], 1
        ):
            await page.open(number, url)
            # Whatever the path says, the handshake went to the configured app,
            # which saw that path (its HTTP side answers it: not a WebSocket).
            self.assertEqual(self.app.seen[-1].uri, url.encode())
            self.assertEqual(self.app.seen[-1].header(b"upgrade"), [b"WebSocket"])

    async def test_the_page_s_close_code_reaches_the_app_and_comes_back(self) -> None:
        for code, reason in [(1000, "done"), (1001, ""), (4000, "client-bye")]:
            page = await self.page()
            await page.open(1, "/ws/echo")
            app_closed = self.ws.next_close()
            await page.post([(CLOSE, 1, close_payload(code, reason))])
            closed = await page.next_for(1)
            self.assertEqual(closed.data, {"s": 1, "code": code, "reason": reason, "clean": True})
            self.assertEqual(await app_closed, (True, code, reason or None))

    async def test_a_close_without_a_code(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        app_closed = self.ws.next_close()
        await page.post([(CLOSE, 1, b"")])
        self.assertEqual((await page.next_for(1)).data["clean"], True)
        self.assertEqual(await app_closed, (True, None, None))

    async def test_the_app_s_close_code_reaches_the_page(self) -> None:
        for code, reason in [
            (1000, "bye"),
            (1001, "restarting"),
            (1011, "oops"),
            (4001, "app-bye"),
        ]:
            page = await self.page()
            await page.open(1, "/ws/echo")
            await page.post([(TEXT, 1, f"!close {code} {reason}".encode())])
            closed = await page.next_for(1)
            self.assertEqual(closed.data, {"s": 1, "code": code, "reason": reason, "clean": True})

    async def test_a_vanished_app_fails_the_socket(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        self.ws.open[0].transport.abortConnection()
        closed = await page.next_for(1)
        self.assertEqual((closed.data["code"], closed.data["clean"]), (1006, False))
        self.assertEqual(closed.data["reason"], "")  # as a native socket reports it


class Channel(BridgeTestCase):
    async def test_a_retried_post_is_applied_once(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        first = page.seq
        self.assertEqual(await page.post([(TEXT, 1, b"once")]), 204)
        self.assertEqual(await page.post([(TEXT, 1, b"once"), (TEXT, 1, b"then")], seq=first), 204)
        page.seq = first + 2
        self.assertEqual((await page.next_for(1)).data["d"], "once")
        self.assertEqual((await page.next_for(1)).data["d"], "then")
        await page.post([(TEXT, 1, b"last")])
        self.assertEqual((await page.next_for(1)).data["d"], "last")

    async def test_a_gap_in_the_sequence_is_refused(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        self.assertEqual(await page.post([(TEXT, 1, b"x")], seq=page.seq + 5), 409)

    async def test_malformed_frames_are_refused_and_end_the_session(self) -> None:
        for body in [
            b"",
            b"\x00" * 8 + b"\x09",
            b"\x00" * 8 + b"\x02\x00\x00\x00\x01\x00\x00\x00\x09ab",
        ]:
            page = await self.page()
            response = await page.http.post(
                page.base + "send",
                data=body,
                headers={
                    b"Content-Type": [_protocol.FRAMES_CONTENT_TYPE],
                    **page.credentials(),
                },
            )
            await response.content()
            self.assertEqual(response.code, 400)
            self.assertEqual(await page.post([(TEXT, 1, b"x")]), 410)

    async def test_a_batch_with_a_bad_frame_is_not_applied_at_all(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        app_closed = self.ws.next_close()
        bad_close = (CLOSE, 1, b"\x03")  # a close code needs two bytes
        self.assertEqual(await page.post([(TEXT, 1, b"first"), bad_close]), 400)
        await app_closed
        self.assertNotIn(b"first", [e.data.get("d") for e in page.order if e.name == "text"])
        self.assertEqual([seq for seq in page.applied if seq >= page.seq - 2], [])

    async def test_a_body_over_the_limit_is_refused_before_it_is_read(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        too_big = [(BINARY, 1, b"x" * _protocol.BATCH_LIMIT)]
        self.assertEqual(await page.post(too_big), 413)

    async def test_an_abort_drops_the_app_socket_and_fails_the_page_s(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        app_closed = self.ws.next_close()
        await page.post([(_protocol.FRAME_ABORT, 1, b"")])
        closed = await page.next_for(1)
        self.assertEqual((closed.data["code"], closed.data["clean"]), (1006, False))
        self.assertEqual((await app_closed)[:2], (False, 1006))

    async def test_frames_of_another_content_type_are_refused(self) -> None:
        page = await self.page()
        response = await page.http.post(
            page.base + "send",
            data=_protocol.encode_frames(0, []),
            headers={
                b"Content-Type": [b"text/plain"],
                **page.credentials(),
            },
        )
        await response.content()
        self.assertEqual(response.code, 415)

    async def test_an_unknown_session_is_gone(self) -> None:
        page = PageClient(self.port)
        self.addCleanup(page.close)
        page.session = "no-such-session"
        self.assertEqual(await page.connect(), 410)
        self.assertEqual(await page.post([(TEXT, 1, b"x")]), 410)


class Stream(BridgeTestCase):
    async def test_the_stream_starts_with_its_headers_and_a_preamble_then_beats(self) -> None:
        page = await self.page()
        headers = page.stream.headers
        self.assertEqual(headers[b"content-type"], b"text/event-stream; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], b"no-cache, no-transform")
        self.assertEqual(headers[b"x-accel-buffering"], b"no")
        parser = page.stream.parser
        self.assertTrue(parser.start.startswith(b":" + b" " * 2048 + b"\n\n"))
        comments = parser.comments
        while parser.comments < comments + 3:
            await task.deferLater(reactor, 0.1, lambda: None)

    async def test_events_missed_while_the_stream_was_down_are_replayed(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"before")])
        self.assertEqual((await page.next_for(1)).data["d"], "before")
        await page.drop_stream()
        await page.post([(TEXT, 1, b"%d" % n) for n in range(50)])  # echoed while no stream
        await task.deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(await page.connect(), 200)
        received = [(await page.next_for(1)).data["d"] for _ in range(50)]
        self.assertEqual(received, [str(n) for n in range(50)])


class ResumeTooLate(BridgeTestCase):
    async def test_a_resume_from_an_event_never_sent_ends_the_session(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"a"), (TEXT, 1, b"b")])
        await page.next_for(1)
        await page.next_for(1)
        await page.drop_stream()
        app_closed = self.ws.next_close()
        page.last_id += 2  # as if the page held two events the server never sent
        self.assertEqual(await page.connect(), 410)
        self.assertEqual((await app_closed)[1], 1006)

    async def test_a_late_request_from_before_the_acknowledged_events_is_refused_alone(
        self,
    ) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        stale = page.last_id  # what a request the page gave up on now would carry
        await page.post([(TEXT, 1, b"a")])
        await page.next_for(1)
        await page.post([])  # the page acknowledges what it holds
        # The request it gave up on reaches wsse late (a gateway queued it).
        late = PageClient(self.port, polling=self.polling)
        self.addCleanup(late.close)
        late.headers, late.session, late.last_id = dict(page.headers), page.session, stale
        self.assertEqual(await late.connect(), 409)
        # The page and its socket carry on.
        self.assertEqual(await page.post([(TEXT, 1, b"b")]), 204)
        self.assertEqual((await page.next_for(1)).data["d"], "b")
        self.assertEqual(self.ws.closes, [])


class ResumeTooLateByPoll(ResumeTooLate):
    """A poll resumes as a stream does: from a cursor the log does not cover, never."""

    polling = True


class SessionKey(BridgeTestCase):
    """A session answers only the browser it opened in: its id alone is not enough."""

    async def test_the_key_is_an_http_only_strict_cookie_of_the_session_alone(self) -> None:
        page = await self.page()
        cookie = page.stream.headers[b"set-cookie"].split(b";")
        name, _, value = cookie[0].partition(b"=")
        self.assertEqual(name, _protocol.KEY_COOKIE_PREFIX + page.session.encode())
        self.assertGreaterEqual(len(value), 22)  # 128 bits
        self.assertNotIn(value.decode(), page.session)
        # No Path: the browser scopes it to the stream's directory, <base>.
        attributes = sorted(attribute.strip().lower() for attribute in cookie[1:])
        self.assertEqual(attributes, [b"httponly", b"samesite=strict"])

    async def test_another_browser_holding_the_id_can_neither_take_over_nor_end_it(self) -> None:
        victim = await self.page()
        await victim.open(1, "/ws/echo")
        await victim.post([(TEXT, 1, b"first")])
        self.assertEqual((await victim.next_for(1)).data["d"], "first")
        other_browser = await self.page()
        forged = _protocol.KEY_COOKIE_PREFIX + victim.session.encode() + b"=" + b"A" * 22
        for cookie in [None, other_browser.headers[b"Cookie"], [forged]]:
            for last_id in [victim.last_id, 0]:
                thief = PageClient(self.port)
                self.addCleanup(thief.close)
                thief.session, thief.last_id, thief.seq = victim.session, last_id, victim.seq
                if cookie is not None:
                    thief.headers[b"Cookie"] = cookie
                self.assertEqual(await thief.connect(), 403)
                self.assertEqual(await thief.post([(TEXT, 1, b"injected")]), 403)
        self.assertFalse(victim.stream.done.called)
        await victim.post([(TEXT, 1, b"mine")])
        self.assertEqual((await victim.next_for(1)).data["d"], "mine")  # nothing injected before it

    async def test_pages_opening_at_once_in_one_browser_keep_their_own_keys(self) -> None:
        pages = [PageClient(self.port) for _ in range(3)]
        for page in pages:
            self.addCleanup(page.close)
        # Neither request carries the other's cookie, as when tabs open together.
        self.assertEqual(
            await defer.gatherResults([defer.ensureDeferred(p.connect()) for p in pages]), [200] * 3
        )
        jar = [cookie for page in pages for cookie in page.headers[b"Cookie"]]
        for page in pages:
            page.headers[b"Cookie"] = [b"; ".join(jar)]  # the browser sends all of them
            await page.open(1, "/ws/echo")
            await page.post([(TEXT, 1, page.session.encode())])
            self.assertEqual((await page.next_for(1)).data["d"], page.session)

    async def test_a_new_session_deletes_the_keys_of_sessions_gone(self) -> None:
        gone, live = await self.page(), await self.page()
        await gone.post([(CLOSE, 0, b"")], seq=5)  # out of order: the server ends that session
        stale = gone.headers[b"Cookie"][0]
        page = PageClient(self.port)
        self.addCleanup(page.close)
        page.headers[b"Cookie"] = [stale + b"; " + live.headers[b"Cookie"][0]]
        self.assertEqual(await page.connect(), 200)
        set_cookies = page.stream.raw_headers[b"set-cookie"]
        deleted = [c for c in set_cookies if b"max-age=0" in c.lower()]
        self.assertEqual([c.split(b"=")[0] for c in deleted], [stale.split(b"=")[0]])
        self.assertEqual(len(set_cookies), 2)  # the new session's key, and that deletion

    async def test_a_page_without_its_key_is_refused_and_the_app_never_sees_the_key(self) -> None:
        page = await self.page()
        key = page.headers.pop(b"Cookie")
        self.assertEqual(await page.post([(TEXT, 1, b"x")], seq=0), 403)
        page.headers[b"Cookie"] = key
        await page.open(1, "/ws/echo")
        cookies = self.ws.handshakes[-1].headers.get("cookie", "")
        self.assertNotIn(_protocol.KEY_COOKIE_PREFIX.decode(), cookies)


class SocketsByPoll(Sockets):
    """Every socket test again, with events by long-poll."""

    polling = True


class Poll(BridgeTestCase):
    polling = True

    async def test_a_poll_with_nothing_to_say_ends_empty_after_the_heartbeat(self) -> None:
        page = await self.page()
        while page.polls < 1:  # the first poll carries the session's first event
            await task.deferLater(reactor, 0.01, lambda: None)
        stream = page.stream
        assert stream is not None
        await stream.done  # the response ended: a gateway that holds it back lets it go
        self.assertEqual(stream.code, 200)
        self.assertEqual(stream.headers[b"content-type"], b"text/event-stream; charset=utf-8")
        self.assertEqual((stream.parser.start, stream.parser.comments), (b"", 0))

    async def test_a_poll_is_answered_as_soon_as_an_event_comes(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        polls = page.polls
        await page.post([(TEXT, 1, b"now")])
        self.assertEqual((await page.next_for(1)).data["d"], "now")
        self.assertLessEqual(page.polls - polls, 2)  # answered, not timed out over and over

    async def test_a_page_far_behind_catches_up_over_several_polls_in_order(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.drop_stream()
        for n in range(12):  # 12 x 240 KiB of echoes wait in the log
            await page.post([(BINARY, 1, bytes([n]) * _protocol.PART_LIMIT)])
        polls = page.polls
        self.assertEqual(await page.connect(), 200)
        for n in range(12):
            event = await page.next_for(1)
            self.assertEqual(base64.b64decode(event.data["d"]), bytes([n]) * _protocol.PART_LIMIT)
        answers = page.poll_sizes[polls:]
        event_size = len(base64.b64encode(bytes(_protocol.PART_LIMIT)))
        self.assertGreaterEqual(len(answers), 2)  # the last may not have ended yet
        self.assertLess(max(answers), 1.1 * (1 << 20) + event_size)

    async def test_a_page_can_move_from_its_stream_to_polls_mid_session(self) -> None:
        page = PageClient(self.port)
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"streamed")])
        self.assertEqual((await page.next_for(1)).data["d"], "streamed")
        await page.drop_stream()
        await page.post([(TEXT, 1, b"while switching")])
        page.polling = True
        self.assertEqual(await page.connect(), 200)
        self.assertEqual((await page.next_for(1)).data["d"], "while switching")
        await page.post([(TEXT, 1, b"polled")])
        self.assertEqual((await page.next_for(1)).data["d"], "polled")


class GraceEnds(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "grace": 0.5}

    async def test_a_page_that_does_not_come_back_ends_and_its_sockets_close(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        app_closed = self.ws.next_close()
        await page.drop_stream()
        was_clean, code, _ = await app_closed
        self.assertEqual((was_clean, code), (False, 1006))
        self.assertEqual(await page.connect(), 410)


class GraceKept(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "grace": 30}

    async def test_a_page_that_comes_back_keeps_its_sockets_and_what_it_missed(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.drop_stream()
        await page.post([(TEXT, 1, b"while away")])
        self.assertEqual(await page.connect(), 200)
        self.assertEqual((await page.next_for(1)).data["d"], "while away")
        await page.post([(TEXT, 1, b"still here")])
        self.assertEqual((await page.next_for(1)).data["d"], "still here")


class GraceEndsWhilePolling(GraceEnds):
    polling = True


class GraceKeptWhilePolling(GraceKept):
    polling = True


class ReplayBuffer(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "replay_buffer": 256 * 1024}

    async def test_the_socket_that_would_pass_it_closes_with_1013_and_the_rest_carry_on(
        self,
    ) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.open(2, "/ws/echo")
        await page.drop_stream()
        app_closed = self.ws.next_close()
        # Echoes pile up for a page that is not there to acknowledge them.
        for _ in range(8):
            self.assertEqual(await page.post([(BINARY, 1, b"x" * 65536)]), 204)
        self.assertEqual((await app_closed)[1], 1013)
        self.assertEqual(await page.connect(), 200)  # the session carries on
        echoes = 0
        while (event := await page.next_for(1)).name == "binary":
            echoes += 1
        self.assertGreater(echoes, 0)
        self.assertEqual(
            (event.name, event.data["code"], event.data["clean"]), ("close", 1013, True)
        )
        await page.post([(TEXT, 2, b"still here")])
        self.assertEqual((await page.next_for(2)).data["d"], "still here")


class ReplayBufferPastItsHeadroom(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "replay_buffer": 1024, "max_page_sockets": 1}

    async def test_a_page_that_posts_and_never_reads_ends_with_1006(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.drop_stream()
        app_closed = self.ws.next_close()
        # Opens past the page's limit: each logs a close event the page never reads.
        opening = json.dumps({"url": "/ws/echo", "protocols": []}).encode()
        numbers = iter(range(2, 1_000_000))
        for _ in range(20):
            frames = [(_protocol.FRAME_OPEN, next(numbers), opening) for _ in range(2000)]
            if await page.post(frames) == 410:
                break
        else:
            self.fail("the session outlived its replay buffer and headroom")
        self.assertEqual((await app_closed)[1], 1006)


class MessageLimit(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "max_message_size": 100_000}

    async def test_a_message_over_the_limit_closes_the_socket_with_1009(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        app_closed = self.ws.next_close()
        part = b"x" * 60_000
        await page.post(
            [(_protocol.FRAME_BINARY_PART, 1, part), (_protocol.FRAME_BINARY_PART, 1, part)]
        )
        self.assertEqual((await app_closed)[1], 1009)
        closed = await page.next_for(1)
        self.assertEqual((closed.name, closed.data["code"]), ("close", 1009))


class FlowControl(BridgeTestCase):
    def page_socket(self) -> Any:
        bridge = self.proxy._bridge
        (page,) = bridge._pages.values()
        return page

    async def post_until_held(self, page: PageClient) -> tuple[defer.Deferred[int], int, int]:
        """
        Have the app stop reading, and POST until the server holds one back:
        that POST's answer, how many POSTs it took, and what it acknowledged.
        """
        await page.open(1, "/ws/echo")
        self.ws.open[0].transport.pauseProducing()
        server_page = self.page_socket()
        part = b"x" * 200_000
        sent = 0
        while not server_page._waiting:
            # Each POST is answered while the app's socket takes its bytes, and
            # held once the socket's buffer is full.
            acknowledged = page.last_id
            posting = defer.ensureDeferred(page.post([(_protocol.FRAME_BINARY_PART, 1, part)]))
            while not posting.called and not server_page._waiting:
                await task.deferLater(reactor, 0.01, lambda: None)
            sent += 1
        return posting, sent, acknowledged

    async def test_an_app_that_stops_reading_holds_the_page_s_posts(self) -> None:
        page = await self.page()
        posting, sent, _ = await self.post_until_held(page)
        self.assertLess(sent, 200)  # far less than wsse would take without a bound
        self.assertNoResult(posting)
        self.ws.open[0].transport.resumeProducing()
        self.assertEqual(await posting, 204)
        await page.post([(BINARY, 1, b"end")])
        event = await page.next_for(1)
        self.assertTrue(base64.b64decode(event.data["d"]).endswith(b"end"))

    async def test_an_acknowledgement_alone_is_answered_while_frames_are_held(self) -> None:
        page = await self.page()
        posting, _, acknowledged = await self.post_until_held(page)
        server_page = self.page_socket()
        self.assertNoResult(posting)
        while page.last_id == acknowledged:  # the held frames' sent event
            await task.deferLater(reactor, 0.01, lambda: None)
        # The page acknowledges it while its frames wait: answered at once, and
        # applied (the events up to it are no longer kept).
        self.assertIsNotNone(server_page.state.events_after(acknowledged))
        self.assertEqual(await page.post([]), 204)
        self.assertIsNone(server_page.state.events_after(acknowledged))
        self.assertNoResult(posting)
        self.ws.open[0].transport.resumeProducing()
        self.assertEqual(await posting, 204)

    async def test_big_events_pause_the_app_only_past_the_low_mark_and_not_for_good(
        self,
    ) -> None:
        page = await self.page()  # (it never acknowledges)
        await page.open(1, "/ws/echo")
        server_page = self.page_socket()
        socket = server_page.sockets[1]
        paused: list[bool] = []
        pace = socket.pace
        socket.pace = lambda is_paused: (paused.append(is_paused), pace(is_paused))
        # 11 binary messages of 64 KiB: each event is bigger than the 64 KiB
        # after which Twisted calls the browser slow, all of them under 1 MiB.
        await page.post([(TEXT, 1, b"!flood 700000")])
        for _ in range(11):
            self.assertEqual((await page.next_for(1)).name, "binary")
        self.assertEqual(paused, [])
        # Past 1 MiB unacknowledged, a slow browser pauses the app, until it
        # catches up; a pause never outlives its reason.
        await page.post([(TEXT, 1, b"!flood 2000000")])
        for _ in range(31):
            self.assertEqual((await page.next_for(1)).name, "binary")
        self.assertFalse(server_page.paused)

    async def fall_behind(self, page: PageClient, flood: int) -> Any:
        """Over 1 MiB the page has not acknowledged, then the browser stops reading."""
        await page.open(1, "/ws/echo")
        server_page = self.page_socket()
        await page.post([(TEXT, 1, b"!flood %d" % flood)])
        for _ in range(-(-flood // 65536)):  # (the app sends 64 KiB messages)
            await page.next_for(1)
        server_page._stream.pauseProducing()
        self.assertTrue(server_page.paused)
        return server_page

    async def test_a_replaced_stream_that_was_paused_does_not_keep_the_app_paused(self) -> None:
        page = await self.page()
        server_page = await self.fall_behind(page, 1_000_000)
        self.assertEqual(await page.connect(), 200)  # the shim gave up on it and reconnected
        self.assertFalse(server_page.paused)
        await page.post([(TEXT, 1, b"flowing")])
        self.assertEqual((await page.next_for(1)).data["d"], "flowing")

    async def test_a_close_while_the_app_is_paused_gets_the_app_s_clean_close(self) -> None:
        page = await self.page()
        await self.fall_behind(page, 1_500_000)
        # The page closes without acknowledging more: the app's close frame
        # comes behind what wsse no longer reads (it waited there until the
        # closing handshake timed out, and the page got 1006).
        held, page.last_id = page.last_id, 0
        await page.post([(CLOSE, 1, close_payload(1000, "bye"))])
        page.last_id = held
        closed = page.next_for(1)
        closed_in_time = defer.ensureDeferred(closed).addTimeout(3, reactor)
        event = await closed_in_time
        self.assertEqual(
            (event.name, event.data["code"], event.data["reason"], event.data["clean"]),
            ("close", 1000, "bye", True),
        )
        self.assertEqual(self.ws.closes, [(True, 1000, "bye")])

    async def test_a_ping_that_timed_out_while_paused_is_timed_again_once_reading(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        app = self.ws.open[0]
        upstream = self.page_socket().sockets[1]._app
        app.transport.pauseProducing()  # the app hangs: it reads no ping, sends no pong
        upstream.pace(True)  # and the page is behind
        upstream.autoPingTimeout = 0.2
        if upstream.autoPingPendingCall:
            upstream.autoPingPendingCall.cancel()
            upstream.autoPingPendingCall = None
        upstream._sendAutoPing()
        await task.deferLater(reactor, 0.4, lambda: None)  # its timeout passes while paused
        self.assertEqual(upstream.state, upstream.STATE_OPEN)
        upstream.pace(False)
        # No pong comes: the app is found out (it never was), and the page told.
        event = await defer.ensureDeferred(page.next_for(1)).addTimeout(3, reactor)
        self.assertEqual((event.name, event.data["code"]), ("close", 1006))


def access_events(case: BridgeTestCase) -> list[dict[str, Any]]:
    """
    Every access-log event the site makes from now to the end of C{case},
    before any level filter: a line left out was not even made.
    """
    events: list[dict[str, Any]] = []
    case.patch(_site, "_log", Logger(namespace="wsse.access", observer=events.append))
    return events


def access_lines(events: list[dict[str, Any]], method: str) -> list[tuple[str, int, str]]:
    return [
        (e["log_level"].name, e["code"], e["uri"].split("?")[0])
        for e in events
        if e["method"] == method
    ]


def debug_on(case: BridgeTestCase) -> None:
    before = _logging.predicate.logLevelForNamespace("")
    _logging.set_level("debug")
    case.addCleanup(_logging.set_level, before.name)


class AccessLog(BridgeTestCase):
    """The fallback's own requests are logged at debug; the rest, and its refusals, at info."""

    async def test_sends_answered_are_debug_lines_and_refused_ones_info(self) -> None:
        debug_on(self)
        events = access_events(self)
        page = await self.page()
        await page.open(1, "/ws/echo")
        self.assertEqual(await page.post([(TEXT, 1, b"x")]), 204)
        self.assertEqual(await page.post([(TEXT, 1, b"x")], seq=page.seq + 5), 409)
        sends = access_lines(events, "POST")
        self.assertEqual(len(sends), 3)  # the open, the message, the gap
        self.assertEqual(
            sends, [("debug", 204, "/__wsse/send")] * 2 + [("info", 409, "/__wsse/send")]
        )

    async def test_with_debug_off_routine_lines_are_not_made_and_the_rest_are_info(self) -> None:
        events = access_events(self)
        page = await self.page()
        await page.open(1, "/ws/echo")
        self.assertEqual(await page.post([(TEXT, 1, b"x")]), 204)
        # A gap ends the page: its stream is answered in full, and its next send is gone.
        self.assertEqual(await page.post([(TEXT, 1, b"x")], seq=page.seq + 5), 409)
        self.assertEqual(await page.post([(TEXT, 1, b"y")]), 410)
        self.assertEqual(
            access_lines(events, "POST"),
            [("info", 409, "/__wsse/send"), ("info", 410, "/__wsse/send")],
        )
        self.assertEqual(access_lines(events, "GET"), [("info", 200, "/__wsse/events")])
        self.assertEqual(len(events), 3)


class AccessLogByPoll(BridgeTestCase):
    polling = True

    async def test_a_page_s_first_poll_is_an_info_line_and_the_rest_debug(self) -> None:
        debug_on(self)
        events = access_events(self)
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"polled")])
        self.assertEqual((await page.next_for(1)).data["d"], "polled")
        polls = access_lines(events, "GET")
        self.assertGreater(len(polls), 1, events)
        self.assertEqual(polls[0], ("info", 200, "/__wsse/poll"))
        self.assertEqual(set(polls[1:]), {("debug", 200, "/__wsse/poll")})

    async def test_with_debug_off_only_the_first_poll_is_a_line(self) -> None:
        events = access_events(self)
        page = await self.page()
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"polled")])
        self.assertEqual((await page.next_for(1)).data["d"], "polled")
        self.assertGreater(page.polls, 1)
        self.assertEqual(access_lines(events, "GET"), [("info", 200, "/__wsse/poll")])


class Methods(BridgeTestCase):
    async def test_head_is_refused_and_the_page_carries_on(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        for endpoint, allowed in (("events", b"GET"), ("send", b"POST")):
            response = await page.http.request(
                "HEAD", page.base + endpoint, headers=page.credentials()
            )
            await response.content()
            self.assertEqual(response.code, 405, endpoint)
            self.assertEqual(response.headers.getRawHeaders(b"allow"), [allowed])
        await page.post([(TEXT, 1, b"still streamed")])
        self.assertEqual((await page.next_for(1)).data["d"], "still streamed")
