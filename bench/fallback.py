"""
A page's side of the fallback, for the benchmarks: wsse's protocol as its shim
speaks it, and ws-sse-proxy 0.1.3's as its shim speaks it, over asyncio
streams with hand-made HTTP/1.1 (keep-alive, chunked bodies), so that the
client costs little.

wsse: one event stream and one POST channel per page, shared by the page's
sockets; frames batched, one POST in flight, an acknowledgement with every
POST and on its own every 64 events, 512 KiB or a second after an event, as the
shim does (wsse/_protocol.py has the formats).  ws-sse-proxy: one event stream
per socket (C{GET /__wss/events?__wss_id=..&__wss_path=..}) and one POST per
message (C{POST /__wss/send?__wss_id=..}); its shim fires each send as its own
fetch, which a browser runs on up to 5 connections beside the stream.

Messages from the bench app's C{/seq} endpoint start with their number, and
so do the messages the cases send; L{Tally} counts what was lost, duplicated
and reordered.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

FRAME_OPEN, FRAME_TEXT, FRAME_CLOSE = 1, 2, 4
BATCH_LIMIT = 256 * 1024
ACK_EVERY = 64
ACK_BYTES = 512 * 1024
ACK_AFTER = 1.0
TIMEOUT = 30.0

OnMessage = Callable[[bytes], None]


class Closed(Exception):
    """The contender closed a stream or socket the case still needed."""


# -- HTTP/1.1 ---------------------------------------------------------------------


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """A response's status and headers (names lower-cased)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def read_body(reader: asyncio.StreamReader, headers: dict[bytes, bytes]) -> bytes:
    """A whole (small) response body."""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if not size:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size + 2))
            parts[-1] = parts[-1][:-2]
    return await reader.readexactly(int(headers.get(b"content-length", b"0")))


class Connection:
    """One keep-alive connection for POSTs, one request at a time."""

    def __init__(self, port: int, headers: bytes) -> None:
        self.port = port
        self.headers = headers  # lines ending in CRLF, sent with every request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: bytes, body: bytes, extra: bytes = b"") -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s%sContent-Length: %d\r\n\r\n%s"
            % (path, self.port, self.headers, extra, len(body), body)
        )
        status, headers = await read_head(self.reader)
        await read_body(self.reader, headers)
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


class EventStream:
    """
    A GET whose body is an event stream, read by a task that hands each
    event's name, id and data to C{on_event}; C{ended} fires when it ends.
    """

    def __init__(self, port: int, target: bytes, headers: bytes) -> None:
        self.port, self.target, self.headers = port, target, headers
        self.on_event: Callable[[bytes, bytes, bytes], None] = lambda name, eid, data: None
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task[None] | None = None
        self.response_headers: dict[bytes, bytes] = {}

    async def open(self) -> None:
        """The response's head; events are read from now on. L{Closed} if it is not a 200."""
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n%s\r\n"
            % (self.target, self.port, self.headers)
        )
        status, headers = await read_head(reader)
        self.response_headers = headers
        if status != 200:
            try:
                body = await asyncio.wait_for(read_body(reader, headers), 5)
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                body = b""
            self.writer.close()
            raise Closed(f"events answered {status} {body[:200].decode(errors='replace')}")
        chunked = headers.get(b"transfer-encoding", b"").lower() == b"chunked"
        self.task = asyncio.get_running_loop().create_task(self._read(reader, chunked))

    async def _read(self, reader: asyncio.StreamReader, chunked: bool) -> None:
        pending = b""
        try:
            while True:
                if chunked:
                    size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if not size:
                        break
                    data = await reader.readexactly(size)
                    await reader.readexactly(2)
                else:
                    data = await reader.read(262144)
                    if not data:
                        break
                pending = pending + data if pending else data
                if b"\n\n" not in pending[-len(data) - 1 :]:
                    continue
                blocks = pending.split(b"\n\n")
                pending = blocks.pop()
                for block in blocks:
                    self._event(block)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if not self.ended.done():
                self.ended.set_result(None)

    def _event(self, block: bytes) -> None:
        """One event's fields, found line by line without splitting the block (messages are big)."""
        name, eid, data = b"message", b"", []
        start, size = 0, len(block)
        while start < size:
            end = block.find(b"\n", start)
            if end < 0:
                end = size
            if block.startswith(b"data:", start):
                data.append(block[start + (6 if block[start + 5 : start + 6] == b" " else 5) : end])
            elif block.startswith(b"event:", start):
                name = block[start + 6 : end].strip()
            elif block.startswith(b"id:", start):
                eid = block[start + 3 : end].strip()
            start = end + 1
        if data or name != b"message":
            self.on_event(name, eid, data[0] if len(data) == 1 else b"\n".join(data))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.task is not None:
            self.task.cancel()


# -- counting -----------------------------------------------------------------------


def numbered(index: int, size: int) -> bytes:
    """A message of C{size} bytes (at least 10) starting with its number."""
    return b"%010d" % index + b"c" * (size - 10)


@dataclass
class Tally:
    """The numbers of the messages received, in order of arrival."""

    seen: array[int] = field(default_factory=lambda: array("q"))

    def add(self, message: bytes) -> None:
        self.seen.append(int(message[:10]))

    def counts(self, expected: int | None = None) -> dict[str, int]:
        """Lost (missing below the highest number, or below C{expected}), duplicated, reordered."""
        distinct = set(self.seen)
        top = max(distinct) + 1 if distinct else 0
        reordered, highest = 0, -1
        for n in self.seen:
            if n < highest and n in distinct:
                reordered += 1
            highest = max(highest, n)
        return {
            "lost": (expected if expected is not None else top) - len(distinct),
            "duplicated": len(self.seen) - len(distinct),
            "reordered": reordered,
        }


# -- wsse ---------------------------------------------------------------------------


class WssePage:
    """One page session of wsse's fallback, with any number of sockets."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.common = b"Origin: http://127.0.0.1:%d\r\nSec-Fetch-Site: same-origin\r\n" % port
        self.stream = EventStream(port, b"/__wsse/events", self.common)
        self.posts = Connection(port, self.common)
        self.session = b""
        self.last_id = self.acked = 0
        self.unacked_bytes = 0
        self.ack_timer: asyncio.TimerHandle | None = None
        self.seq = 0
        self.queue: list[tuple[int, int, bytes]] = []
        self.posting = False
        self.idle = asyncio.Event()  # nothing queued, no POST in flight
        self.idle.set()
        self.handlers: dict[int, OnMessage] = {}
        self.opened: dict[int, asyncio.Future[None]] = {}
        self.closed: dict[int, asyncio.Future[int]] = {}
        self.sockets = 0
        self.failure: BaseException | None = None

    async def open(self) -> None:
        """The event stream, up to its session event."""
        hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_event(name: bytes, eid: bytes, data: bytes) -> None:
            if name == b"session":
                self.session = json.loads(data)["session"].encode()
                self.posts.headers += b"Content-Type: application/x-wsse-frames\r\n"
                self.posts.headers += b"X-WSSE-Session: " + self.session + b"\r\n"
                # The browser's key, which the session's requests must carry.
                key = self.stream.response_headers[b"set-cookie"].split(b";")[0]
                self.posts.headers += b"Cookie: " + key + b"\r\n"
                hello.set_result(None)
                self.stream.on_event = self._event
            self.last_id = int(eid)

        self.stream.on_event = on_event
        await self.stream.open()
        await asyncio.wait_for(hello, TIMEOUT)

    def _event(self, name: bytes, eid: bytes, data: bytes) -> None:
        self.last_id = int(eid)
        self.unacked_bytes += len(data)
        if name == b"text":
            socket, _, message = data.partition(b" ")
            self.handlers[int(socket)](message)
        elif name == b"open":
            self.opened[json.loads(data)["s"]].set_result(None)
        elif name == b"close":
            fields = json.loads(data)
            socket = fields["s"]
            if not self.opened[socket].done():
                self.opened[socket].set_exception(Closed(f"socket closed {fields['code']}"))
            if not self.closed[socket].done():
                self.closed[socket].set_result(fields["code"])
        if self.ack_timer is None:
            self.ack_timer = asyncio.get_running_loop().call_later(ACK_AFTER, self._ack_late)
        self._post()

    def _ack_late(self) -> None:
        self.ack_timer = None
        self._post()

    def _ack_due(self) -> bool:
        """As the shim: every 64 events or 512 KiB, or a second after an event."""
        unacked = self.last_id - self.acked
        return (
            unacked >= ACK_EVERY
            or self.unacked_bytes >= ACK_BYTES
            or (unacked > 0 and self.ack_timer is None)
        )

    def socket(self, url: str, on_message: OnMessage) -> tuple[int, asyncio.Future[None]]:
        """A new socket to C{url} (path and query on the app): its number and its opening."""
        self.sockets += 1
        number = self.sockets
        self.handlers[number] = on_message
        loop = asyncio.get_running_loop()
        self.opened[number] = loop.create_future()
        self.closed[number] = loop.create_future()
        body = json.dumps({"url": url, "protocols": []}).encode()
        self.enqueue(FRAME_OPEN, number, body)
        return number, self.opened[number]

    def enqueue(self, kind: int, socket: int, payload: bytes) -> None:
        self.queue.append((kind, socket, payload))
        self.idle.clear()
        self._post()

    def send(self, socket: int, message: bytes) -> None:
        self.enqueue(FRAME_TEXT, socket, message)

    def close_socket(self, socket: int) -> None:
        self.enqueue(FRAME_CLOSE, socket, struct.pack(">H", 1000))

    def _post(self) -> None:
        if self.posting or not self.session:
            return
        if not self.queue and not self._ack_due():
            return
        self.posting = True
        asyncio.get_running_loop().create_task(self._post_batch())

    async def _post_batch(self) -> None:
        frames, size = [], 8
        for frame in self.queue:
            if frames and size + 9 + len(frame[2]) > BATCH_LIMIT:
                break
            frames.append(frame)
            size += 9 + len(frame[2])
        body = [struct.pack(">Q", self.seq)]
        for kind, socket, payload in frames:
            body.append(struct.pack(">BII", kind, socket, len(payload)))
            body.append(payload)
        ack = self.last_id
        self.unacked_bytes = 0
        try:
            status = await self.posts.post(
                b"/__wsse/send", b"".join(body), b"X-WSSE-Ack: %d\r\n" % ack
            )
            if status != 204:
                raise Closed(f"send answered {status}")
        except BaseException as e:  # noqa: BLE001 - kept for the case to raise
            self.failure = e
            self.idle.set()
            return
        self.acked = max(self.acked, ack)
        del self.queue[: len(frames)]
        self.seq += len(frames)
        self.posting = False
        self._post()
        if not self.posting:
            self.idle.set()

    def close(self) -> None:
        if self.ack_timer is not None:
            self.ack_timer.cancel()
        self.stream.close()
        self.posts.close()


# -- ws-sse-proxy -------------------------------------------------------------------


class WsspSocket:
    """One fallback socket of ws-sse-proxy: its own event stream, POSTs by message."""

    def __init__(self, port: int, url: str, on_message: OnMessage) -> None:
        self.port = port
        self.id = str(uuid.uuid4())
        path, _, query = url.partition("?")
        target = f"/__wss/events?{query + '&' if query else ''}__wss_id={self.id}&__wss_path={quote(path, safe='')}"
        self.stream = EventStream(port, target.encode(), b"")
        self.send_path = f"/__wss/send?__wss_id={self.id}".encode()
        self.closed: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_event(name: bytes, eid: bytes, data: bytes) -> None:
            if name == b"message":
                on_message(data)
            elif name in (b"close", b"error") and not self.closed.done():
                self.closed.set_result(1006 if name == b"error" else 1000)

        self.stream.on_event = on_event
        # A socket that the app closes cleanly just ends its stream.
        self.stream.ended.add_done_callback(
            lambda _: self.closed.done() or self.closed.set_result(1000)
        )

    async def open(self) -> None:
        """ws-sse-proxy dials the app before it answers the stream's request."""
        await self.stream.open()

    async def send(self, connection: Connection, message: bytes) -> None:
        status = await connection.post(self.send_path, message, b"Content-Type: text/plain\r\n")
        if status != 200:
            raise Closed(f"send answered {status}")

    async def close(self, connection: Connection) -> None:
        await connection.post(f"/__wss/close?__wss_id={self.id}".encode(), b"")
        self.stream.close()


# -- the cases ----------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Client:
    """One contender's fallback, behind a common face for the cases."""

    def __init__(self, port: int, protocol: str) -> None:
        self.port = port
        self.protocol = protocol  # "wsse" or "wssp"
        self.page: WssePage | None = None
        self.posts: list[Connection] = []
        self.streams: list[EventStream] = []

    async def __aenter__(self) -> Client:
        if self.protocol == "wsse":
            self.page = WssePage(self.port)
            await self.page.open()
        else:
            self.posts = [Connection(self.port, b"") for _ in range(5)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.page is not None:
            self.page.close()
        for connection in self.posts:
            connection.close()
        for stream in self.streams:
            stream.close()

    async def socket(self, url: str, on_message: OnMessage) -> Socket:
        if self.page is not None:
            number, opened = self.page.socket(url, on_message)
            await asyncio.wait_for(opened, TIMEOUT)
            return Socket(self, number, None)
        wssp = WsspSocket(self.port, url, on_message)
        self.streams.append(wssp.stream)
        await asyncio.wait_for(wssp.open(), TIMEOUT)
        return Socket(self, 0, wssp)


@dataclass
class Socket:
    client: Client
    number: int
    wssp: WsspSocket | None

    def send_all(self, messages: list[bytes]) -> asyncio.Future[None] | None:
        """Send as a page sends a burst: wsse batches; ws-sse-proxy fires one fetch each."""
        if self.wssp is None:
            assert self.client.page is not None
            for message in messages:
                self.client.page.send(self.number, message)
            return None
        posts, wssp = self.client.posts, self.wssp

        async def lane(connection: Connection, mine: list[bytes]) -> None:
            for message in mine:
                await wssp.send(connection, message)

        return asyncio.ensure_future(
            asyncio.gather(*(lane(c, messages[i :: len(posts)]) for i, c in enumerate(posts)))
        )

    async def send_one(self, message: bytes) -> None:
        """One message, waiting for the contender to take it (its POST answered)."""
        if self.wssp is None:
            page = self.client.page
            assert page is not None
            page.send(self.number, message)
            await asyncio.wait_for(page.idle.wait(), TIMEOUT)
            if page.failure is not None:
                raise page.failure
            return
        await self.wssp.send(self.client.posts[0], message)

    async def close(self) -> None:
        if self.wssp is None:
            page = self.client.page
            assert page is not None
            page.close_socket(self.number)
            await asyncio.wait_for(page.closed[self.number], TIMEOUT)
        else:
            await self.wssp.close(self.client.posts[0])


async def round_trips(port: int, protocol: str, size: int, seconds: float, least: int) -> dict:
    """One socket to /echo: send a numbered message, wait for its echo, again."""
    tally = Tally()
    echoed: asyncio.Queue[bytes] = asyncio.Queue()
    async with Client(port, protocol) as client:
        socket = await client.socket("/echo", echoed.put_nowait)
        times: list[float] = []
        deadline = time.perf_counter() + seconds
        while len(times) < least or time.perf_counter() < deadline:
            message = numbered(len(times), size)
            started = time.perf_counter()
            socket.send_all([message])
            echo = await asyncio.wait_for(echoed.get(), TIMEOUT)
            times.append(time.perf_counter() - started)
            tally.add(echo)
        await socket.close()
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99), **tally.counts()}


async def push(port: int, protocol: str, size: int, seconds: float) -> dict:
    """The app pushes numbered messages as fast as they are taken, for C{seconds}."""
    tally = Tally()
    first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    def received(message: bytes) -> None:
        tally.add(message)
        if not first.done():
            first.set_result(time.perf_counter())

    async with Client(port, protocol) as client:
        socket = await client.socket(f"/seq?size={size}&count=1000000000", received)
        started = await asyncio.wait_for(first, TIMEOUT)
        await asyncio.sleep(seconds)
        count, elapsed = len(tally.seen) - 1, time.perf_counter() - started
        await socket.close()
    return {"msgs": count / elapsed, "MBps": count * size / elapsed / 1e6, **tally.counts()}


async def burst(port: int, protocol: str, count: int, one_at_a_time: bool) -> dict:
    """
    C{count} numbered 64-byte messages to /echo, sent as a page sends a
    burst (or each after the last was taken), timed until the last echo.
    """
    tally = Tally()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def received(message: bytes) -> None:
        tally.add(message)
        if len(tally.seen) == count and not done.done():
            done.set_result(None)

    messages = [numbered(i, 64) for i in range(count)]
    async with Client(port, protocol) as client:
        socket = await client.socket("/echo", received)
        started = time.perf_counter()
        if one_at_a_time:
            for message in messages:
                await socket.send_one(message)
        else:
            sending = socket.send_all(messages)
        await asyncio.wait_for(done, TIMEOUT + count / 100)
        elapsed = time.perf_counter() - started
        if not one_at_a_time and sending is not None:
            await sending
        await socket.close()
    return {"msgs": count / elapsed, **tally.counts(count)}


def _settles(future: asyncio.Future[None]) -> OnMessage:
    """A handler that settles C{future} at the first message."""

    def received(message: bytes) -> None:
        if not future.done():
            future.set_result(None)

    return received


async def connects(port: int, protocol: str, seconds: float, least: int) -> dict:
    """A new page opens a socket and waits for the app's first message (its stream included)."""
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < least or time.perf_counter() < deadline:
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        async with Client(port, protocol) as client:
            await client.socket("/seq?size=64&count=1", _settles(arrived))
            await asyncio.wait_for(arrived, TIMEOUT)
            times.append(time.perf_counter() - started)
    return {"p50": percentile(times, 0.5), "p99": percentile(times, 0.99)}
