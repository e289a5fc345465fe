"""
The fallback's server side: page sessions bridged to real WebSockets on the app.

For a page whose WebSocket cannot get through, the shim opens one event stream
(C{GET <base>events}) and sends frames by POST (C{POST <base>send}); for each
of the page's sockets the bridge holds a real WebSocket to the app and turns
its messages and close into events.  Every event is logged under an id until
the page acknowledges it, so a stream that a gateway cuts resumes, with
C{Last-Event-ID}, without a gap; the app's sockets wait for it through a grace
period.  Each side's pace holds the other back: a browser that reads slowly,
or a page that does not acknowledge, pauses reading from the app's sockets,
and an app that reads slowly delays the answer to the page's POST, of which
the page keeps only one in flight.
"""

from __future__ import annotations

import codecs
import hmac
from functools import partial

from twisted.internet import defer
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from wsse import _crosssite, _logging, _protocol, _socketpaths
from wsse._eventstream import EventPoll, EventStream
from wsse._forwarding import upstream_request_headers
from wsse._redact import redact_uri
from wsse._sessions import FrameOutOfOrder, PageState, PageStore, new_secret
from wsse._settings import Settings
from wsse._upstream import Handshake, UpstreamConnector, UpstreamSocket, close_like

_log = Logger(observer=_logging.observer)

# Unacknowledged event bytes past which the app's sockets are paused, and below
# which they resume.
_PAUSE_ABOVE = 4 * 1024 * 1024
_RESUME_BELOW = 1024 * 1024

# What a browser's own WebSocket handshake would carry from the page's request.
_HANDSHAKE_HEADERS = frozenset(
    {
        b"host",
        b"cookie",
        b"authorization",
        b"origin",
        b"user-agent",
        b"accept-language",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)

_UTF8 = codecs.getincrementaldecoder("utf-8")

# Past --replay-buffer, events other than messages (opens, closes, "sent")
# still go out, up to this much more.
_CONTROL_HEADROOM = 1024 * 1024

_MESSAGE_KINDS = {
    _protocol.FRAME_TEXT: (False, True),  # (binary, final)
    _protocol.FRAME_BINARY: (True, True),
    _protocol.FRAME_TEXT_PART: (False, False),
    _protocol.FRAME_BINARY_PART: (True, False),
}


def _mount_of(request: Request) -> bytes:
    """The raw path wsse is mounted at, for a request to C{<mount>__wsse/<endpoint>}."""
    path = request.path
    # The last two segments are the endpoint directory and the endpoint.
    cut = path.rindex(b"/", 0, path.rindex(b"/"))
    return path[: cut + 1]


def _key_cookie(session_id: str) -> bytes:
    return _protocol.KEY_COOKIE_PREFIX + session_id.encode("ascii")


def _endpoint(request: Request) -> str:
    """The fallback endpoint a request is for, for log lines."""
    return request.path.rsplit(b"/", 1)[-1].decode("latin-1")


def _plain(request: Request, code: int, message: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return message


def _not_head(request: Request, allowed: bytes) -> bytes:
    """
    405 to HEAD, which twisted.web answers with render_GET, and again when
    refused by an UnsupportedMethod that names GET.
    """
    request.setHeader(b"allow", allowed)
    return _plain(request, 405, b"")


class Bridge(Resource):
    """C{<mount>/__wsse/}: the event stream and the POST channel of every page session."""

    def __init__(
        self,
        settings: Settings,
        clock: IReactorTime,
        connector: UpstreamConnector,
        store: PageStore,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.clock = clock
        self.connector = connector
        self.store = store
        self._pages: dict[str, Page] = {}
        #: Sockets open in the process, against --max-sockets: the fallback's, and the
        #: native ones, which the splice and --ws-deflate count here too (SocketTally).
        self.socket_count = 0
        self.putChild(_protocol.EVENTS_ENDPOINT, _Events(self, poll=False))
        self.putChild(_protocol.POLL_ENDPOINT, _Events(self, poll=True))
        self.putChild(_protocol.SEND_ENDPOINT, _Send(self))

    def refuse_cross_site(self, request: Request) -> bytes | None:
        """A 403 for a request from another site's page (see L{wsse._crosssite})."""
        why = _crosssite.refusal(request, self.settings.allowed_origins)
        if why is None:
            return None
        _log.warn(
            "fallback {endpoint} refused: cross-site request ({why})",
            endpoint=_endpoint(request),
            why=why,
        )
        return _plain(request, 403, b"cross-site requests are not allowed\n")

    def page_for(self, request: Request) -> Page | bytes:
        """The page session a request names, or the refusal to answer it with."""
        endpoint = _endpoint(request)
        session = request.getHeader(_protocol.SESSION_HEADER)
        state = self.store.get(session.decode("ascii", "replace")) if session else None
        page = self._pages.get(state.id) if state is not None else None
        if page is None:
            _log.warn("fallback {endpoint} refused: no such session", endpoint=endpoint)
            return _plain(request, _protocol.SESSION_GONE, b"no such session\n")
        key = request.getCookie(_key_cookie(page.state.id)) or b""
        if not hmac.compare_digest(key, page.state.key.encode("ascii")):
            # The id leaked to another browser, or this one lost its cookie.
            _log.warn(
                "fallback {endpoint} refused: the request lacks the session's key",
                endpoint=endpoint,
            )
            return _plain(request, 403, b"this session belongs to another browser\n")
        return page

    def new_page(self, request: Request) -> Page:
        """A new session, its key set as a cookie; the keys of sessions gone are deleted."""
        page = Page(self, self.store.create(new_secret()))
        self._pages[page.state.id] = page
        cookie = partial(request.addCookie, httpOnly=True, sameSite="strict")
        cookie(
            _key_cookie(page.state.id),
            page.state.key.encode("ascii"),
            secure=request.isSecure() or None,
        )
        prefix = _protocol.KEY_COOKIE_PREFIX
        for name in request.received_cookies:
            if (
                name.startswith(prefix)
                and self.store.get(name[len(prefix) :].decode("latin-1")) is None
            ):
                cookie(name, b"", max_age=b"0")
        return page

    def forget(self, page: Page) -> None:
        self._pages.pop(page.state.id, None)
        self.store.remove(page.state.id)

    def close(self) -> None:
        """Stopping: every page ends, its app sockets closed as going away."""
        for page in list(self._pages.values()):
            page.end("wsse is stopping", 1001)


class _Events(Resource):
    """The page's events: an event stream, or one long-poll at a time."""

    isLeaf = True

    def __init__(self, bridge: Bridge, poll: bool) -> None:
        super().__init__()
        self._bridge = bridge
        self._poll = poll

    def render_GET(self, request: Request) -> bytes | int:
        bridge = self._bridge
        refused = bridge.refuse_cross_site(request)
        if refused is not None:
            return refused
        if request.getHeader(_protocol.SESSION_HEADER) is None:
            page = bridge.new_page(request)
            last_id = 0
        else:
            if self._poll:
                # A page's polls go on while it lives; its first (which starts
                # the session) gets an info line, as an event stream does.
                _logging.routine(request)
            found = bridge.page_for(request)
            if isinstance(found, bytes):
                return found
            page = found
            try:
                last_id = int(request.getHeader(_protocol.LAST_EVENT_ID_HEADER) or b"0")
            except ValueError:
                _log.warn(
                    "fallback {endpoint} refused: bad Last-Event-ID", endpoint=_endpoint(request)
                )
                return _plain(request, 400, b"bad Last-Event-ID\n")
        if not page.resumable_from(last_id):
            if last_id < page.state.acknowledged:
                # From before what the page has acknowledged: a request it gave
                # up on (see the shim's stream watchdog), delivered late by a
                # gateway that queued it.  Refused alone; the session goes on.
                _log.info(
                    "fallback {endpoint} refused: stale (a request the page gave up on)",
                    endpoint=_endpoint(request),
                )
                return _plain(request, 409, b"a request for events the page has had\n")
            page.end("the page asked to resume from an event never sent", 1006)
            return _plain(request, _protocol.SESSION_GONE, b"the session could not resume\n")
        stream: EventStream | EventPoll
        if self._poll:
            stream = EventPoll(request, bridge.clock, bridge.settings.heartbeat, page.stream_lost)
        else:
            stream = EventStream(
                request,
                bridge.clock,
                bridge.settings.heartbeat,
                page.browser_pace,
                page.stream_lost,
            )
        page.attach(stream, last_id)
        return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> bytes:
        # A bodiless stream in place of the page's own, or the page ended
        # for a resume it cannot make.
        return _not_head(request, b"GET")


class _Send(Resource):
    isLeaf = True
    # The shim never sends more in one POST (wsse._request_body refuses a
    # longer body as soon as its headers are in).
    max_request_body = _protocol.BATCH_LIMIT

    def __init__(self, bridge: Bridge) -> None:
        super().__init__()
        self._bridge = bridge

    def render_POST(self, request: Request) -> bytes | int:
        refused = self._bridge.refuse_cross_site(request)
        if refused is not None:
            return refused
        page = self._bridge.page_for(request)
        if isinstance(page, bytes):
            return page
        content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip()
        if content_type.lower() != _protocol.FRAMES_CONTENT_TYPE:
            _log.warn(
                "fallback send refused: wrong content type {type}",
                type=content_type.decode("latin-1")[:100],
            )
            return _plain(request, 415, b"frames must be sent as application/x-wsse-frames\n")
        body = request.content.read(self.max_request_body + 1) if request.content else b""
        if len(body) > self.max_request_body:
            return _plain(request, 413, b"too many frames in one request\n")
        try:
            frames = _protocol.parse_frames(body)
            ack = request.getHeader(_protocol.ACK_HEADER)
            if ack:
                page.acknowledge(int(ack))
            page.apply(frames, request)
        except (_protocol.MalformedFrames, ValueError, FrameOutOfOrder) as e:
            _log.warn("fallback frames refused: {why}", why=str(e))
            # The page's channel is broken beyond repair: it fails its sockets.
            page.end("the page sent frames it should not have", 1006)
            code = 409 if isinstance(e, FrameOutOfOrder) else 400
            return _plain(request, code, b"frames refused\n")
        if frames:
            # Answered once the app takes what it was sent: the page keeps one
            # POST of frames in flight, so a slow app holds it back.
            page.when_drained(request)
        else:
            # An acknowledgement alone, which the page sends while its frames
            # are held back: it is what an app held back by its events waits on.
            _answer(request)
        return NOT_DONE_YET

    def render_HEAD(self, request: Request) -> bytes:
        return _not_head(request, b"POST")  # (a render_GET this has not: a 500)


class Page:
    """One page session at work: its stream, its sockets, its timers."""

    def __init__(self, bridge: Bridge, state: PageState) -> None:
        self.bridge = bridge
        self.state = state
        self.sockets: dict[int, PageSocket] = {}
        self._stream: EventStream | EventPoll | None = None
        self._grace: IDelayedCall | None = None
        self._browser_slow = False
        self._backlogged = False  # unacknowledged events passed the high mark, not yet the low
        self._paused = False
        self._waiting: list[Request] = []
        self.ended = False

    # The event stream.

    def resumable_from(self, last_id: int) -> bool:
        return self.state.events_after(last_id) is not None

    def attach(self, stream: EventStream | EventPoll, last_id: int) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        old, self._stream = self._stream, stream
        if old is not None:
            old.close()  # a stream the browser has already given up on
            self.browser_pace(False)  # that stream's pace no longer counts
        if last_id == 0 and self.state.events_after(0) == []:
            self.emit(
                _protocol.EVENT_SESSION,
                _protocol.json_data(
                    {
                        "session": self.state.id,
                        "heartbeat": round(self.bridge.settings.heartbeat * 1000),
                        "grace": round(self.bridge.settings.grace * 1000),
                    }
                ),
            )
            return
        self.acknowledge(last_id)
        replay = self.state.events_after(last_id) or []
        if isinstance(stream, EventStream):  # a poll coming back is routine
            _log.info(
                "fallback event stream resumed after event {last_id}, {count} events replayed",
                last_id=last_id,
                count=len(replay),
            )
        for encoded in replay:
            stream.send(encoded)

    def stream_lost(self, stream: EventStream | EventPoll) -> None:
        if stream is not self._stream:
            return
        self._stream = None
        self.browser_pace(False)
        self._grace = self.bridge.clock.callLater(self.bridge.settings.grace, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        self.end("the page did not come back within the grace period", 1006)

    def emit(self, name: bytes, data: bytes, urgent: bool = True) -> None:
        """
        Log and send an event; C{data} as L{_protocol.json_data} makes it.
        One not C{urgent} may wait to go out with the next.
        """
        if self.ended:
            return
        encoded = self.state.append(name, data)
        if self._stream is not None:
            self._stream.send(encoded, urgent)
        if self.state.unacknowledged > self.bridge.settings.replay_buffer + _CONTROL_HEADROOM:
            # Only the session's own events can get here (messages stop at the
            # buffer, see PageSocket.upstream_message): a page posting and never reading.
            self.end("the page fell behind by more than the replay buffer", 1006)
        else:
            self._update_pause()

    def has_room_for(self, size: int) -> bool:
        """Whether a message event of C{size} bytes fits in the replay buffer."""
        return self.state.unacknowledged + size <= self.bridge.settings.replay_buffer

    def acknowledge(self, last_id: int) -> None:
        self.state.acknowledge(last_id)
        self._update_pause()

    # Flow control, from the app to the page: a slow browser, or a page that
    # does not acknowledge, holds the app back instead of growing the log.

    def browser_pace(self, slow: bool) -> None:
        self._browser_slow = slow
        self._update_pause()

    def _update_pause(self) -> None:
        backlog = self.state.unacknowledged
        # A backlog pauses above one mark and resumes below a lower one.  A
        # slow browser pauses only while it is slow, and only once the lower
        # mark is passed: Twisted calls a browser slow as soon as 64 KiB wait
        # to be written, which one big event does, and the page (reading
        # along, acknowledging as it goes) would pause the app at every one.
        self._backlogged = backlog > _PAUSE_ABOVE or (self._backlogged and backlog > _RESUME_BELOW)
        paused = self._backlogged or (self._browser_slow and backlog > _RESUME_BELOW)
        if paused != self._paused:
            self._paused = paused
            for socket in self.sockets.values():
                socket.pace(paused)

    @property
    def paused(self) -> bool:
        return self._paused

    # Flow control, from the page to the app.

    def when_drained(self, request: Request) -> None:
        """Answer the page's POST now, or once every app socket has taken its bytes."""
        if any(socket.congested for socket in self.sockets.values()):
            self._waiting.append(request)
            request.notifyFinish().addErrback(lambda _: self._forget_waiting(request))
        else:
            _answer(request)

    def _forget_waiting(self, request: Request) -> None:
        if request in self._waiting:
            self._waiting.remove(request)

    def drained(self) -> None:
        if not any(socket.congested for socket in self.sockets.values()):
            waiting, self._waiting = self._waiting, []
            for request in waiting:
                _answer(request)

    # Frames from the page.

    def apply(self, frames: list[_protocol.Frame], request: Request) -> None:
        """Apply the frames not applied before, after checking all of them."""
        fresh = [frame for frame in frames if frame.seq >= self.state.expected_seq]
        opens = self._check(fresh)
        sent_to: set[PageSocket] = set()
        try:
            for frame in fresh:
                if self.ended:
                    break
                self.state.accept(frame.seq)
                if frame.kind == _protocol.FRAME_OPEN:
                    self._open(frame.socket, opens[frame.seq], request)
                    continue
                socket = self.sockets.get(frame.socket)
                if socket is None:
                    continue  # closed meanwhile: what a native socket would drop too
                if frame.kind == _protocol.FRAME_CLOSE:
                    socket.close_from_page(*_protocol.parse_close(frame.payload))
                elif frame.kind == _protocol.FRAME_ABORT:
                    socket.abort_from_page()
                else:
                    socket.send(frame.payload, *_MESSAGE_KINDS[frame.kind])
                    sent_to.add(socket)
        finally:
            # The app sockets hold a POST's messages until this.
            for socket in sent_to:
                socket.flush()
        if self.ended:
            return
        if fresh:
            # After the frames, before anything the app answers (in a later turn).
            self.emit(_protocol.EVENT_SENT, b'{"seq":%d}' % fresh[-1].seq, urgent=False)

    def _check(self, frames: list[_protocol.Frame]) -> dict[int, _protocol.OpenRequest]:
        """Refuse a batch that is out of order or malformed before any of it is applied."""
        if frames and frames[0].seq != self.state.expected_seq:
            raise FrameOutOfOrder(
                f"frame {frames[0].seq} arrived before frame {self.state.expected_seq}"
            )
        opens = {}
        numbers = set(self.state.sockets)
        for frame in frames:
            if frame.kind == _protocol.FRAME_OPEN:
                if frame.socket in numbers:
                    raise _protocol.MalformedFrames(f"socket {frame.socket} is already open")
                numbers.add(frame.socket)
                opens[frame.seq] = _protocol.parse_open(frame.payload)
            elif frame.kind == _protocol.FRAME_CLOSE:
                _protocol.parse_close(frame.payload)
        return opens

    def _open(self, number: int, request_open: _protocol.OpenRequest, request: Request) -> None:
        settings = self.bridge.settings
        full = None
        if len(self.sockets) >= settings.max_page_sockets:
            full = (1008, f"more than {settings.max_page_sockets} sockets on one page")
        elif self.bridge.socket_count >= settings.max_sockets:
            full = (1013, "wsse holds too many sockets, try again later")
        socket = PageSocket(self, number)
        self.sockets[number] = socket
        self.state.sockets.add(number)
        self.bridge.socket_count += 1
        if full is not None:
            _log.warn("fallback socket refused: {why}", why=full[1])
            socket.refuse(*full)
            return
        mount = _mount_of(request)
        url = request_open.url
        if not url.startswith(mount) or any(c < 0x21 or c == 0x7F for c in url):
            _log.warn(
                "fallback socket refused: {url} is not a path under {mount}",
                url=redact_uri(url),
                mount=mount.decode("latin-1"),
            )
            socket.fail()
            return
        if not _socketpaths.allowed(settings.socket_paths, b"/" + url[len(mount) :]):
            _log.warn("fallback socket refused: {url} is not under --ws-path", url=redact_uri(url))
            socket.fail()
            return
        path = self.bridge.settings.target.base_path + b"/" + url[len(mount) :]
        headers = Headers()
        for name, values in upstream_request_headers(
            request, self.bridge.settings
        ).getAllRawHeaders():
            if name.lower() in _HANDSHAKE_HEADERS:
                headers.setRawHeaders(name, list(values))
        socket.connect(Handshake.from_headers(path, headers, request_open.protocols))

    def forget_socket(self, number: int) -> None:
        if self.sockets.pop(number, None) is not None:
            self.bridge.socket_count -= 1
        self.state.sockets.discard(number)
        self.drained()

    def end(self, why: str, code: int) -> None:
        """The session is over: every app socket closes (1006 drops it, as a vanished browser would)."""
        if self.ended:
            return
        _log.info("fallback session ended: {why}", why=why)
        if code != 1006:
            # wsse is stopping: the page sees its open sockets close as native ones would.
            for socket in list(self.sockets.values()):
                if socket.opened:
                    self.emit(
                        _protocol.EVENT_CLOSE,
                        _protocol.json_data(
                            {"s": socket.number, "code": code, "reason": "", "clean": True}
                        ),
                    )
        self.ended = True
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        for socket in list(self.sockets.values()):
            socket.abandon(code)
        self.bridge.socket_count -= len(self.sockets)
        self.sockets.clear()
        self.state.sockets.clear()
        waiting, self._waiting = self._waiting, []
        for request in waiting:
            _answer(request)
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.close()
        self.bridge.forget(self)


def _answer(request: Request) -> None:
    _logging.routine(request)
    request.setResponseCode(204)
    request.finish()


@implementer(IPushProducer)
class PageSocket:
    """
    One of a page's fallback sockets, and the real WebSocket to the app behind it.

    It is the producer of the app socket's transport: when the transport holds
    more than it can send, the socket is congested and the page's POSTs wait.
    """

    def __init__(self, page: Page, number: int) -> None:
        self._page = page
        self.number = number
        self._app: UpstreamSocket | None = None
        self._connecting: defer.Deferred[UpstreamSocket] | None = None
        self._closed = False
        self._message_size: int | None = None  # while a message comes in parts
        self._utf8: codecs.IncrementalDecoder | None = None  # while a text message does
        self._page_closed = False
        self.congested = False

    def connect(self, handshake: Handshake) -> None:
        self._connecting = self._page.bridge.connector.connect(handshake, self)
        self._connecting.addCallbacks(self._dialled, self._not_dialled)

    def _dialled(self, app: UpstreamSocket) -> None:
        self._connecting = None
        self._app = app
        IConsumer(app.transport).registerProducer(self, True)

    def _not_dialled(self, reason: Failure) -> None:
        self._connecting = None
        if not reason.check(defer.CancelledError, ConnectingCancelledError):
            _log.warn(
                "fallback socket: cannot connect to the app: {why}", why=reason.getErrorMessage()
            )
            self.fail()

    @property
    def opened(self) -> bool:
        return self._app is not None and self._app.opened

    def pace(self, paused: bool) -> None:
        if self._app is not None:
            self._app.pace(paused)

    # IPushProducer: the app socket's transport calls these as it fills and drains.

    def pauseProducing(self) -> None:
        self.congested = True

    def resumeProducing(self) -> None:
        self.congested = False
        self._page.drained()

    def stopProducing(self) -> None:
        self.congested = False

    # From the page.

    def flush(self) -> None:
        if self._app is not None:
            self._app.flush()

    def send(self, payload: bytes, binary: bool, final: bool) -> None:
        """A message, or a part of one, on to the app: parts go as frames of one message."""
        app = self._app
        if app is None or not app.opened or app.state != app.STATE_OPEN:
            return
        size = (self._message_size or 0) + len(payload)
        if size > self._page.bridge.settings.max_message_size:
            self._message_size = None
            close_like(app, 1009, "message too big")
            return
        if not binary and not self._valid_text(payload, final):
            # What the app would do with it (1007); a browser never sends it.
            self._message_size = None
            _log.warn("fallback socket: the page sent a text message that is not UTF-8")
            close_like(app, 1007, "invalid UTF-8 in a text message")
            return
        if self._message_size is None:
            if final:
                app.send_whole(payload, binary)
                return
            app.beginMessage(isBinary=binary)
        self._message_size = size
        app.sendMessageFrame(payload)
        if final:
            self._message_size = None
            app.endMessage()

    def _valid_text(self, payload: bytes, final: bool) -> bool:
        """Whether a text message (checked part by part) is UTF-8 so far."""
        if self._utf8 is None:
            self._utf8 = _UTF8()
        try:
            self._utf8.decode(payload, final)
        except UnicodeDecodeError:
            self._utf8 = None
            return False
        if final:
            self._utf8 = None
        return True

    def close_from_page(self, code: int | None, reason: str) -> None:
        app = self._app
        if app is not None and app.opened:
            # The page drops what comes after its close(), as a browser does;
            # so does wsse, rather than hold it for the page.
            self._page_closed = True
            self._close_app(app, code if code is not None else 1005, reason)
        else:
            self.abort_from_page()

    def _close_app(self, app: UpstreamSocket, code: int, reason: str) -> None:
        close_like(app, code, reason)
        app.pace(False)  # (the app's close frame must be read, even while the page is behind)

    def abort_from_page(self) -> None:
        """The page gave up before the socket opened: it fails, as natively (1006)."""
        self._abandon_app()
        self.fail()

    # From the app (SocketPeer).

    def upstream_opened(self, socket: UpstreamSocket) -> None:
        if self._closed:
            socket.dropConnection(abort=True)
            return
        if self._page.paused:
            self.pace(True)
        self._page.emit(
            _protocol.EVENT_OPEN,
            _protocol.json_data(
                {
                    "s": self.number,
                    "protocol": socket.websocket_protocol_in_use or "",
                    "extensions": "",
                }
            ),
        )

    def upstream_message(self, payload: bytes, is_binary: bool) -> None:
        if self._closed or self._page_closed:
            return
        name, data = _protocol.message_data(self.number, payload, is_binary)
        if self._page.has_room_for(len(data)):
            self._page.emit(name, data)
            return
        # This socket's message would pass --replay-buffer: it closes, the rest carry on.
        _log.warn(
            "fallback socket closed (1013): the page has not taken {size} bytes of events,"
            " and a message of {message} more would pass --replay-buffer",
            size=self._page.state.unacknowledged,
            message=len(data),
        )
        reason = "the page fell behind"
        if self._app is not None:
            self._close_app(self._app, 1013, reason)
        self._finish(1013, reason, clean=True)

    def upstream_closing(self, code: int | None, reason: str) -> None:
        pass  # the close event goes to the page once the closing handshake is over

    def upstream_lost(self, code: int, reason: str) -> None:
        self._app = None
        # An unclean end has no reason a native socket would report.
        self._finish(code, reason if code != 1006 else "", clean=code != 1006)

    def upstream_refused(self, status: int, reason: str) -> None:
        self._app = None
        _log.info("fallback socket: the app answered {status}", status=status)
        self.fail()

    # Ending.

    def fail(self) -> None:
        """The socket failed (refused, unreachable, or closed while connecting)."""
        self._finish(1006, "", clean=False)

    def refuse(self, code: int, reason: str) -> None:
        """A limit of wsse's own: the page learns which (1008, 1013), the app sees nothing."""
        self._finish(code, reason, clean=True)

    def _finish(self, code: int, reason: str, clean: bool) -> None:
        if self._closed:
            return
        self._closed = True
        self.congested = False
        self._page.forget_socket(self.number)
        self._page.emit(
            _protocol.EVENT_CLOSE,
            _protocol.json_data({"s": self.number, "code": code, "reason": reason, "clean": clean}),
        )

    def _abandon_app(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self._app is not None:
            self._app.dropConnection(abort=True)
            self._app = None

    def abandon(self, code: int) -> None:
        """The page session ended: close the app's socket as the browser's going would."""
        self._closed = True
        app = self._app
        if app is not None and app.opened and code != 1006:
            self._close_app(app, code, "")
        else:
            self._abandon_app()
