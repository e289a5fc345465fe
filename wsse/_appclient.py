"""
The passthrough's HTTP/1.1 client to the app: keep-alive connections in a
pool, requests written in one piece, responses parsed a read at a time.

With Twisted's C{Agent} in its place, wsse served two thirds of the small
requests a second it serves with this client: C{Agent} parses and checks a
URL, asks for an endpoint and looks a connection up through Deferreds, and
parses the answer line by line through a state machine, for each request.  This client serves one known app and does what the
passthrough needs: it implements L{IAgent}, so a test or an embedding site
can still inject another, and it answers with what C{Agent} answers (its
response and failure types), so the passthrough cannot tell them apart.

What it does as C{Agent} does: the app's C{Content-Length}, C{Connection},
C{Keep-Alive}, C{TE}, C{Trailer}, C{Transfer-Encoding}, C{Upgrade} and
C{Proxy-Connection} are not among the response's headers (a C{HEAD}
response keeps its C{Content-Length}); C{1xx} answers are skipped; a
request on a pooled connection that the app had closed is sent again on a
new one when it is safe to (no body, and a method that may be repeated).
"""

from __future__ import annotations

from typing import cast

from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IProducer,
    IProtocol,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from zope.interface import implementer

# Response headers that frame the connection, not the response (Agent's list).
_CONNECTION_CONTROL = frozenset(
    {
        b"content-length",
        b"connection",
        b"keep-alive",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-connection",
    }
)
# Requests that may be sent again when a pooled connection turns out closed.
_REPEATABLE = frozenset({b"GET", b"HEAD", b"OPTIONS", b"DELETE", b"TRACE"})
_HEAD_LIMIT = 64 * 1024
_HEX_DIGITS = b"0123456789abcdefABCDEF"


class _BadResponse(Exception):
    """The app's answer is not HTTP/1.x that this client can frame."""


@implementer(IPushProducer)
class _BodyTransport:
    """
    What a response body's protocol gets as its transport: the app's
    connection, as a producer, until the body ends.  Then it is cut off, as
    Agent's is: the connection may already carry another request.
    """

    def __init__(self, connection: _AppConnection) -> None:
        self._connection: _AppConnection | None = connection

    def detach(self) -> None:
        self._connection = None

    def pauseProducing(self) -> None:
        if self._connection is not None:
            self._connection.pause()

    def resumeProducing(self) -> None:
        if self._connection is not None:
            self._connection.resume()

    def stopProducing(self) -> None:
        if self._connection is not None:
            self._connection.abandon()


@implementer(IResponse)
class _Response:
    request = None
    previousResponse = None

    def __init__(
        self,
        version: tuple[bytes, int, int],
        code: int,
        phrase: bytes,
        headers: Headers,
        length: int | object,
        connection: _AppConnection,
    ) -> None:
        self.version = version
        self.code = code
        self.phrase = phrase
        self.headers = headers
        self.length = length
        self._connection = connection

    def deliverBody(self, protocol: Protocol) -> None:
        self._connection.deliver_to(protocol)

    def setPreviousResponse(self, response: IResponse) -> None:
        self.previousResponse = response


class _Exchange:
    """One request, and where its response goes."""

    def __init__(self, method: bytes, head: bytes, body: IBodyProducer | None) -> None:
        self.method = method
        self.head = head
        self.body = body
        self.answer: defer.Deferred[IResponse] = defer.Deferred(lambda _: self.cancel())
        self.connection: _AppConnection | None = None
        self.dialling: defer.Deferred[IProtocol] | None = None
        self.cancelled = False

    @property
    def repeatable(self) -> bool:
        """Whether it may go again on a new connection, if a pooled one was closed under it."""
        return self.body is None and self.method in _REPEATABLE and not self.cancelled

    def cancel(self) -> None:
        self.cancelled = True
        if self.dialling is not None:
            self.dialling.cancel()
        elif self.connection is not None:
            self.connection.abort()


class _AppConnection(Protocol):
    """One connection to the app, carrying one exchange at a time."""

    def __init__(self, client: AppClient) -> None:
        self._client = client
        self._exchange: _Exchange | None = None
        self._reused = False
        self._buffer = b""
        self._got_bytes = False
        self._response: _Response | None = None
        self._protocol: Protocol | None = None
        self._body_transport: _BodyTransport | None = None
        self._held: list[bytes] = []  # body bytes that came before deliverBody
        self._remaining = 0  # of a Content-Length body, or of the chunk in hand
        self._framing = b""  # b"length", b"chunked", b"close" (delimited by it), b"none"
        self._chunk_state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailers
        self._keep_alive = False
        self._body_sent = True
        self._paused = False
        self._done = False  # the body is whole
        self._ending: Failure | None = None  # how the body ended, once it has
        self._ended = False  # its reader has heard so
        self._stopped = False  # its reader wants no more
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.idle_timer: IDelayedCall | None = None

    # -- sending --------------------------------------------------------------

    def send(self, exchange: _Exchange, reused: bool) -> None:
        assert self.transport is not None
        self._exchange, self._reused = exchange, reused
        exchange.connection = self
        self._buffer, self._got_bytes, self._response, self._protocol = b"", False, None, None
        self._held, self._framing, self._chunk_state = [], b"", 0
        self._done = self._ended = self._stopped = False
        self._ending = None
        self.transport.write(exchange.head)
        body = exchange.body
        if body is None:
            self._body_sent = True
            return
        self._body_sent = False
        transport = cast(IConsumer, self.transport)
        consumer = _ChunkedWriter(transport) if body.length is UNKNOWN_LENGTH else transport
        transport.registerProducer(body, True)
        body.startProducing(consumer).addCallbacks(self._body_done, self._body_failed)

    def _body_done(self, _: object) -> None:
        self._body_sent = True
        if self.transport is None or self._exchange is None:
            return
        IConsumer(self.transport).unregisterProducer()
        if self._exchange.body is not None and self._exchange.body.length is UNKNOWN_LENGTH:
            self.transport.write(b"0\r\n\r\n")

    def _body_failed(self, reason: Failure) -> None:
        if self.transport is not None:
            IConsumer(self.transport).unregisterProducer()
            self.transport.abortConnection()  # type: ignore[attr-defined]
        exchange = self._exchange
        if exchange is not None and not exchange.answer.called:
            self._exchange = None
            exchange.answer.errback(Failure(RequestTransmissionFailed([reason])))

    # -- receiving ------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._exchange is None:
            # Bytes with no request: the app is not speaking HTTP/1.1 to us.
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._got_bytes = True
        if self._response is None:
            data = self._buffer + data if self._buffer else data
            self._buffer = b""
            try:
                data = self._read_head(data)
            except _BadResponse as e:
                self._fail(Failure(ResponseFailed([Failure(e)])))
                return
            if self._response is None:
                return
        if data and not self._done:
            self._body(data)
        elif data:
            self._keep_alive = False  # bytes after the whole answer

    def _read_head(self, data: bytes) -> bytes:
        """Parse the response head from C{data}; what follows it."""
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _HEAD_LIMIT:
                    raise _BadResponse("response head too long")
                self._buffer = data
                return b""
            head, data = data[:end], data[end + 4 :]
            if not self._head(head, data):  # 1xx: another head follows
                continue
            return data

    def _head(self, head: bytes, rest: bytes) -> bool:
        """Take a response head; C{False} for an informational one (another follows)."""
        exchange = self._exchange
        assert exchange is not None
        lines = head.split(b"\r\n")
        status = lines[0].split(b" ", 2)
        if (
            len(status) < 2
            or not status[0].startswith(b"HTTP/1.")
            or len(status[1]) != 3
            or not status[1].isdigit()
        ):
            raise _BadResponse(f"bad status line {lines[0][:80]!r}")
        code = int(status[1])
        if 100 <= code < 200 and code != 101:
            return False
        head_request = exchange.method == b"HEAD"
        headers = Headers()
        lengths: list[bytes] = []
        codings: list[bytes] = []
        connection: list[bytes] = []
        fields: list[bytes] = []
        for line in lines[1:]:
            if b"\r" in line or b"\n" in line:
                raise _BadResponse(f"a bare CR or LF in {line[:80]!r}")
            if line[:1] in (b" ", b"\t") and fields:  # a folded line continues the last field
                fields[-1] += b" " + line.strip()
            else:
                fields.append(line)
        for line in fields:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise _BadResponse(f"bad header line {line[:80]!r}")
            value = value.strip()
            lower = name.lower()
            if lower in _CONNECTION_CONTROL:
                if lower == b"content-length":
                    lengths.append(value)
                elif lower == b"transfer-encoding":
                    codings.append(value)
                elif lower == b"connection":
                    connection.append(value)
                if not (head_request and lower == b"content-length"):
                    continue
            headers.addRawHeader(name, value)
        version = (b"HTTP", 1, 1) if status[0] == b"HTTP/1.1" else (b"HTTP", 1, 0)
        tokens = {t.strip().lower() for v in connection for t in v.split(b",")}
        for token in tokens:
            # What Connection names is this hop's too (RFC 9110 7.6.1), not the response's.
            headers.removeHeader(token)
        self._keep_alive = (
            b"close" not in tokens if version[2] == 1 else b"keep-alive" in tokens
        ) and code != 101
        length: int | object = UNKNOWN_LENGTH
        if head_request or code in (204, 304) or code == 101:
            self._framing, length = b"none", 0
        elif codings:
            last = b",".join(codings).split(b",")[-1].strip().lower()
            self._framing = b"chunked" if last == b"chunked" else b"close"
            if lengths or version[2] == 0:
                # Framed two ways, or chunked in HTTP/1.0: this answer is
                # read as chunked, and the connection is not used again.
                self._keep_alive = False
        elif lengths:
            distinct = {v.strip() for item in lengths for v in item.split(b",")}
            if len(distinct) != 1:
                raise _BadResponse("conflicting Content-Length")
            value = distinct.pop()
            if not value.isdigit():
                raise _BadResponse("bad Content-Length")
            self._framing, length = b"length", int(value)
            self._remaining = int(value)
        else:
            self._framing = b"close"
        if self._framing == b"close":
            self._keep_alive = False
        self._response = _Response(
            version, code, status[2] if len(status) > 2 else b"", headers, length, self
        )
        answer = exchange.answer
        if self._framing == b"none" or (self._framing == b"length" and self._remaining == 0):
            self._complete()  # its reader hears so on deliverBody
            if rest:
                self._keep_alive = False  # bytes after an answer without a body
        answer.callback(self._response)
        return True

    def _body(self, data: bytes) -> None:
        framing = self._framing
        if framing == b"length":
            if len(data) >= self._remaining:
                if len(data) > self._remaining:
                    # More than it said: the connection is not to be trusted.
                    self._keep_alive = False
                data = data[: self._remaining]
                self._remaining = 0
                self._deliver(data)
                self._complete()
                return
            self._remaining -= len(data)
            self._deliver(data)
        elif framing == b"chunked":
            self._chunks(data)
        elif framing == b"close":
            self._deliver(data)
        else:
            self._keep_alive = False

    def _chunks(self, data: bytes) -> None:
        position, end = 0, len(data)
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
            end = len(data)
        while position < end and not self._done:
            state = self._chunk_state
            if state == 1:
                take = min(self._remaining, end - position)
                self._deliver(data if take == end else data[position : position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = 2
                continue
            line_end = data.find(b"\r\n", position)
            if line_end < 0:
                if end - position > _HEAD_LIMIT:
                    self._fail_body("a chunk's size line is too long")
                    return
                self._buffer = data[position:]
                return
            line = data[position:line_end]
            position = line_end + 2
            if state == 2:
                if line:
                    self._fail_body("a chunk does not end where its size says")
                    return
                self._chunk_state = 0
            elif state == 0:
                size = line.split(b";", 1)[0].strip()
                if not size or size.strip(_HEX_DIGITS):
                    self._fail_body(f"bad chunk size {size[:20]!r}")
                    return
                self._remaining = int(size, 16)
                self._chunk_state = 1 if self._remaining else 3
            elif not line:  # state 3: trailers end at an empty line
                if position < end:
                    self._keep_alive = False
                self._complete()

    def _deliver(self, data: bytes) -> None:
        if not data or self._ended or self._stopped:
            return
        if self._protocol is None:
            self._held.append(data)
        else:
            self._protocol.dataReceived(data)

    def deliver_to(self, protocol: Protocol) -> None:
        self._protocol = protocol
        self._body_transport = _BodyTransport(self)
        protocol.makeConnection(self._body_transport)
        held, self._held = self._held, []
        for data in held:
            if self._ended or self._stopped:
                break
            protocol.dataReceived(data)
        if self._ending is not None and not self._ended:
            self._end_body()

    def _complete(self) -> None:
        self._done = True
        self._body_ends(Failure(ResponseDone()))

    def _body_ends(self, how: Failure) -> None:
        """The body is whole, or can be no more: its reader hears so now, or once it has one."""
        self._ending = how
        if self._protocol is not None:
            self._end_body()

    def _end_body(self) -> None:
        protocol, reason = self._protocol, self._ending
        self._protocol = None
        self._ended = True
        if self._body_transport is not None:
            self._body_transport.detach()
            self._body_transport = None
        assert protocol is not None and reason is not None
        if self._done:
            # Back in the pool first (as Agent does): a request made as the
            # reader hears of the end may take this connection.
            self._finish_exchange()
        protocol.connectionLost(reason)

    def _finish_exchange(self) -> None:
        """The response is delivered: keep the connection for the next request, or close it."""
        if not self._body_sent:
            # The app answered before taking the whole body: that body stops here.
            body = self._exchange.body if self._exchange is not None else None
            if body is not None:
                body.stopProducing()
            self._keep_alive = False
            self._exchange = None
            if self.transport is not None:
                # The app waits for bytes that will never come, and a close
                # would wait for the body's producer (paused while the app
                # reads slowly): gone, and the connection with it.
                IConsumer(self.transport).unregisterProducer()
                self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self._exchange = None
        if self.transport is None:
            return
        if self._keep_alive and not self._buffer:
            if self._paused:
                self.resume()
            self._client.release(self)
        else:
            self.transport.loseConnection()

    def _fail_body(self, why: str) -> None:
        self._keep_alive = False
        self._body_ends(Failure(ResponseFailed([Failure(_BadResponse(why))])))
        self.abort()

    def _fail(self, reason: Failure) -> None:
        exchange, self._exchange = self._exchange, None
        self._keep_alive = False
        if exchange is not None and not exchange.answer.called:
            exchange.answer.errback(reason)
        self.abort()

    # -- flow and endings -----------------------------------------------------

    def pause(self) -> None:
        self._paused = True
        if self.transport is not None:
            self.transport.pauseProducing()  # type: ignore[attr-defined]

    def resume(self) -> None:
        self._paused = False
        if self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def abandon(self) -> None:
        """
        The body's reader wants no more: nothing more is delivered, the
        connection closes, and the reader then hears C{ResponseFailed}.
        """
        self._stopped = True
        self._keep_alive = False
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._client.forget(self)
        exchange, self._exchange = self._exchange, None
        if exchange is not None and not exchange.answer.called:
            if self._reused and not self._got_bytes and exchange.repeatable:
                self._client.send_again(exchange)
            elif self._got_bytes:
                exchange.answer.errback(Failure(ResponseFailed([reason])))
            else:
                exchange.answer.errback(Failure(ResponseNeverReceived([reason])))
        elif self._response is not None and self._ending is None and not self._ended:
            if self._framing == b"close" and not self._stopped and reason.check(ConnectionDone):
                # The app's close ends the body; a reset (a crash) cuts it.
                self._body_ends(Failure(PotentialDataLoss()))
            else:
                self._body_ends(Failure(ResponseFailed([reason])))
        self.lost.callback(None)


@implementer(IConsumer)
class _ChunkedWriter:
    """A request body of unknown length, written as chunks."""

    def __init__(self, transport: IConsumer) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        if data:
            self._transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()


@implementer(IAgent)
class AppClient:
    """
    HTTP/1.1 to the app through C{endpoint}, keeping up to C{pool_size} idle
    connections for C{idle_timeout} seconds each.
    """

    def __init__(
        self,
        clock: IReactorTime,
        endpoint: IStreamClientEndpoint,
        pool_size: int,
        idle_timeout: float,
        host: bytes,
    ) -> None:
        self._clock = clock
        self._endpoint = endpoint
        self._pool_size = pool_size
        self._idle_timeout = idle_timeout
        self._host = host
        self._idle: list[_AppConnection] = []
        self._factory = Factory.forProtocol(lambda: _AppConnection(self))
        self._factory.noisy = False

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> defer.Deferred[IResponse]:
        """C{uri}: a URL on the app, or just its path and query."""
        head = _request_head(method, uri, headers, bodyProducer, self._host)
        exchange = _Exchange(method, head, bodyProducer)
        self._send(exchange, reuse=True)
        return exchange.answer

    def _send(self, exchange: _Exchange, reuse: bool) -> None:
        if reuse and self._idle:
            connection = self._idle.pop()
            if connection.idle_timer is not None and connection.idle_timer.active():
                connection.idle_timer.cancel()
            connection.idle_timer = None
            connection.send(exchange, reused=True)
            return
        dialling = exchange.dialling = self._endpoint.connect(self._factory)

        def connected(connection: IProtocol) -> None:
            exchange.dialling = None
            assert isinstance(connection, _AppConnection)
            connection.send(exchange, reused=False)

        def failed(reason: Failure) -> None:
            exchange.dialling = None
            if not exchange.answer.called:
                exchange.answer.errback(reason)

        dialling.addCallbacks(connected, failed)

    def send_again(self, exchange: _Exchange) -> None:
        """A pooled connection was closed under the request: a new one takes it."""
        self._send(exchange, reuse=False)

    def release(self, connection: _AppConnection) -> None:
        if len(self._idle) >= self._pool_size:
            assert connection.transport is not None
            connection.transport.loseConnection()
            return
        self._idle.append(connection)
        connection.idle_timer = self._clock.callLater(self._idle_timeout, self._expire, connection)

    def _expire(self, connection: _AppConnection) -> None:
        connection.idle_timer = None
        if connection in self._idle:
            self._idle.remove(connection)  # before it closes: no request may take it now
            if connection.transport is not None:
                connection.transport.loseConnection()

    def forget(self, connection: _AppConnection) -> None:
        if connection.idle_timer is not None and connection.idle_timer.active():
            connection.idle_timer.cancel()
        connection.idle_timer = None
        if connection in self._idle:
            self._idle.remove(connection)

    def closeCachedConnections(self) -> defer.Deferred[None]:
        """Close the idle connections; fires once they are closed."""
        idle, self._idle = self._idle, []
        for connection in idle:
            self.forget(connection)
            if connection.transport is not None:
                connection.transport.loseConnection()
        closing = [connection.lost for connection in idle]
        return defer.gatherResults(closing).addCallback(lambda _: None)


def _request_head(
    method: bytes,
    uri: bytes,
    headers: Headers | None,
    body: IBodyProducer | None,
    host: bytes,
) -> bytes:
    """The request line and headers, with the body's framing."""
    scheme_end = uri.find(b"://")
    if scheme_end >= 0:
        authority = scheme_end + 3
        path_start = min(
            (i for i in (uri.find(b"/", authority), uri.find(b"?", authority)) if i >= 0),
            default=len(uri),
        )
        uri = uri[path_start:]
        if not uri.startswith(b"/"):
            uri = b"/" + uri
    lines = [b"%s %s HTTP/1.1\r\n" % (method, uri)]
    has_host = False
    if headers is not None:
        for name, values in headers.getAllRawHeaders():
            if name.lower() == b"host":
                has_host = True
            for value in values:
                lines.append(b"%s: %s\r\n" % (name, value))
    if not has_host:
        lines.append(b"Host: %s\r\n" % (host,))
    if body is None:
        if method in (b"PUT", b"POST"):
            lines.append(b"Content-Length: 0\r\n")
    elif body.length is UNKNOWN_LENGTH:
        lines.append(b"Transfer-Encoding: chunked\r\n")
    else:
        lines.append(b"Content-Length: %d\r\n" % (body.length,))
    lines.append(b"\r\n")
    return b"".join(lines)
