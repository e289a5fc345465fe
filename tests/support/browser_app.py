"""
The app that the browser tests put behind wsse: a few HTML pages and two WebSockets.

Run as C{python -m tests.support.browser_app --port N} (from the repository
root); it listens on 127.0.0.1 only.

  - C{/p/NAME} serves the page C{PAGES[NAME]} with its own headers;
    C{?enc=gzip} or C{?enc=br} serves it compressed with that coding.
  - C{/page.js} is a same-origin external script that sets C{window.extRan}.
  - C{/ws/echo} echoes text and binary messages, picks subprotocol C{v2} when
    offered, closes with the code and reason asked for by a text message
    C{close:CODE:REASON}, and answers a client's close with its code and reason.
  - C{/ws/deny} refuses every request (a WebSocket upgrade included) with 403.

The tests import this module for the pages' bytes and for the values to expect.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import html
import sys

import brotli
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request, Site


def csp_hash(script: str) -> str:
    """The C{'sha256-...'} source expression of an inline script's text."""
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


# Inline scripts that a page's CSP must keep blocking.  Chromium's violation
# message names the hash of the blocked script, which is how the tests tell the
# expected messages from any about the shim.
BLOCKED_NONCE_SCRIPT = "window.bad = 1; /* wsse-test-blocked nonce */"
BLOCKED_HASH_SCRIPT = "window.bad = 1; /* wsse-test-blocked hash */"
BLOCKED_DEFAULT_SCRIPT = "window.inlineRan = 1; /* wsse-test-blocked default-src */"
BLOCKED_HASHES = {
    csp_hash(s) for s in (BLOCKED_NONCE_SCRIPT, BLOCKED_HASH_SCRIPT, BLOCKED_DEFAULT_SCRIPT)
}

HASHED_SCRIPT = "window.hashed = 1;"
NONCE = "abc123"

NONCE_POLICY = f"script-src 'nonce-{NONCE}'"
HASH_POLICY = f"script-src {csp_hash(HASHED_SCRIPT)}"
DEFAULT_POLICY = "default-src 'self'"

PAGE_JS = b"window.extRan = 1;\n"


def _big_text() -> str:
    """About 200 KB of known text, multi-byte UTF-8 and markup characters included."""
    lines = [
        f"{n:05d} The quick brown fox jumps over the lazy dog \u2014 caf\u00e9 \u00fc "
        f"\u6f22\u5b57 \U0001f600 <&> \"quoted\" 'single'\n"
        for n in range(2600)
    ]
    return "".join(lines)


BIG_TEXT = _big_text()


def _page(title: str, head: str = "", body: str = "") -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    ).encode()


# name -> (body, extra response headers)
PAGES: dict[str, tuple[bytes, dict[str, str]]] = {
    "native": (
        _page("native", body='<h1>native</h1>\n<p id="status">idle</p>\n'),
        {},
    ),
    # A doctype and nothing that opens a head or a script.
    "doctype-only": (
        b'<!DOCTYPE html>\n<p id="p">no head, no script</p>\n',
        {},
    ),
    "comment-first": (
        (
            b'<!-- comment --><!doctype html><html><head><meta charset="utf-8"><title>t</title>'
            b"<script>window.pageScriptRan = window.WebSocket !== undefined && !!window.__wsse</script>"
            b"</head><body><p>comment first</p></body></html>\n"
        ),
        {},
    ),
    "csp-nonce": (
        _page(
            "csp nonce",
            head=(
                f'<script nonce="{NONCE}">window.ok=1</script>\n'
                f"<script>{BLOCKED_NONCE_SCRIPT}</script>\n"
            ),
            body="<p>csp nonce</p>\n",
        ),
        {"Content-Security-Policy": NONCE_POLICY},
    ),
    "csp-hash": (
        _page(
            "csp hash",
            head=f"<script>{HASHED_SCRIPT}</script>\n<script>{BLOCKED_HASH_SCRIPT}</script>\n",
            body="<p>csp hash</p>\n",
        ),
        {"Content-Security-Policy": HASH_POLICY},
    ),
    "csp-default": (
        _page(
            "csp default-src",
            head=f'<script>{BLOCKED_DEFAULT_SCRIPT}</script>\n<script src="/page.js"></script>\n',
            body="<p>csp default-src</p>\n",
        ),
        {"Content-Security-Policy": DEFAULT_POLICY},
    ),
    "big": (
        _page("big", body=f'<pre id="text">{html.escape(BIG_TEXT, quote=False)}</pre>\n'),
        {},
    ),
}


def encode(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body)
    if coding == "br":
        return brotli.compress(body)
    raise ValueError(coding)


class PageResource(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        name = request.postpath[0].decode("ascii", "replace") if request.postpath else ""
        if name not in PAGES:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"no such page\n"
        body, headers = PAGES[name]
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        for header, value in headers.items():
            request.setHeader(header.encode("ascii"), value.encode("ascii"))
        coding = request.args.get(b"enc", [b""])[0].decode("ascii")
        if coding:
            body = encode(body, coding)
            request.setHeader(b"content-encoding", coding.encode("ascii"))
            request.setHeader(b"vary", b"Accept-Encoding")
        return body


class StaticResource(Resource):
    """Fixed bytes of one type (twisted.web.static's import warns about deprecations)."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self._body = body
        self._type = content_type

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", self._type)
        return self._body


class DenyResource(Resource):
    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(403)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"forbidden\n"


class EchoProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    def onConnect(self, request: object) -> str | None:
        return "v2" if "v2" in request.protocols else None  # type: ignore[attr-defined]

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and payload.startswith(b"close:"):
            _, code, reason = payload.decode("utf-8").split(":", 2)
            self.sendClose(int(code), reason)
            return
        self.sendMessage(payload, isBinary)


def make_root() -> Resource:
    root = Resource()
    root.putChild(b"p", PageResource())
    root.putChild(b"page.js", StaticResource(PAGE_JS, b"text/javascript; charset=utf-8"))
    root.putChild(b"favicon.ico", StaticResource(b"", b"image/x-icon"))
    sockets = Resource()
    echo = WebSocketServerFactory()
    echo.protocol = EchoProtocol
    # Answer a client's close with its own code and reason, as browsers expect
    # (autobahn answers 1000 without a reason by default).
    echo.setProtocolOptions(echoCloseCodeReason=True)
    sockets.putChild(b"echo", WebSocketResource(echo))
    sockets.putChild(b"deny", DenyResource())
    root.putChild(b"ws", sockets)
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    from twisted.internet import reactor
    from twisted.python import log

    log.startLogging(sys.stdout)
    reactor.listenTCP(args.port, Site(make_root()), interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
