"""The site's connections: what each request is told about its own connection."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Request

from wsse._site import make_site


class _CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 8081),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 50000),
        )
        self.host_asked = 0

    def getHost(self) -> IPv4Address:
        self.host_asked += 1
        return super().getHost()


class _Hosts(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[object] = []

    def render_GET(self, request: Request) -> bytes:
        self.seen.append(request.getHost())
        return b"ok"


def test_each_request_on_a_connection_gets_its_address_without_asking_the_socket_again() -> None:
    resource = _Hosts()
    site = make_site(resource, timeout=None)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000))
    transport = _CountingTransport()
    protocol.makeConnection(transport)
    for _ in range(3):
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    assert transport.value().count(b"HTTP/1.1 200 OK") == 3
    assert resource.seen == [IPv4Address("TCP", "127.0.0.1", 8081)] * 3
    assert transport.host_asked == 1


def _served(resource: Resource) -> tuple[object, StringTransport]:
    protocol = make_site(resource, timeout=None).buildProtocol(
        IPv4Address("TCP", "127.0.0.1", 50000)
    )
    transport = _CountingTransport()
    protocol.makeConnection(transport)
    return protocol, transport


def test_the_head_limit_counts_each_request_s_head_alone() -> None:
    """Two heads of 10 KiB on one connection: together over 16 KiB, each under."""
    protocol, transport = _served(_Hosts())
    head = b"GET / HTTP/1.1\r\nHost: example\r\n" + b"X-Pad: " + b"a" * 10_000 + b"\r\n\r\n"
    protocol.dataReceived(head)  # type: ignore[attr-defined]
    protocol.dataReceived(head)  # type: ignore[attr-defined]
    assert transport.value().count(b"HTTP/1.1 200 OK") == 2
    assert not transport.disconnecting


def test_a_head_over_the_limit_by_continuation_lines_is_answered_431() -> None:
    protocol, transport = _served(_Hosts())
    folded = b"".join(b" " + b"a" * 1000 + b"\r\n" for _ in range(17))
    protocol.dataReceived(  # type: ignore[attr-defined]
        b"GET / HTTP/1.1\r\nHost: example\r\nX-Folded: start\r\n" + folded + b"\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 431 ")
    assert transport.disconnecting
