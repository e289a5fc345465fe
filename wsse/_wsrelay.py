"""
Real WebSocket passthrough: the upgrade request goes to the app, then bytes are spliced.

wsse dials the app and sends it the browser's handshake before answering the
browser, so whatever the app answers (101 with its chosen subprotocol and
extensions, or a 403) is what the browser gets, byte for byte.  After that the
two connections are joined as C{twisted.protocols.portforward} joins them: each
transport is the other's producer, so a slow reader pauses the fast writer.
Frames are never parsed, which keeps every close code, extension and
fragment intact, and costs a third of what re-framing does; only their
lengths are followed, so that a stopping wsse can put its close frame (1001)
between two frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import cast

from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wsse import _logging, _socketpaths
from wsse._draining import OpenSet
from wsse._forwarding import (
    gateway_error,
    gateway_error_bytes,
    split_mount,
    websocket_handshake_headers,
)
from wsse._redact import redact_uri
from wsse._settings import Settings

_log = Logger(observer=_logging.observer)


def is_websocket_upgrade(request: Request) -> bool:
    """A GET asking to upgrade to WebSocket (RFC 6455 section 4.1)."""
    if request.method != b"GET":
        return False
    upgrade = b",".join(request.requestHeaders.getRawHeaders(b"upgrade", []))
    return b"websocket" in [t.strip().lower() for t in upgrade.split(b",")]


def _handshake(
    method: bytes, path: bytes, headers: Iterable[tuple[bytes, Sequence[bytes]]]
) -> bytes:
    lines = [method + b" " + path + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, values in headers for value in values)
    return b"\r\n".join(lines) + b"\r\n\r\n"


# A close frame with code 1001 (going away), as a server sends it (unmasked).
_CLOSE_GOING_AWAY = b"\x88\x02\x03\xe9"


def _masked_close_going_away() -> bytes:
    """The same close frame as a client must send it: masked, with a fresh key."""
    key = os.urandom(4)
    return b"\x88\x82" + key + bytes(b ^ k for b, k in zip(b"\x03\xe9", key, strict=False))


def _short_frame_size(second: int) -> int:
    """A frame's size on the wire from its header's second byte, or 0 past a 7-bit length."""
    length = second & 0x7F
    return 0 if length > 125 else 2 + (4 if second & 0x80 else 0) + length


# Indexed by a header's second byte: small frames cost one lookup (at most 131).
_SHORT_FRAME_SIZE = bytes(_short_frame_size(second) for second in range(256))
_LONGEST_HEADER = 14  # 2, a 64-bit length and a mask key


def _skip_repeats(data: bytes, position: int) -> int:
    """
    Step over the frames from C{position} that repeat its header's first two
    bytes, so are the same size: an app streaming fixed-size messages sends
    thousands to a read, and striding slices check them all at C speed.
    """
    if position + 1 >= len(data):
        return position
    size = _SHORT_FRAME_SIZE[data[position + 1]]
    if not size or data[position] & 0x0F == 8:
        return position
    firsts = data[position::size]
    seconds = data[position + 1 :: size]
    repeats = min(
        len(firsts) - len(firsts.lstrip(firsts[:1])),
        len(seconds) - len(seconds.lstrip(seconds[:1])),
    )
    return position + repeats * size


class _FrameCursor:
    """
    Follows the frame boundaries in one direction of a WebSocket, payloads unread.

    It runs on every byte the splice relays, so small frames, which come many
    to a read, are stepped over in bulk when they repeat one header and
    otherwise in one tight loop of a few operations each; only close frames,
    64-bit lengths and headers cut by a read take the general way.
    """

    def __init__(self) -> None:
        self._left = 0  # bytes of the frame under way still to come
        self._head = b""  # the start of a frame header split between reads
        self._closing = False  # the frame under way is a close frame
        self.close_seen = False  # a close frame went by, whole

    @property
    def at_boundary(self) -> bool:
        return not self._left and not self._head

    def feed(self, data: bytes, stop_at_boundary: bool = False) -> int:
        """
        Follow C{data}; with C{stop_at_boundary}, only to the end of the frame
        under way.  The number of bytes of C{data} followed.
        """
        position = 0
        if self._head:
            held = self._head
            taken = self._start(held + data[:_LONGEST_HEADER], 0)
            if not taken:
                self._head = held + data
                return len(data)
            self._head = b""
            position = self._finish(data, taken - len(held))
        elif self._left:
            position = self._finish(data, 0)
        elif stop_at_boundary:
            return 0
        if stop_at_boundary or self._left:
            return position
        end = len(data)
        last = end - 1  # a header's second byte is before it
        sizes = _SHORT_FRAME_SIZE
        while position < end:
            position = _skip_repeats(data, position)
            # Whole frames with 7- and 16-bit lengths; the last may run past
            # the end of data, and is then the frame under way.
            while position < last:
                second = data[position + 1]
                size = sizes[second]
                if not size:
                    if second & 0x7F != 126 or position + 4 > end:
                        break
                    size = (8 if second & 0x80 else 4) + (
                        data[position + 2] << 8 | data[position + 3]
                    )
                if data[position] & 0x0F == 8:
                    break
                position += size
            if position >= end:
                self._left = position - end
                self._closing = False
                return end
            taken = self._start(data, position)
            if not taken:
                self._head = data[position:]
                return end
            position = self._finish(data, position + taken)
        return end

    def _start(self, data: bytes, position: int) -> int:
        """Read the header at C{position}: its size, or 0 if C{data} ends inside it."""
        size = len(data) - position
        if size < 2:
            return 0
        second = data[position + 1]
        length = second & 0x7F
        extended = 2 if length == 126 else 8 if length == 127 else 0
        header = 2 + extended + (4 if second & 0x80 else 0)
        if size < header:
            return 0
        if extended:
            length = int.from_bytes(data[position + 2 : position + 2 + extended], "big")
        self._left = length
        self._closing = data[position] & 0x0F == 8
        return header

    def _finish(self, data: bytes, position: int) -> int:
        """Follow the payload under way from C{position}: where it or C{data} ends."""
        step = min(self._left, len(data) - position)
        self._left -= step
        if not self._left and self._closing:
            self.close_seen = True
        return position + step


class WebSocketSplice(Resource):
    """Relays a WebSocket upgrade to the same path and query on the app."""

    isLeaf = True

    def __init__(self, settings: Settings, clock: IReactorTime) -> None:
        super().__init__()
        self._settings = settings
        self._clock = clock
        self._endpoint = settings.target.endpoint(clock, settings.connect_timeout)
        self._legs: OpenSet[_AppLeg] = OpenSet()

    def going_away(self) -> defer.Deferred[None]:
        """wsse is stopping: every relayed socket closes with 1001; fires once all are closed."""
        for leg in self._legs:
            leg.going_away()
        return self._legs.empty()

    def abort(self) -> None:
        """Cut the relayed sockets that a stop could not close in time."""
        for leg in self._legs:
            leg.abort()

    def render(self, request: Request) -> int | bytes:
        return self.relay(request, split_mount(request)[1])

    def relay(self, request: Request, upstream_path: bytes) -> int | bytes:
        """Relay the upgrade to C{upstream_path} (path and query, below the target's base path)."""
        settings = self._settings
        if not _socketpaths.allowed(settings.socket_paths, upstream_path):
            return _socketpaths.refuse(request, upstream_path)
        headers = websocket_handshake_headers(request, settings)
        handshake = _handshake(
            request.method,
            settings.target.base_path + upstream_path,
            headers.getAllRawHeaders(),
        )
        app = _AppLeg(upstream_path, self._clock, settings.response_timeout, self._legs)
        connecting = connectProtocol(self._endpoint, app)
        gone: list[Failure] = []

        def client_gone(reason: Failure) -> None:
            gone.append(reason)
            connecting.cancel()

        request.notifyFinish().addErrback(client_gone)

        def connected(protocol: _AppLeg) -> None:
            if gone:
                protocol.close()
            else:
                _splice(request, protocol, handshake)

        def failed(reason: Failure) -> None:
            if gone or reason.check(defer.CancelledError, ConnectingCancelledError):
                return
            _log.warn(
                "websocket {path}: cannot connect to {target}: {why}",
                path=redact_uri(upstream_path),
                target=str(settings.target),
                why=reason.getErrorMessage(),
            )
            gateway_error(request, 504 if reason.check(ConnectTimeout) else 502)

        connecting.addCallbacks(connected, failed)
        return NOT_DONE_YET


def _splice(request: Request, app: _AppLeg, handshake: bytes) -> None:
    """Take the browser's connection away from twisted.web and join it to the app's."""
    channel = request.channel
    browser = channel.transport
    app_transport = app.transport
    assert browser is not None and app_transport is not None
    # The same takeover twisted.web.websocket performs: the channel keeps its
    # transport, but what arrives on it now goes to the relay.
    channel.dataReceived = app.from_browser  # type: ignore[method-assign]
    channel.connectionLost = app.browser_gone  # type: ignore[method-assign]
    IConsumer(browser).unregisterProducer()  # the HTTPChannel was its producer
    app.attach(channel, browser)
    IConsumer(browser).registerProducer(IPushProducer(app_transport), True)
    IConsumer(app_transport).registerProducer(IPushProducer(browser), True)
    for transport in (browser, app_transport):
        keep_alive = getattr(transport, "setTcpKeepAlive", None)
        if keep_alive is not None:
            keep_alive(True)
    app_transport.write(handshake)
    IPushProducer(browser).resumeProducing()


# The app's answer to the handshake, read before anything else is relayed.
_MAX_ANSWER_HEAD = 64 * 1024
_AWAITING, _UPGRADED, _REFUSED, _GOING_AWAY = range(4)


class _AppLeg(Protocol):
    """
    The connection to the app.

    Until the app has answered the handshake, the browser's bytes wait; a 101
    makes the two connections one (each write goes straight to the other
    side), anything else is relayed as the final answer on a connection that
    then closes, so no later request on it can bypass wsse.
    """

    def __init__(
        self, path: bytes, clock: IReactorTime, answer_timeout: float, legs: OpenSet[_AppLeg]
    ) -> None:
        self._path = path
        self._legs = legs
        self._up = _FrameCursor()  # the browser's frames
        self._down = _FrameCursor()  # the app's frames
        self._closing_browser = self._closing_app = False
        self._app_lost = False
        self._clock = clock
        self._answer_timeout = answer_timeout
        self._timer: IDelayedCall | None = None
        self._channel: HTTPChannel | None = None
        self._browser: ITransport | None = None
        self._state = _AWAITING
        self._head = b""
        self._early: list[bytes] = []
        self._status = b""
        self._body_left: int | None = None
        self._started = clock.seconds()
        self._bytes_down = 0

    def attach(self, channel: HTTPChannel, browser: ITransport) -> None:
        """Spliced: the app has until the answer timeout to start answering."""
        self._channel = channel
        self._browser = browser
        self._timer = self._clock.callLater(self._answer_timeout, self._too_slow)

    def connectionMade(self) -> None:
        self._legs.add(self)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def going_away(self) -> None:
        """
        wsse is stopping: each side gets a close frame 1001 once the frame it
        is receiving is through; then wsse closes the browser's connection once
        the browser answers with its own close frame, as a server does, and the
        app closes its connection, as a server does.  A socket still opening
        fails, as it would if the server went away.
        """
        if self._state == _AWAITING:
            if self._browser is not None:
                self._browser.loseConnection()
            self.close()
        elif self._state == _UPGRADED:
            assert self._channel is not None
            self._state = _GOING_AWAY
            self._status += b", closed 1001 (wsse stopping)"
            self._closing_browser = self._closing_app = True
            self._channel.dataReceived = self._to_app_going_away  # type: ignore[method-assign]
            self._send_closes()

    def _to_app(self, data: bytes) -> None:
        assert self.transport is not None
        self._up.feed(data)
        self.transport.write(data)

    def _to_app_going_away(self, data: bytes) -> None:
        if self._closing_app and self.transport is not None:
            through = self._up.feed(data, stop_at_boundary=True)
            self.transport.write(data[:through])
            data = data[through:]
            self._send_closes()
        if not self._closing_app:  # the rest only shows whether the browser answered
            self._up.feed(data)
            self._close_answered_browser()

    def _send_closes(self) -> None:
        if self._closing_browser and self._down.at_boundary:
            self._closing_browser = False
            if self._browser is not None:
                self._browser.write(_CLOSE_GOING_AWAY)
        if self._closing_app and self._up.at_boundary:
            self._closing_app = False
            if self.transport is not None:
                self.transport.write(_masked_close_going_away())
        self._close_answered_browser()

    def _close_answered_browser(self) -> None:
        if self._browser is not None and self._browser_answered:
            self._browser.loseConnection()

    @property
    def _browser_answered(self) -> bool:
        """Going away, both close frames sent and the browser's close read: its connection can go."""
        return (
            self._state == _GOING_AWAY
            and not self._closing_browser
            and not self._closing_app
            and self._up.close_seen
        )

    @property
    def _awaiting_browser_answer(self) -> bool:
        """Going away, the close frame sent to the browser, its answer not read yet."""
        return self._state == _GOING_AWAY and not self._closing_browser and not self._up.close_seen

    def abort(self) -> None:
        for transport in (self._browser, self.transport):
            if transport is not None:
                cast(ITCPTransport, transport).abortConnection()

    def _too_slow(self) -> None:
        self._timer = None
        _log.warn(
            "websocket {path}: no answer from the app within {seconds}s (504)",
            path=redact_uri(self._path),
            seconds=self._answer_timeout,
        )
        self._state = _REFUSED
        self._status = b"504 (no answer from the app)"
        if self._browser is not None:
            self._browser.write(gateway_error_bytes(504))
            self._browser.loseConnection()
        self.close()

    def from_browser(self, data: bytes) -> None:
        if self._state == _AWAITING:
            self._early.append(data)  # a browser sends nothing before the 101
        elif self._state == _UPGRADED:
            self._to_app(data)

    def dataReceived(self, data: bytes) -> None:
        self._bytes_down += len(data)
        browser = self._browser
        if self._state == _UPGRADED:
            self._down.feed(data)
            if browser is not None:
                browser.write(data)
            return
        if self._state == _GOING_AWAY:
            if self._closing_browser and browser is not None:
                browser.write(data[: self._down.feed(data, stop_at_boundary=True)])
                self._send_closes()
            return
        if self._state == _REFUSED:
            self._relay_refusal_body(data)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > _MAX_ANSWER_HEAD:
                self._status = b"502 (no valid answer from the app)"
                self._state = _REFUSED
                if browser is not None:
                    browser.write(gateway_error_bytes(502))
                    browser.loseConnection()
                self.close()
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        head, rest = self._head[: end + 4], self._head[end + 4 :]
        self._head = b""
        self._status = head.split(b"\r\n", 1)[0][:100]
        if self._status.split(b" ")[1:2] == [b"101"]:
            self._upgrade(head, rest)
        else:
            self._refuse(head, rest)

    def _upgrade(self, head: bytes, rest: bytes) -> None:
        self._state = _UPGRADED
        assert self.transport is not None and self._channel is not None
        self._down.feed(rest)
        if self._browser is not None:
            self._browser.write(head + rest)
        for data in self._early:
            self._to_app(data)
        self._early = []
        # From here on each side's bytes go straight to the other.
        self._channel.dataReceived = self._to_app  # type: ignore[method-assign]

    def _refuse(self, head: bytes, rest: bytes) -> None:
        self._state = _REFUSED
        self._early = []
        lines = head[:-4].split(b"\r\n")
        kept = [lines[0]]
        for line in lines[1:]:
            name = line.split(b":", 1)[0].strip().lower()
            if name in (b"connection", b"keep-alive"):
                continue
            if name == b"content-length":
                self._body_left = int(line.split(b":", 1)[1].strip() or b"0")
            kept.append(line)
        kept.append(b"Connection: close")
        if self._browser is not None:
            self._browser.write(b"\r\n".join(kept) + b"\r\n\r\n")
        self._relay_refusal_body(rest)

    def _relay_refusal_body(self, data: bytes) -> None:
        if self._body_left is not None:
            data = data[: self._body_left]
            self._body_left -= len(data)
        if data and self._browser is not None:
            self._browser.write(data)
        if self._body_left == 0:
            if self._browser is not None:
                self._browser.loseConnection()
            self.close()

    def browser_gone(self, reason: Failure) -> None:
        self._browser = None
        self.close()
        if self._app_lost:
            self._legs.discard(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _log.info(
            "websocket {path}: {status}, closed after {seconds:.1f}s, {size} bytes to the browser",
            path=redact_uri(self._path),
            status=self._status.decode("latin-1") or "no answer",
            seconds=self._clock.seconds() - self._started,
            size=self._bytes_down,
        )
        self._app_lost = True
        self._closing_app = False  # nothing more can reach the app
        if self._browser is not None and not self._awaiting_browser_answer:
            self._browser.loseConnection()
            self._browser = None
        if self._browser is None:
            self._legs.discard(self)
