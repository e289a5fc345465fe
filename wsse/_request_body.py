"""
Request bodies that stream to the app while they arrive.

twisted.web hands a resource its request only once the whole body is in (in
memory, or in a temporary file past 100 KB), so an upload reaches the app only
after the browser has sent all of it.  L{StreamingRequest}, the request class
of wsse's own Site, starts a large or chunked request as soon as its headers
are in, when the resource that will serve it says it can take the body as a
stream (C{streams_request_body}); the body then flows through a
L{RequestBody}, which pauses reading from the browser while the app is slow.
A resource with a C{max_request_body} gets a longer body refused (413) before
any of it is read.

twisted.web has no public hook for this: the request line is read from the
channel's private attributes, which the tests pin down.  Embedded in another
Site, wsse gets twisted.web's buffered bodies and works the same, later.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from twisted.internet import defer
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.web.http import HTTPChannel, parse_qs
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from twisted.web.server import Request
from zope.interface import implementer

# Bodies up to this size are read whole first, as twisted.web always does: the
# app then gets an exact Content-Length and the common case stays simple.
STREAM_ABOVE = 64 * 1024
# Bytes held while the app is not yet connected or slow, before reading from
# the browser pauses.
_HIGH_WATER = 256 * 1024


@implementer(IBodyProducer)
class RequestBody:
    """The body of a request still arriving, as a body producer for the client to the app."""

    def __init__(self, request: StreamingRequest, length: int | None) -> None:
        self._request = request
        self.length = UNKNOWN_LENGTH if length is None else length
        self._consumer: IConsumer | None = None
        self._held: list[bytes] = []
        self._held_size = 0
        self._ended = False
        self._finished: defer.Deferred[None] | None = None
        self._paused_reading = False

    @property
    def complete(self) -> bool:
        return self._ended

    # The browser's side: twisted.web's channel calls write() as bytes arrive.

    def write(self, data: bytes) -> None:
        if self._consumer is not None and not self._held:
            self._consumer.write(data)
            return
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size > _HIGH_WATER:
            self._pause_reading()

    def end(self) -> None:
        self._ended = True
        if self._consumer is not None and not self._held and self._finished is not None:
            finished, self._finished = self._finished, None
            finished.callback(None)

    def _pause_reading(self) -> None:
        # Unconditionally: twisted.web's channel may have resumed reading since.
        request = self._request
        if request.transport is not None:
            self._paused_reading = True
            IPushProducer(request.transport).pauseProducing()
            # The browser is idle because wsse holds it back, not idle.
            request.channel.setTimeout(None)

    def _resume_reading(self) -> None:
        request = self._request
        if self._paused_reading and request.transport is not None:
            self._paused_reading = False
            IPushProducer(request.transport).resumeProducing()
            if not self._ended:
                request.channel.setTimeout(request.idle_timeout)

    def close(self) -> None:
        """twisted.web closes a request's content when the response is done."""
        self.stopProducing()

    # The app's side: the HTTP client drives this as an IBodyProducer.

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        self._consumer = consumer
        self._finished = defer.Deferred(lambda _: self.stopProducing())
        finished = self._finished
        self.resumeProducing()
        return finished

    def resumeProducing(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        held, self._held, self._held_size = self._held, [], 0
        for data in held:
            consumer.write(data)
        self._resume_reading()
        if self._ended:
            self.end()

    def pauseProducing(self) -> None:
        self._pause_reading()

    def stopProducing(self) -> None:
        self._consumer = None
        self._finished = None
        self._held, self._held_size = [], 0


class StreamingRequest(Request):
    """A Request that starts before its body is in, for resources that can stream it."""

    content: RequestBody

    _streaming = False
    #: The channel's idle timeout, which a streamed body's pauses suspend.
    idle_timeout: float | None = None

    def __init__(self, channel: HTTPChannel, *args: object, **kwargs: object) -> None:
        # A proxy hands bodies on as they come: parsing forms into args would
        # cost time on every POST (the fallback's included) and memory on uploads.
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(channel, *args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        if length is not None and length <= STREAM_ABOVE or not self._start_early(length):
            super().gotLength(length)

    def _start_early(self, length: int | None) -> bool:
        channel = self.channel
        if not isinstance(channel, HTTPChannel):
            return False  # HTTP/2 streams keep twisted.web's buffered bodies
        method, uri, version = channel._command, channel._path, channel._version
        path, _, query = uri.partition(b"?")
        self.method, self.uri, self.clientproto, self.path = method, uri, version, path
        self.args = parse_qs(query, 1) if query else {}
        self.prepath = []
        self.postpath = [unquote_to_bytes(segment) for segment in path[1:].split(b"/")]
        self.site = channel.site  # type: ignore[attr-defined]  # set by Site.buildProtocol
        resource = self.site.getResourceFor(self)
        limit = getattr(resource, "max_request_body", None)
        if limit is not None and length is not None and length > limit:
            # (A chunked body is read as usual, and refused by the resource.)
            self._refuse_body(length)
            return True
        if not getattr(resource, "streams_request_body", False):
            return False
        self._streaming = True
        self.content = RequestBody(self, length)
        # The channel's idle timeout goes on while the body comes (a browser
        # that stops sending is cut as an idle one is, not held for ever),
        # except while wsse holds it back; the channel stops it once the body
        # is in, and restores it after the response.
        self.idle_timeout = channel.timeOut
        self.process()
        return True

    def _refuse_body(self, length: int | None) -> None:
        """413 as soon as the headers are in: the body is never read."""
        self._streaming = True
        self.content = RequestBody(self, length)
        self.setResponseCode(413)
        self.setHeader(b"content-type", b"text/plain; charset=utf-8")
        self.write(b"request body too large\n")
        self.finish()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._streaming:
            # The channel has just saved its timeout, stopped if wsse was
            # holding the browser back: the one to restore is the channel's own.
            self.channel._savedTimeOut = self.idle_timeout
            self.content.end()
        else:
            super().requestReceived(command, path, version)

    def finish(self) -> None:
        if self._streaming and not self.content.complete:
            # Answered before the body was all in (the app refused early): the
            # rest of the body must not be read as the next request.
            self.channel.persistent = False
        super().finish()
