"""
A real app for wsse to front, in the test's own reactor: HTTP and WebSocket.

HTTP requests reach L{App}, which records what it saw and answers through a
handler the test registers for the path (by default, a JSON echo of the
request).  WebSocket upgrades under C{/ws} reach an autobahn server whose
behaviour the client drives with text commands.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, reactor, task
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

Handler = Callable[[Request], Any]


@dataclass
class Seen:
    method: bytes
    uri: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def echo(request: Request) -> bytes:
    """Answer with what the app received, as JSON."""
    body = request.content.read()
    request.setHeader(b"content-type", b"application/json")
    return json.dumps(
        {
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "headers": [
                [n.decode("latin-1"), v.decode("latin-1")]
                for n, vs in request.requestHeaders.getAllRawHeaders()
                for v in vs
            ],
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
    ).encode()


class App(Resource):
    """The HTTP side: every path is a leaf; handlers are registered per path."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.routes: dict[bytes, Handler] = {}
        self.seen: list[Seen] = []
        self.arrived: defer.Deferred[Seen] | None = None

    def route(self, path: bytes, handler: Handler) -> None:
        self.routes[path] = handler

    def render(self, request: Request) -> Any:
        body = request.content.read()
        request.content.seek(0)
        seen = Seen(
            request.method,
            request.uri,
            [(n, v) for n, vs in request.requestHeaders.getAllRawHeaders() for v in vs],
            body,
        )
        self.seen.append(seen)
        result = self.routes.get(request.path, echo)(request)
        if self.arrived is not None:
            arrived, self.arrived = self.arrived, None
            arrived.callback(seen)
        return result

    def next_request(self) -> defer.Deferred[Seen]:
        self.arrived = defer.Deferred()
        return self.arrived


class WSApp(WebSocketServerProtocol):  # type: ignore[misc]
    """
    Echoes every message (C{/ws/deny} and C{/ws/missing} refuse the
    handshake, C{/ws/slow} takes 6 s to accept it); a text message starting with C{!} is a command:
    C{!close CODE REASON}, C{!fragments N TEXT} (one message in N frames),
    C{!ping PAYLOAD} (answers C{pong PAYLOAD} when the pong arrives),
    C{!flood BYTES} (sends that many bytes in 64 KiB binary messages),
    C{!mixed} (text, binary, a message in frames, a ping, 100 KB of text and
    text again, in one write), C{!invalid SIZE} (a text message of SIZE
    bytes that is not UTF-8), C{!burst N} (N numbered text messages).
    """

    factory: WSAppFactory

    def onConnect(self, request: Any) -> Any:
        self.factory.handshakes.append(request)
        self.factory.uris.append(self.http_request_uri)
        if request.path.endswith("/deny"):
            raise ConnectionDeny(403, "denied by app")
        if request.path.endswith("/missing"):
            raise ConnectionDeny(404, "no such socket")
        if request.path.endswith("/slow"):
            # Longer than autobahn's default opening-handshake timeout (5 s).
            # Cancelled if the connection goes first; autobahn then fails the handshake.
            self.slow = task.deferLater(reactor, 6.0, lambda: None)
            return self.slow
        if "v2" in request.protocols:
            return ("v2", {"Set-Cookie": ["ws1=a; Path=/", "ws2=b; Path=/"]})
        return None

    def onOpen(self) -> None:
        self.factory.open.append(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary or not payload.startswith(b"!"):
            self.sendMessage(payload, isBinary)
            return
        command, _, rest = payload[1:].decode().partition(" ")
        if command == "close":
            code, _, reason = rest.partition(" ")
            self.sendCloseFrame(code=int(code), reasonUtf8=reason.encode())
        elif command == "fragments":
            count, _, text = rest.partition(" ")
            data = text.encode()
            size = max(1, len(data) // int(count))
            self.beginMessage(isBinary=False)
            for start in range(0, len(data), size):
                self.sendMessageFrame(data[start : start + size])
            self.endMessage()
        elif command == "ping":
            self.sendPing(rest.encode())
        elif command == "mixed":
            self.sendMessage(b"first")
            self.sendMessage(b"\x00\xff", isBinary=True)
            self.beginMessage(isBinary=False)
            for part in (b"in ", b"three ", b"frames"):
                self.sendMessageFrame(part)
            self.endMessage()
            self.sendPing(b"mixed")
            self.sendMessage(b"b" * 100_000)
            self.sendMessage(b"last")
        elif command == "invalid":
            self.sendMessage(b"x" * (int(rest) - 2) + b"\xc3(")
        elif command == "burst":
            # Frames made here and written at once, so that many arrive in one read.
            numbers = [b"%d" % n for n in range(int(rest))]
            self.sendData(b"".join(b"\x81" + bytes([len(n)]) + n for n in numbers))
        elif command == "flood":
            remaining = int(rest)
            chunk = b"\xa5" * 65536
            while remaining > 0:
                self.sendMessage(chunk[: min(remaining, len(chunk))], isBinary=True)
                remaining -= len(chunk)

    def onPong(self, payload: bytes) -> None:
        self.sendMessage(b"pong " + payload)

    slow: defer.Deferred[None] | None = None

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if self.slow is not None:
            self.slow.cancel()
        self.factory.closes.append((wasClean, code, reason))
        if self in self.factory.open:
            self.factory.open.remove(self)
        waiters, self.factory.close_waiters = self.factory.close_waiters, []
        for waiter in waiters:
            waiter.callback((wasClean, code, reason))


class WSAppFactory(WebSocketServerFactory):  # type: ignore[misc]
    protocol = WSApp

    def __init__(self) -> None:
        super().__init__()
        # Echo a client's close code and reason, as most servers do.
        self.setProtocolOptions(
            maxFramePayloadSize=0,
            maxMessagePayloadSize=0,
            echoCloseCodeReason=True,
            openHandshakeTimeout=30,
        )
        self.handshakes: list[Any] = []
        self.uris: list[str] = []
        self.open: list[WSApp] = []
        self.closes: list[tuple[bool, int | None, str | None]] = []
        self.close_waiters: list[defer.Deferred[tuple[bool, int | None, str | None]]] = []

    def next_close(self) -> defer.Deferred[tuple[bool, int | None, str | None]]:
        d: defer.Deferred[tuple[bool, int | None, str | None]] = defer.Deferred()
        self.close_waiters.append(d)
        return d


class Root(Resource):
    """C{/ws...} goes to the WebSocket app, everything else to L{App}."""

    def __init__(self, app: App, ws: WSAppFactory) -> None:
        super().__init__()
        self._app = app
        self._ws = WebSocketResource(ws)

    def getChildWithDefault(self, path: bytes, request: Request) -> Any:
        if path == b"ws":
            return self._ws
        return self._app


class RawApp(Protocol):
    """
    An app that reads its socket itself, so a test sees request bytes the
    moment they arrive (twisted.web would hold a body until it is complete).
    The test writes its answer; C{answer_at_once} answers as soon as it
    connects, and C{paused} reads nothing at all.
    """

    def __init__(self, factory: RawAppFactory) -> None:
        self.factory = factory
        self.received = 0
        self.data = b""
        self.answered = 0  # for tests that answer requests one by one

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        if self.factory.paused:
            self.transport.pauseProducing()
        if self.factory.answer_at_once is not None:
            self.transport.write(self.factory.answer_at_once)
        self.factory.connected.put(self)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        if self.factory.keep_data:
            self.data += data
        self.factory.arrivals.put(self.received)

    def connectionLost(self, reason: object = None) -> None:
        self.factory.lost.append(self)


class RawAppFactory(ServerFactory):
    def __init__(
        self, answer_at_once: bytes | None = None, paused: bool = False, keep_data: bool = True
    ) -> None:
        self.answer_at_once = answer_at_once
        self.paused = paused
        self.keep_data = keep_data
        self.connections: list[RawApp] = []
        self.lost: list[RawApp] = []
        self.connected: defer.DeferredQueue[RawApp] = defer.DeferredQueue()
        self.arrivals: defer.DeferredQueue[int] = defer.DeferredQueue()

    def buildProtocol(self, addr: object) -> RawApp:
        return RawApp(self)


def app_site() -> tuple[App, WSAppFactory, Site]:
    """The HTTP app and the WebSocket app (under C{/ws}) in one Site."""
    app, ws = App(), WSAppFactory()
    site = Site(Root(app, ws))
    # The app sees bodies as sent: twisted.web would answer a malformed form itself.
    site.requestFactory = functools.partial(Request, parsePOSTFormSubmission=False)
    return app, ws, site
