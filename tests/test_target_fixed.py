"""
The upstream target is fixed by configuration.

Whatever a client puts in a request line, a header, a carried URL or a
fallback open frame (C{//host}, C{@host}, backslashes, absolute URLs, their
percent-encoded forms), wsse connects to the configured app and nowhere
else.  A decoy listener on 127.0.0.1 (named by its address and as
C{localhost}) records every connection; each test asserts that it got none and
that the app saw the request at the path the client sent, or that wsse
refused it.  Error answers carry no exception text, traceback or internal
address; wsse's log carries the reason instead.
"""

from __future__ import annotations

import base64
import json
import re
import string
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from tests.support.clients import RawResponse, parse_response, raw_exchange
from tests.support.harness import ProxyTestCase, TrackingFactory
from tests.support.pageclient import PageClient
from tests.support.processes import free_port
from wsse import Settings, Target, WSSEResource, _protocol, make_site

T = TypeVar("T")

# Stands for the decoy's address in the cases below; replaced once its port is known.
DECOY = "DECOY"
LOCAL_DECOY = "LOCALDECOY"  # the same listener, named "localhost"

# Request targets that are paths: each must reach the app exactly as sent.
PATH_TARGETS = [
    "//DECOY/x",
    "///DECOY/x",
    "//LOCALDECOY/x",
    "/@DECOY/x",
    "/x@DECOY/",
    "/.@DECOY",
    "/\\\\DECOY/x",
    "/\\/DECOY/x",
    "//\\DECOY/x",
    "/%2F%2FDECOY/x",
    "/%2f%2fDECOY/x",
    "/%2F/DECOY/x",
    "/%40DECOY/x",
    "/%5C%5CDECOY/x",
    "/%5c/DECOY/x",
    "/%252F%252FDECOY/x",
    "/http://DECOY/x",
    "/http:%2F%2FDECOY/x",
    "/https:DECOY/x",
    "/ws://DECOY/x",
    "/..//DECOY/x",
    "/%2e%2e//DECOY/x",
    "/x?next=//DECOY/&u=@DECOY&h=http://DECOY/",
    "/x?%2F%2FDECOY",
    "/%0d%0aHost:%20DECOY/x",
]

# Request targets that are not paths: wsse must refuse them (400), the app sees nothing.
NON_PATH_TARGETS = [
    "http://DECOY/x",
    "HTTP://DECOY/x",
    "https://DECOY/x",
    "ws://DECOY/x",
    "http://LOCALDECOY/x",
    "http://APP@DECOY/x",
    "DECOY",
    "@DECOY/",
    "\\\\DECOY/x",
    "%2F%2FDECOY/x",
    "%40DECOY/",
    "%5C%5CDECOY/x",
    "*",
]

# Headers naming the decoy: the connection still goes to the app.
DECOY_HEADERS = [
    [(b"Host", b"DECOY")],
    [(b"Host", b"LOCALDECOY")],
    [(b"Host", b"http://DECOY/")],
    [(b"Host", b"APP@DECOY")],
    [(b"Host", b"proxy.example"), (b"X-Forwarded-Host", b"DECOY")],
    [(b"Host", b"proxy.example"), (b"X-Forwarded-Host", b"DECOY"), (b"X-Forwarded-Port", b"1")],
    [(b"Host", b"proxy.example"), (b"X-Forwarded-Proto", b"https")],
    [(b"Host", b"proxy.example"), (b"Forwarded", b"host=DECOY;proto=https")],
    [(b"Host", b"proxy.example"), (b"X-Original-URL", b"http://DECOY/x")],
    [(b"Host", b"proxy.example"), (b"X-Rewrite-URL", b"//DECOY/x")],
    [(b"Host", b"proxy.example"), (b"X-HTTP-Method-Override", b"CONNECT")],
]

# What must never appear in an answer wsse writes itself.
_LEAK = re.compile(
    rb"Traceback|File \"|\.py\b|\b[A-Z]\w*(?:Error|Exception|Failure)\b|binascii"
    rb"|Invalid base64|twisted\.|autobahn|wsse\._"
)

_UPGRADE_HEADERS = (
    b"Upgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


class _Head(Protocol):
    """Sends an upgrade request; keeps the answer, and cuts a 101 once its head is in."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self.received = b""
        self.upgraded = False
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received and self.received.split(b" ", 2)[1:2] == [b"101"]:
            self.upgraded = True
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure) -> None:
        self.done.callback(self.received)


_REQUEST_LINE = re.compile(rb"[A-Z]+ (\S+) HTTP/1\.[01]")


class _Recording(ProtocolWrapper):
    """Reads the request lines off the app's socket, before any parser can judge them."""

    factory: RecordingFactory
    _buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append(data)
        *lines, self._buffer = (self._buffer + data).split(b"\r\n")
        for line in lines:
            match = _REQUEST_LINE.fullmatch(line)
            if match:
                self.factory.targets.append(match.group(1))
        super().dataReceived(data)


class RecordingFactory(TrackingFactory):
    """The app's factory, recording every request target that reached the app."""

    protocol = _Recording

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.targets: list[bytes] = []
        self.received: list[bytes] = []


class DecoyProtocol(Protocol):
    """Answers like an app would, so a wsse that reached it would get a plausible 200."""

    factory: Decoy

    def connectionMade(self) -> None:
        self.factory.accepted += 1

    def dataReceived(self, data: bytes) -> None:
        self.factory.received.append(data)
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\ndecoy"
        )
        self.transport.loseConnection()


class Decoy(ServerFactory):
    """Another server on 127.0.0.1 that no client input may steer wsse to."""

    protocol = DecoyProtocol

    def __init__(self) -> None:
        self.accepted = 0
        self.received: list[bytes] = []


def collect(strategy: st.SearchStrategy[T], count: int) -> list[T]:
    """
    Draw examples with Hypothesis up front.

    Each example needs the reactor (which trial's async tests already run), and
    Hypothesis cannot drive a coroutine, so the examples are drawn first and
    sent after; the test reports the failing example itself.
    """
    found: list[T] = []

    @hypothesis_settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(example: T) -> None:
        found.append(example)

    draw()
    return found


_PIECES = st.sampled_from(
    [
        "/",
        "//",
        "\\",
        "\\\\",
        "@",
        ":",
        "?",
        "#",
        "%",
        "%2F",
        "%2f",
        "%40",
        "%5C",
        "%25",
        "%00",
        "%0d%0a",
        "..",
        ".",
        "http:",
        "https:",
        "ws:",
        "wss:",
        DECOY,
        LOCAL_DECOY,
        "[::1]",
        " ",
        "\t",
        "\r\n",
        "\x00",
        "é",
        "ws/echo",
    ]
)
# Arbitrary strings, biased towards the pieces of URLs that name another host.
HOSTILE_STRINGS = st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=10).map("".join)
HOSTILE_PATHS = st.one_of(HOSTILE_STRINGS, HOSTILE_STRINGS.map(lambda s: "/" + s))


class TargetFixedCase(ProxyTestCase):
    """
    An app, wsse in front of it (its target's base path C{base}), a decoy on
    another port, and wsse's log events.
    """

    base = b""
    dead_target = False  # point wsse at a port nothing listens on

    def setUp(self) -> None:
        self.decoy = Decoy()
        self.decoy_listener = reactor.listenTCP(0, self.decoy, interface="127.0.0.1")
        self.addCleanup(self.decoy_listener.stopListening)
        self.decoy_port = self.decoy_listener.getHost().port
        self.log: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.log.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.log.append)
        self.app_factory = RecordingFactory(self.make_app())
        self.app_port = reactor.listenTCP(0, self.app_factory, interface="127.0.0.1")
        port = free_port() if self.dead_target else self.app_port.getHost().port
        self.target = Target("http", "127.0.0.1", port, self.base)
        self.internal = f"127.0.0.1:{port}".encode()
        settings = replace(Settings(target=self.target), **self.overrides)
        self.proxy = WSSEResource(settings, reactor=reactor)
        self.proxy_factory = TrackingFactory(make_site(self.proxy, timeout=self.site_timeout))
        self.proxy_port = reactor.listenTCP(0, self.proxy_factory, interface="127.0.0.1")
        self.port = self.proxy_port.getHost().port
        self.addCleanup(self._stop)

    def fill(self, text: str) -> str:
        """A case with the decoy's (and the app's) real address in it."""
        return (
            text.replace(LOCAL_DECOY, f"localhost:{self.decoy_port}")
            .replace(DECOY, f"127.0.0.1:{self.decoy_port}")
            .replace("APP", self.internal.decode())
        )

    def fill_bytes(self, text: bytes) -> bytes:
        return self.fill(text.decode("latin-1")).encode("latin-1")

    def assertDecoyUntouched(self, case: object = None) -> None:
        """The assertion every test ends on: nothing connected to the decoy."""
        self.assertEqual(
            (self.decoy.accepted, self.decoy.received), (0, []), f"wsse reached the decoy: {case!r}"
        )

    def assertNoLeak(self, response: RawResponse, case: object = None) -> None:
        """An answer that holds no exception text, traceback or address of the app."""
        for text in [response.body, *[v for _, v in response.headers]]:
            self.assertIsNone(_LEAK.search(text), (case, response.raw[:500]))
            self.assertNotIn(self.internal, text, (case, response.raw[:500]))
            self.assertNotIn(b"localhost:%d" % self.target.port, text, (case, response.raw[:500]))

    def logged(self, *pieces: str) -> list[str]:
        """The formatted log lines (wsse's and the access log) holding every piece."""
        lines = [formatEvent(event) or "" for event in self.log]
        return [line for line in lines if all(piece in line for piece in pieces)]

    def reached_app(self) -> list[bytes]:
        """Every request target the app's socket received, in order (HTTP and handshakes)."""
        return self.app_factory.targets

    async def request(
        self, target: bytes, headers: list[tuple[bytes, bytes]] | None = None, upgrade: bool = False
    ) -> RawResponse:
        """One raw request; for an upgrade the answer's head (a 101's connection is then cut)."""
        if headers is None:
            headers = [(b"Host", b"proxy.example")]
        head = b"GET " + target + b" HTTP/1.1\r\n"
        head += b"".join(n + b": " + v + b"\r\n" for n, v in headers)
        if upgrade:
            head += _UPGRADE_HEADERS + self.extra_upgrade_headers
        head += b"Connection: Upgrade, close\r\n\r\n" if upgrade else b"Connection: close\r\n\r\n"
        if not upgrade:
            return parse_response(await raw_exchange(self.port, head))
        client = _Head(head)
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        raw = await client.done
        return parse_response(raw, head_only=client.upgraded)

    extra_upgrade_headers = b""


class Passthrough(TargetFixedCase):
    upgrade = False

    async def test_paths_naming_another_host_reach_the_app_as_sent(self) -> None:
        for case in PATH_TARGETS:
            target = self.fill(case).encode()
            before = len(self.reached_app())
            response = await self.request(target, upgrade=self.upgrade)
            self.assertLess(response.status, 500, case)
            self.assertEqual(
                self.reached_app()[before:], [self.base + target], (case, response.raw[:300])
            )
            self.assertDecoyUntouched(case)

    async def test_request_targets_that_are_not_paths_are_refused(self) -> None:
        for case in NON_PATH_TARGETS:
            target = self.fill(case).encode()
            response = await self.request(target, upgrade=self.upgrade)
            # Twisted itself answers "*" (which only OPTIONS may use).
            code = 405 if case == "*" else 400
            self.assertEqual(response.status, code, (case, response.raw[:300]))
            self.assertNoLeak(response, case)
            self.assertTrue(self.logged(target.decode(), str(code)), case)
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_a_connect_request_is_refused(self) -> None:
        raw = await raw_exchange(
            self.port,
            self.fill_bytes(b"CONNECT DECOY HTTP/1.1\r\nHost: DECOY\r\nConnection: close\r\n\r\n"),
        )
        response = parse_response(raw)
        self.assertEqual(response.status, 400)
        self.assertNoLeak(response)
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_headers_naming_another_host_do_not_move_the_connection(self) -> None:
        for case in DECOY_HEADERS:
            headers = [(n, self.fill_bytes(v)) for n, v in case]
            path = b"/ws/echo?h" if self.upgrade else b"/h?x"
            before = len(self.reached_app())
            response = await self.request(path, headers, upgrade=self.upgrade)
            self.assertLess(response.status, 500, case)
            if response.status == 400:
                # autobahn refuses a Host that is a URL: wsse's (--ws-deflate) or the app's.
                self.assertNoLeak(response, case)
                self.assertIn(self.reached_app()[before:], ([], [self.base + path]), case)
            else:
                self.assertEqual(self.reached_app()[before:], [self.base + path], case)
            self.assertDecoyUntouched(case)

    async def test_an_absolute_target_with_a_decoy_host_header_is_refused(self) -> None:
        target = self.fill_bytes(b"http://DECOY/x")
        response = await self.request(target, [(b"Host", self.fill_bytes(b"DECOY"))], self.upgrade)
        self.assertEqual(response.status, 400)
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_arbitrary_targets_never_reach_another_host(self) -> None:
        for case in collect(HOSTILE_PATHS, 150):
            text = self.fill(case)
            # Sent as a browser would send it: what cannot be in a request line
            # is percent-encoded, the rest is left as it is.
            target = quote(text, safe=string.punctuation.replace("%", "") + "%").encode()
            response = await self.request(target or b"/", upgrade=self.upgrade)
            self.assertLess(response.status, 500, (case, response.raw[:300]))
            if response.status >= 400 and response.status != 404:
                self.assertNoLeak(response, case)
            self.assertDecoyUntouched(case)


class PassthroughUnderABasePath(Passthrough):
    base = b"/base"


class NativeRelay(Passthrough):
    upgrade = True


class NativeRelayUnderABasePath(NativeRelay):
    base = b"/base"


class DeflatingRelay(NativeRelay):
    overrides = {"ws_deflate": True}
    extra_upgrade_headers = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def carried_segment(url: bytes) -> bytes:
    return base64.urlsafe_b64encode(url).rstrip(b"=")


class CarriedEndpoint(TargetFixedCase):
    extra_upgrade_headers = b""

    async def test_carried_paths_naming_another_host_reach_the_app_as_sent(self) -> None:
        for case in PATH_TARGETS:
            url = self.fill(case).encode()
            before = len(self.reached_app())
            response = await self.request(b"/__wsse/ws/" + carried_segment(url), upgrade=True)
            self.assertLess(response.status, 500, case)
            self.assertEqual(self.reached_app()[before:], [self.base + url], case)
            self.assertDecoyUntouched(case)

    async def test_carried_urls_that_are_not_paths_are_refused(self) -> None:
        for case in [*NON_PATH_TARGETS, "", "/x y", "/x\r\nHost: DECOY", "/\x00"]:
            url = self.fill(case).encode()
            response = await self.request(b"/__wsse/ws/" + carried_segment(url), upgrade=True)
            self.assertEqual(response.status, 400, (case, response.raw[:300]))
            self.assertNoLeak(response, case)
        self.assertTrue(self.logged("carried websocket refused"))
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_segments_that_are_not_base64url_are_refused(self) -> None:
        for case in [
            b"%2F%2FDECOY",
            b"//DECOY",
            b"@DECOY",
            b"\\\\DECOY",
            b"http://DECOY/",
            b"A",  # a length base64 cannot have
            b"AAAAA",
            b"Lw==",  # padded
            b"Lw%3D%3D",
        ]:
            response = await self.request(b"/__wsse/ws/" + self.fill_bytes(case), upgrade=True)
            self.assertEqual(response.status, 400, (case, response.raw[:300]))
            self.assertNoLeak(response, case)
        self.assertTrue(self.logged("carried websocket refused"))
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_arbitrary_carried_urls_never_reach_another_host(self) -> None:
        for case in collect(HOSTILE_PATHS, 150):
            url = self.fill(case).encode("utf-8", "surrogatepass")
            response = await self.request(b"/__wsse/ws/" + carried_segment(url), upgrade=True)
            self.assertLess(response.status, 500, (case, response.raw[:300]))
            if response.status >= 400 and response.status != 404:
                self.assertNoLeak(response, case)
            self.assertDecoyUntouched(case)

    async def test_arbitrary_segments_never_reach_another_host(self) -> None:
        for case in collect(HOSTILE_STRINGS, 100):
            segment = quote(self.fill(case), safe="").encode()
            response = await self.request(b"/__wsse/ws/" + segment, upgrade=True)
            self.assertLess(response.status, 500, (case, response.raw[:300]))
            self.assertNoLeak(response, case)
            self.assertDecoyUntouched(case)


class DeflatingCarriedEndpoint(CarriedEndpoint):
    overrides = {"ws_deflate": True}
    extra_upgrade_headers = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


class CarriedEndpointUnderABasePath(CarriedEndpoint):
    base = b"/base"


def open_frame(url: str, protocols: list[str] | None = None) -> bytes:
    return json.dumps({"url": url, "protocols": protocols or []}).encode()


class FallbackOpenFrames(TargetFixedCase):
    overrides = {"heartbeat": 0.2}

    async def page(self) -> PageClient:
        page = PageClient(self.port)
        # A same-origin request as far as wsse can tell: no Origin to compare.
        page.headers = {b"User-Agent": [b"PageClient/1.0"]}
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        return page

    async def open(self, page: PageClient, number: int, payload: bytes) -> tuple[int, Any]:
        """Send one open frame; the POST's status and, once applied, the socket's first event."""
        status = await page.post([(_protocol.FRAME_OPEN, number, payload)])
        if status != 204:
            return status, None
        event = await page.next_for(number)
        if event.name == "open":
            self.assertEqual(await page.post([(_protocol.FRAME_ABORT, number, b"")]), 204)
            self.assertEqual((await page.next_for(number)).name, "close")
        return status, event

    async def test_urls_naming_another_host_reach_the_app_as_paths(self) -> None:
        page = await self.page()
        for number, case in enumerate(PATH_TARGETS, 1):
            url = self.fill(case)
            before = len(self.reached_app())
            status, _ = await self.open(page, number, open_frame(url))
            self.assertEqual(status, 204, case)
            self.assertEqual(self.reached_app()[before:], [self.base + url.encode()], case)
            self.assertDecoyUntouched(case)

    async def test_urls_that_are_not_paths_are_refused(self) -> None:
        for case in [
            *NON_PATH_TARGETS,
            "ws://DECOY/ws/echo",
            "wss://DECOY/ws/echo",
            "http://DECOY/ws/echo",
            "",
        ]:
            page = await self.page()
            status, _ = await self.open(page, 1, open_frame(self.fill(case)))
            self.assertEqual(status, 400, case)
        self.assertTrue(self.logged("fallback frames refused", "url must be a path"))
        self.assertDecoyUntouched()

    async def test_urls_with_controls_or_spaces_are_refused(self) -> None:
        page = await self.page()
        for number, case in enumerate(
            ["/x y", "/ws/echo HTTP/1.1\r\nHost: DECOY\r\n\r\nGET /", "/\tDECOY", "/\x7f"], 1
        ):
            status, event = await self.open(page, number, open_frame(self.fill(case)))
            self.assertEqual((status, event.name, event.data["code"]), (204, "close", 1006))
        self.assertTrue(self.logged("fallback socket refused"))
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_subprotocols_cannot_add_lines_to_the_handshake(self) -> None:
        page = await self.page()
        protocols = [self.fill("v1\r\nHost: DECOY\r\nX-Injected: 1"), "v1\nX-Injected: 2"]
        status, _ = await self.open(page, 1, open_frame("/ws/echo", protocols))
        self.assertIn(status, (204, 400))
        received = b"".join(self.app_factory.received)
        self.assertNotIn(b"X-Injected", received)
        self.assertNotIn(b"Host: 127.0.0.1:%d" % self.decoy_port, received)
        self.assertDecoyUntouched()

    async def test_malformed_open_frames_are_refused_without_a_leak(self) -> None:
        for payload in [
            b"[" * 100_000 + b"]" * 100_000,  # nested beyond the parser's recursion
            b'{"url": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            b"not json",
            b'{"url": 1}',
            b'["url"]',
            b'"url"',
            b'{"url": "/x", "protocols": "v1"}',
            b'{"url": "\\ud800"}',
            b"\xff\xfe",
        ]:
            page = await self.page()
            response = await page.http.post(
                page.base + "send",
                data=_protocol.encode_frames(0, [(_protocol.FRAME_OPEN, 1, payload)]),
                headers={
                    b"Content-Type": [_protocol.FRAMES_CONTENT_TYPE],
                    **page.credentials(),
                },
            )
            body = await response.content()
            self.assertEqual(response.code, 400, (payload[:40], body[:300]))
            headers = [(n, v) for n, vs in response.headers.getAllRawHeaders() for v in vs]
            self.assertNoLeak(RawResponse(response.code, b"", headers, body, body), payload[:40])
        self.assertTrue(self.logged("fallback frames refused"))
        self.assertEqual(self.reached_app(), [])
        self.assertDecoyUntouched()

    async def test_arbitrary_urls_never_reach_another_host(self) -> None:
        page = await self.page()
        for number, case in enumerate(collect(HOSTILE_PATHS, 150), 1):
            url = self.fill(case)
            before = len(self.reached_app())
            status, event = await self.open(page, number, open_frame(url))
            self.assertIn(status, (204, 400), case)
            if status == 400:
                page = await self.page()  # the session ended, as the shim's would
            reached = self.reached_app()[before:]
            if status == 204 and url.startswith("/") and all(0x21 <= ord(c) < 0x7F for c in url):
                self.assertEqual(reached, [self.base + url.encode()], case)
            elif (
                status == 204
                and url.startswith("/")
                and not any(ord(c) < 0x21 or ord(c) == 0x7F for c in url)
            ):
                # Beyond ASCII (which a browser's URL never is): still one path on the app.
                self.assertEqual(len(reached), 1, case)
                self.assertTrue(reached[0].startswith(self.base + b"/"), case)
            else:
                self.assertEqual(reached, [], case)
            self.assertDecoyUntouched(case)


class FallbackOpenFramesUnderABasePath(FallbackOpenFrames):
    base = b"/base"


class DeadTarget(TargetFixedCase):
    """
    The app is down: every way in ends in a short 502 (or a failed socket),
    never in a connection to the decoy, and the log says why.
    """

    dead_target = True

    async def test_passthrough(self) -> None:
        for case in ["/x", "//DECOY/x", "/@DECOY/x", "/\\\\DECOY/x", "/%2F%2FDECOY/x"]:
            response = await self.request(self.fill(case).encode())
            self.assertEqual(response.status, 502, case)
            self.assertNoLeak(response, case)
        self.assertTrue(self.logged("cannot connect to", self.internal.decode()))
        self.assertDecoyUntouched()

    async def test_native_relay(self) -> None:
        for case in ["/ws/echo", "//DECOY/ws/echo", "/@DECOY/ws/echo", "/%2F%2FDECOY/x"]:
            response = await self.request(self.fill(case).encode(), upgrade=True)
            self.assertEqual(response.status, 502, case)
            self.assertNoLeak(response, case)
        self.assertTrue(self.logged("websocket", "cannot connect to", "refused"))
        self.assertDecoyUntouched()

    async def test_carried_endpoint(self) -> None:
        for case in ["/ws/echo?a=1", "//DECOY/ws/echo?a=1", "/@DECOY/?a"]:
            segment = carried_segment(self.fill(case).encode())
            response = await self.request(b"/__wsse/ws/" + segment, upgrade=True)
            self.assertEqual(response.status, 502, case)
            self.assertNoLeak(response, case)
        self.assertTrue(self.logged("cannot connect to"))
        self.assertDecoyUntouched()

    async def test_fallback(self) -> None:
        page = PageClient(self.port)
        page.headers = {b"User-Agent": [b"PageClient/1.0"]}
        self.addCleanup(page.close)
        self.assertEqual(await page.connect(), 200)
        for number, case in enumerate(["/ws/echo", "//DECOY/ws/echo", "/@DECOY/ws/echo"], 1):
            frame = open_frame(self.fill(case))
            self.assertEqual(await page.post([(_protocol.FRAME_OPEN, number, frame)]), 204)
            event = await page.next_for(number)
            self.assertEqual(
                (event.name, event.data["code"], event.data["reason"]), ("close", 1006, "")
            )
        self.assertTrue(self.logged("fallback socket: cannot connect to the app"))
        self.assertDecoyUntouched()


class DeflatingDeadTarget(DeadTarget):
    overrides = {"ws_deflate": True}
    extra_upgrade_headers = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
