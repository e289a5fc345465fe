"""
The twisted.web Site that serves wsse, with its access log on twisted.logger.

Kept apart from the service so that an embedding program, the init script and
twistd all build the same thing.
"""

from __future__ import annotations

from twisted.logger import Logger
from twisted.web import http
from twisted.web.resource import IResource
from twisted.web.server import Site

from wsse import _logging
from wsse._request_body import StreamingRequest

_log = Logger(namespace="wsse.access", observer=_logging.observer)

# Idle keep-alive connections from browsers and gateways close after this many
# seconds, nginx's keepalive_timeout; a request in progress (an event stream) is
# never cut by it on HTTP/1.1.
IDLE_TIMEOUT = 75


class WSSESite(Site):
    """
    A Site whose access log is a structured twisted.logger event per request,
    and whose requests stream large bodies to the app as they arrive.
    """

    requestFactory = StreamingRequest

    def __init__(self, resource: IResource, timeout: float | None = IDLE_TIMEOUT) -> None:
        super().__init__(resource, timeout=timeout)

    def log(self, request: http.Request) -> None:
        _log.info(
            '{client} "{method} {uri} {protocol}" {code} {length}',
            client=getattr(request.getClientAddress(), "host", "-"),
            method=request.method.decode("latin-1"),
            uri=request.uri.decode("latin-1"),
            protocol=request.clientproto.decode("latin-1"),
            code=request.code,
            length=request.sentLength or "-",
        )


def make_site(resource: IResource, timeout: float | None = IDLE_TIMEOUT) -> Site:
    """The Site for a wsse resource (or any tree holding one)."""
    return WSSESite(resource, timeout)
