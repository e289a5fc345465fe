"""
The app that the fallback browser tests put behind wsse: the WPT-style
conformance page, a few plain pages, and WebSocket endpoints that report what
they saw.

Run as C{python -m tests.support.conformance_app --port N} (from the
repository root); it listens on 127.0.0.1 only.

Pages (C{text/html}, C{no-store}):

  - C{/conformance}: L{CONFORMANCE_PAGE} (C{tests/support/conformance.html}),
    which runs its tests once loaded and publishes C{window.conformanceResults}.
  - C{/plain}, C{/some/page}, C{/app/page}: an empty page for scripts the tests
    run in it (any other path under C{/some/} or C{/app/} too).

WebSockets (every one echoes):

  - C{/ws/echo}, C{/ws}, C{/app/ws}: echo text as text and binary as binary,
    pick the subprotocol C{v2} when offered, answer a client's close with its
    own code and reason.  A text message C{wsse-cmd:close:CODE:REASON} makes
    the app close with that code (1001 included) and reason;
    C{wsse-cmd:abort} drops the TCP connection without a closing handshake.
    With C{?greet=TEXT} the app sends TEXT as soon as the socket opens.
  - C{/ws/deny}: refuses every request, an upgrade included, with 403.

Reports (JSON, C{no-store}):

  - C{/last-close?id=X}: the last close the app received from a client on a
    socket whose URL carried C{?id=X} (C{{"code": n|null, "reason": str}}),
    or C{null}; without C{id}, the last close from any client.
  - C{/handshakes?id=X}: every handshake the app accepted for C{id} (all of
    them without C{id}): path, query, subprotocols offered, headers.
"""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.support.processes import serve_resource

CONFORMANCE_PAGE = Path(__file__).with_name("conformance.html")

COMMAND = "wsse-cmd:"

PLAIN_PAGE = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    b'<title>plain</title>\n<link rel="icon" href="data:,">\n</head>\n<body>\n<h1>plain</h1>\n'
    b'<pre id="log"></pre>\n</body>\n</html>\n'
)


def crc32(data: bytes) -> str:
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _text_pool(rng: random.Random) -> list[str]:
    """Characters of every UTF-8 width (controls, CR, LF, NUL included; no surrogates)."""
    pool = [chr(c) for c in range(0x80)]
    pool += [chr(rng.randrange(0x80, 0x800)) for _ in range(128)]
    pool += [
        chr(rng.choice([rng.randrange(0x800, 0xD800), rng.randrange(0xE000, 0x10000)]))
        for _ in range(128)
    ]
    pool += [chr(rng.randrange(0x10000, 0x110000)) for _ in range(128)]
    return pool


def random_payload(kind: str, size: int, seed: int) -> bytes:
    """C{size} pseudo-random bytes, or valid UTF-8 of exactly C{size} bytes."""
    rng = random.Random(seed)
    if kind == "binary":
        return rng.randbytes(size)
    pool = _text_pool(rng)
    # About 2.3 bytes a character on average; trim to whole characters, pad with ASCII.
    text = "".join(rng.choices(pool, k=size // 2 + 1)).encode("utf-8")
    if len(text) > size:
        cut = size
        while cut > 0 and (text[cut] & 0xC0) == 0x80:
            cut -= 1
        text = text[:cut]
    return text + bytes(rng.randrange(0x20, 0x7F) for _ in range(size - len(text)))


class Records:
    """What the WebSocket endpoints saw, for the report endpoints."""

    def __init__(self) -> None:
        self.last_close: dict[str, dict[str, Any]] = {}
        self.handshakes: list[dict[str, Any]] = []


RECORDS = Records()


def _socket_id(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("id", [""])[0]


class EchoProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    socket_id = ""
    closing_by_app = False
    greeting: str | None = None

    def onConnect(self, request: Any) -> str | None:
        self.socket_id = request.params.get("id", [""])[0]
        self.greeting = request.params.get("greet", [None])[0]
        RECORDS.handshakes.append(
            {
                "id": self.socket_id,
                "path": request.path,
                "params": request.params,
                "protocols": list(request.protocols),
                "headers": dict(request.headers),
            }
        )
        return "v2" if "v2" in request.protocols else None

    def onOpen(self) -> None:
        if self.greeting is not None:
            self.sendMessage(self.greeting.encode("utf-8"), False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and payload.startswith(COMMAND.encode()):
            self._command(payload.decode("utf-8")[len(COMMAND) :])
            return
        self.sendMessage(payload, isBinary)

    def _command(self, command: str) -> None:
        if command.startswith("close:"):
            _, code, reason = command.split(":", 2)
            self.closing_by_app = True
            # sendClose refuses 1001 and the like, which an app may well use.
            self.sendCloseFrame(code=int(code), reasonUtf8=reason.encode("utf-8"))
        elif command.startswith("send:"):
            _, kind, size, seed = command.split(":")
            payload = random_payload(kind, int(size), int(seed))
            header = {"kind": kind, "size": len(payload), "crc": crc32(payload)}
            self.sendMessage(json.dumps(header).encode("utf-8"), False)
            self.sendMessage(payload, kind == "binary")
        elif command.startswith("repeat:"):
            # count messages of size ASCII bytes, all at once
            _, count, size = command.split(":")
            for _ in range(int(count)):
                self.sendMessage(b"r" * int(size), False)
        elif command == "abort":
            self.transport.abortConnection()
        else:
            self.sendMessage(("unknown command " + command).encode("utf-8"), False)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> Any:
        if not self.closing_by_app:
            record = {
                "code": code,
                "reason": (reasonRaw or b"").decode("utf-8", "replace"),
            }
            RECORDS.last_close[self.socket_id] = record
            RECORDS.last_close[""] = record
        return super().onCloseFrame(code, reasonRaw)


class DigestProtocol(EchoProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        digest = {"binary": isBinary, "size": len(payload), "crc": crc32(payload)}
        self.sendMessage(json.dumps(digest).encode("utf-8"), False)


def echo_resource(protocol: type[EchoProtocol] = EchoProtocol) -> WebSocketResource:
    factory = WebSocketServerFactory()
    factory.protocol = protocol
    factory.setProtocolOptions(
        # Answer a client's close with its own code and reason.
        echoCloseCodeReason=True,
        # A plain GET (an upgrade a gateway stripped) gets 426, not a status page.
        webStatus=False,
    )
    return WebSocketResource(factory)


def _json(request: Request, value: object) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value).encode("utf-8")


def _html(request: Request, body: bytes) -> bytes:
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return body


class Root(Resource):
    """Every path, dispatched on the whole request path."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self._echo = echo_resource()
        self._digest = echo_resource(DigestProtocol)

    def render(self, request: Request) -> Any:
        path = request.path.decode("utf-8", "replace")
        query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        socket_id = query.get("id", [None])[0]
        if path in ("/ws", "/ws/echo", "/app/ws"):
            return self._echo.render(request)
        if path == "/ws/digest":
            return self._digest.render(request)
        if path == "/ws/deny":
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"forbidden\n"
        if path == "/conformance":
            return _html(request, CONFORMANCE_PAGE.read_bytes())
        if path == "/plain" or path.startswith(("/some/", "/app/")):
            return _html(request, PLAIN_PAGE)
        if path == "/last-close":
            return _json(request, RECORDS.last_close.get(socket_id or ""))
        if path == "/handshakes":
            return _json(
                request,
                [h for h in RECORDS.handshakes if socket_id is None or h["id"] == socket_id],
            )
        if path == "/favicon.ico":
            request.setHeader(b"content-type", b"image/x-icon")
            return b""
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"not found\n"


def main(argv: list[str] | None = None) -> None:
    serve_resource(Root(), argv, __doc__ or "")


if __name__ == "__main__":
    main()
