"""
Events on their way to a page, with a fake clock: what goes out in which
write, and when (L{wsse._eventstream}).
"""

from __future__ import annotations

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.web.test.requesthelper import DummyRequest

from wsse import _protocol
from wsse._eventstream import EventPoll, EventStream


def stream() -> tuple[EventStream, DummyRequest, task.Clock]:
    request, clock = DummyRequest([b""]), task.Clock()
    request.transport = StringTransport()
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
