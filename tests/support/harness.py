"""
A real app and wsse in front of it, both on loopback in the test's reactor.

L{ProxyTestCase} starts them for each test and, at the end, waits until every
connection on both sides is closed, so a test that leaves a socket open fails
instead of leaking into the next.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IProtocolFactory
from twisted.protocols.policies import WrappingFactory
from twisted.trial.unittest import TestCase

from tests.support.app import app_site
from wsse import Settings, Target, WSSEResource, make_site
from wsse._site import IDLE_TIMEOUT


class TrackingFactory(WrappingFactory):
    """Counts connections (open now, and accepted in all) so teardown can wait for them to close."""

    accepted = 0

    def buildProtocol(self, addr: Any) -> Any:
        self.accepted += 1
        return super().buildProtocol(addr)

    async def closed(self, timeout: float = 10.0) -> None:
        waited = 0.0
        while self.protocols and waited < timeout:
            await task.deferLater(reactor, 0.01, lambda: None)
            waited += 0.01
        for protocol in list(self.protocols):
            protocol.transport.abortConnection()
        while self.protocols:
            await task.deferLater(reactor, 0.01, lambda: None)


class ProxyTestCase(TestCase):
    """
    Each test gets an app on C{self.app_port} and wsse in front of it on C{self.port}.

    The app is, unless C{make_app} says otherwise, L{App} (C{self.app}) with
    the WebSocket app (C{self.ws}) under C{/ws}.  A class changes wsse's
    settings through C{overrides}, and its Site's idle timeout through
    C{site_timeout}.
    """

    timeout = 60
    overrides: dict[str, Any] = {}
    site_timeout: float | None = IDLE_TIMEOUT

    def make_app(self) -> IProtocolFactory:
        self.app, self.ws, site = app_site()
        return site

    def setUp(self) -> None:
        self.app_factory = TrackingFactory(self.make_app())
        self.app_port = reactor.listenTCP(0, self.app_factory, interface="127.0.0.1")
        self.target = Target("http", "127.0.0.1", self.app_port.getHost().port)
        settings = replace(Settings(target=self.target), **self.overrides)
        self.proxy = WSSEResource(settings, reactor=reactor)
        self.proxy_factory = TrackingFactory(make_site(self.proxy, timeout=self.site_timeout))
        self.proxy_port = reactor.listenTCP(0, self.proxy_factory, interface="127.0.0.1")
        self.port = self.proxy_port.getHost().port
        self.addCleanup(self._stop)

    async def _stop(self) -> None:
        await self.proxy.close()
        await defer.maybeDeferred(self.proxy_port.stopListening)
        await defer.maybeDeferred(self.app_port.stopListening)
        await self.proxy_factory.closed()
        await self.app_factory.closed()
        await autobahn_timers_expired()


async def autobahn_timers_expired(timeout: float = 10.0) -> None:
    """
    Wait out autobahn's batched timers: a cancelled handshake timeout leaves
    its bucket's DelayedCall pending until it fires, which trial would report.
    """
    waited = 0.0
    while waited < timeout and any(
        "_notify_bucket" in getattr(call.func, "__name__", "") for call in reactor.getDelayedCalls()
    ):
        await task.deferLater(reactor, 0.05, lambda: None)
        waited += 0.05
