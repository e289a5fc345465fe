"""
Real WebSocket passthrough: the upgrade request goes to the app, then bytes are spliced.

wsse dials the app and sends it the browser's handshake before answering the
browser, so whatever the app answers (101 with its chosen subprotocol and
extensions, or a 403) is what the browser gets, byte for byte.  After that the
two connections are joined as C{twisted.protocols.portforward} joins them: each
transport is the other's producer, so a slow reader pauses the fast writer.
Frames are never parsed, which keeps every close code, extension and
fragment intact, and costs a third of what re-framing does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from twisted.internet import defer
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wsse import _logging
from wsse._forwarding import (
    gateway_error,
    gateway_error_bytes,
    split_mount,
    websocket_handshake_headers,
)
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


class WebSocketSplice(Resource):
    """Relays a WebSocket upgrade to the same path and query on the app."""

    isLeaf = True

    def __init__(self, settings: Settings, clock: IReactorTime) -> None:
        super().__init__()
        self._settings = settings
        self._clock = clock

    def render(self, request: Request) -> int:
        return self.relay(request, split_mount(request)[1])

    def relay(self, request: Request, upstream_path: bytes) -> int:
        """Relay the upgrade to C{upstream_path} (path and query, below the target's base path)."""
        settings = self._settings
        headers = websocket_handshake_headers(request, settings)
        handshake = _handshake(
            request.method,
            settings.target.base_path + upstream_path,
            headers.getAllRawHeaders(),
        )
        app = _AppLeg(upstream_path, self._clock, settings.response_timeout)
        endpoint = settings.target.endpoint(self._clock, settings.connect_timeout)
        connecting = connectProtocol(endpoint, app)
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
                path=upstream_path.decode("latin-1"),
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
_AWAITING, _UPGRADED, _REFUSED = range(3)


class _AppLeg(Protocol):
    """
    The connection to the app.

    Until the app has answered the handshake, the browser's bytes wait; a 101
    makes the two connections one (each write goes straight to the other
    side), anything else is relayed as the final answer on a connection that
    then closes, so no later request on it can bypass wsse.
    """

    def __init__(self, path: bytes, clock: IReactorTime, answer_timeout: float) -> None:
        self._path = path
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

    def close(self) -> None:
        if self.transport is not None:
            self.transport.loseConnection()

    def _too_slow(self) -> None:
        self._timer = None
        _log.warn(
            "websocket {path}: no answer from the app within {seconds}s (504)",
            path=self._path.decode("latin-1"),
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
        elif self._state == _UPGRADED and self.transport is not None:
            self.transport.write(data)

    def dataReceived(self, data: bytes) -> None:
        self._bytes_down += len(data)
        browser = self._browser
        if self._state == _UPGRADED:
            if browser is not None:
                browser.write(data)
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
            self._upgrade(head + rest)
        else:
            self._refuse(head, rest)

    def _upgrade(self, answer: bytes) -> None:
        self._state = _UPGRADED
        assert self.transport is not None and self._channel is not None
        if self._browser is not None:
            self._browser.write(answer)
        for data in self._early:
            self.transport.write(data)
        self._early = []
        # From here on each side's bytes go straight to the other.
        self._channel.dataReceived = self.transport.write  # type: ignore[method-assign]

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

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        _log.info(
            "websocket {path}: {status}, closed after {seconds:.1f}s, {size} bytes to the browser",
            path=self._path.decode("latin-1"),
            status=self._status.decode("latin-1") or "no answer",
            seconds=self._clock.seconds() - self._started,
            size=self._bytes_down,
        )
        if self._browser is not None:
            self._browser.loseConnection()
            self._browser = None
