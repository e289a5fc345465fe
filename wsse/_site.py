"""
The twisted.web Site that serves wsse, with its access log on twisted.logger.

Kept apart from the service so that an embedding program, the init script and
twistd all build the same thing.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, ITCPTransport
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from wsse import _logging
from wsse._draining import OpenSet
from wsse._redact import redact_uri
from wsse._request_body import StreamingRequest
from wsse._socketio import widen
from wsse._wsrelay import is_websocket_upgrade

_ACCESS = "wsse.access"
_log = Logger(namespace=_ACCESS, observer=_logging.observer)

# Idle keep-alive connections from browsers and gateways close after this many
# seconds, nginx's keepalive_timeout; a request in progress (an event stream) is
# never cut by it on HTTP/1.1.
IDLE_TIMEOUT = 75


class _Channel(http.HTTPChannel):
    """
    An HTTP/1.1 channel that answers a request head over C{totalHeadersSize}
    (16 KiB) with 431 and a log line, where Twisted drops the connection
    without a word (one long line) or answers a bare 400 (many lines); and
    that logs why Twisted answers any other request 400 itself.
    """

    _refused = False
    _host: IAddress | None = None
    # Why twisted.web refuses the request in hand, for the 400's log line.
    _malformed = "a malformed request line, header or chunked body"

    def connectionMade(self) -> None:
        widen(self.transport)
        super().connectionMade()

    def getHost(self) -> IAddress:
        # twisted.web asks for each request (Request.host): a system call and
        # an address object each time, 2.5% of a small request, for an address
        # that stays the same while the connection is open.
        if self._host is None:
            self._host = super().getHost()
        return self._host

    def dataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._head_too_large()

    def _failChooseTransferDecoder(self) -> bool:
        # twisted.web refuses here a request whose body length is ambiguous
        # (Content-Length and Transfer-Encoding, two lengths, a coding other
        # than chunked): what request smuggling relies on.
        self._malformed = "conflicting or unsupported Content-Length / Transfer-Encoding"
        return super()._failChooseTransferDecoder()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Every 400 twisted.web answers by itself comes through here; the
        # line names the reason, never the request's content.
        if self._receivedHeaderSize > self.totalHeadersSize:
            # twisted.web counts the head's lines as they come (so wsse need
            # not, on every request) and refuses one too long here.
            self._head_too_large()
            return
        _log.warn("{client}: bad request (400): {why}", client=self._peer(), why=self._malformed)
        super()._respondToBadRequestAndDisconnect()

    def _peer(self) -> str:
        transport = self.transport
        assert transport is not None  # data arrived on it
        return str(getattr(transport.getPeer(), "host", "-"))

    def _head_too_large(self) -> None:
        transport = self.transport
        assert transport is not None  # data arrived on it
        _log.warn(
            "{client}: request head over {limit} bytes (431)",
            client=self._peer(),
            limit=self.totalHeadersSize,
        )
        transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n"
            b"Connection: close\r\n\r\n"
        )
        transport.loseConnection()
        self._refused = True


def _channel(factory: http.HTTPFactory) -> Any:
    # Twisted's wrapper, which picks HTTP/2 where TLS negotiates it.
    return http._GenericHTTPChannelProtocol(_Channel())


class WSSESite(Site):
    """
    A Site whose access log is a structured twisted.logger event per request,
    whose requests stream large bodies to the app as they arrive, and which
    can stop gracefully: every request under way gets its answer first.
    """

    requestFactory = StreamingRequest
    protocol = _channel

    def __init__(self, resource: IResource, timeout: float | None = IDLE_TIMEOUT) -> None:
        super().__init__(resource, timeout=timeout)
        self._connections: OpenSet[ITCPTransport] = OpenSet()
        # The requests under way, by connection.
        self._busy: dict[ITCPTransport, set[Request]] = {}
        self._stopping = False

    def buildProtocol(self, addr: IAddress | None) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is None:
            return None
        # Hooks on the connection's channel (the protocol forwards to it); each
        # removes itself and runs the channel's own method.
        connection: list[ITCPTransport] = []

        def made(transport: ITCPTransport) -> None:
            connection.append(transport)
            self._connections.add(transport)
            del protocol.makeConnection
            protocol.makeConnection(transport)

        def lost(reason: Failure) -> None:
            try:
                del protocol.connectionLost
                protocol.connectionLost(reason)
            finally:
                for transport in connection:
                    self._busy.pop(transport, None)
                    self._connections.discard(transport)

        protocol.makeConnection, protocol.connectionLost = made, lost
        return protocol

    def getResourceFor(self, request: Request) -> IResource:
        transport = cast(ITCPTransport, request.channel.transport)
        if is_websocket_upgrade(request):
            # The relay takes the connection over, and closes it itself.
            self._connections.discard(transport)
            return super().getResourceFor(request)
        self._busy.setdefault(transport, set()).add(request)
        request.notifyFinish().addBoth(self._answered, transport, request)
        return super().getResourceFor(request)

    def _answered(self, result: object, transport: ITCPTransport, request: Request) -> None:
        requests = self._busy.get(transport)
        if requests is not None:
            requests.discard(request)
            if not requests:
                del self._busy[transport]
        if self._stopping and transport not in self._busy:
            transport.loseConnection()  # once the answer is sent

    def stop(self) -> Deferred[None]:
        """
        Close idle connections now, the others once their requests are
        answered; fires once every connection is closed.  Stop listening first.
        """
        self._stopping = True
        for transport in self._connections:
            if transport not in self._busy:
                transport.loseConnection()
        return self._connections.empty()

    def abort(self) -> None:
        """Cut every connection still open (a stop that took too long)."""
        for transport in self._connections:
            transport.abortConnection()

    def log(self, request: http.Request) -> None:
        level = _logging.access_level(request)
        if level is not LogLevel.info and not _logging.enabled(level, _ACCESS):
            return  # a routine line (the fallback's own traffic) nobody reads: not even built
        _log.emit(
            level,
            '{client} "{method} {uri} {protocol}" {code} {length}',
            client=getattr(request.getClientAddress(), "host", "-"),
            method=request.method.decode("latin-1"),
            uri=redact_uri(request.uri),
            protocol=request.clientproto.decode("latin-1"),
            code=request.code,
            length=request.sentLength or "-",
        )


def make_site(resource: IResource, timeout: float | None = IDLE_TIMEOUT) -> Site:
    """The Site for a wsse resource (or any tree holding one)."""
    return WSSESite(resource, timeout)
