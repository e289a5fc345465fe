"""
Sending at once, and reading and sending in bigger pieces, on real sockets.

Each test holds a plain socket as the far end, so what has reached the kernel
shows without the reactor turning.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint, connectProtocol
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from wsse._site import make_site
from wsse._socketio import READ_SIZE, SEND_SIZE, send_now, widen
from wsse._target import Target


class Held(Protocol):
    """The accepted end of a connection: made and lost, as Deferreds."""

    def __init__(self) -> None:
        self.made: defer.Deferred[Held] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.made.callback(self)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.reason = reason
        self.lost.callback(None)


def arrived(sock: socket.socket, wait: float) -> bytes:
    """What the far end has been sent so far (waiting at most C{wait} seconds for the first byte)."""
    got = b""
    while select.select([sock], [], [], wait)[0]:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
        wait = 0
    return got


class SendNow(TestCase):
    async def _connected(self) -> tuple[ITransport, socket.socket, Held]:
        held = Held()
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: held), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        far = socket.create_connection(("127.0.0.1", port.getHost().port))
        far.setblocking(False)
        self.addCleanup(far.close)
        await held.made
        assert held.transport is not None
        self.addCleanup(held.transport.loseConnection)
        return held.transport, far, held

    async def test_a_write_reaches_the_peer_before_the_reactor_turns(self) -> None:
        """send_now sends in the call; a plain write waits for the reactor (the reason for it)."""
        transport, far, _ = await self._connected()
        transport.write(b"queued")
        self.assertEqual(arrived(far, 0.2), b"")
        send_now(transport, b" and sent")
        self.assertEqual(arrived(far, 5), b"queued and sent")

    async def test_with_nothing_queued_the_bytes_go_straight_to_the_kernel(self) -> None:
        """The reactor is never asked to watch the socket for writability."""
        transport, far, _ = await self._connected()
        asked: list[object] = []
        start_writing = transport.startWriting  # type: ignore[attr-defined]
        transport.startWriting = lambda: asked.append(start_writing())  # type: ignore[attr-defined]
        send_now(transport, b"straight")
        send_now(transport, b" through")
        self.assertEqual(arrived(far, 5), b"straight through")
        self.assertEqual(asked, [])
        transport.write(b", and a plain write is queued")
        self.assertEqual(len(asked), 1)
        self.assertEqual(arrived(far, 0.2), b"")

    async def test_what_the_socket_does_not_take_is_queued_and_arrives_in_order(self) -> None:
        """
        One send takes at most SEND_LIMIT, and the kernel less while the peer
        does not read: the rest is queued, and a later send_now waits its turn.
        """
        transport, far, _ = await self._connected()
        big = bytes(range(256)) * 65536  # 16 MiB
        send_now(transport, big)
        self.assertIn(transport, reactor.getWriters())
        self.assertTrue(transport.dataBuffer or transport._tempDataLen)  # type: ignore[attr-defined]
        send_now(transport, b"and then this")
        expected = big + b"and then this"
        got = b""
        deadline = time.monotonic() + 10
        while len(got) < len(expected) and time.monotonic() < deadline:
            await deferLater(reactor, 0, lambda: None)
            got += arrived(far, 0)
        self.assertEqual(got, expected)
        self.assertNotIn(transport, reactor.getWriters())

    async def test_an_aborted_connection_sends_nothing_more(self) -> None:
        transport, far, held = await self._connected()
        transport.abortConnection()  # type: ignore[attr-defined]
        send_now(transport, b"after the abort")
        self.assertEqual(arrived(far, 0.2), b"")  # before the reactor turns and resets it
        await held.lost

    async def test_a_peer_gone_ends_the_connection_as_usual(self) -> None:
        """
        A failed send raises nothing; the reactor meets the error and ends the
        connection (here by sending: the connection is not read).
        """
        transport, far, held = await self._connected()
        transport.pauseProducing()  # type: ignore[attr-defined]
        far.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        far.close()  # a reset
        for _ in range(3):
            send_now(transport, b"x" * 65536)
        await held.lost
        self.assertFalse(transport.connected)  # type: ignore[attr-defined]
        self.assertIsNotNone(held.reason)

    def test_other_transports_only_write(self) -> None:
        transport = StringTransport()
        send_now(transport, b"data")
        self.assertEqual(transport.value(), b"data")


class Widen(TestCase):
    def test_only_tcp_transports_change(self) -> None:
        transport = StringTransport()
        widen(transport)
        self.assertFalse(hasattr(transport, "bufferSize"))

    async def test_browsers_connections_are_widened(self) -> None:
        """The site's connections read and send in the bigger pieces."""
        seen: list[tuple[int, int]] = []

        class Probe(Resource):
            isLeaf = True

            def render_GET(self, request: Request) -> bytes:
                transport = request.channel.transport
                seen.append((transport.bufferSize, transport.SEND_LIMIT))  # type: ignore[union-attr]
                return b"ok"

        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            make_site(Probe())
        )
        self.addCleanup(port.stopListening)
        far = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(far.close)
        far.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        far.setblocking(False)
        answer = b""
        while b"ok" not in answer:
            await deferLater(reactor, 0.01, lambda: None)
            answer += arrived(far, 0)
        self.assertEqual(seen, [(READ_SIZE, SEND_SIZE)])

    async def test_connections_to_the_app_are_widened(self) -> None:
        held = Held()
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: held), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        target = Target("http", "127.0.0.1", port.getHost().port)
        protocol = await connectProtocol(target.endpoint(reactor, 5), Protocol())
        assert protocol.transport is not None
        self.addCleanup(protocol.transport.loseConnection)
        await held.made
        self.assertEqual(
            (protocol.transport.bufferSize, protocol.transport.SEND_LIMIT),  # type: ignore[attr-defined]
            (READ_SIZE, SEND_SIZE),
        )
