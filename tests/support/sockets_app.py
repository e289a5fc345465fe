"""
The matrix's own app: a page that keeps many WebSockets open at once, and an
app that relays what each tab says to every socket of every tab.

Run as C{python -m tests.support.sockets_app --port N} (from the repository
root); it listens on 127.0.0.1 only.

  - C{/board?tab=NAME&sockets=N}: a page that opens N sockets (8 by default)
    to C{ws/board?tab=NAME&n=I}, a URL relative to the page (so it works under a
    gateway's prefix) and with a query (so a gateway that drops it is noticed).
    A socket that closes is opened again half a second later, as the apps it
    stands for do.  Its "Ping" button sends C{ping:NAME:K} on every socket.
  - C{ws/board}: answers C{ping:NAME:K} with C{pong:NAME:K} on the same socket
    and sends C{seen:NAME:K} to every other socket it holds, whatever the tab.
    A socket whose URL lacks C{tab} or C{n} is closed with 1008, so a lost
    query cannot pass unnoticed.

The page publishes its progress in C{#status} and in C{window.board}: sockets
open, pongs for its last ping, close codes seen, and for each socket the
pings it has seen (C{NAME:K}, its own included).  A tab is done when every
socket is open, answered its ping of round K, and has seen round K's ping of
every tab named in C{board.expect}: each tab clicks once per round.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.resource import Resource
from twisted.web.server import Request

from tests.support.processes import serve_resource

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>board</title>
<style>body{font:16px sans-serif;margin:2em} #status{font-size:22px}</style>
</head><body>
<h1>Board <span id="tab"></span></h1>
<button id="ping">Ping</button>
<p id="status">starting</p>
<ol id="sockets"></ol>
<script>
(function () {
  var query = new URLSearchParams(location.search);
  var tab = query.get("tab") || "a";
  var count = Number(query.get("sockets") || 8);
  var board = window.board = {
    tab: tab, open: 0, pongs: 0, round: 0, expect: [tab], seen: [], sockets: [], closed: []
  };
  document.getElementById("tab").textContent = tab;
  function render() {
    var complete = board.seen.every(function (tabs) {
      return board.expect.every(function (t) { return tabs.has(t + ":" + board.round); });
    });
    board.done = board.open === count && board.round > 0 && board.pongs === count && complete;
    document.getElementById("status").textContent =
      "open " + board.open + "/" + count + ", pongs " + board.pongs + "/" + count +
      (board.done ? ", every socket saw " + board.expect.join(" ") : "");
    document.getElementById("sockets").innerHTML = board.seen.map(function (tabs, i) {
      var now = Array.from(tabs).filter(function (seen) { return seen.endsWith(":" + board.round); });
      return "<li>socket " + i + ": saw " + now.sort().join(" ") + "</li>";
    }).join("");
  }
  board.render = render;
  function connect(n) {
    var url = new URL("ws/board?tab=" + encodeURIComponent(tab) + "&n=" + n, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var socket = new WebSocket(url.href);
    board.sockets[n] = socket;
    var opened = false;
    socket.onopen = function () { opened = true; board.open++; render(); };
    socket.onclose = function (event) {
      // Like the apps it stands for: note the close and connect again.
      board.closed.push(event.code);
      if (opened) board.open--;
      render();
      setTimeout(function () { connect(n); }, 500);
    };
    socket.onmessage = function (event) {
      var parts = String(event.data).split(":");
      if (parts[0] === "pong" && Number(parts[2]) === board.round) {
        board.pongs++;
        board.seen[n].add(parts[1] + ":" + parts[2]);
      } else if (parts[0] === "seen") {
        board.seen[n].add(parts[1] + ":" + parts[2]);
      }
      render();
    };
  }
  for (var i = 0; i < count; i++) {
    board.seen.push(new Set());
    connect(i);
  }
  document.getElementById("ping").onclick = function () {
    board.round++;
    board.pongs = 0;
    board.sockets.forEach(function (socket) { socket.send("ping:" + tab + ":" + board.round); });
    render();
  };
  render();
})();
</script>
</body></html>
"""


class BoardProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    def onConnect(self, request: object) -> None:
        query = parse_qs(urlsplit(self.http_request_uri).query)
        self.named = "tab" in query and "n" in query

    def onOpen(self) -> None:
        if not self.named:
            self.sendClose(1008, "the socket's query did not arrive")
            return
        self.factory.sockets.add(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        kind, _, rest = payload.decode("utf-8", "replace").partition(":")
        if kind != "ping":
            return
        self.sendMessage(f"pong:{rest}".encode())
        for other in list(self.factory.sockets):
            if other is not self:
                other.sendMessage(f"seen:{rest}".encode())

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.sockets.discard(self)


class Root(Resource):
    def __init__(self) -> None:
        super().__init__()
        factory = WebSocketServerFactory()
        factory.protocol = BoardProtocol
        factory.sockets = set()
        self.putChild(b"ws", _Children({b"board": WebSocketResource(factory)}))

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"board":
            return _Page()
        return super().getChild(path, request)


class _Children(Resource):
    def __init__(self, children: dict[bytes, Resource]) -> None:
        super().__init__()
        for name, child in children.items():
            self.putChild(name, child)


class _Page(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return PAGE


def main(argv: list[str] | None = None) -> None:
    serve_resource(Root(), argv, __doc__ or "")


if __name__ == "__main__":
    main()
