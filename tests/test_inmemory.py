"""
wsse driven entirely in memory: treq's test client in front, treq's
RequestTraversalAgent as the injected HTTP agent behind, and a fake clock for
timeouts.  No sockets, no real time: the shape the injected reactor, clock and
agent make possible.
"""

from __future__ import annotations

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.app import App
from wsse import Settings, Target, WSSEResource

TARGET = Target("http", "app.internal", 8080)


class InMemory(SynchronousTestCase):
    def setUp(self) -> None:
        self.app = App()
        self.clock = Clock()
        self.upstream = RequestTraversalAgent(self.app)
        self.proxy = WSSEResource(
            Settings(target=TARGET, response_timeout=30),
            reactor=self.clock,
            agent=self.upstream,
        )
        self.browser = StubTreq(self.proxy)

    def get(self, path: str, headers: dict[bytes, list[bytes]] | None = None):  # type: ignore[no-untyped-def]
        response = self.successResultOf(
            self.browser.get("http://proxy.example" + path, headers=headers or {})
        )
        body = self.successResultOf(response.content())
        return response, body

    def settle(self) -> None:
        """Let every in-memory connection and timer run what it can now."""
        for _ in range(10):
            self.browser.flush()
            self.upstream.flush()
            self.clock.advance(0)

    def test_a_page_gets_the_shim(self) -> None:
        def page(request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/html")
            return b"<!doctype html><title>t</title>"

        self.app.route(b"/page", page)
        response, body = self.get("/page", {b"sec-fetch-dest": [b"document"]})
        self.assertEqual(response.code, 200)
        self.assertTrue(body.startswith(b'<!doctype html><script data-wsse="path=/page'))
        self.assertEqual(self.app.seen[-1].header(b"x-forwarded-host"), [b"proxy.example"])

    def test_a_redirect_to_the_app_s_address_comes_back_relative(self) -> None:
        def redirect(request: Request) -> bytes:
            request.setResponseCode(303)
            request.setHeader(b"location", b"http://app.internal:8080/done")
            return b""

        self.app.route(b"/form", redirect)
        pending = self.browser.post("http://proxy.example/form", b"x=1", allow_redirects=False)
        self.settle()
        response = self.successResultOf(pending)
        self.assertEqual(response.code, 303)
        self.assertEqual(response.headers.getRawHeaders(b"location"), [b"/done"])

    def test_the_response_timeout_runs_on_the_injected_clock(self) -> None:
        held: list[Request] = []
        self.app.route(b"/slow", lambda request: held.append(request) or NOT_DONE_YET)
        pending = self.browser.get("http://proxy.example/slow")
        self.browser.flush()
        self.assertNoResult(pending)
        self.clock.advance(29)
        self.browser.flush()
        self.assertNoResult(pending)
        self.clock.advance(1)
        self.browser.flush()
        response = self.successResultOf(pending)
        self.assertEqual(response.code, 504)
        self.upstream.flush()
        self.assertTrue(held[0]._disconnected)
