"""
Events on their way to a page, with a fake clock: what goes out in which
write, and when (L{wsse._eventstream}).
"""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.web.test.requesthelper import DummyRequest

from wsse import _protocol
from wsse._eventstream import EventPoll, EventStream


def stream() -> tuple[EventStream, DummyRequest, task.Clock]:
    request, clock = DummyRequest([b""]), task.Clock()
    request.transport = StringTransport()
    request.chunked = False  # (a real request's is set as its headers go: see the last test)
    # (DummyRequest would pull from the producer until it unregisters: this one pushes.)
    request.registerProducer = lambda producer, streaming: None
    events = EventStream(
        request, clock, heartbeat=15, pace=lambda slow: None, lost=lambda stream: None
    )
    request.written.clear()  # the preamble
    return events, request, clock


def poll() -> tuple[EventPoll, DummyRequest, task.Clock]:
    request, clock = DummyRequest([b""]), task.Clock()
    return EventPoll(request, clock, hold=15, lost=lambda poll: None), request, clock


def test_events_of_one_turn_go_out_in_one_write() -> None:
    events, request, clock = stream()
    events.send(b"one")
    events.send(b"two")
    assert request.written == []
    clock.advance(0)
    assert request.written == [b"onetwo"]


def test_a_sent_event_goes_out_with_the_next_event() -> None:
    events, request, clock = stream()
    events.send(b"sent", urgent=False)
    clock.advance(0)
    assert request.written == []
    clock.advance(_protocol.SENT_DELAY / 2)
    events.send(b"echo")
    clock.advance(0)
    assert request.written == [b"sentecho"]
    # and nothing is written again when the delay is up
    clock.advance(_protocol.SENT_DELAY)
    assert request.written == [b"sentecho"]


def test_a_sent_event_alone_goes_out_after_the_delay() -> None:
    events, request, clock = stream()
    events.send(b"sent", urgent=False)
    clock.advance(_protocol.SENT_DELAY * 0.99)
    assert request.written == []
    clock.advance(_protocol.SENT_DELAY * 0.02)
    assert request.written == [b"sent"]


def test_a_poll_holding_only_a_sent_event_waits_for_the_next_or_the_delay() -> None:
    answered, request, clock = poll()
    answered.send(b"sent", urgent=False)
    clock.advance(0)
    assert not request.finished
    answered.send(b"echo")
    clock.advance(0)
    assert request.finished and request.written == [b"sentecho"]

    alone, request, clock = poll()
    alone.send(b"sent", urgent=False)
    clock.advance(_protocol.SENT_DELAY * 0.99)
    assert not request.finished
    clock.advance(_protocol.SENT_DELAY * 0.02)
    assert request.finished and request.written == [b"sent"]


class _Streams(Resource):
    isLeaf = True

    def __init__(self, clock: task.Clock) -> None:
        super().__init__()
        self.clock = clock
        self.streams: list[tuple[EventStream, Request]] = []
        self.lost: list[object] = []

    def render_GET(self, request: Request) -> int:
        events = EventStream(
            request, self.clock, heartbeat=15, pace=lambda slow: None, lost=self.lost.append
        )
        self.streams.append((events, request))
        return NOT_DONE_YET


def _dechunk(body: bytes) -> list[bytes]:
    chunks = []
    while True:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        chunks.append(body[:length])
        assert body[length : length + 2] == b"\r\n"
        body = body[length + 2 :]
        if length == 0:
            assert body == b""
            return chunks


def _served_stream() -> tuple[EventStream, Request, StringTransport, task.Clock, list[object]]:
    """An event stream on a real twisted.web request, over a fake connection."""
    clock = task.Clock()
    resource = _Streams(clock)
    protocol = Site(resource, timeout=None).buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(b"GET /events HTTP/1.1\r\nHost: example\r\n\r\n")
    [(events, request)] = resource.streams
    return events, request, transport, clock, resource.lost


def test_an_http_1_1_stream_is_sent_in_chunks_and_counted_for_the_access_log() -> None:
    """Events skip Request.write on HTTP/1.1: the framing and the count are wsse's own."""
    events, request, transport, clock, _ = _served_stream()

    def not_this_way(data: bytes) -> None:
        raise AssertionError("an event went through Request.write")

    request.write = not_this_way  # type: ignore[method-assign]
    events.send(b"one")
    events.send(b"two")
    clock.advance(0)
    events.send(b"three")
    clock.advance(0)
    del request.write  # close() ends the response through it
    events.close()
    head, _, body = transport.value().partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert _dechunk(body) == [_protocol.PREAMBLE, b"onetwo", b"three", b""]
    assert request.sentLength == len(_protocol.PREAMBLE) + len(b"onetwothree")


def test_a_stream_a_wrapper_encodes_goes_through_request_write() -> None:
    """(Twisted's gzip wrapper encodes in Request.write: skipping it would send plain chunks.)"""
    events, request, transport, clock, _ = _served_stream()
    written: list[bytes] = []
    request._encoder = object()  # type: ignore[assignment]
    request.write = written.append  # type: ignore[method-assign]
    events.send(b"one")
    clock.advance(0)
    assert written == [b"one"]


def test_a_stream_answered_otherwise_than_by_close_stops_and_reports_itself_lost() -> None:
    """As twisted.web answers a render that failed after the stream began (500)."""
    events, request, transport, clock, lost = _served_stream()
    request.finish()
    assert lost == [events]
    sent = transport.value()
    events.send(b"late")
    clock.advance(20)  # past a heartbeat
    assert transport.value() == sent
