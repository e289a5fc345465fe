"""
L{WSSEResource}: the whole proxy as one twisted.web resource.

It sits at a Site's root or under any child path of an existing Site.  Each
request is dispatched, one level below the mount point, to a leaf: the
WebSocket relay for upgrades, the passthrough for everything else.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IAgent
from twisted.web.pages import errorPage
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from wsse._appclient import AppClient
from wsse._bridge import Bridge
from wsse._carriedquery import CarriedQuerySocket
from wsse._passthrough import Passthrough
from wsse._protocol import CARRIED_ENDPOINT, ENDPOINT_SEGMENT
from wsse._sessions import MemoryPageStore, PageStore
from wsse._settings import Settings
from wsse._target import Target
from wsse._upstream import UpstreamConnector
from wsse._wsdeflate import DeflatingWebSocketRelay, offers_deflate
from wsse._wsrelay import WebSocketSplice, is_websocket_upgrade


class WSSEResource(Resource):
    """
    wsse in front of one app, as a resource to put in a twisted.web Site.

    @param settings: a L{Settings}, or just the app's URL (C{"http://127.0.0.1:8080"}).
    @param reactor: the reactor used for connections and timers.
    @param agent: the HTTP client for the passthrough; by default wsse's own
        (L{AppClient}), keeping up to C{settings.pool_size} idle connections.
    @param store: where the fallback keeps its page sessions; by default in
        this process's memory.
    """

    def __init__(
        self,
        settings: Settings | str,
        *,
        reactor: IReactorTime | None = None,
        agent: IAgent | None = None,
        store: PageStore | None = None,
    ) -> None:
        super().__init__()
        if isinstance(settings, str):
            settings = Settings(target=Target.from_url(settings))
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        assert reactor is not None
        self.settings = settings
        self._pool: AppClient | None = None
        if agent is None:
            agent = self._pool = AppClient(
                reactor,
                settings.target.endpoint(reactor, settings.connect_timeout),
                settings.pool_size,
                settings.pool_idle_timeout,
                settings.target.authority,
            )
        self._connector = connector = UpstreamConnector(settings, reactor)
        self._passthrough = Passthrough(settings, agent, reactor)
        # The bridge holds the one count of sockets, native and fallback, for --max-sockets.
        self._bridge = Bridge(settings, reactor, connector, store or MemoryPageStore())
        self._splice = WebSocketSplice(settings, reactor, self._bridge)
        self._deflating = (
            DeflatingWebSocketRelay(settings, connector, self._bridge)
            if settings.ws_deflate
            else None
        )
        self._carried = CarriedQuerySocket(self._upgrade_relay)

    def close(self) -> Deferred[None]:
        """
        wsse is going away: every socket, relayed or carried by the fallback,
        closes with 1001 (the page's and the app's side), and idle connections
        to the app close; fires once all of them are closed.
        """
        self._bridge.close()
        closing = [self._splice.going_away(), self._connector.going_away()]
        if self._deflating is not None:
            closing.append(self._deflating.going_away())
        if self._pool is not None:
            closing.append(self._pool.closeCachedConnections())
        return gatherResults(closing).addCallback(lambda _: None)

    def abort(self) -> None:
        """Cut the sockets that L{close} could not close in time."""
        self._splice.abort()
        self._connector.abort()
        if self._deflating is not None:
            self._deflating.abort()

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        if not request.uri.startswith(b"/") or b"#" in request.uri:
            # An absolute URL or a fragment is not a path on the app.
            return errorPage(400, "Bad Request", "The request target must be a path.")
        if path == ENDPOINT_SEGMENT:
            if (request.postpath or [])[:1] == [CARRIED_ENDPOINT]:
                return self._carried
            return self._bridge
        if is_websocket_upgrade(request):
            return self._upgrade_relay(request)
        return self._passthrough

    def _upgrade_relay(self, request: Request) -> WebSocketSplice | DeflatingWebSocketRelay:
        if self._deflating is not None and offers_deflate(request):
            return self._deflating
        return self._splice

    def render(self, request: Request) -> bytes:
        """The mount point itself (C{/app} without its slash): nginx's redirect to C{/app/}."""
        path, question, query = request.uri.partition(b"?")
        request.setResponseCode(301)
        request.setHeader(b"location", path + b"/" + question + query)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"moved to " + path + b"/\n"
