"""
An app for the lossless-resume test, run as a process:

    python -m tests.support.resume_app PORT

C{/} is a page with C{runResume(count, perSecond)}: it opens a WebSocket to
C{/ws}, sends C{count} numbered messages at that pace and collects what comes
back.  The app echoes every message and, from the moment a socket opens,
pushes C{count} numbered messages of its own at the same pace.  So each
direction carries C{count} messages, and the page can tell what was lost,
duplicated or reordered on either way: an echo it never gets was lost on the
way in (or its echo on the way out), a push it never gets was lost on the way
out.
"""

from __future__ import annotations

import sys
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor, task
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

PAGE = b"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>resume</title></head>
<body>
<script>
window.runResume = function (count, perSecond) {
  return new Promise(function (resolve) {
    var url = new URL("ws?count=" + count + "&rate=" + perSecond, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(url.href);
    var echoes = [], pushes = [], sent = 0, closed = null;
    var tick = 20, perTick = Math.max(1, Math.round(perSecond * tick / 1000));
    ws.onopen = function () {
      var timer = setInterval(function () {
        for (var i = 0; i < perTick && sent < count; i++) {
          ws.send("c:" + sent++);
        }
        if (sent >= count) {
          clearInterval(timer);
        }
      }, tick);
    };
    ws.onmessage = function (event) {
      var text = event.data;
      (text.charAt(0) === "c" ? echoes : pushes).push(Number(text.slice(2)));
      if (echoes.length >= count && pushes.length >= count) {
        finish();
      }
    };
    ws.onclose = function (event) {
      closed = [event.code, event.wasClean];
      finish();
    };
    function finish() {
      resolve({
        transport: window.__wsse ? window.__wsse.transportOf(ws) : "none",
        echoes: echoes, pushes: pushes, closed: closed
      });
    }
  });
};
</script>
</body></html>
"""


class Page(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return PAGE


class Pusher(WebSocketServerProtocol):
    def onConnect(self, request: Any) -> None:
        self.count = int(request.params["count"][0])
        self.rate = int(request.params["rate"][0])

    def onOpen(self) -> None:
        self.pushed = 0
        per_tick = max(1, round(self.rate * 0.02))

        def push() -> None:
            for _ in range(per_tick):
                if self.pushed >= self.count:
                    self.loop.stop()
                    return
                self.sendMessage(b"s:%d" % self.pushed)
                self.pushed += 1

        self.loop = task.LoopingCall(push)
        self.loop.start(0.02)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None and loop.running:
            loop.stop()


def main() -> None:
    factory = WebSocketServerFactory()
    factory.protocol = Pusher
    root = Resource()
    root.putChild(b"", Page())
    root.putChild(b"ws", WebSocketResource(factory))
    reactor.listenTCP(int(sys.argv[1]), Site(root), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
