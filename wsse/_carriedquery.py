"""
Native WebSockets whose query travels in the path.

Some gateways pass WebSocket upgrades but drop their query string (users of
SageMaker Studio report it), and apps put tokens and session ids there.  The
shim sends such a socket to C{<base>ws/<base64url of path and query>}; this
resource decodes it and relays the upgrade to that path and query on the app,
so the app sees the handshake the page meant and the socket stays native.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from wsse import _logging, _protocol
from wsse._forwarding import split_mount
from wsse._wsrelay import is_websocket_upgrade

_log = Logger(observer=_logging.observer)


class UpgradeRelay(Protocol):
    """A relay for WebSocket upgrades, told which path and query to ask the app for."""

    def relay(self, request: Request, upstream_path: bytes) -> Any: ...


class CarriedQuerySocket(Resource):
    """
    Leaf for C{<mount>__wsse/ws/<carried>}.

    @param relay: picks the relay for an upgrade (the splice, or the deflating
        relay when the browser offers compression and C{--ws-deflate} is on).
    """

    isLeaf = True

    def __init__(self, relay: Callable[[Request], UpgradeRelay]) -> None:
        super().__init__()
        self._relay = relay

    def render(self, request: Request) -> Any:
        mount, _ = split_mount(request)
        rest = request.postpath or []
        if not is_websocket_upgrade(request) or len(rest) != 2 or b"?" in request.uri:
            return _refuse(request, 400, "not a WebSocket upgrade to a carried URL")
        try:
            url = _protocol.decode_carried(rest[1])
        except ValueError as e:
            return _refuse(request, 400, f"the carried URL is malformed: {e}")
        if not url.startswith(mount):
            return _refuse(request, 404, "the carried URL is not under wsse's mount")
        return self._relay(request).relay(request, b"/" + url[len(mount) :])


def _refuse(request: Request, code: int, why: str) -> bytes:
    _log.warn("carried websocket refused: {why}", why=why)
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return why.encode() + b"\n"
