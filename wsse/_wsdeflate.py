"""
The opt-in message relay (C{--ws-deflate}): autobahn on both legs.

The browser's leg negotiates permessage-deflate even when the app does not
compress, which saves bandwidth on a slow link between the browser and the
gateway.  The price is re-framing every message, so the byte splice stays the
default.  The browser's handshake is held until the app's is done, so the
browser gets the app's subprotocol, or its refusal status, as with the splice.
"""

from __future__ import annotations

import re
from typing import Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IAddress, IConsumer, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import Request

from wsse import _logging, _socketpaths
from wsse._draining import OpenSet
from wsse._forwarding import split_mount, upstream_request_headers
from wsse._settings import Settings
from wsse._upstream import Handshake, UpstreamConnector, UpstreamSocket, close_like
from wsse._wsrelay import SocketTally, refuse_past_max_sockets

_log = Logger(observer=_logging.observer)

# Split a Set-Cookie list that autobahn joined with ", " (an Expires date holds
# ", " too, but never right before "name=").
_JOINED_COOKIES = re.compile(r", (?=[^=;,\s]+=)")


def offers_deflate(request: Request) -> bool:
    offers = b",".join(request.requestHeaders.getRawHeaders(b"sec-websocket-extensions", []))
    return b"permessage-deflate" in offers.lower()


def _accept_deflate(offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class _RelayFactory(WebSocketServerFactory):
    def __init__(
        self, settings: Settings, connector: UpstreamConnector, tally: SocketTally
    ) -> None:
        super().__init__()
        self.protocol = _BrowserSocket
        self.settings = settings
        self.connector = connector
        self.tally = tally
        self.pending: tuple[Request, bytes] | None = None
        self.sockets: OpenSet[_BrowserSocket] = OpenSet()
        self.setProtocolOptions(
            perMessageCompressionAccept=_accept_deflate,
            # The browser waits while wsse dials the app and completes its handshake.
            openHandshakeTimeout=settings.connect_timeout + settings.response_timeout + 1,
            maxFramePayloadSize=settings.max_message_size,
            maxMessagePayloadSize=settings.max_message_size,
            # The app's echo of the browser's close goes to the app; the browser
            # gets the same code and reason back, as from most servers.
            echoCloseCodeReason=True,
            # A peer that breaks the protocol (a message over the size limit,
            # invalid UTF-8) gets the close code that says why (1009, 1007)
            # rather than a dropped connection.
            failByDrop=False,
        )

    def buildProtocol(self, addr: IAddress | None) -> _BrowserSocket:  # type: ignore[override]
        protocol = cast(_BrowserSocket, super().buildProtocol(addr))
        assert self.pending is not None
        (protocol.http_request, protocol.upstream_path), self.pending = self.pending, None
        return protocol


class DeflatingWebSocketRelay(WebSocketResource):
    """Terminates the browser's WebSocket and relays each message to the app's."""

    def __init__(
        self, settings: Settings, connector: UpstreamConnector, tally: SocketTally
    ) -> None:
        """@param tally: where its sockets count against --max-sockets."""
        super().__init__(_RelayFactory(settings, connector, tally))
        self._settings = settings

    def render(self, request: Request) -> Any:
        return self.relay(request, split_mount(request)[1])

    def relay(self, request: Request, upstream_path: bytes) -> Any:
        """Relay the upgrade to C{upstream_path} (path and query, below the target's base path)."""
        settings = self._settings
        if not _socketpaths.allowed(settings.socket_paths, upstream_path):
            return _socketpaths.refuse(request, upstream_path)
        if self._factory.tally.socket_count >= settings.max_sockets:
            return refuse_past_max_sockets(request, upstream_path, settings)
        # autobahn builds the protocol inside render; it needs the twisted.web
        # request for the raw headers, which autobahn's own copy has joined.
        self._factory.pending = (request, upstream_path)
        return super().render(request)

    def going_away(self) -> defer.Deferred[None]:
        """
        wsse is stopping: every browser's socket closes with 1001 (its answer
        goes on to the app); fires once all of them are closed.
        """
        for socket in self._factory.sockets:
            if socket.state == socket.STATE_OPEN:
                close_like(socket, 1001, "")
            else:
                socket.dropConnection(abort=True)
        return self._factory.sockets.empty()

    def abort(self) -> None:
        """Drop the sockets that a stop could not close in time."""
        for socket in self._factory.sockets:
            socket.dropConnection(abort=True)


class _BrowserSocket(WebSocketServerProtocol):
    factory: _RelayFactory
    http_request: Request
    upstream_path: bytes

    def __init__(self) -> None:
        super().__init__()
        self._app: UpstreamSocket | None = None
        self._connecting: defer.Deferred[UpstreamSocket] | None = None
        self._answer: defer.Deferred[tuple[str | None, dict[str, list[str]]]] | None = None
        self._offered: list[str] = []

    def onConnect(self, request: Any) -> defer.Deferred[Any]:  # type: ignore[override]
        # autobahn waits on a Deferred here: the browser's handshake is answered
        # once the app has answered its own.
        settings = self.factory.settings
        headers = upstream_request_headers(self.http_request, settings)
        self._offered = list(request.protocols)
        handshake = Handshake.from_headers(
            settings.target.base_path + self.upstream_path, headers, self._offered
        )
        self._answer = defer.Deferred()
        self._connecting = self.factory.connector.connect(handshake, self)
        self._connecting.addCallbacks(self._dialled, self._cannot_connect)
        return self._answer

    def _dialled(self, socket: UpstreamSocket) -> None:
        self._connecting = None
        self._app = socket

    def _cannot_connect(self, reason: Failure) -> None:
        self._connecting = None
        if reason.check(defer.CancelledError):
            return
        _log.warn("websocket: cannot connect to the app: {why}", why=reason.getErrorMessage())
        if reason.check(ConnectTimeout):
            self._refuse(504, "the app did not answer in time")
        else:
            self._refuse(502, "the app could not be reached")

    def _refuse(self, status: int, reason: str) -> None:
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.errback(ConnectionDeny(status, reason))

    def connectionMade(self) -> None:
        # Counted against --max-sockets from the upgrade until the browser is gone.
        self.factory.tally.socket_count += 1
        self.factory.sockets.add(self)
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.factory.tally.socket_count -= 1
        self.factory.sockets.discard(self)

    # The app's side (SocketPeer).

    def upstream_opened(self, socket: UpstreamSocket) -> None:
        chosen = socket.websocket_protocol_in_use
        if self._answer is None:  # the browser left meanwhile
            socket.dropConnection(abort=True)
            return
        if chosen is not None and chosen not in self._offered:
            socket.dropConnection(abort=True)
            self._app = None
            self._refuse(502, "the app chose a subprotocol the browser did not offer")
            return
        cookies = socket.http_headers.get("set-cookie")
        extra = {"Set-Cookie": _JOINED_COOKIES.split(cookies)} if cookies else {}
        answer, self._answer = self._answer, None
        if answer is not None:
            answer.callback((chosen, extra))

    def upstream_message(self, payload: bytes, is_binary: bool) -> None:
        if self.state == self.STATE_OPEN:
            self.sendMessage(payload, is_binary)

    def upstream_closing(self, code: int | None, reason: str) -> None:
        close_like(self, code, reason)

    def upstream_lost(self, code: int, reason: str) -> None:
        self._app = None
        close_like(self, code, reason)

    def upstream_refused(self, status: int, reason: str) -> None:
        self._app = None
        self._refuse(status, "the app refused the WebSocket")

    # The browser's side.

    def onOpen(self) -> None:
        app = self._app
        if app is None:
            return
        # The browser's transport still has twisted.web's channel as its
        # producer; swap in the app's socket so each side paces the other.
        browser = IConsumer(self.transport)
        browser.unregisterProducer()
        browser.registerProducer(IPushProducer(app.transport), True)
        IConsumer(app.transport).registerProducer(IPushProducer(self.transport), True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._app is not None and self._app.state == self._app.STATE_OPEN:
            self._app.sendMessage(payload, isBinary)

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        started_by_browser = self.state == self.STATE_OPEN
        result = super().onCloseFrame(code, reasonRaw)
        if started_by_browser and self._app is not None:
            close_like(self._app, self.remoteCloseCode, self.remoteCloseReason or "")
        return result

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._answer = None
        if self._connecting is not None:
            self._connecting.cancel()
        app, self._app = self._app, None
        if app is None:
            return
        if app.opened:
            close_like(app, code if wasClean else 1006, reason or "")
        else:
            app.dropConnection(abort=True)
