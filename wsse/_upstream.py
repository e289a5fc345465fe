"""
WebSockets that wsse opens to the app on a browser's behalf, with autobahn.

Used where wsse must see messages rather than splice bytes: the fallback's
sockets (L{wsse._bridge}) and the deflating relay (C{--ws-deflate}).  The
handshake carries what the browser's own would have carried (path and query untouched, Host, Origin,
cookies, Authorization, User-Agent, subprotocols, C{X-Forwarded-*}); the target
comes from the settings alone.  One client factory per settings holds the
protocol options; each socket reports to a L{SocketPeer}.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectingRequest
from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers

from wsse import _logging
from wsse._draining import OpenSet
from wsse._settings import Settings
from wsse._socketio import flush_now, send_now

_log = Logger(observer=_logging.observer)

# Headers autobahn writes itself, or that belong to one hop.
_HANDSHAKE_OWN = frozenset(
    {
        b"host",
        b"upgrade",
        b"connection",
        b"origin",
        b"user-agent",
        b"pragma",
        b"cache-control",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
    }
)


class SocketPeer(Protocol):
    """Whoever acts on an upstream socket's events (a fallback socket, the deflating relay)."""

    def upstream_opened(self, socket: UpstreamSocket) -> None: ...

    def upstream_message(self, payload: bytes, is_binary: bool) -> None: ...

    def upstream_closing(self, code: int | None, reason: str) -> None:
        """The app sent a close frame (C{code} C{None} when it carried none)."""

    def upstream_lost(self, code: int, reason: str) -> None:
        """The socket is gone: its close code, 1005 for a clean close without one, 1006 without a closing handshake."""

    def upstream_refused(self, status: int, reason: str) -> None:
        """The app answered the handshake with C{status} (502 when there was no answer)."""


@dataclass
class Handshake:
    """What the upstream opening handshake says."""

    path: bytes
    host: bytes
    headers: Headers = field(default_factory=Headers)
    origin: bytes | None = None
    user_agent: bytes | None = None
    protocols: list[str] = field(default_factory=list)

    @classmethod
    def from_headers(cls, path: bytes, headers: Headers, protocols: list[str]) -> Handshake:
        """Split end-to-end request headers into what autobahn wants separately."""

        def first(name: bytes) -> bytes | None:
            values = headers.getRawHeaders(name)
            return values[0] if values else None

        rest = Headers()
        for name, values in headers.getAllRawHeaders():
            if name.lower() not in _HANDSHAKE_OWN:
                rest.setRawHeaders(name, list(values))
        return cls(
            path, first(b"host") or b"", rest, first(b"origin"), first(b"user-agent"), protocols
        )

    def connecting_request(self) -> ConnectingRequest:
        # autobahn sends one line per header: repeats are joined as HTTP allows,
        # with "; " for cookies, which is how browsers join them.
        headers = {
            name.decode("latin-1"): (b"; " if name.lower() == b"cookie" else b", ")
            .join(values)
            .decode("latin-1")
            for name, values in self.headers.getAllRawHeaders()
        }
        return ConnectingRequest(
            host="wsse.invalid",
            port=0,
            resource=self.path.decode("latin-1"),
            headers=headers,
            useragent=self.user_agent.decode("latin-1") if self.user_agent else None,
            origin=self.origin.decode("latin-1") if self.origin else None,
            protocols=self.protocols,
        )


class UpstreamSocket(WebSocketClientProtocol):
    """One WebSocket to the app."""

    handshake: Handshake
    delegate: SocketPeer
    registry: OpenSet[UpstreamSocket]
    maxMessagePayloadSize: int  # autobahn copies it from the factory's options

    def connectionMade(self) -> None:
        self.registry.add(self)
        # A frame cut across reads: its parts so far, their size, and the size wanted.
        self._held: list[bytes] = []
        self._held_size = self._held_wanted = 0
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.registry.discard(self)

    def onConnecting(self, transport_details: object) -> ConnectingRequest:
        return self.handshake.connecting_request()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # autobahn always writes "Host: host:port"; the app must see the browser's
        # Host exactly (Tornado and Jupyter compare it with Origin), so the
        # placeholder from connecting_request is replaced in the handshake.
        if self.state == self.STATE_CONNECTING and b"\r\nHost: wsse.invalid:0\r\n" in data:
            data = data.replace(
                b"\r\nHost: wsse.invalid:0\r\n", b"\r\nHost: " + self.handshake.host + b"\r\n", 1
            )
        self._release()
        super().sendData(data, sync, chopsize)

    # Frames framed by send_whole and not yet written: flush sends them together.
    _outgoing: list[bytes] | None = None

    def send_whole(self, payload: bytes, binary: bool) -> None:
        """
        A whole message to the app.  Up to 64 KiB and uncompressed, it is
        framed and masked here: autobahn builds a masker object for each
        frame, which was a fifth of wsse's time under a burst of small
        messages.  The mask comes from the same source as autobahn's.
        """
        size = len(payload)
        if (
            size > 0xFFFF
            or self._perMessageCompress is not None
            or self.send_state != self.SEND_STATE_GROUND
            or self.state != self.STATE_OPEN
            or self.send_queue
        ):
            self.sendMessage(payload, binary)
            return
        mask = random.getrandbits(32).to_bytes(4, "big")
        first = 0x82 if binary else 0x81
        head = (
            bytes((first, 0x80 | size))
            if size < 126
            else bytes((first, 0xFE)) + size.to_bytes(2, "big")
        )
        if size:
            key = (mask * ((size + 3) // 4))[:size]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                size, "big"
            )
        frame = head + mask + payload
        if self._outgoing is None:
            self._outgoing = [frame]
        else:
            self._outgoing.append(frame)

    def _release(self) -> None:
        """Write the frames held for flush, ahead of anything autobahn writes."""
        if self._outgoing is not None:
            outgoing, self._outgoing = self._outgoing, None
            if self.transport is not None:
                self.transport.write(b"".join(outgoing))

    def flush(self) -> None:
        """
        Send what is written now: the frames of one POST go out together, at
        once, and straight to the socket when nothing else waits (L{send_now}).
        """
        outgoing, self._outgoing = self._outgoing, None
        if self.transport is None:
            return
        if outgoing is None:
            flush_now(self.transport)
        else:
            send_now(self.transport, b"".join(outgoing))

    opened = False
    reading_paused = False

    def pace(self, paused: bool) -> None:
        """
        Stop (or resume) reading from the app while the page cannot keep up.

        A socket closing is always read: its peer's close frame waits behind
        what the page has not taken, and the closing handshake would time out.
        """
        paused = paused and self.state == self.STATE_OPEN
        self.reading_paused = paused
        if self.transport is not None:
            producer = IPushProducer(self.transport)
            producer.pauseProducing() if paused else producer.resumeProducing()
        if (
            not paused
            and self.autoPingPending
            and self.autoPingTimeout
            and not self.autoPingTimeoutCall
        ):
            # Its timeout passed while reading was paused (see onAutoPingTimeout):
            # the pong, if it comes, is read now; it gets the full time again.
            self.autoPingTimeoutCall = self.factory._batched_timer.call_later(
                self.autoPingTimeout, self.onAutoPingTimeout
            )

    def onAutoPingTimeout(self) -> None:
        if self.reading_paused:
            # The pong waits, unread, behind what the page has not taken yet;
            # once reading resumes it has its time again (see pace).
            self.autoPingTimeoutCall = None
            return
        super().onAutoPingTimeout()

    def onOpen(self) -> None:
        self.opened = True
        self.delegate.upstream_opened(self)

    def dataReceived(self, data: bytes) -> None:
        # autobahn's own first works out the arguments of a debug line, whether
        # or not debug is on: 1% of wsse's samples in the fallback's round trip.
        self._dataReceived(data)

    def _dataReceived(self, data: bytes) -> None:
        """
        Whole text and binary frames go straight to L{onMessage}; anything
        else (control frames, fragments, compressed frames) to autobahn's
        parser, from the first such frame on, until it is between frames again.

        autobahn keeps unparsed bytes in one buffer that it slices after each
        frame, copying the rest of the read every time: with an app sending
        small messages, that copying took most of wsse's time.  Here a frame
        cut across reads is held as a list of its parts and joined once it is
        all there, so a big message costs one copy however many reads bring it.
        """
        if self._held and self.state != self.STATE_OPEN:
            # The start of a frame held here, and autobahn takes over (a close began).
            data, self._held = b"".join(self._held) + data, []
        if self.state != self.STATE_OPEN or self._perMessageCompress is not None:
            super()._dataReceived(data)
            return
        frame = self.current_frame
        if frame is not None:
            # autobahn is inside a frame: it gets the rest of it
            rest = frame.length - self.current_frame_masker.pointer()
            super()._dataReceived(data[:rest])
            data = data[rest:]
        if self.inside_message or self.state != self.STATE_OPEN:
            if data:
                super()._dataReceived(data)
            return
        if self.data:  # the start of a frame, left in autobahn's buffer by its last frame
            data, self.data = self.data + data, b""
        elif self._held:
            self._held.append(data)
            self._held_size += len(data)
            if self._held_size < self._held_wanted:
                return
            data = b"".join(self._held)
            self._held = []
        end, position, limit = len(data), 0, self.maxMessagePayloadSize
        while self.state == self.STATE_OPEN:
            if end - position < 2:
                self._hold(data, position, 2)
                return
            first, length = data[position], data[position + 1]
            # FIN with no reserved bits, text or binary; unmasked (length's top bit clear)
            if (first != 0x81 and first != 0x82) or length > 127:
                break
            head = 2
            if length == 126:
                head = 4
                if end - position < head:
                    self._hold(data, position, head)
                    return
                length = int.from_bytes(data[position + 2 : position + 4], "big")
                if length < 126:
                    break  # not the shortest form: autobahn refuses it
            elif length == 127:
                head = 10
                if end - position < head:
                    self._hold(data, position, head)
                    return
                length = int.from_bytes(data[position + 2 : position + 10], "big")
                if length < 0x10000 or length >= 1 << 63:
                    break  # not the shortest form, or the top bit set: autobahn refuses it
            if length > limit > 0:
                break
            stop = position + head + length
            if stop > end:
                self._hold(data, position, stop - position)
                return
            self.onMessage(data[position + head : stop], first == 0x82)
            position = stop
        if position < end:
            super()._dataReceived(data[position:] if position else data)

    def _hold(self, data: bytes, position: int, wanted: int) -> None:
        """Keep the start of a frame until C{wanted} bytes of it are here."""
        part = data[position:] if position else data
        self._held, self._held_size, self._held_wanted = [part], len(part), wanted

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and not payload.isascii():
            # Checked here, in C, rather than by autobahn's validator, in Python;
            # ASCII (most text) without decoding it.
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                self._fail_connection(
                    WebSocketProtocol.CLOSE_STATUS_CODE_INVALID_PAYLOAD, "text that is not UTF-8"
                )
                return
        self.delegate.upstream_message(payload, isBinary)

    def onCloseFrame(self, code: int, reasonRaw: bytes) -> bool | None:
        started_by_app = self.state == self.STATE_OPEN
        result = super().onCloseFrame(code, reasonRaw)
        if started_by_app:
            self.delegate.upstream_closing(self.remoteCloseCode, self.remoteCloseReason or "")
        return result

    def _refusal_status(self) -> int:
        """The app's answer to the handshake, or 504 (no answer in time), or 502."""
        status_line = getattr(self, "http_status_line", None)
        if status_line:
            parts = status_line.split()
            if len(parts) > 1 and parts[1].isdigit() and parts[1] != "101":
                return int(parts[1])
        return (
            504 if self.wasNotCleanReason and "handshake timeout" in self.wasNotCleanReason else 502
        )

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened:
            self.delegate.upstream_refused(self._refusal_status(), reason or "")
        else:
            # A clean close without a code is 1005, as a browser reports it.
            self.delegate.upstream_lost((code or 1005) if wasClean else 1006, reason or "")


class _FactoryView:
    """
    The shared factory, but with this socket's subprotocols.

    autobahn checks the app's chosen subprotocol against C{factory.protocols},
    not against what the handshake offered; a factory per socket would cost
    kilobytes for each of thousands of sockets.
    """

    def __init__(self, factory: WebSocketClientFactory, protocols: list[str]) -> None:
        self._factory = factory
        self.protocols = protocols

    def __getattr__(self, name: str) -> object:
        return getattr(self._factory, name)


class UpstreamConnector:
    """Opens upstream sockets for one deployment; holds autobahn's shared options."""

    def __init__(self, settings: Settings, reactor: IReactorTime) -> None:
        self._settings = settings
        self._reactor = reactor
        scheme = "wss" if settings.target.scheme == "https" else "ws"
        self._factory = WebSocketClientFactory(
            f"{scheme}://{settings.target.host}:{settings.target.port}/"
        )
        self._factory.setProtocolOptions(
            # Whole messages are relayed, so both limits bound what one socket buffers.
            maxFramePayloadSize=settings.max_message_size,
            maxMessagePayloadSize=settings.max_message_size,
            # Counted from the TCP connection: the app's answer to the handshake.
            openHandshakeTimeout=settings.response_timeout,
            closeHandshakeTimeout=5,
            # An app that stops answering without closing its socket is found
            # out, and its socket closed, within a minute.
            autoPingInterval=30,
            autoPingTimeout=30,
            echoCloseCodeReason=True,
            # UpstreamSocket.onMessage checks text, faster than autobahn can.
            utf8validateIncoming=False,
            # A peer that breaks the protocol (a message over the size limit,
            # invalid UTF-8) gets the close code that says why (1009, 1007)
            # rather than a dropped connection.
            failByDrop=False,
        )
        self.sockets: OpenSet[UpstreamSocket] = OpenSet()

    def connect(self, handshake: Handshake, delegate: SocketPeer) -> defer.Deferred[UpstreamSocket]:
        """Dial the app; the Deferred fires once TCP connects, the delegate hears the rest."""
        socket = UpstreamSocket()
        socket.factory = _FactoryView(self._factory, handshake.protocols)
        socket.handshake = handshake
        socket.delegate = delegate
        socket.registry = self.sockets
        endpoint = self._settings.target.endpoint(self._reactor, self._settings.connect_timeout)
        return connectProtocol(endpoint, socket)

    def going_away(self) -> defer.Deferred[None]:
        """
        wsse is stopping: every socket to the app closes with 1001, as a
        browser's does when it leaves; fires once all of them are closed.
        """
        for socket in self.sockets:
            if socket.opened:
                close_like(socket, 1001, "")
            else:
                socket.dropConnection(abort=True)
        return self.sockets.empty()

    def abort(self) -> None:
        """Drop the sockets that a stop could not close in time."""
        for socket in self.sockets:
            socket.dropConnection(abort=True)


def close_like(socket: WebSocketProtocol, code: int | None, reason: str) -> None:
    """
    Close an autobahn socket the way its peer closed: the same code and reason,
    no close frame at all for a lost connection (1006), a bare one for 1005.

    autobahn's C{sendClose} refuses 1001, 1008, 1011 and the like, which an app
    or browser may well use, so the frame is sent with C{sendCloseFrame}.
    """
    if socket.state != socket.STATE_OPEN:
        return
    if code == 1006 or code == 1015:
        socket.dropConnection(abort=True)
    elif code is None or code == 1005:
        socket.sendCloseFrame()
    else:
        socket.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8")[:123])
