"""
Real WebSocket passthrough: the upgrade request goes to the app, then bytes are spliced.

wsse dials the app and sends it the browser's handshake before answering the
browser, so whatever the app answers (101 with its chosen subprotocol and
extensions, or a 403) is what the browser gets, byte for byte.  After that the
two connections are joined as C{twisted.protocols.portforward} joins them: each
transport is the other's producer, so a slow reader pauses the fast writer.
Frames are never re-framed, which keeps every close code, extension and
fragment intact, and costs a third of what re-framing does; only their
headers are read, so that a stopping wsse can put its close frame (1001)
between two frames, so that frames and messages over --max-message-size close
the socket (1009) before they are relayed, and so that a browser sending
headers it may not send gets 1002 instead of the app getting them.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable, Sequence
from functools import lru_cache
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
from wsse._socketio import send_now

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


def _close_frame(code: int, masked: bool = False) -> bytes:
    """A close frame with C{code}: as a server sends it, or masked with a fresh key, as a client must."""
    payload = code.to_bytes(2, "big")
    if not masked:
        return b"\x88\x02" + payload
    key = os.urandom(4)
    return b"\x88\x82" + key + bytes(b ^ k for b, k in zip(payload, key, strict=False))


_NO_LIMIT = 1 << 64  # a cursor's default: no frame header's length reaches it
_LONGEST_HEADER = 14  # 2, a 64-bit length and a mask key
_RESERVED_OPCODES = frozenset([*range(3, 8), *range(0xB, 0x10)])


@lru_cache(maxsize=8)
def _first_kinds(from_browser: bool, extensions: bool) -> bytes:
    """
    Indexed by a header's first byte: 1 for a final text or binary frame, 2 for
    a ping or a pong, which the fast loop steps over; 0 for the frames that
    take the general way (close, continuation, not final, reserved opcodes,
    and from a browser reserved bits without an extension to use them).
    """
    reserved_bits = 0x70 if from_browser and not extensions else 0
    kinds = bytearray(256)
    for first in range(0x80, 0x100):
        if not first & reserved_bits:
            kinds[first] = {1: 1, 2: 1, 9: 2, 10: 2}.get(first & 0x0F, 0)
    return bytes(kinds)


@lru_cache(maxsize=8)
def _second_sizes(from_browser: bool, limit: int) -> bytes:
    """
    Indexed by a header's second byte: the frame's size on the wire where the
    fast loop may step over it on that byte alone (a 7-bit length: at most
    131), 1 for a 16-bit length, which the loop reads and checks, and 0 for the
    general way (64-bit lengths, lengths over C{limit}, and unmasked frames from
    a browser).
    """
    sizes = bytearray(256)
    for second in range(256):
        masked, length = second & 0x80, second & 0x7F
        if (masked or not from_browser) and length <= min(limit, 126):
            sizes[second] = 1 if length == 126 else 2 + (4 if masked else 0) + length
    return bytes(sizes)


_ALL_SLOW = bytes(256)  # inside a fragmented message, every frame takes the general way


def _skip_repeats(data: bytes, position: int, sizes: bytes, kinds: bytes) -> int:
    """
    Step over the frames from C{position} that repeat its header's first two
    bytes, so are the same size: an app streaming fixed-size messages sends
    thousands to a read, and striding slices check them all at C speed.
    """
    if position + 1 >= len(data):
        return position
    size = sizes[data[position + 1]]
    if size < 2 or not kinds[data[position]]:
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
    Follows the frame boundaries in one direction of a WebSocket, payloads
    unread, and checks each header against what that side may send.

    It runs on every byte the splice relays, so small final frames, which come
    many to a read, are stepped over in bulk when they repeat one header and
    otherwise in one tight loop of a few operations each, their checks folded
    into two lookup tables; only close frames, fragments, 64-bit lengths,
    headers cut by a read and frames that fail a check take the general way.

    @ivar fault: once a frame breaks a rule, the close code that says which
        (1009 over C{limit}, 1002 a header a browser may not send) and why;
        nothing from that frame on is followed.
    """

    def __init__(
        self, limit: int = _NO_LIMIT, from_browser: bool = False, extensions: bool = False
    ) -> None:
        """
        @param limit: the largest frame, and message of several frames, in bytes.
        @param from_browser: the frames come from a browser, so must be masked,
            use no reserved opcode, and keep control frames whole and short.
        @param extensions: the handshake granted extensions, which may use the
            reserved bits.
        """
        self._left = 0  # bytes of the frame under way still to come
        self._head = b""  # the start of a frame header split between reads
        self._unsent = b""  # the same, held back from the receiver (see pass_on)
        self._closing = False  # the frame under way is a close frame
        self.close_seen = False  # a close frame went by, whole
        self._limit = limit
        self._from_browser = from_browser
        self._reserved_bits = 0x70 if from_browser and not extensions else 0
        self._sizes = _second_sizes(from_browser, limit)
        self._kinds = _first_kinds(from_browser, extensions)
        self._in_message = False  # a message's first frames went by, not its last
        self._message = 0  # the bytes of that message so far
        self.fault: tuple[int, str] | None = None

    @property
    def at_boundary(self) -> bool:
        return not self._left and not self._head

    def pass_on(self, data: bytes) -> bytes:
        """
        Follow C{data} as the splice relays it: the bytes that may go on now.
        A header cut by a read waits for the rest of it, so that a frame that
        breaks a rule never reaches the other side even in part.
        """
        if self._unsent:
            data, self._unsent = self._unsent + data, b""
        through = self.feed(data)
        if self._head:
            self._unsent, self._head = self._head, b""
            through -= len(self._unsent)
        return data if through == len(data) else data[:through]

    def feed(self, data: bytes, stop_at_boundary: bool = False) -> int:
        """
        Follow C{data}; with C{stop_at_boundary}, only to the end of the frame
        under way.  The number of bytes of C{data} followed: all of them, up to
        a frame that breaks a rule (see L{fault}).
        """
        if self.fault is not None:
            return 0
        position = 0
        if self._head:
            held = self._head
            taken = self._start(held + data[:_LONGEST_HEADER], 0)
            if not taken:
                self._head = held + data
                return len(data)
            self._head = b""
            if taken < 0:
                return 0
            position = self._finish(data, taken - len(held))
        elif self._left:
            position = self._finish(data, 0)
        elif stop_at_boundary:
            return 0
        if stop_at_boundary or self._left:
            return position
        end = len(data)
        last = end - 1  # a header's second byte is before it
        sizes = self._sizes
        limit = self._limit
        while position < end:
            kinds = _ALL_SLOW if self._in_message else self._kinds
            position = _skip_repeats(data, position, sizes, kinds)
            # Whole final frames with 7- and 16-bit lengths that pass the
            # checks; the last may run past the end of data, and is then the
            # frame under way.
            while position < last:
                size = sizes[data[position + 1]]
                if size > 1 and kinds[data[position]]:
                    position += size
                    continue
                if size != 1 or kinds[data[position]] != 1 or position + 4 > end:
                    break
                length = data[position + 2] << 8 | data[position + 3]
                if length > limit:
                    break
                position += (8 if data[position + 1] & 0x80 else 4) + length
            if position >= end:
                self._left = position - end
                self._closing = False
                return end
            taken = self._start(data, position)
            if not taken:
                self._head = data[position:]
                return end
            if taken < 0:
                return position
            position = self._finish(data, position + taken)
        return end

    def _start(self, data: bytes, position: int) -> int:
        """
        Read and check the header at C{position}: its size, 0 if C{data} ends
        inside it, -1 if the frame breaks a rule (then L{fault} says which).
        """
        size = len(data) - position
        if size < 2:
            return 0
        first, second = data[position], data[position + 1]
        length = second & 0x7F
        extended = 2 if length == 126 else 8 if length == 127 else 0
        header = 2 + extended + (4 if second & 0x80 else 0)
        if size < header:
            return 0
        if extended:
            length = int.from_bytes(data[position + 2 : position + 2 + extended], "big")
        opcode = first & 0x0F
        why = self._not_for_a_browser(first, second, length) if self._from_browser else ""
        if why:
            self.fault = (1002, why)
            return -1
        message = length + (self._message if opcode == 0 else 0)
        if message > self._limit:
            what = (
                f"a message of {message} bytes or more"
                if opcode == 0
                else f"a frame of {length} bytes"
            )
            self.fault = (1009, f"{what}, over {self._limit}")
            return -1
        if opcode < 8:
            self._in_message = not first & 0x80
            self._message = message if self._in_message else 0
        self._left = length
        self._closing = opcode == 8
        return header

    def _not_for_a_browser(self, first: int, second: int, length: int) -> str:
        """Why a browser may not send this frame header (RFC 6455 section 5), or ''."""
        opcode = first & 0x0F
        if opcode in _RESERVED_OPCODES:
            return f"a frame with the reserved opcode {opcode:#x}"
        if first & self._reserved_bits:
            return "a frame with reserved bits set and no extension negotiated"
        if not second & 0x80:
            return "an unmasked frame"
        if opcode >= 8 and (length > 125 or not first & 0x80):
            return "a control frame fragmented or over 125 bytes"
        if opcode == 0 and not self._in_message:
            return "a continuation frame with no message under way"
        if opcode in (1, 2) and self._in_message:
            return "a new message inside a fragmented one"
        return ""

    def _finish(self, data: bytes, position: int) -> int:
        """Follow the payload under way from C{position}: where it or C{data} ends."""
        step = min(self._left, len(data) - position)
        self._left -= step
        if not self._left and self._closing:
            self.close_seen = True
        return position + step


class SocketTally(typing.Protocol):
    """
    Holds the count of the sockets open in the process, native and fallback
    (the fallback's Bridge does), so that one --max-sockets covers them all.
    """

    socket_count: int


def refuse_past_max_sockets(request: Request, path: bytes, settings: Settings) -> bytes:
    """
    A native upgrade past --max-sockets: 503, and the app never sees it.  The
    fallback's sockets close with 1013 instead; a native one has no handshake
    yet to send a close frame over.
    """
    _log.warn(
        "websocket {path} refused: {count} sockets open, as many as --max-sockets allows (503)",
        path=redact_uri(path),
        count=settings.max_sockets,
    )
    request.setResponseCode(503)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"retry-after", b"5")
    return b"too many sockets open, try again later\n"


class WebSocketSplice(Resource):
    """Relays a WebSocket upgrade to the same path and query on the app."""

    isLeaf = True

    def __init__(self, settings: Settings, clock: IReactorTime, tally: SocketTally) -> None:
        """@param tally: where native sockets count against --max-sockets."""
        super().__init__()
        self._settings = settings
        self._clock = clock
        self._tally = tally
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
        if self._tally.socket_count >= settings.max_sockets:
            return refuse_past_max_sockets(request, upstream_path, settings)
        headers = websocket_handshake_headers(request, settings)
        handshake = _handshake(
            request.method,
            settings.target.base_path + upstream_path,
            headers.getAllRawHeaders(),
        )
        app = _AppLeg(upstream_path, self._clock, settings, self._legs, self._tally)
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
            app.ended()
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


def _grants_extensions(head: bytes) -> bool:
    """Whether the app's 101 answer names extensions (Sec-WebSocket-Extensions)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-extensions" and value.strip():
            return True
    return False


# The app's answer to the handshake, read before anything else is relayed.
_MAX_ANSWER_HEAD = 64 * 1024
_AWAITING, _UPGRADED, _REFUSED, _GOING_AWAY = range(4)


class _AppLeg(Protocol):
    """
    The connection to the app.

    Until the app has answered the handshake, the browser's bytes wait; a 101
    makes the two connections one (each write goes straight to the other
    side, as far as its frame headers pass the cursors' checks), anything else
    is relayed as the final answer on a connection that then closes, so no
    later request on it can bypass wsse.  The socket counts against
    --max-sockets from its start until both connections are gone (L{ended}).
    """

    def __init__(
        self,
        path: bytes,
        clock: IReactorTime,
        settings: Settings,
        legs: OpenSet[_AppLeg],
        tally: SocketTally,
    ) -> None:
        self._path = path
        self._legs = legs
        self._tally = tally
        tally.socket_count += 1
        self._counted = True
        self._limit = settings.max_message_size
        self._up = _FrameCursor(self._limit, from_browser=True)  # the browser's frames
        self._down = _FrameCursor(self._limit)  # the app's frames
        self._closing_browser = self._closing_app = False
        self._close_codes = (1001, 1001)  # to the browser, to the app
        self._app_lost = False
        self._clock = clock
        self._answer_timeout = settings.response_timeout
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

    def ended(self) -> None:
        """Both connections are gone (or the app's never came): the socket no longer counts."""
        if self._counted:
            self._counted = False
            self._tally.socket_count -= 1
        self._legs.discard(self)

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
            self._close_both(1001, 1001, "closed 1001 (wsse stopping)")

    def _close_both(self, to_browser: int, to_app: int, status: str) -> None:
        """Each side gets a close frame with its code once the frame it is receiving is through."""
        assert self._channel is not None
        self._state = _GOING_AWAY
        self._status += b", " + status.encode()
        self._close_codes = (to_browser, to_app)
        self._closing_browser = self._closing_app = True
        self._channel.dataReceived = self._to_app_going_away  # type: ignore[method-assign]
        self._send_closes()

    def _broke_a_rule(self, cursor: _FrameCursor) -> None:
        """
        A frame broke a limit or the protocol: it goes no further, its sender
        gets the close code that says why and its connection is closed, and the
        other side gets a close too: the browser the same code, as it would
        from the fallback or --ws-deflate, the app 1001, as when a browser goes.
        """
        assert cursor.fault is not None
        code, why = cursor.fault
        sender = "browser" if cursor is self._up else "app"
        _log.warn(
            "websocket {path}: the {sender} sent {why}; closing with {code}",
            path=redact_uri(self._path),
            sender=sender,
            why=why,
            code=code,
        )
        status = f"closed {code} (the {sender} sent {why})"
        self._close_both(code, 1001 if cursor is self._up else code, status)

    def _to_app(self, data: bytes) -> None:
        assert self.transport is not None
        send_now(self.transport, self._up.pass_on(data))
        if self._up.fault is not None:
            self._broke_a_rule(self._up)

    def _to_app_going_away(self, data: bytes) -> None:
        if self._closing_app and self.transport is not None:
            through = self._up.feed(data, stop_at_boundary=True)
            self.transport.write(data[:through])
            data = data[through:]
            self._send_closes()
        if not self._closing_app:  # the rest only shows whether the browser answered
            self._up.pass_on(data)
            self._close_answered_browser()

    def _send_closes(self) -> None:
        if self._closing_browser and self._down.at_boundary:
            self._closing_browser = False
            if self._browser is not None:
                self._browser.write(_close_frame(self._close_codes[0]))
        if self._closing_app and self._up.at_boundary:
            self._closing_app = False
            if self.transport is not None:
                self.transport.write(_close_frame(self._close_codes[1], masked=True))
                if self._down.fault is not None:
                    self.close()  # no closing handshake with an app that broke a limit
        self._close_answered_browser()

    def _close_answered_browser(self) -> None:
        if self._browser is not None and self._browser_answered:
            self._browser.loseConnection()

    @property
    def _browser_answered(self) -> bool:
        """
        Going away, both close frames sent and the browser's close read, or
        none to wait for from a browser that broke a rule: its connection can go.
        """
        return (
            self._state == _GOING_AWAY
            and not self._closing_browser
            and not self._closing_app
            and (self._up.close_seen or self._up.fault is not None)
        )

    @property
    def _awaiting_browser_answer(self) -> bool:
        """Going away, the close frame sent to the browser, its answer not read yet."""
        return (
            self._state == _GOING_AWAY
            and not self._closing_browser
            and not self._up.close_seen
            and self._up.fault is None
        )

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
            relayed = self._down.pass_on(data)
            if browser is not None:
                send_now(browser, relayed)
            if self._down.fault is not None:
                self._broke_a_rule(self._down)
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
        if _grants_extensions(head):  # which may use the reserved bits
            self._up = _FrameCursor(self._limit, from_browser=True, extensions=True)
        # From here on each side's bytes go straight to the other.
        self._channel.dataReceived = self._to_app  # type: ignore[method-assign]
        relayed = self._down.pass_on(rest)
        if self._browser is not None:
            self._browser.write(head + relayed)
        if self._down.fault is not None:
            self._broke_a_rule(self._down)
        early, self._early = self._early, []
        for data in early:
            self._channel.dataReceived(data)

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
            self.ended()

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
            self.ended()
