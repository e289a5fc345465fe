"""
wsse's HTTP/1.1 client to the app (L{wsse._appclient.AppClient}) over real
loopback sockets, against a scripted app that records the raw bytes it gets
and answers with raw bytes each test gives: what C{Agent} would send and
report, byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IConsumer, IProtocol, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import (
    FileBodyProducer,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer, IResponse
from zope.interface import implementer

from wsse._appclient import AppClient

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@dataclass
class Reply:
    """What the app does for one request: write C{data} (a list: one piece per turn), maybe close."""

    data: bytes | list[bytes] = b""
    close: bool = False
    early: bool = False  # answer once the head has come, before the body


def request_end(data: bytes, early: bool) -> int | None:
    """Where the first whole request in C{data} ends (its head only, if C{early})."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    end = head_end + 4
    head = data[:end].lower()
    if early:
        return end
    if b"\r\ntransfer-encoding: chunked\r\n" in head:
        last = data.find(b"\r\n0\r\n\r\n", head_end)
        return None if last < 0 else last + 7
    length = re.search(rb"\r\ncontent-length: *(\d+)\r\n", head)
    end += int(length.group(1)) if length else 0
    return end if len(data) >= end else None


class AppSide(Protocol):
    """One connection the app accepted: the requests it got, answered from its script."""

    def __init__(self, script: list[Reply]) -> None:
        self.script = script
        self.buffer = b""
        self.requests: list[bytes] = []
        self.gone = False
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while (
            end := request_end(self.buffer, bool(self.script) and self.script[0].early)
        ) is not None:
            self.requests.append(self.buffer[:end])
            self.buffer = self.buffer[end:]
            if self.script:
                defer.ensureDeferred(self._answer(self.script.pop(0)))

    async def _answer(self, reply: Reply) -> None:
        assert self.transport is not None
        pieces = reply.data if isinstance(reply.data, list) else [reply.data]
        for n, piece in enumerate(pieces):
            if n:
                await task.deferLater(reactor, 0.002, lambda: None)
            self.transport.write(piece)
        if reply.close:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.gone = True
        self.lost.callback(None)


class App(Factory):
    """The scripted app: connection I{n} answers with C{scripts[n]}, in order."""

    noisy = False

    def __init__(self, scripts: list[list[Reply]]) -> None:
        self.scripts = scripts
        self.connections: list[AppSide] = []

    def buildProtocol(self, addr: Any) -> AppSide:
        n = len(self.connections)
        side = AppSide(list(self.scripts[n]) if n < len(self.scripts) else [])
        self.connections.append(side)
        return side


@implementer(IStreamClientEndpoint)
class Dialled:
    """The endpoint to the app, recording each connection the client made."""

    def __init__(self, port: int) -> None:
        self._endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        self.connections: list[Any] = []

    def connect(self, factory: Any) -> defer.Deferred[IProtocol]:
        def made(protocol: IProtocol) -> IProtocol:
            self.connections.append(protocol)
            return protocol

        return self._endpoint.connect(factory).addCallback(made)


@implementer(IBodyProducer)
class Producer:
    """A request body: writes C{pieces} at once, then ends, fails, or (C{wait}) waits for L{finish}."""

    def __init__(
        self,
        pieces: list[bytes],
        length: int | object = UNKNOWN_LENGTH,
        wait: bool = False,
        error: Exception | None = None,
    ) -> None:
        self.pieces, self.length, self.wait, self.error = pieces, length, wait, error
        self.stopped = False
        self.consumer: IConsumer | None = None
        self.finished: defer.Deferred[None] = defer.Deferred()

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self.consumer = consumer
        for piece in self.pieces:
            consumer.write(piece)
        if self.error is not None:
            return defer.fail(self.error)
        if not self.wait:
            self.finished.callback(None)
        return self.finished

    def finish(self, rest: bytes) -> None:
        assert self.consumer is not None
        self.consumer.write(rest)
        self.finished.callback(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        self.stopped = True


class Reader(Protocol):
    """A response body's reader; C{on_data} may act on its transport."""

    def __init__(self, on_data: Callable[[Reader], None] | None = None) -> None:
        self.data: list[bytes] = []
        self.on_data = on_data
        self.reason: Failure | None = None
        self.ended: defer.Deferred[None] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)
        if self.on_data is not None:
            self.on_data(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.reason = reason
        self.ended.callback(None)


async def read(response: IResponse) -> tuple[bytes, Failure]:
    reader = Reader()
    response.deliverBody(reader)
    await reader.ended
    assert reader.reason is not None
    return b"".join(reader.data), reader.reason


async def fetch(
    client: AppClient,
    method: bytes = b"GET",
    uri: bytes = b"/",
    headers: Headers | None = None,
    body: IBodyProducer | None = None,
) -> tuple[IResponse, bytes, Failure]:
    response = await client.request(method, uri, headers, body)
    got = await read(response)
    # A turn later, as a browser's next request comes (see test_a_request_made_as_the_last_one_is_read).
    await turn()
    return (response, *got)


async def turn(seconds: float = 0) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def until(check: Callable[[], object], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await turn(0.01)
    raise AssertionError(f"not within 5s: {what}")


def head_lines(request: bytes) -> list[bytes]:
    return request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def framing(request: bytes) -> list[bytes]:
    return [
        line
        for line in head_lines(request)
        if line.lower().startswith((b"content-length:", b"transfer-encoding:"))
    ]


class AppClientCase(TestCase):
    timeout = 10

    def serve(
        self, *scripts: list[Reply], pool_size: int = 2, idle_timeout: float = 60.0
    ) -> tuple[App, AppClient]:
        """A scripted app on loopback and a client to it, both cleaned up after the test."""
        app = App(list(scripts))
        port = reactor.listenTCP(0, app, interface="127.0.0.1")
        self.port = port.getHost().port
        self.dialled = Dialled(self.port)
        self.clock = task.Clock()
        client = AppClient(self.clock, self.dialled, pool_size, idle_timeout, b"app.test")

        async def clean() -> None:
            await client.closeCachedConnections()
            for side in app.connections:
                if not side.gone:
                    side.transport.abortConnection()  # type: ignore[union-attr]
            await defer.gatherResults(
                [side.lost for side in app.connections] + [c.lost for c in self.dialled.connections]
            )
            await port.stopListening()

        self.addCleanup(lambda: defer.ensureDeferred(clean()))
        return app, client


class RequestAsWritten(AppClientCase):
    async def test_origin_form_every_header_value_and_one_host(self) -> None:
        """The app gets the path and query, repeated values in order, and a Host only if none was given."""
        app, client = self.serve([Reply(OK), Reply(OK)])
        headers = Headers({b"X-Rep": [b"1", b"2"]})
        await fetch(client, uri=b"http://127.0.0.1:%d/a?b=1" % self.port, headers=headers)
        await fetch(client, uri=b"/c", headers=Headers({b"Host": [b"given.test"]}))
        first, second = app.connections[0].requests
        self.assertEqual(
            head_lines(first), [b"GET /a?b=1 HTTP/1.1", b"X-Rep: 1", b"X-Rep: 2", b"Host: app.test"]
        )
        self.assertEqual(head_lines(second), [b"GET /c HTTP/1.1", b"Host: given.test"])

    async def test_body_framing(self) -> None:
        """No length for a bodiless GET, 0 for a bodiless POST/PUT, the length if known, else chunks."""
        app, client = self.serve([Reply(OK)] * 5)
        await fetch(client, b"GET")
        await fetch(client, b"POST")
        await fetch(client, b"PUT")
        await fetch(client, b"POST", body=FileBodyProducer(BytesIO(b"hello")))
        await fetch(client, b"PUT", body=Producer([b"ab", b"", b"cde"]))
        get, post, put, known, chunked = app.connections[0].requests
        self.assertEqual(framing(get), [])
        self.assertEqual(framing(post), [b"Content-Length: 0"])
        self.assertEqual(framing(put), [b"Content-Length: 0"])
        self.assertEqual(framing(known), [b"Content-Length: 5"])
        self.assertTrue(known.endswith(b"\r\n\r\nhello"))
        self.assertEqual(framing(chunked), [b"Transfer-Encoding: chunked"])
        self.assertTrue(chunked.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"), chunked)

    async def test_a_failing_body_fails_the_request(self) -> None:
        """The producer's failure is the caller's, as Agent reports it."""
        _, client = self.serve([])
        body = Producer([b"x"], length=5, error=ValueError("no more"))
        await self.assertFailure(
            client.request(b"POST", b"/", None, body), RequestTransmissionFailed
        )


class Responses(AppClientCase):
    async def test_chunked_body_in_one_byte_pieces(self) -> None:
        """Extensions and trailers are framing: the body arrives byte-exact and the connection is kept."""
        answer = (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
        )
        app, client = self.serve(
            [Reply([answer[i : i + 1] for i in range(len(answer))]), Reply(OK)]
        )
        response, body, reason = await fetch(client)
        self.assertEqual((body, response.length), (b"hello world", UNKNOWN_LENGTH))
        reason.trap(ResponseDone)
        self.assertFalse(response.headers.hasHeader(b"transfer-encoding"))
        self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 1)

    async def test_close_delimited_body(self) -> None:
        """A body that ends with the connection may be short: PotentialDataLoss, and a new connection next."""
        app, client = self.serve(
            [Reply(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close=True)], [Reply(OK)]
        )
        _, body, reason = await fetch(client)
        self.assertEqual(body, b"until the end")
        reason.trap(PotentialDataLoss)
        self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 2)

    async def test_answers_without_a_body(self) -> None:
        """HEAD, 204 and 304 read no body (what would follow is the next answer); HEAD keeps its length."""
        app, client = self.serve(
            [
                Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
                Reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
                Reply(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"),
                Reply(OK),
            ]
        )
        head, body, _ = await fetch(client, b"HEAD")
        self.assertEqual(
            (head.length, body, head.headers.getRawHeaders(b"content-length")), (0, b"", [b"5"])
        )
        for code in (204, 304):
            response, body, reason = await fetch(client)
            self.assertEqual((response.code, response.length, body), (code, 0, b""))
            reason.trap(ResponseDone)
        self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 1)

    async def test_informational_heads_are_skipped(self) -> None:
        """100 and 103 come before the answer, in pieces or in one write."""
        early = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
        app, client = self.serve([Reply([early[:30], early[30:], OK]), Reply(early + OK)])
        for _ in range(2):
            response, body, _ = await fetch(client)
            self.assertEqual((response.code, body), (200, b"ok"))
            self.assertFalse(response.headers.hasHeader(b"link"))

    async def test_connection_control_headers_are_dropped_others_kept(self) -> None:
        """
        Hop-by-hop headers are not the response's, nor those Connection names
        (Agent passes these on); repeated ones keep their order.
        """
        app, client = self.serve(
            [
                Reply(
                    b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
                    b"X-Hop: private\r\n"
                    b"Set-Cookie: a=1\r\nX-Other: y\r\nSet-Cookie: b=2\r\nTrailer: X-T\r\n"
                    b"Proxy-Connection: x\r\nTE: trailers\r\nContent-Length: 2\r\n\r\nok"
                )
            ]
        )
        response, _, _ = await fetch(client)
        got = {name.lower(): values for name, values in response.headers.getAllRawHeaders()}
        self.assertEqual(got, {b"set-cookie": [b"a=1", b"b=2"], b"x-other": [b"y"]})

    async def test_a_folded_line_stays_with_its_header(self) -> None:
        """
        A continuation of a framing header is not a header of its own (it could
        reach the browser as a Content-Length its body does not have); framed
        two ways, the answer is read as chunked and its connection not reused.
        """
        app, client = self.serve(
            [
                Reply(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n 3\r\n"
                    b"X-Long: a\r\n\tb\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                )
            ],
            [Reply(OK)],
        )
        response, body, reason = await fetch(client)
        reason.trap(ResponseDone)
        self.assertEqual(body, b"hello")
        got = {name.lower(): values for name, values in response.headers.getAllRawHeaders()}
        self.assertEqual(got, {b"x-long": [b"a b"]})
        await fetch(client)
        self.assertEqual(len(app.connections), 2)

    async def test_a_bare_line_feed_in_the_head_fails_the_request(self) -> None:
        _, client = self.serve(
            [Reply(b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 5\r\nContent-Length: 2\r\n\r\nok")]
        )
        with self.assertRaises(ResponseFailed):
            await client.request(b"GET", b"/")


class KeepAlive(AppClientCase):
    async def test_sequential_requests_share_a_connection(self) -> None:
        app, client = self.serve([Reply(OK), Reply(OK)])
        await fetch(client)
        await fetch(client)
        self.assertEqual((len(app.connections), len(app.connections[0].requests)), (1, 2))

    async def test_a_request_made_as_the_last_one_is_read_reuses_its_connection(self) -> None:
        """As Agent: the connection is back in the pool before the reader hears ResponseDone."""
        app, client = self.serve([Reply(OK), Reply(OK)], [Reply(OK)])
        response = await client.request(b"GET", b"/")
        await read(
            response
        )  # resumes inside the reader's connectionLost, as readBody's callbacks do
        answer = client.request(b"GET", b"/next")
        await read(await answer)
        self.assertEqual([len(side.requests) for side in app.connections], [2])

    async def test_connection_close_and_http_1_0_are_not_reused(self) -> None:
        """The client closes them itself: the app left them open."""
        app, client = self.serve(
            [Reply(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")],
            [Reply(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")],
            [Reply(OK)],
        )
        for _ in range(3):
            self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 3)
        await until(lambda: app.connections[0].gone and app.connections[1].gone, "closed")

    async def test_a_get_is_sent_again_when_the_pooled_connection_was_closed(self) -> None:
        """The app closed its end as the request went: nothing came back, so a GET may go again."""
        app, client = self.serve([Reply(OK), Reply(close=True)], [Reply(OK)])
        await fetch(client)
        self.assertEqual((await fetch(client, uri=b"/again"))[1], b"ok")
        self.assertEqual([len(side.requests) for side in app.connections], [2, 1])

    async def test_a_post_is_not_sent_again(self) -> None:
        """A POST may have been acted on: it fails rather than going twice."""
        app, client = self.serve([Reply(OK), Reply(close=True)], [Reply(OK)])
        await fetch(client)
        answer = client.request(b"POST", b"/", None, FileBodyProducer(BytesIO(b"hello")))
        with self.assertRaises((ResponseNeverReceived, ResponseFailed)):
            await answer
        self.assertEqual(len(app.connections), 1)


class Malformed(AppClientCase):
    async def test_bad_heads_fail_the_request(self) -> None:
        heads = [
            b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nNoColonHere\r\nContent-Length: 0\r\n\r\n",
        ]
        app, client = self.serve(*[[Reply(head)] for head in heads])
        for head in heads:
            with self.assertRaises(ResponseFailed, msg=head):
                await client.request(b"GET", b"/")
        self.assertEqual(len(app.connections), len(heads))

    async def test_bad_bodies_fail_the_reader(self) -> None:
        """A bad chunk size, or a body cut short of its length: the reader hears ResponseFailed."""
        app, client = self.serve(
            [
                Reply(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                )
            ],
            [Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close=True)],
        )
        _, _, reason = await fetch(client)
        reason.trap(ResponseFailed)
        _, body, reason = await fetch(client)
        self.assertEqual(body, b"abc")
        reason.trap(ResponseFailed)


class Flow(AppClientCase):
    async def test_a_paused_reader_stops_reading_then_gets_it_all(self) -> None:
        size = 16 * 1024 * 1024
        app, client = self.serve(
            [
                Reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"x" * size),
                Reply(OK),
            ]
        )
        response = await client.request(b"GET", b"/")
        reader = Reader(lambda r: r.transport.pauseProducing())  # type: ignore[union-attr]
        response.deliverBody(reader)
        await until(lambda: reader.data, "some body")
        await turn(0.1)
        paused_at = sum(map(len, reader.data))
        await turn(0.1)
        self.assertEqual(sum(map(len, reader.data)), paused_at)
        self.assertLess(paused_at, size)
        reader.on_data = None
        reader.transport.resumeProducing()  # type: ignore[union-attr]
        await reader.ended
        reader.reason.trap(ResponseDone)  # type: ignore[union-attr]
        await turn()
        self.assertEqual(sum(map(len, reader.data)), size)
        self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 1)

    async def test_a_finished_body_s_transport_no_longer_reaches_its_connection(self) -> None:
        """Its reader may still stop it after the end, when the connection already carries another request."""
        app, client = self.serve([Reply(OK), Reply(OK)])
        response = await client.request(b"GET", b"/")
        reader = Reader()
        response.deliverBody(reader)
        await reader.ended
        assert reader.transport is not None
        following = client.request(b"GET", b"/next")  # on the same, pooled connection
        reader.transport.stopProducing()
        self.assertEqual((await read(await following))[0], b"ok")
        self.assertEqual(len(app.connections), 1)

    async def test_a_reader_that_stops_closes_the_connection(self) -> None:
        app, client = self.serve(
            [Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)], [Reply(OK)]
        )
        response = await client.request(b"GET", b"/")
        reader = Reader(lambda r: r.transport.stopProducing())  # type: ignore[union-attr]
        response.deliverBody(reader)
        await app.connections[0].lost
        await reader.ended  # as with Agent: the reader hears the body failed
        assert reader.reason is not None
        reader.reason.trap(ResponseFailed)
        self.assertEqual(reader.data, [b"x" * 10])
        self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 2)

    async def test_cancelling_closes_the_connection_and_sends_nothing_again(self) -> None:
        app, client = self.serve([])
        answer = client.request(b"GET", b"/")
        await until(lambda: app.connections and app.connections[0].requests, "the request")
        answer.cancel()
        with self.assertRaises(Exception) as caught:
            await answer
        reasons = getattr(caught.exception, "reasons", [])
        self.assertTrue(
            isinstance(caught.exception, defer.CancelledError)
            or any(r.check(defer.CancelledError) for r in reasons),
            caught.exception,
        )
        await app.connections[0].lost
        await turn(0.05)
        self.assertEqual(len(app.connections), 1)

    async def test_an_answer_before_the_whole_body_stops_the_body(self) -> None:
        """A 413 right after the head: the response is the caller's, the rest of the body is not sent."""
        app, client = self.serve(
            [Reply(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", early=True)], [Reply(OK)]
        )
        body = Producer([b"part"], length=100, wait=True)
        response, _, reason = await fetch(client, b"POST", body=body)
        self.assertEqual(response.code, 413)
        reason.trap(ResponseDone)
        self.assertTrue(body.stopped)
        await app.connections[0].lost
        self.assertEqual((await fetch(client))[1], b"ok")

    async def test_a_body_ending_after_the_whole_answer_but_before_it_is_read(self) -> None:
        """The connection is pooled once at most: two requests later never share it."""
        app, client = self.serve(
            [Reply(OK, early=True), Reply(OK), Reply(OK)], [Reply(OK)], [Reply(OK)]
        )
        body = Producer([b"part"], length=8, wait=True)
        response = await client.request(b"POST", b"/", None, body)
        await turn(0.05)  # the answer's body has come
        body.finish(b"rest")
        self.assertEqual((await read(response))[0], b"ok")
        both = [defer.ensureDeferred(fetch(client)) for _ in range(2)]
        for answer in both:
            answer.addTimeout(2, reactor)
        self.assertEqual(
            [r[1] for r in await defer.gatherResults(both, consumeErrors=True)], [b"ok", b"ok"]
        )


class Pool(AppClientCase):
    async def test_a_full_pool_closes_the_extra_connection(self) -> None:
        app, client = self.serve([Reply(OK), Reply(OK)], [Reply(OK), Reply(OK)], pool_size=1)
        await defer.gatherResults([defer.ensureDeferred(fetch(client)) for _ in range(2)])
        self.assertEqual(len(app.connections), 2)
        await until(lambda: any(side.gone for side in app.connections), "one closed")
        await turn(0.05)
        self.assertEqual(sorted(side.gone for side in app.connections), [False, True])
        self.assertEqual((await fetch(client))[1], b"ok")
        self.assertEqual(len(app.connections), 2)

    async def test_an_idle_connection_closes_after_the_timeout(self) -> None:
        app, client = self.serve([Reply(OK)], idle_timeout=5)
        await fetch(client)
        self.clock.advance(4.9)
        await turn(0.05)
        self.assertFalse(app.connections[0].gone)
        self.clock.advance(0.1)
        await app.connections[0].lost

    async def test_close_cached_connections(self) -> None:
        app, client = self.serve([Reply(OK)])
        await fetch(client)
        await client.closeCachedConnections()
        await app.connections[0].lost

    async def test_a_timed_out_connection_is_not_given_to_the_next_request(self) -> None:
        """A request made as the idle timer fires goes on a new connection, not the closing one."""
        app, client = self.serve([Reply(OK), Reply(OK)], [Reply(OK)], idle_timeout=5)
        await fetch(client)
        self.clock.advance(5)
        _, body, _ = await fetch(client, b"POST", body=Producer([b"hello"], length=5))
        self.assertEqual(body, b"ok")
        self.assertEqual([len(side.requests) for side in app.connections], [1, 1])

    async def test_a_closed_cached_connection_is_not_given_to_the_next_request(self) -> None:
        app, client = self.serve([Reply(OK), Reply(OK)], [Reply(OK)])
        await fetch(client)
        closed = client.closeCachedConnections()
        _, body, _ = await fetch(client, b"POST", body=Producer([b"hello"], length=5))
        self.assertEqual(body, b"ok")
        await closed
        self.assertEqual([len(side.requests) for side in app.connections], [1, 1])
