"""
A small chat app over WebSocket, for C{--demo}: one command shows wsse at work.

The page is served by the app and reaches the browser through wsse like any
app's page, shim included, and shows how the shim carries its socket.
"""

from __future__ import annotations

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request

_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wsse demo</title>
<style>
body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; }
#log { border: 1px solid #ccc; height: 16em; overflow-y: auto; padding: .5em; }
#transport { font-weight: bold; }
</style>
</head>
<body>
<h1>wsse demo</h1>
<p>Socket: <span id="state">connecting</span>, carried by <span id="transport">?</span>.</p>
<div id="log"></div>
<form id="form"><input id="text" autocomplete="off" autofocus> <button>Send</button></form>
<p>Every page open on this demo shares one chat; open a second tab to see it.</p>
<p>Try the fallback without a broken gateway: <a href="?wsse=fallback">force the fallback</a>
for this tab, or <a href="?wsse=native">go back to probing</a>.</p>
<script>
const log = document.getElementById("log");
const say = (text) => {
  const line = document.createElement("div");
  line.textContent = text;
  log.append(line);
  log.scrollTop = log.scrollHeight;
};
const url = new URL("ws", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const ws = new WebSocket(url);
const wsse = window.__wsse;
ws.onopen = () => {
  document.getElementById("state").textContent = "open";
  document.getElementById("transport").textContent =
    wsse ? wsse.transportOf(ws) : "the browser (no wsse shim on this page)";
};
ws.onmessage = (event) => say(event.data);
ws.onclose = (event) => {
  document.getElementById("state").textContent = "closed (" + event.code + ")";
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (input.value && ws.readyState === WebSocket.OPEN) {
    ws.send(input.value);
    input.value = "";
  }
};
</script>
</body>
</html>
"""


class _ChatProtocol(WebSocketServerProtocol):
    factory: _ChatFactory

    def onOpen(self) -> None:
        self.factory.members.add(self)
        self.sendMessage(b"welcome: " + str(len(self.factory.members)).encode() + b" here")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        for member in self.factory.members:
            member.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.members.discard(self)


class _ChatFactory(WebSocketServerFactory):
    protocol = _ChatProtocol  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.members: set[_ChatProtocol] = set()
        self.setProtocolOptions(echoCloseCodeReason=True)


class _Page(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _PAGE


class _NoIcon(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(204)
        return b""


def demo_resource() -> Resource:
    """The demo app's resource tree: the page at C{/}, the chat socket at C{/ws}."""
    root = Resource()
    root.putChild(b"", _Page())
    root.putChild(b"favicon.ico", _NoIcon())
    root.putChild(b"ws", WebSocketResource(_ChatFactory()))
    return root
