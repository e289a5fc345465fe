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
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IConsumer, IPushProducer, IReactorTime, ITransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from wsse import _logging
from wsse._forwarding import split_mount, websocket_handshake_headers
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
        settings = self._settings
        _mount, upstream_path = split_mount(request)
        headers = websocket_handshake_headers(request, settings.target, settings.host_header)
        handshake = _handshake(
            request.method,
            settings.target.base_path + upstream_path,
            headers.getAllRawHeaders(),
        )
        upstream = _AppLeg(upstream_path, self._clock)
        endpoint = settings.target.endpoint(self._clock, settings.connect_timeout)
        connecting = connectProtocol(endpoint, upstream)

        gone: list[Failure] = []

        def client_gone(reason: Failure) -> None:
            gone.append(reason)
            connecting.cancel()

        request.notifyFinish().addErrback(client_gone)

        def connected(protocol: _AppLeg) -> None:
            if gone and protocol.transport is not None:
                protocol.transport.loseConnection()
            elif not gone:
                _splice(request, protocol, handshake)

        def failed(reason: Failure) -> None:
            if reason.check(defer.CancelledError):
                return
            timed_out = reason.check(ConnectTimeout) is not None
            _log.warn(
                "websocket {path}: cannot connect to {target}: {why}",
                path=upstream_path.decode("latin-1"),
                target=str(settings.target),
                why=reason.getErrorMessage(),
            )
            request.setResponseCode(504 if timed_out else 502)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(b"the app could not be reached\n")
            request.finish()

        connecting.addCallbacks(connected, failed)
        return NOT_DONE_YET


def _splice(request: Request, app: _AppLeg, handshake: bytes) -> None:
    """Take the browser's connection away from twisted.web and join it to the app's."""
    channel = request.channel
    browser = channel.transport
    app_transport = app.transport
    assert browser is not None and app_transport is not None
    # The same takeover twisted.web.websocket performs: the channel keeps its
    # transport, but what arrives on it now goes straight to the app.
    channel.dataReceived = app_transport.write  # type: ignore[method-assign]
    channel.connectionLost = app.browser_gone  # type: ignore[method-assign]
    IConsumer(browser).unregisterProducer()  # the HTTPChannel was its producer
    app.attach(browser)
    IConsumer(browser).registerProducer(IPushProducer(app_transport), True)
    IConsumer(app_transport).registerProducer(IPushProducer(browser), True)
    for transport in (browser, app_transport):
        keep_alive = getattr(transport, "setTcpKeepAlive", None)
        if keep_alive is not None:
            keep_alive(True)
    app_transport.write(handshake)
    IPushProducer(browser).resumeProducing()


class _AppLeg(Protocol):
    """The connection to the app; it learns the browser's transport once spliced."""

    def __init__(self, path: bytes, clock: IReactorTime) -> None:
        self._path = path
        self._clock = clock
        self._browser: ITransport | None = None
        self._status = b""
        self._started = clock.seconds()
        self._bytes_down = 0

    def attach(self, browser: ITransport) -> None:
        self._browser = browser

    def dataReceived(self, data: bytes) -> None:
        if not self._status:
            self._status = data.split(b"\r\n", 1)[0][:100] or b"?"
        self._bytes_down += len(data)
        if self._browser is not None:
            self._browser.write(data)

    def browser_gone(self, reason: Failure) -> None:
        self._browser = None
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
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
