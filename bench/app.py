"""
The app the benchmarks put behind wsse: a WebSocket echo at /ws and an event
stream at /events that stamps each event with the sending time (monotonic clock,
shared by all processes on the machine).

    python bench/app.py PORT
"""

from __future__ import annotations

import sys
import time

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor, task
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.sendMessage(payload, isBinary)


class Events(Resource):
    isLeaf = True

    def render_GET(self, request: Request) -> int:
        count = int(request.args.get(b"n", [b"500"])[0])
        interval = float(request.args.get(b"every", [b"0.01"])[0])
        request.setHeader(b"content-type", b"text/event-stream")
        request.setHeader(b"cache-control", b"no-cache")
        sent = 0

        def send() -> None:
            nonlocal sent
            request.write(b"data: %.9f\n\n" % time.monotonic())
            sent += 1
            if sent == count:
                loop.stop()
                request.finish()

        loop = task.LoopingCall(send)
        loop.start(interval)
        request.notifyFinish().addErrback(lambda _: loop.running and loop.stop())
        return NOT_DONE_YET


def main() -> None:
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
    root = Resource()
    root.putChild(b"ws", WebSocketResource(factory))
    root.putChild(b"events", Events())
    reactor.listenTCP(int(sys.argv[1]), Site(root), interface="127.0.0.1")
    reactor.run()


if __name__ == "__main__":
    main()
