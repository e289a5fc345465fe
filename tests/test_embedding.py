"""wsse mounted under a child path of an existing twisted.web Site, next to the site's own resources."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import Data

from tests.support.app import App, Root, WSAppFactory
from tests.support.clients import carried, http, ws_connect
from tests.support.harness import TrackingFactory, autobahn_timers_expired
from wsse import WSSEResource


class Embedded(TestCase):
    def setUp(self) -> None:
        self.app = App()
        self.ws = WSAppFactory()
        self.app_factory = TrackingFactory(Site(Root(self.app, self.ws)))
        self.app_port = reactor.listenTCP(0, self.app_factory, interface="127.0.0.1")

        # What a user of an existing Site writes:
        root = Resource()
        root.putChild(b"hello", Data(b"the site's own page", "text/plain"))
        self.wsse = WSSEResource(f"http://127.0.0.1:{self.app_port.getHost().port}")
        root.putChild(b"app", self.wsse)

        self.site_factory = TrackingFactory(Site(root))
        self.site_port = reactor.listenTCP(0, self.site_factory, interface="127.0.0.1")
        self.port = self.site_port.getHost().port
        self.addCleanup(self._stop)

    async def _stop(self) -> None:
        await self.wsse.close()
        await self.site_port.stopListening()
        await self.app_port.stopListening()
        await self.site_factory.closed()
        await self.app_factory.closed()
        await autobahn_timers_expired()

    async def test_the_site_s_own_resources_still_answer(self) -> None:
        response = await http(self.port, target=b"/hello")
        self.assertEqual(response.body, b"the site's own page")
        self.assertEqual(self.app.seen, [])

    async def test_requests_under_the_mount_reach_the_app_without_the_prefix(self) -> None:
        response = await http(self.port, b"POST", b"/app/api/x%2Fy?q=%20", body=b"data")
        self.assertEqual(response.status, 200)
        seen = self.app.seen[-1]
        self.assertEqual(
            (seen.method, seen.uri, seen.body), (b"POST", b"/api/x%2Fy?q=%20", b"data")
        )

    async def test_the_mount_point_without_its_slash_redirects(self) -> None:
        response = await http(self.port, target=b"/app?x=1")
        self.assertEqual(response.status, 301)
        self.assertEqual(response.header(b"location"), [b"/app/?x=1"])

    async def test_pages_point_the_shim_at_the_mount(self) -> None:
        def page(request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/html")
            return b"<!doctype html><title>t</title>"

        self.app.route(b"/deep/page", page)
        response = await http(
            self.port, target=b"/app/deep/page", headers=[(b"Sec-Fetch-Dest", b"document")]
        )
        self.assertIn(
            b'data-wsse="path=/app/deep/page&amp;base=../../app/__wsse/&amp;probe=3000"',
            response.body,
        )

    async def test_app_redirects_come_back_under_the_mount(self) -> None:
        origin = b"http://127.0.0.1:%d" % self.app_port.getHost().port

        def redirect(request: Request) -> bytes:
            request.redirect(origin + b"/login")
            return b""

        self.app.route(b"/private", redirect)
        response = await http(self.port, target=b"/app/private")
        self.assertEqual(response.header(b"location"), [b"/app/login"])

    async def test_a_socket_s_query_carried_in_the_path_through_the_mount(self) -> None:
        client = await ws_connect(self.port, carried("/app/ws/echo?room=1", mount="/app/"))
        self.assertEqual(self.ws.uris[-1], "/ws/echo?room=1")
        client.sendMessage(b"carried")
        self.assertEqual(await client.messages.get(), (b"carried", False))
        client.sendClose(1000)
        await client.closed
        with self.assertRaises(ConnectionError) as raised:  # a URL outside the mount
            await ws_connect(self.port, carried("/elsewhere/ws/echo?room=1", mount="/app/"))
        self.assertIn("[404]", str(raised.exception))

    async def test_a_websocket_through_the_mount(self) -> None:
        client = await ws_connect(self.port, "/app/ws/echo?room=1", protocols=["v2"])
        self.assertEqual(self.ws.uris[-1], "/ws/echo?room=1")
        self.assertEqual(client.websocket_protocol_in_use, "v2")
        client.sendMessage(b"through /app/")
        self.assertEqual(await client.messages.get(), (b"through /app/", False))
        client.sendClose(1000)
        await client.closed
