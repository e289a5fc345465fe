"""
Clients for the tests, in the test's reactor: raw HTTP bytes and autobahn WebSocket.

The raw client sends exactly the bytes a test writes and returns exactly the
bytes that came back, so tests can look at header repeats, hop-by-hop headers
and chunk boundaries that a convenient client would hide.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure


@dataclass
class RawResponse:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes
    chunked: bool = False

    def header(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


def parse_response(raw: bytes, head_only: bool = False) -> RawResponse:
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    _version, status, *reason = lines[0].split(b" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers)
    body = rest
    if chunked and not head_only:
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            body += rest[:size]
            rest = rest[size + 2 :]
    return RawResponse(int(status), reason[0] if reason else b"", headers, body, raw, chunked)


class _Collect(Protocol):
    def __init__(self, request: bytes) -> None:
        self._request = request
        self.data: list[bytes] = []
        self.first_data: defer.Deferred[bytes] = defer.Deferred()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)
        if not self.first_data.called:
            self.first_data.callback(data)

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(b"".join(self.data))


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes to 127.0.0.1:port, return everything until the server closes."""
    protocol = _Collect(request)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)
    return await protocol.done


async def raw_connection(port: int, request: bytes) -> _Collect:
    """Like L{raw_exchange}, but hand back the live protocol for streaming checks."""
    protocol = _Collect(request)
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)
    return protocol


async def http(
    port: int,
    method: bytes = b"GET",
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes = b"",
    version: bytes = b"HTTP/1.1",
) -> RawResponse:
    """One request with Connection: close; the parsed response."""
    lines = [method + b" " + target + b" " + version, b"Host: proxy.example", b"Connection: close"]
    lines += [n + b": " + v for n, v in headers or []]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    raw = await raw_exchange(port, b"\r\n".join(lines) + b"\r\n\r\n" + body)
    return parse_response(raw, head_only=method == b"HEAD")


class WSClient(WebSocketClientProtocol):  # type: ignore[misc]
    """An autobahn client that queues what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: defer.DeferredQueue[tuple[bytes, bool]] = defer.DeferredQueue()
        self.opened: defer.Deferred[WSClient] = defer.Deferred()
        self.closed: defer.Deferred[tuple[bool, int | None, str | None]] = defer.Deferred()
        self.response: Any = None

    def onConnect(self, response: Any) -> None:
        self.response = response

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(Failure(ConnectionError(reason)))
        self.closed.callback((wasClean, code, reason))


def carried(url: str, mount: str = "/") -> str:
    """The path the shim dials for a native socket to C{url} (path and query)."""
    encoded = base64.urlsafe_b64encode(url.encode()).rstrip(b"=").decode()
    return f"{mount}__wsse/ws/{encoded}"


async def ws_connect(
    port: int,
    path: str = "/ws/echo",
    protocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    deflate: bool = False,
    useragent: str | None = None,
) -> WSClient:
    """Open a WebSocket to 127.0.0.1:port and wait for it to open (or fail)."""
    factory = WebSocketClientFactory(
        f"ws://127.0.0.1:{port}{path}",
        protocols=protocols,
        headers=headers,
        origin=origin,
        useragent=useragent,
    )
    factory.setProtocolOptions(
        maxFramePayloadSize=0, maxMessagePayloadSize=0, openHandshakeTimeout=30
    )
    if deflate:
        from autobahn.websocket.compress import (
            PerMessageDeflateOffer,
            PerMessageDeflateResponse,
            PerMessageDeflateResponseAccept,
        )

        def accept(response: Any) -> Any:
            if isinstance(response, PerMessageDeflateResponse):
                return PerMessageDeflateResponseAccept(response)
            return None

        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=accept,
        )
    client = WSClient()
    client.factory = factory
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    await client.opened
    return client


def ws_frame(first: int, payload: bytes, masked: bool = True, length: int | None = None) -> bytes:
    """A frame as written on the wire: C{first} byte, then C{length} (the payload's by default)."""
    size = len(payload) if length is None else length
    bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first, bit | size])
    elif size < 65536:
        head = bytes([first, bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = b"\x37\xfa\x21\x3d"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
