"""
An app on the C{websockets} library whose socket streams before it listens,
for the tests of the fallback's POST channel.

Run as C{python -m tests.support.streaming_app --port N} (from the repository
root); it listens on 127.0.0.1 only.

  - Any plain request: an empty HTML page (C{no-store}), for the shim.
  - C{/ws/stream?count=N&size=S&pace=MS}: a WebSocket that first sends N
    binary messages of S bytes, MS milliseconds apart, and only then echoes
    what it receives, as an app that streams a long output before it takes
    input.  While its sends wait (its peer reads slowly) it does not read
    either: C{websockets} reads ahead only up to its queue (4 messages here),
    and the app's receive buffer is kept at 64 KiB, so a peer that writes
    meanwhile is soon held back by TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

PAGE = (
    b'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    b'<title>stream</title>\n<link rel="icon" href="data:,">\n</head>\n'
    b"<body>\n<h1>stream</h1>\n</body>\n</html>\n"
)


async def stream_then_echo(ws: ServerConnection) -> None:
    query = parse_qs(urlsplit(ws.request.path).query if ws.request else "")
    count = int(query.get("count", ["0"])[0])
    size = int(query.get("size", ["0"])[0])
    pace = int(query.get("pace", ["0"])[0]) / 1000
    for _ in range(count):
        await ws.send(bytes(size))
        await asyncio.sleep(pace)
    async for message in ws:
        await ws.send(message)


def page(connection: ServerConnection, request: Request) -> Response | None:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    headers = Headers(
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(PAGE))),
            ("Cache-Control", "no-store"),
        ]
    )
    return Response(200, "OK", headers, PAGE)


async def main(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # (Sockets it accepts inherit it, and the kernel no longer grows it.)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    listener.bind(("127.0.0.1", port))
    async with serve(
        stream_then_echo, sock=listener, process_request=page, max_size=None, max_queue=4
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
