"""
What a request and its response look like on the other side of wsse.

Shared by the HTTP passthrough and the WebSocket relays so that the app sees the
same headers whichever way a browser reached it: everything the browser sent
(repeated headers kept apart, raw bytes), minus hop-by-hop headers, plus the
C{X-Forwarded-*} trio.  Location and Refresh are rewritten as nginx's
C{proxy_redirect default} does.
"""

from __future__ import annotations

from collections.abc import Sequence

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

from wsse import _protocol
from wsse._settings import HostHeader, Settings
from wsse._target import Target

# RFC 9110 section 7.6.1; Proxy-* (Proxy-Authorization, the legacy
# Proxy-Connection ...) and Proxy are dropped by name in _end_to_end.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)


def split_mount(request: IRequest) -> tuple[bytes, bytes]:
    """
    The raw path at which wsse is mounted (ending in C{/}), and the rest of the
    raw request target (path and query), which is what the app is asked for.

    Called from a leaf one level below wsse's root resource, so C{prepath} holds
    the mount's segments plus one.  The split counts raw C{/} as twisted.web did
    when it made C{prepath}, so no byte of the path is decoded or re-encoded.
    """
    depth = len(request.prepath) - 1
    uri = request.uri
    if depth == 0:
        return b"/", uri
    cut = 0
    for _ in range(depth + 1):
        cut = uri.index(b"/", cut) + 1
    return uri[:cut], b"/" + uri[cut:]


def _connection_tokens(headers: Headers) -> set[bytes]:
    tokens: set[bytes] = set()
    for value in headers.getRawHeaders(b"connection", []):
        tokens.update(t.strip().lower() for t in value.split(b","))
    return tokens


def _end_to_end(headers: Headers, also_drop: frozenset[bytes]) -> Headers:
    dropped = HOP_BY_HOP | also_drop | _connection_tokens(headers)
    result = Headers()
    for name, values in headers.getAllRawHeaders():
        lowered = name.lower()
        # Any Proxy-*, and Proxy itself, which a CGI app would take for its
        # HTTP_PROXY setting ("httpoxy").
        if lowered not in dropped and lowered != b"proxy" and not lowered.startswith(b"proxy-"):
            result.setRawHeaders(name, list(values))
    return result


def _client_host(request: IRequest) -> bytes | None:
    address = request.getClientAddress()
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host.encode("ascii")
    return None


_KEY_COOKIE = _protocol.KEY_COOKIE_PREFIX


def _drop_key_cookie(headers: Headers, cookies: Sequence[bytes]) -> None:
    """wsse's own cookies are between wsse and the browser: the app never sees them."""
    kept = []
    for cookie in cookies:
        pairs = [pair for pair in cookie.split(b";") if not pair.strip().startswith(_KEY_COOKIE)]
        if any(pair.strip() for pair in pairs):
            kept.append(b";".join(pairs).strip())
    if kept:
        headers.setRawHeaders(b"cookie", kept)
    else:
        headers.removeHeader(b"cookie")


def upstream_request_headers(request: IRequest, settings: Settings) -> Headers:
    """
    The headers to send the app for this request.

    Content-Length is left out: the HTTP client derives it from the body it
    sends, and a forwarded copy would appear twice.  X-Forwarded-Proto and
    X-Forwarded-Host describe the browser's view: a trusted gateway's values
    are kept, anyone else's replaced, so a client cannot make the app build
    its links on a host of the client's choosing.
    """
    incoming = request.requestHeaders
    headers = _end_to_end(incoming, frozenset({b"content-length", b"host"}))
    cookies = headers.getRawHeaders(b"cookie")
    if cookies and any(_KEY_COOKIE in cookie for cookie in cookies):
        _drop_key_cookie(headers, cookies)
    original_host = incoming.getRawHeaders(b"host", [None])[0]
    if settings.host_header is HostHeader.TARGET or original_host is None:
        headers.setRawHeaders(b"host", [settings.target.authority])
    else:
        headers.setRawHeaders(b"host", [original_host])
    client = _client_host(request)
    if client is not None:
        chain = incoming.getRawHeaders(b"x-forwarded-for", [])
        headers.setRawHeaders(b"x-forwarded-for", [b", ".join([*chain, client])])
    trusted = client is None or settings.trusts_forwarded_headers_from(client.decode("ascii"))
    if not (trusted and headers.hasHeader(b"x-forwarded-proto")):
        headers.setRawHeaders(b"x-forwarded-proto", [b"https" if request.isSecure() else b"http"])
    if not (trusted and headers.hasHeader(b"x-forwarded-host")):
        if original_host is None:
            headers.removeHeader(b"x-forwarded-host")
        else:
            headers.setRawHeaders(b"x-forwarded-host", [original_host])
    return headers


def websocket_handshake_headers(request: IRequest, settings: Settings) -> Headers:
    """The upgrade request's headers: end-to-end ones plus C{Upgrade}/C{Connection}."""
    headers = upstream_request_headers(request, settings)
    headers.setRawHeaders(b"upgrade", [b"websocket"])
    headers.setRawHeaders(b"connection", [b"Upgrade"])
    return headers


def copy_response_headers(
    upstream: Headers, request: IRequest, target: Target, mount_path: bytes
) -> None:
    """Replace the request's response headers with the app's end-to-end ones."""
    headers = _end_to_end(upstream, frozenset())
    location = headers.getRawHeaders(b"location")
    if location:
        headers.setRawHeaders(
            b"location", [rewrite_location(v, target, mount_path) for v in location]
        )
    refresh = headers.getRawHeaders(b"refresh")
    if refresh:
        headers.setRawHeaders(
            b"refresh", [_rewrite_refresh(v, target, mount_path) for v in refresh]
        )
    response = request.responseHeaders
    # twisted.web adds Server and Date of its own; the app's replace them, and an
    # app that sends no Server header gets none (Date stays: it is required).
    for name, _ in list(response.getAllRawHeaders()):
        if name.lower() != b"date":
            response.removeHeader(name)
    for name, values in headers.getAllRawHeaders():
        response.setRawHeaders(name, list(values))


def rewrite_location(value: bytes, target: Target, mount_path: bytes) -> bytes:
    """Map a URL on the target back to wsse's own mount point (a relative path, as nginx does)."""
    prefix = target.origin + target.base_path + b"/"
    if value.lower().startswith(prefix.lower()):
        return mount_path + value[len(prefix) :]
    return value


def _rewrite_refresh(value: bytes, target: Target, mount_path: bytes) -> bytes:
    index = value.lower().find(b"url=")
    if index < 0:
        return value
    start = index + 4
    return value[:start] + rewrite_location(value[start:], target, mount_path)


_GATEWAY_MESSAGES = {
    502: b"Bad Gateway: the app could not be reached.\n",
    504: b"Gateway Timeout: the app did not answer in time.\n",
}


def gateway_error(request: IRequest, code: int) -> None:
    """Answer with a short plain 502 or 504: no addresses, no exception text."""
    message = _GATEWAY_MESSAGES[code]
    request.setResponseCode(code)
    request.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(message)])
    request.write(message)
    request.finish()


def gateway_error_bytes(code: int) -> bytes:
    """The same answer as raw bytes, for a connection twisted.web no longer holds."""
    message = _GATEWAY_MESSAGES[code]
    reason = b"Bad Gateway" if code == 502 else b"Gateway Timeout"
    return (
        b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (code, reason, len(message), message)
    )
