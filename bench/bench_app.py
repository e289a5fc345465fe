"""
The app that bench/compare.py puts behind every contender.

It is a bare asyncio protocol, not a framework, so that it stays well ahead of
every proxy in front of it (the table reports its CPU share to show that):
responses are prebuilt bytes with a Content-Length, connections keep alive,
and WebSocket frames are parsed and written by hand.

    GET /json          a small JSON document (about 100 B)
    GET /small.html    a small HTML page (about 1 KiB), the proxies' injection path
    GET /big.html      a 1 MiB HTML page
    WS  /echo          echoes every frame (ping answered with pong)
    WS  /push?size=S&count=N
                       sends N binary messages of S bytes as fast as the
                       connection takes them, then closes (1000)
    WS  /seq?size=S&count=N
                       the same with text messages, each starting with its
                       number (ten digits), so a client can count what was
                       lost, duplicated or reordered
    WS  /hub           echoes every frame, and sends a text message starting
                       with "all:" to every socket on /hub (a broadcast)

    python bench/bench_app.py PORT
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import sys
from urllib.parse import parse_qs, urlsplit

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension is optional in websockets

    def apply_mask(data: bytes, mask: bytes) -> bytes:
        """Unmask by one big integer XOR (pure Python fallback)."""
        n = len(data)
        key = (mask * (n // 4 + 1))[:n]
        return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

SMALL_JSON = (
    b'{"ok": true, "service": "bench", "items": [1, 2, 3, 4, 5], "note": "a small JSON reply"}'
)

SMALL_HTML = (
    b"<!doctype html>\n<html><head><meta charset='utf-8'><title>bench</title>\n"
    b"<script>window.started = Date.now();</script></head>\n<body>\n"
    + b"<p>A small page for the injection path of each proxy.</p>\n" * 16
    + b"</body></html>\n"
)


def _big_html(size: int) -> bytes:
    """A page of exactly C{size} bytes: a head with a script, then paragraphs."""
    head = b"<!doctype html>\n<html><head><meta charset='utf-8'><title>big</title>\n"
    head += b"<script>window.started = Date.now();</script></head>\n<body>\n"
    tail = b"</body></html>\n"
    line = b"<p>" + b"lorem ipsum dolor sit amet " * 3 + b"</p>\n"
    body = line * ((size - len(head) - len(tail)) // len(line) + 1)
    body = body[: size - len(head) - len(tail)]
    return head + body + tail


BIG_HTML = _big_html(1 << 20)


def _response(body: bytes, content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


PAGES = {
    b"/json": _response(SMALL_JSON, b"application/json"),
    b"/small.html": _response(SMALL_HTML, b"text/html; charset=utf-8"),
    b"/big.html": _response(BIG_HTML, b"text/html; charset=utf-8"),
}
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
)


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame (unmasked)."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", first, n) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


class BenchProtocol(asyncio.Protocol):
    """One connection: HTTP/1.1 keep-alive until an upgrade, then WebSocket."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.websocket: str | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.pusher: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        HUB.discard(self)
        self.writable.set()
        if self.pusher is not None:
            self.pusher.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer = self.buffer + data if self.buffer else data
        if self.websocket is not None:
            self.frames()
            return
        while self.websocket is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if not self.request(head):
                return
        if self.buffer:
            self.frames()

    def request(self, head: bytes) -> bool:
        """Answer one request; false when the connection is done with HTTP."""
        assert self.transport is not None
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        target = parts[1] if len(parts) > 1 else b"/"
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        if length:
            # Bodies are not used by any case; drop them (they are small).
            self.buffer = self.buffer[length:]
        if headers.get(b"upgrade", b"").lower() == b"websocket":
            return self.upgrade(target, headers)
        path = target.split(b"?", 1)[0]
        self.transport.write(PAGES.get(path, NOT_FOUND))
        if headers.get(b"connection", b"").lower() == b"close" or parts[-1] == b"HTTP/1.0":
            self.transport.close()
            return False
        return True

    def upgrade(self, target: bytes, headers: dict[bytes, bytes]) -> bool:
        assert self.transport is not None
        key = headers.get(b"sec-websocket-key", b"")
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        url = urlsplit(target.decode("latin-1"))
        self.websocket = url.path
        if url.path in ("/push", "/seq"):
            query = parse_qs(url.query)
            size = int(query.get("size", ["64"])[0])
            count = int(query.get("count", ["1"])[0])
            push = self.push if url.path == "/push" else self.numbered
            self.pusher = asyncio.get_running_loop().create_task(push(size, count))
        elif url.path == "/hub":
            HUB.add(self)
        return False

    async def push(self, size: int, count: int) -> None:
        """Write C{count} messages, in batches of about 256 KiB, as fast as the peer reads."""
        assert self.transport is not None
        one = frame(0x2, b"p" * size)
        per_batch = max(1, (256 * 1024) // len(one))
        batch = one * per_batch
        sent = 0
        while sent < count and not self.transport.is_closing():
            await self.writable.wait()
            n = min(per_batch, count - sent)
            self.transport.write(batch if n == per_batch else one * n)
            sent += n
        if not self.transport.is_closing():
            self.transport.write(frame(0x8, struct.pack("!H", 1000)))

    async def numbered(self, size: int, count: int) -> None:
        """Write C{count} numbered text messages, about 256 KiB at a time, as fast as the peer reads."""
        assert self.transport is not None
        filler = b"n" * max(0, size - 10)
        per_batch = max(1, (256 * 1024) // (size + 10))
        sent = 0
        while sent < count and not self.transport.is_closing():
            await self.writable.wait()
            n = min(per_batch, count - sent)
            self.transport.write(
                b"".join(frame(0x1, b"%010d" % i + filler) for i in range(sent, sent + n))
            )
            sent += n
        if not self.transport.is_closing():
            self.transport.write(frame(0x8, struct.pack("!H", 1000)))

    def frames(self) -> None:
        """Answer every complete client frame in the buffer."""
        assert self.transport is not None
        buffer = self.buffer
        offset = 0
        out = []
        while True:
            if len(buffer) - offset < 2:
                break
            first, second = buffer[offset], buffer[offset + 1]
            n = second & 0x7F
            start = offset + 2
            if n == 126:
                if len(buffer) - start < 2:
                    break
                (n,) = struct.unpack_from("!H", buffer, start)
                start += 2
            elif n == 127:
                if len(buffer) - start < 8:
                    break
                (n,) = struct.unpack_from("!Q", buffer, start)
                start += 8
            masked = second & 0x80
            if masked:
                mask = buffer[start : start + 4]
                start += 4
            end = start + n
            if len(buffer) < end:
                break
            payload = buffer[start:end]
            if masked and mask != b"\0\0\0\0":
                payload = apply_mask(payload, mask)
            offset = end
            opcode = first & 0x0F
            if opcode == 0x8:
                out.append(frame(0x8, payload[:2]))
                self.transport.write(b"".join(out))
                self.transport.close()
                self.buffer = b""
                return
            if opcode == 0x9:
                out.append(frame(0xA, payload))
            elif opcode in (0x0, 0x1, 0x2) and self.websocket in ("/echo", "/hub"):
                out.append(frame(opcode, payload, fin=bool(first & 0x80)))
                if self.websocket == "/hub" and payload.startswith(b"all:"):
                    everyone = frame(0x1, payload)
                    for peer in HUB:
                        if peer is not self and peer.transport is not None:
                            peer.transport.write(everyone)
        self.buffer = buffer[offset:]
        if out:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])


#: Every socket on /hub, for broadcasts.
HUB: set[BenchProtocol] = set()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BenchProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    try:
        asyncio.run(serve(int(sys.argv[1])))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
