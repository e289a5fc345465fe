"""
A page's side of the fallback protocol, in Python: what the shim does, so the
bridge can be tested over real sockets without a browser.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from wsse import _protocol


@dataclass
class Event:
    id: int
    name: str
    data: Any


class SSEParser:
    """Splits an event stream into events, and counts its comments."""

    def __init__(self) -> None:
        self._buffer = b""
        self.size = 0
        self.comments = 0
        self.start = b""  # the first bytes, for looking at the preamble

    def feed(self, data: bytes) -> list[Event]:
        if len(self.start) < 4096:
            self.start += data[: 4096 - len(self.start)]
        self.size += len(data)
        self._buffer += data
        events = []
        while b"\n\n" in self._buffer:
            block, self._buffer = self._buffer.split(b"\n\n", 1)
            fields: dict[bytes, bytes] = {}
            for line in block.split(b"\n"):
                if line.startswith(b":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(b": ")
                if name == b"data" and name in fields:
                    value = fields[name] + b"\n" + value  # data lines join with line feeds
                fields[name] = value
            if b"event" in fields:
                name = fields[b"event"].decode()
                events.append(Event(int(fields[b"id"]), name, event_data(name, fields[b"data"])))
        return events


def event_data(name: str, data: bytes) -> Any:
    """An event's data as the shim reads it: messages as {"s": socket, "d": str}, the rest JSON."""
    if name in ("text", "binary"):
        socket, _, message = data.partition(b" ")
        return {"s": int(socket), "d": message.decode("utf-8")}
    return json.loads(data)


class _Stream(Protocol):
    """An HTTP/1.0 event-stream request: its body is whatever follows the headers."""

    def __init__(self, request: bytes, deliver: Callable[[list[Event]], None]) -> None:
        self._request = request
        self._deliver = deliver
        self._head = b""
        self.headers: dict[bytes, bytes] = {}
        self.raw_headers: dict[bytes, list[bytes]] = {}  # every value of every header
        self.code = 0
        self.parser = SSEParser()
        self.status: defer.Deferred[int] = defer.Deferred()
        self.reached: defer.Deferred[None] = defer.Deferred()
        self.done: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)
        self.reached.callback(None)

    def dataReceived(self, data: bytes) -> None:
        if not self.status.called:
            self._head += data
            if b"\r\n\r\n" not in self._head:
                return
            head, data = self._head.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                self.headers[name.strip().lower()] = value.strip()
                self.raw_headers.setdefault(name.strip().lower(), []).append(value.strip())
            self.code = int(lines[0].split()[1])
            self.status.callback(self.code)
        if data:
            self._deliver(self.parser.feed(data))

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.status.called:
            self.status.callback(0)
        self.done.callback(None)


class PageClient:
    """
    One page session: an event stream (or, with C{polling}, one long-poll
    after another) and a POST channel, like the shim's.
    """

    def __init__(self, port: int, mount: str = "/", polling: bool = False) -> None:
        self.port = port
        self.polling = polling
        self.polls = 0  # polls answered
        self.poll_sizes: list[int] = []  # each answer's body, in bytes
        self._stopped = False
        self.path = mount.encode() + b"__wsse/"
        self.base = f"http://127.0.0.1:{port}{mount}__wsse/"
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.http = HTTPClient(Agent(reactor, pool=self.pool))
        self.session: str | None = None
        self.last_id = 0
        self.seq = 0
        self.events: defer.DeferredQueue[Event] = defer.DeferredQueue()
        self.applied: list[int] = []  # the "sent" events: frames the server applied
        self.order: list[Event] = []  # every event, in the order it came
        self.stream: _Stream | None = None
        # What Chromium sends with the shim's requests from a page of this origin.
        self.headers = {
            b"Origin": [f"http://127.0.0.1:{port}".encode()],
            b"Sec-Fetch-Site": [b"same-origin"],
            b"User-Agent": [b"PageClient/1.0"],
        }

    async def connect(self) -> int:
        """Open (or resume) the event stream, or start polling; the first status."""
        self._stopped = False
        status = await self._request()
        if status == 200 and self.polling:
            self._poll_again()
        if status == 200 and self.session is None:
            hello = await self.events.get()
            assert hello.name == "session", hello
            self.session = hello.data["session"]
        return status

    def credentials(self) -> dict[bytes, list[bytes]]:
        """What the session's own requests carry: the session id and the browser's key."""
        found = {name: values for name, values in self.headers.items() if name == b"Cookie"}
        if self.session is not None:
            found[_protocol.SESSION_HEADER] = [self.session.encode()]
        return found

    async def _request(self) -> int:
        headers = dict(self.headers)
        if self.session is not None:
            headers[_protocol.SESSION_HEADER] = [self.session.encode()]
            headers[_protocol.LAST_EVENT_ID_HEADER] = [b"%d" % self.last_id]
        endpoint = _protocol.POLL_ENDPOINT if self.polling else _protocol.EVENTS_ENDPOINT
        lines = [b"GET " + self.path + endpoint + b" HTTP/1.0", b"Host: 127.0.0.1:%d" % self.port]
        lines += [name + b": " + value for name, values in headers.items() for value in values]
        self.stream = _Stream(b"\r\n".join(lines) + b"\r\n\r\n", self._received)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), self.stream)
        status = await self.stream.status
        for cookie in self.stream.raw_headers.get(b"set-cookie", []):
            if cookie.startswith(_protocol.KEY_COOKIE_PREFIX) and b"Max-Age=0" not in cookie:
                self.headers[b"Cookie"] = [cookie.split(b";")[0]]  # kept, as a browser keeps it
        return status

    def _poll_again(self) -> None:
        """When this poll is answered, the next one goes, as the shim's do."""
        assert self.stream is not None

        stream = self.stream

        def answered(_: object) -> None:
            self.polls += 1
            self.poll_sizes.append(stream.parser.size)
            if not self._stopped:
                defer.ensureDeferred(self._request()).addCallback(
                    lambda status: self._poll_again() if status == 200 else None
                )

        self.stream.done.addCallback(answered)

    def _received(self, events: list[Event]) -> None:
        for event in events:
            if event.id <= self.last_id:
                continue  # a replayed event the page already has
            self.last_id = event.id
            self.order.append(event)
            if event.name == "sent":
                self.applied.append(event.data["seq"])
            else:
                self.events.put(event)

    async def drop_stream(self) -> None:
        """Cut the event stream (or stop polling), as a gateway would, and wait until it is gone."""
        assert self.stream is not None
        self._stopped = True
        await self.stream.reached
        self.stream.transport.abortConnection()
        await self.stream.done

    async def post(self, frames: list[tuple[int, int, bytes]], seq: int | None = None) -> int:
        """Send frames (kind, socket, payload); the status. C{seq} overrides the numbering."""
        first = self.seq if seq is None else seq
        if seq is None:
            self.seq += len(frames)
        headers = dict(self.headers)
        headers[b"Content-Type"] = [_protocol.FRAMES_CONTENT_TYPE]
        if self.session is not None:
            headers[_protocol.SESSION_HEADER] = [self.session.encode()]
        headers[_protocol.ACK_HEADER] = [b"%d" % self.last_id]
        response = await self.http.post(
            self.base + "send", data=_protocol.encode_frames(first, frames), headers=headers
        )
        await response.content()
        return int(response.code)

    async def send(self, socket: int, payload: bytes, binary: bool = False) -> None:
        """One message, in parts and POSTs no bigger than the shim's."""
        part, final = (
            (_protocol.FRAME_BINARY_PART, _protocol.FRAME_BINARY)
            if binary
            else (_protocol.FRAME_TEXT_PART, _protocol.FRAME_TEXT)
        )
        limit = _protocol.PART_LIMIT
        pieces = [payload[i : i + limit] for i in range(0, len(payload), limit)] or [b""]
        for index, piece in enumerate(pieces):
            kind = final if index == len(pieces) - 1 else part
            assert await self.post([(kind, socket, piece)]) == 204

    async def open(self, socket: int, url: str, protocols: list[str] | None = None) -> Event:
        body = json.dumps({"url": url, "protocols": protocols or []}).encode()
        assert await self.post([(_protocol.FRAME_OPEN, socket, body)]) == 204
        return await self.next_for(socket)

    async def next_for(self, socket: int) -> Event:
        event = await self.events.get()
        assert event.data["s"] == socket, event
        return event

    async def close(self) -> None:
        self._stopped = True
        if self.stream is not None and not self.stream.done.called:
            await self.drop_stream()
        await self.pool.closeCachedConnections()
