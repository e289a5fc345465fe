"""
HTTP passthrough: a leaf Resource that relays each request to the app.

Built on an L{IAgent} (by default wsse's own, L{wsse._appclient.AppClient},
with a keep-alive pool) rather than C{twisted.web.proxy}: HTTP/1.1 and
keep-alive upstream, raw headers with repeats,
the path byte for byte, and producers registered on both legs so that neither a
slow browser nor a slow app makes wsse buffer a body.  HTML documents flow
through a rewriting consumer that inserts the shim as the bytes pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeout
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    FileBodyProducer,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IAgent, IBodyProducer, IResponse
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from wsse import _encoding, _injection, _logging
from wsse._forwarding import (
    copy_response_headers,
    gateway_error,
    split_mount,
    upstream_request_headers,
)
from wsse._redact import redact_uri
from wsse._request_body import RequestBody
from wsse._settings import Settings

_log = Logger(observer=_logging.observer)

_NO_BODY = (204, 304)


class Passthrough(Resource):
    """Relays whatever reaches it to the same path and query on the app."""

    isLeaf = True
    streams_request_body = True  # see wsse._request_body

    def __init__(self, settings: Settings, agent: IAgent, clock: IReactorTime) -> None:
        super().__init__()
        self._settings = settings
        self._agent = agent
        self._clock = clock
        # Buffered request bodies are read out on the injected clock too.
        self._cooperator = Cooperator(scheduler=lambda work: clock.callLater(0, work))

    def render(self, request: Request) -> int:
        _Exchange(self._settings, self._agent, self._clock, self._cooperator, request).start()
        return NOT_DONE_YET


@implementer(IBodyProducer)
class _TimedBody:
    """
    The request body, telling the exchange when the app holds it back (its
    socket full), when it takes it again, and when all of it is sent: the
    response timer runs while the app keeps the body waiting, and from the
    body's end.
    """

    def __init__(
        self,
        body: IBodyProducer,
        held: Callable[[], None],
        taken: Callable[[], None],
        sent: Callable[[], None],
    ) -> None:
        self._body = body
        self._held, self._taken, self._sent = held, taken, sent
        self.length = body.length

    def startProducing(self, consumer: IConsumer) -> defer.Deferred[None]:
        d = self._body.startProducing(consumer)
        d.addCallback(lambda _: self._sent())
        return d

    def pauseProducing(self) -> None:
        self._body.pauseProducing()
        self._held()

    def resumeProducing(self) -> None:
        self._body.resumeProducing()
        self._taken()

    def stopProducing(self) -> None:
        self._body.stopProducing()


def _has_body(request: Request) -> bool:
    headers = request.requestHeaders
    return headers.hasHeader(b"transfer-encoding") or headers.hasHeader(b"content-length")


class _Exchange:
    """One request's trip to the app and back."""

    def __init__(
        self,
        settings: Settings,
        agent: IAgent,
        clock: IReactorTime,
        cooperator: Cooperator,
        request: Request,
    ) -> None:
        self._settings = settings
        self._agent = agent
        self._clock = clock
        self._cooperator = cooperator
        self._request = request
        self._mount_path, self._upstream_path = split_mount(request)
        self._pending: defer.Deferred[IResponse] | None = None
        self._timer: IDelayedCall | None = None
        self._timed_out = False
        self._body: _BodyRelay | None = None
        self._client_gone = False
        self._uploading = False

    def start(self) -> None:
        request = self._request
        settings = self._settings
        headers = upstream_request_headers(request, settings)
        accept_encoding = headers.getRawHeaders(b"accept-encoding")
        if accept_encoding and _injection.may_rewrite_request(headers):
            headers.setRawHeaders(
                b"accept-encoding", _encoding.restrict_accept_encoding(accept_encoding)
            )
        body: IBodyProducer | None = None
        if _has_body(request):
            content = request.content
            if not isinstance(content, RequestBody):
                content = FileBodyProducer(content, self._cooperator)
            body = _TimedBody(content, self._body_held, self._body_taken, self._body_sent)
            self._uploading = True
        request.notifyFinish().addErrback(self._on_client_gone)
        self._pending = self._agent.request(
            request.method, settings.target.url(self._upstream_path), headers, body
        )
        if body is None:
            self._start_timer()
        self._pending.addCallbacks(self._on_response, self._on_failure)

    def _start_timer(self) -> None:
        if self._pending is not None and not self._client_gone and self._timer is None:
            self._timer = self._clock.callLater(self._settings.response_timeout, self._time_out)

    def _body_held(self) -> None:
        if self._uploading:
            self._start_timer()

    def _body_taken(self) -> None:
        if self._uploading:  # (once it is all sent, the timer is the response's)
            self._stop_timer()

    def _body_sent(self) -> None:
        self._uploading = False
        self._stop_timer()
        self._start_timer()

    def _time_out(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._pending is not None:
            self._pending.cancel()

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _on_client_gone(self, reason: Failure) -> None:
        self._client_gone = True
        self._stop_timer()
        if self._body is not None:
            self._body.abandon()
        elif self._pending is not None:
            self._pending.cancel()

    def _on_response(self, response: IResponse) -> None:
        self._pending = None
        self._stop_timer()
        request = self._request
        if self._client_gone:
            response.deliverBody(_Discard())
            return
        settings = self._settings
        copy_response_headers(response.headers, request, settings.target, self._mount_path)
        request.setResponseCode(response.code, response.phrase)
        rewriter = _injection.plan_page_rewrite(
            request.requestHeaders,
            request.method,
            response.code,
            request.responseHeaders,
            settings,
            request.path,
            self._mount_path,
        )
        if not request.responseHeaders.hasHeader(b"content-type"):
            request.defaultContentType = None
        if (
            rewriter is None
            and response.length is not UNKNOWN_LENGTH
            and response.code not in _NO_BODY
            and request.method != b"HEAD"
        ):
            request.setHeader(b"content-length", b"%d" % (response.length,))
        self._body = _BodyRelay(request, rewriter)
        response.deliverBody(self._body)

    def _on_failure(self, reason: Failure) -> None:
        self._pending = None
        self._stop_timer()
        if self._client_gone:
            return
        request = self._request
        code = 504 if self._timed_out or reason.check(ConnectTimeout) else 502
        fields: dict[str, Any] = {
            "method": request.method.decode("latin-1"),
            "path": redact_uri(self._upstream_path),
            "code": code,
        }
        if self._timed_out and self._uploading:
            _log.warn(
                "{method} {path}: the app took none of the request body for {seconds}s ({code})",
                seconds=self._settings.response_timeout,
                **fields,
            )
        elif self._timed_out:
            _log.warn(
                "{method} {path}: no answer from the app within {seconds}s ({code})",
                seconds=self._settings.response_timeout,
                **fields,
            )
        elif reason.check(ConnectError, DNSLookupError, ConnectingCancelledError):
            _log.warn(
                "{method} {path}: cannot connect to {target}: {why} ({code})",
                target=str(self._settings.target),
                why=reason.getErrorMessage(),
                **fields,
            )
        elif reason.check(RequestTransmissionFailed, ResponseFailed):
            _log.warn(
                "{method} {path}: the app closed the connection without an answer ({code})",
                **fields,
            )
        else:
            _log.failure("{method} {path}: no response from the app ({code})", reason, **fields)
        gateway_error(request, code)


class _BodyRelay(Protocol):
    """
    The body-rewriting consumer: streams the app's body into the request.

    The app's socket is registered as the request's producer, so a browser that
    reads slowly pauses reading from the app instead of growing a buffer here.
    """

    def __init__(self, request: Request, rewriter: _injection.PageRewriter | None) -> None:
        self._request = request
        self._rewriter = rewriter
        self._abandoned = False

    def connectionMade(self) -> None:
        self._request.registerProducer(self._app(), True)

    def _app(self) -> IPushProducer:
        """The app's connection, as the producer of this body."""
        return IPushProducer(self.transport)

    def dataReceived(self, data: bytes) -> None:
        if self._abandoned:
            return
        if self._rewriter is not None:
            try:
                data = self._rewriter.feed(data)
            except _encoding.DecodingError as e:
                self._cut("the app's body is not valid in its Content-Encoding: {why}", str(e))
                self._app().stopProducing()
                return
        if data:
            self._request.write(data)

    def abandon(self) -> None:
        """The browser left: stop reading, which closes the app's connection."""
        self._abandoned = True
        if self.transport is not None:
            self._app().stopProducing()

    def _cut(self, message: str, why: str) -> None:
        # The status line has gone out, so the only honest signal left is to
        # cut the connection: the browser sees a truncated body, not a short one.
        _log.warn(message, why=why)
        self._abandoned = True
        self._request.unregisterProducer()
        self._request.loseConnection()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._abandoned:
            return
        request = self._request
        if not reason.check(ResponseDone, PotentialDataLoss):
            self._cut("the app's response was cut short: {why}", reason.getErrorMessage())
            return
        if self._rewriter is not None:
            try:
                tail = self._rewriter.finish()
            except _encoding.DecodingError as e:
                self._cut("the app's compressed body is incomplete: {why}", str(e))
                return
            if tail:
                request.write(tail)
        request.unregisterProducer()
        request.finish()


class _Discard(Protocol):
    def connectionMade(self) -> None:
        IPushProducer(self.transport).stopProducing()
