"""
Everything about a wsse deployment that is not a collaborator.

One frozen object, built by the command line (L{wsse.tap}) or by an embedding
program, and read by every resource; collaborators (reactor, HTTP agent) are
passed separately so tests can swap them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsse._forwarding import HostHeader
from wsse._shim import Shim
from wsse._target import Target


@dataclass(frozen=True)
class Settings:
    """
    @ivar connect_timeout: seconds to establish a connection to the app.
    @ivar response_timeout: seconds the app may take to send response headers
        once the request is sent (then 504).
    @ivar pool_size: idle keep-alive connections kept to the app; size it to the
        expected concurrency, since a request finding none opens a new one.
    @ivar pool_idle_timeout: seconds an idle pooled connection is kept; below the
        app's own keep-alive timeout, so wsse never reuses one the app is closing.
    @ivar max_message_size: the largest WebSocket message wsse relays where it
        sees messages (the deflating relay, the fallback); bigger ones close the
        socket with 1009.
    @ivar ws_deflate: relay WebSocket messages with autobahn on both legs and
        offer permessage-deflate to browsers, instead of splicing bytes.
    """

    target: Target
    host_header: HostHeader = HostHeader.ORIGINAL
    connect_timeout: float = 10.0
    response_timeout: float = 60.0
    pool_size: int = 64
    pool_idle_timeout: float = 1.5
    max_message_size: int = 64 * 1024 * 1024
    ws_deflate: bool = False
    shim: Shim = field(default_factory=Shim)
