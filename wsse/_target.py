"""
The one upstream app wsse fronts.

The target is fixed by configuration: every connection wsse opens, for HTTP or
WebSocket, comes from L{Target.endpoint}, which never looks at anything a client
sent.  That is what keeps a crafted path (C{//host}, C{@host}, an absolute URL)
from steering wsse elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.ssl import optionsForClientTLS
from zope.interface import implementer

from wsse._socketio import widen

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """
    Where the app listens.

    @ivar base_path: a path prefix on the app, without a trailing slash (C{b""} for
        none); a request for C{/x} goes to C{base_path + b"/x"}, as nginx's
        C{proxy_pass http://app/base/} does for C{location /}.
    """

    scheme: str
    host: str
    port: int
    base_path: bytes = b""

    @classmethod
    def from_url(cls, url: str) -> Target:
        """Parse C{http://host:port/base}; raise L{ValueError} with a readable reason."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"target URL must start with http:// or https://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"target URL has no host: {url!r}")
        if parts.username or parts.password:
            raise ValueError("target URL must not carry a user or password")
        if parts.query or parts.fragment:
            raise ValueError("target URL must not have a query or fragment")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError(f"target URL has an invalid port: {url!r}") from None
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/").encode("ascii"))

    # Worked out once, since every request uses them; a cached_property
    # writes the instance's __dict__, which a frozen dataclass allows.

    @cached_property
    def authority(self) -> bytes:
        """The C{host:port} that nginx would send as C{$proxy_host}."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host.encode("idna")
        return f"{host}:{self.port}".encode("idna")

    @cached_property
    def origin(self) -> bytes:
        return self.scheme.encode("ascii") + b"://" + self.authority

    @cached_property
    def _url_prefix(self) -> bytes:
        return self.origin + self.base_path

    def url(self, path_and_query: bytes) -> bytes:
        """The absolute upstream URL for a request path (which starts with C{/})."""
        return self._url_prefix + path_and_query

    def endpoint(self, reactor: IReactorTime, timeout: float) -> IStreamClientEndpoint:
        """
        A client endpoint to the app, connecting within C{timeout} seconds.

        Each C{connect} dials anew, so one endpoint serves every connection:
        the passthrough and the splice build theirs once, since building one
        (and, for https, its TLS options) per request showed in profiles.
        """
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            reactor, self.host, self.port, timeout=timeout
        )
        if self.scheme == "https":
            endpoint = wrapClientTLS(optionsForClientTLS(self.host), endpoint)
        return _QuietEndpoint(endpoint)

    def __str__(self) -> str:
        return self.url(b"/").decode("ascii")


@implementer(IStreamClientEndpoint)
class _QuietEndpoint:
    """
    Connects without the "Starting factory" lines Twisted logs for each client
    factory (one per upstream connection would drown the log), and widens
    each connection's reads and sends (L{widen}).
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        factory.noisy = False  # type: ignore[attr-defined]
        return self._endpoint.connect(factory).addCallback(_widened)


def _widened(protocol: IProtocol) -> IProtocol:
    widen(getattr(protocol, "transport", None))
    return protocol
