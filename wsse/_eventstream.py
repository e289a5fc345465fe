"""
How events reach a page: an event stream, or, where a gateway holds streams
back, a long-poll.

Long-lived responses need what a plain response does not: headers and a
preamble written at once (so the browser and every intermediary see the
stream start), heartbeats that keep idle-cutting gateways and HTTP/2's idle
timer quiet, events written together when several come in one turn, and the
browser's reading pace reported back so the bridge can hold the app back.

A long-poll (L{EventPoll}) is the same events in a response that ends as soon
as it has some, or after a while with none: a gateway that buffers a response
until it ends (nginx with gzip on, or with X-Accel-Buffering ignored) still
passes each one on.  Both offer C{send}, C{close} and C{open}, so the bridge
treats them alike.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.web.server import Request
from zope.interface import implementer

from wsse import _protocol
from wsse._socketio import flush_now, send_now


@implementer(IPushProducer)
class EventStream:
    """
    @param pace: called with C{True} when the browser stops taking bytes as fast
        as they come, and with C{False} when it catches up.
    @param lost: called once when the browser's side of the stream is gone.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        heartbeat: float,
        pace: Callable[[bool], None],
        lost: Callable[[EventStream], None],
    ) -> None:
        self._request = request
        self._clock = clock
        self._pace = pace
        self._lost = lost
        self._pending: list[bytes] = []
        self._flush_call: IDelayedCall | None = None
        self._flush_soon = False  # the flush call is for this turn, not a later one
        self.open = True
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache, no-transform")
        request.setHeader(b"x-accel-buffering", b"no")
        no_delay = getattr(request.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            no_delay(True)
        request.registerProducer(self, True)
        request.notifyFinish().addBoth(self._finished)
        request.write(_protocol.PREAMBLE)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = clock
        self._heartbeat.start(heartbeat, now=False)

    def send(self, data: bytes, urgent: bool = True) -> None:
        """
        Queue an encoded event; everything queued in one turn goes out in one
        write.  One not C{urgent} waits for the next event, or L{_protocol.SENT_DELAY}.
        """
        if not self.open:
            return
        self._pending.append(data)
        if urgent and not self._flush_soon:
            if self._flush_call is not None:
                self._flush_call.cancel()
            self._flush_call = self._clock.callLater(0, self._flush)
            self._flush_soon = True
        elif self._flush_call is None:
            self._flush_call = self._clock.callLater(_protocol.SENT_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        self._flush_soon = False
        if self.open and self._pending:
            data, self._pending = b"".join(self._pending), []
            request, transport = self._request, self._request.transport
            if request.chunked and request._encoder is None and transport is not None:
                # An HTTP/1.1 stream (its headers long sent) that no wrapper
                # encodes (gzip): the chunk goes straight to the socket when
                # nothing waits there, where Request.write would queue it for
                # the reactor and flush_now send it, each telling the poller
                # (4% of a round trip).
                request.sentLength += len(data)
                send_now(transport, b"%x\r\n%b\r\n" % (len(data), data))
            else:
                request.write(data)
                flush_now(request.transport)

    def _beat(self) -> None:
        if self.open and not self._pending:
            self._request.write(_protocol.HEARTBEAT)

    def close(self) -> None:
        """End the stream from this side (a newer stream replaced it, or the page ended)."""
        if not self.open:
            return
        self._flush()
        self._stop()
        self._request.unregisterProducer()
        self._request.finish()

    def _stop(self) -> None:
        self.open = False
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._flush_call is not None:
            self._flush_call.cancel()
            self._flush_call = None
        self._flush_soon = False
        self._pending = []

    def _finished(self, result: object) -> None:
        # Lost with its connection, or answered by something other than
        # close() (twisted.web's 500 for a render that failed): over either way.
        if self.open:
            self._stop()
            self._lost(self)

    # IPushProducer: twisted.web calls these as the browser's connection fills and drains.

    def pauseProducing(self) -> None:
        self._pace(True)

    def resumeProducing(self) -> None:
        self._pace(False)

    def stopProducing(self) -> None:
        pass  # the connection is going away; notifyFinish reports it


# A poll is answered once this much is waiting: a page far behind catches up
# over several polls rather than in one answer as big as the replay buffer.
_POLL_ANSWER_LIMIT = 1 << 20


class EventPoll:
    """
    One long-poll: the events the page has not seen, or the first ones to come
    within C{hold} seconds, or nothing by then.

    @param lost: called once when the poll is over, answered or not.
    """

    def __init__(
        self,
        request: Request,
        clock: IReactorTime,
        hold: float,
        lost: Callable[[EventPoll], None],
    ) -> None:
        self._request = request
        self._clock = clock
        self._lost = lost
        self._pending: list[bytes] = []
        self._size = 0
        self._answer_call: IDelayedCall | None = None
        self._answer_soon = False
        self.open = True
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache, no-transform")
        request.notifyFinish().addBoth(self._finished)
        self._hold = clock.callLater(hold, self.close)

    def send(self, data: bytes, urgent: bool = True) -> None:
        """
        Queue an event: the poll is answered with everything queued in this
        turn.  One not C{urgent} waits for the next event, or L{_protocol.SENT_DELAY}.
        """
        if not self.open:
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= _POLL_ANSWER_LIMIT:
            self.close()
        elif urgent and not self._answer_soon:
            if self._answer_call is not None:
                self._answer_call.cancel()
            self._answer_call = self._clock.callLater(0, self.close)
            self._answer_soon = True
        elif self._answer_call is None:
            self._answer_call = self._clock.callLater(_protocol.SENT_DELAY, self.close)

    def close(self) -> None:
        """Answer the poll with what is queued (perhaps nothing)."""
        if not self.open:
            return
        self._stop()
        if self._pending:
            self._request.write(b"".join(self._pending))
            self._pending = []
        self._request.finish()

    def _stop(self) -> None:
        self.open = False
        for call in (self._hold, self._answer_call):
            if call is not None and call.active():
                call.cancel()

    def _finished(self, result: object) -> None:
        self._stop()
        self._lost(self)
