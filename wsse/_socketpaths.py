"""
Which paths on the app a socket may reach, when the operator says (--ws-path).

Without a list every path may, as with nginx's plain C{proxy_pass}.  With one,
a socket's path (below wsse's mount, before its query) must be one of the
listed prefixes or below it, segment by segment (C{/ws} admits C{/ws} and
C{/ws/x}, not C{/wsx}); a path with dot segments or an encoded slash, dot or
backslash is refused outright, since the app could resolve it into another
route after the check.  The same check guards native, carried and fallback
sockets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from twisted.logger import Logger
from twisted.web.server import Request

from wsse import _logging
from wsse._redact import redact_uri

_log = Logger(observer=_logging.observer)

_AMBIGUOUS = re.compile(rb"%(2f|2e|5c)|\\|(^|/)\.\.?(/|$)", re.IGNORECASE)


def normalise_prefix(prefix: str) -> bytes:
    """A --ws-path value as it is matched: C{/ws/} and C{ws} are C{/ws}; C{ValueError} if it cannot match."""
    path = "/" + prefix.strip().strip("/")
    if "?" in path or "#" in path or not path.isascii() or _AMBIGUOUS.search(path.encode()):
        raise ValueError(f"{prefix!r} is not a plain path such as /ws")
    return path.encode()


def allowed(prefixes: Sequence[bytes], path_and_query: bytes) -> bool:
    """Whether a socket may go to C{path_and_query} (below wsse's mount)."""
    if not prefixes:
        return True
    path = path_and_query.split(b"?", 1)[0]
    if _AMBIGUOUS.search(path):
        return False
    return any(
        prefix == b"/" or path == prefix or path.startswith(prefix + b"/") for prefix in prefixes
    )


def refuse(request: Request, path_and_query: bytes) -> bytes:
    """A native socket to a path outside the list: 403, and the connection ends."""
    _log.warn("websocket {path} refused: not under --ws-path", path=redact_uri(path_and_query))
    request.setResponseCode(403)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"connection", b"close")
    return b"this socket path is not served\n"
