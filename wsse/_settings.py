"""
Everything about a wsse deployment that is not a collaborator.

One frozen object, built by the command line (L{wsse.tap}) or by an embedding
program, and read by every resource; collaborators (reactor, HTTP agent) are
passed separately so tests can swap them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache, partial
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from wsse._shim import Shim
from wsse._target import Target


class HostHeader(Enum):
    """Which Host the app is told."""

    ORIGINAL = "original"  # the browser's, like nginx's "proxy_set_header Host $http_host"
    TARGET = "target"  # the target's host:port, like nginx's default $proxy_host


Network = IPv4Network | IPv6Network

LOOPBACK: tuple[Network, ...] = (ip_network("127.0.0.0/8"), ip_network("::1/128"))


def _trusts(networks: tuple[Network, ...] | None, host: str) -> bool:
    if networks is None:
        return True
    try:
        address = ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def parse_networks(value: str) -> tuple[Network, ...] | None:
    """C{"127.0.0.1,10.0.0.0/8"} to networks; C{"*"} (trust everyone) to C{None}."""
    if value.strip() == "*":
        return None
    return tuple(
        ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
    )


@dataclass(frozen=True)
class Settings:
    """
    @ivar connect_timeout: seconds to establish a connection to the app.
    @ivar response_timeout: seconds the app may take to send response headers
        once the request is sent, or to answer a WebSocket handshake (then 504).
    @ivar pool_size: idle keep-alive connections kept to the app; size it to the
        expected concurrency, since a request finding none opens a new one.
    @ivar pool_idle_timeout: seconds an idle pooled connection is kept; below the
        app's own keep-alive timeout, so wsse never reuses one the app is closing.
    @ivar max_message_size: the largest WebSocket frame, and message of several
        frames, wsse relays either way; bigger ones close the socket with 1009.
        The splice measures them on the wire, from frame headers.
    @ivar forwarded_allow_ips: the peers whose X-Forwarded-Proto and
        X-Forwarded-Host are passed on (a gateway in front); C{None} trusts
        every peer.  Others get these headers from what wsse itself sees.
    @ivar probe_timeout: seconds a native WebSocket may stay CONNECTING before
        the shim gives up on it and uses the fallback.
    @ivar force_fallback: every page uses the fallback, without probing.
    @ivar heartbeat: seconds between comments on an idle event stream, below
        every idle timeout of the gateways in front.
    @ivar grace: seconds a page session (and its sockets to the app) waits for
        its event stream to come back after it drops.
    @ivar replay_buffer: bytes of events a page may leave unacknowledged; a
        socket whose message would pass it closes with 1013.
    @ivar ws_deflate: relay WebSocket messages with autobahn on both legs and
        offer permessage-deflate to browsers, instead of splicing bytes.
    @ivar allowed_origins: origins (C{scheme://host[:port]}) besides the page's
        own whose pages may open fallback sessions and send into them.
    @ivar max_page_sockets: fallback sockets one page may hold open; more close
        with 1008 (policy), so one page cannot take every socket.
    @ivar max_sockets: sockets the process holds open in all, fallback and
        native together; more fallback ones close with 1013 (try again later),
        and more native upgrades get 503, since there is no handshake yet to
        close.
    @ivar socket_paths: the app paths (prefixes, by whole segments) that
        sockets may reach; empty for any (see L{wsse._socketpaths}).
    """

    target: Target
    host_header: HostHeader = HostHeader.ORIGINAL
    connect_timeout: float = 10.0
    response_timeout: float = 60.0
    pool_size: int = 64
    pool_idle_timeout: float = 1.5
    max_message_size: int = 64 * 1024 * 1024
    forwarded_allow_ips: tuple[Network, ...] | None = LOOPBACK
    probe_timeout: float = 3.0
    force_fallback: bool = False
    heartbeat: float = 5.0
    grace: float = 30.0
    replay_buffer: int = 96 * 1024 * 1024
    ws_deflate: bool = False
    allowed_origins: frozenset[str] = frozenset()
    max_page_sockets: int = 256
    max_sockets: int = 20000
    socket_paths: tuple[bytes, ...] = ()
    shim: Shim = field(default_factory=Shim)
    _trusted: Callable[[str], bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Asked on every request, mostly by the same few peers (a gateway, a
        # load balancer); parsing the address each time showed in profiles.
        trusted = lru_cache(maxsize=1024)(partial(_trusts, self.forwarded_allow_ips))
        object.__setattr__(self, "_trusted", trusted)

    def trusts_forwarded_headers_from(self, host: str) -> bool:
        return self._trusted(host)
