"""
Who may use the fallback's endpoints: pages of the app's own origin.

A page on another site must not open a session (and with it a socket to the
app, with the browser's cookies) nor send frames into one.  Browsers say
where a request comes from in headers a page cannot forge: C{Sec-Fetch-Site}
(every current browser) and C{Origin} (on every cross-origin request, and on
same-origin POSTs).  The first is trusted when present; otherwise C{Origin}
is compared with the host the request was sent to, as the browser named it
(C{Host}, or C{X-Forwarded-Host} from a gateway).  A request with neither
header is not a cross-site browser request (a browser sends one of them
whenever it crosses origins), so it passes: curl and the tests' clients.

The POST channel also needs its own content type and session header, which
neither a form nor a C{no-cors} fetch can send: a cross-origin page would need
a CORS preflight, which wsse never grants.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from urllib.parse import urlsplit

from twisted.web.server import Request

# Sec-Fetch-Site values of a request the page itself made.
_OWN = frozenset({b"same-origin"})


@lru_cache(maxsize=256)
def origin_of(value: str) -> str | None:
    """
    C{scheme://host[:port]}, lower-cased, or C{None} if C{value} is not an origin.

    Remembered: a page sends its origin with every POST, and parsing it
    again was 3% of the CPU of a fallback round trip.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def refusal(request: Request, allowed: Collection[str]) -> str | None:
    """Why C{request} must be refused as coming from another site; C{None} if it may pass."""
    origin_header = request.getHeader(b"origin")
    origin = origin_header.decode("latin-1") if origin_header is not None else None
    if origin is not None and origin_of(origin) in allowed:
        return None
    site = request.getHeader(b"sec-fetch-site")
    if site is not None:
        if site.lower() in _OWN:
            return None
        return f"Sec-Fetch-Site is {site.decode('latin-1')!r}, origin {origin or 'not given'}"
    if origin is None:
        return None
    hosts = {
        value.decode("latin-1").strip().lower()
        for name in (b"host", b"x-forwarded-host")
        for header in request.requestHeaders.getRawHeaders(name, [])
        for value in header.split(b",")
    }
    parsed = origin_of(origin)
    if parsed is not None and parsed.split("://", 1)[1] in hosts:
        return None
    return f"origin {origin} is not this host's"
