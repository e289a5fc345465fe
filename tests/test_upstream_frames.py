"""
The upstream socket's own frame reader, against whatever an app sends.

L{UpstreamSocket._dataReceived} reads whole text and binary frames itself and
leaves the rest to autobahn.  However the app's bytes fall into reads, the page
must get what autobahn alone would give it, and what autobahn refuses (lengths
not in their shortest form, messages over the limit) must still be refused.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
from itertools import accumulate

from autobahn.twisted.websocket import WebSocketClientFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import StringTransport

from tests.support.clients import ws_frame
from wsse._draining import OpenSet
from wsse._upstream import Handshake, UpstreamSocket

Message = tuple[bytes, bool]


class Peer:
    """Records the messages a socket hands on."""

    def __init__(self) -> None:
        self.opened = False
        self.messages: list[Message] = []

    def upstream_opened(self, socket: UpstreamSocket) -> None:
        self.opened = True

    def upstream_message(self, payload: bytes, is_binary: bool) -> None:
        self.messages.append((payload, is_binary))

    def upstream_closing(self, code: int | None, reason: str) -> None: ...

    def upstream_lost(self, code: int, reason: str) -> None: ...

    def upstream_refused(self, status: int, reason: str) -> None: ...


class Transport(StringTransport):
    """Lets autobahn unregister a producer it never registered, as TCP transports do."""

    def unregisterProducer(self) -> None:
        self.producer = None


def run(reads: list[bytes], limit: int = 0) -> tuple[UpstreamSocket, Peer, list[tuple[int, bytes]]]:
    """Open a socket in memory, feed it C{reads}; what it delivered and the frames it wrote."""
    timers = set(IReactorTime(reactor).getDelayedCalls())
    socket, peer, transport = open_socket(limit)
    for data in filter(None, reads):
        socket.dataReceived(data)
    socket.connectionLost()
    assert set(IReactorTime(reactor).getDelayedCalls()) <= timers
    return socket, peer, written(transport.value())


def open_socket(limit: int = 0) -> tuple[UpstreamSocket, Peer, Transport]:
    """A socket in memory, past its handshake, with nothing written yet."""
    factory = WebSocketClientFactory("ws://app.invalid/")
    factory.protocol = UpstreamSocket
    factory.setProtocolOptions(
        maxMessagePayloadSize=limit,
        utf8validateIncoming=False,
        failByDrop=False,
        # No timers, so nothing is left behind on the reactor.
        openHandshakeTimeout=0,
        closeHandshakeTimeout=0,
        autoPingInterval=0,
        serverConnectionDropTimeout=0,
    )
    socket = factory.buildProtocol(None)
    assert isinstance(socket, UpstreamSocket)
    peer = Peer()
    socket.handshake, socket.delegate, socket.registry = Handshake(b"/", b"app"), peer, OpenSet()
    transport = Transport()
    socket.makeConnection(transport)
    key = re.search(rb"\r\nSec-WebSocket-Key: (\S+)\r\n", transport.value())
    assert key
    accept = base64.b64encode(
        hashlib.sha1(key[1] + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    )
    transport.clear()
    socket.dataReceived(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    assert socket.state == socket.STATE_OPEN and peer.opened
    transport.clear()
    return socket, peer, transport


def written(data: bytes) -> list[tuple[int, bytes]]:
    """The (masked) frames a client wrote: opcode and unmasked payload."""
    frames, i = [], 0
    while i < len(data):
        opcode, length, i = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        extended = {126: 2, 127: 8}.get(length, 0)
        if extended:
            length, i = int.from_bytes(data[i : i + extended], "big"), i + extended
        key, i = data[i : i + 4], i + 4
        frames.append((opcode, bytes(b ^ key[j % 4] for j, b in enumerate(data[i : i + length]))))
        i += length
    return frames


# Payload sizes for every length form: 7-bit, 16-bit and 64-bit.
SIZES = st.one_of(st.integers(0, 125), st.integers(126, 65535), st.integers(65536, 200_000))


@st.composite
def payloads(draw: st.DrawFn, sizes: st.SearchStrategy[int] = SIZES) -> Message:
    """Random bytes, or valid UTF-8 text (a drawn string repeated, padded with ASCII)."""
    size = draw(sizes)
    if draw(st.booleans()):
        return random.Random(draw(st.integers())).randbytes(size), True
    unit = draw(st.text(min_size=1, max_size=5))
    count = size // len(unit.encode())
    text = (unit * count).encode()
    return text + b"." * (size - len(text)), False


def frames_of(message: Message, cuts: list[int]) -> list[bytes]:
    """A message as one frame (no C{cuts}), or as fragments cut at C{cuts}."""
    payload, binary = message
    edges = [0, *sorted(cuts), len(payload)]
    parts = [payload[a:b] for a, b in zip(edges, edges[1:], strict=False)]
    firsts = [0x81 + binary] if not cuts else [0x01 + binary, *[0x00] * len(cuts[1:]), 0x80]
    return [ws_frame(first, part, False) for first, part in zip(firsts, parts, strict=True)]


@st.composite
def messages(draw: st.DrawFn) -> tuple[Message, list[bytes]]:
    """A message and its frames: whole or 2-4 fragments, with pings around or between."""
    message = draw(payloads())
    cuts = draw(st.lists(st.integers(0, len(message[0])), max_size=3))
    frames = frames_of(message, cuts)
    for ping in draw(st.lists(st.binary(max_size=125), max_size=3)):
        frames.insert(draw(st.integers(0, len(frames))), ws_frame(0x89, ping, False))
    return message, frames


def starts_of(frames: list[bytes]) -> list[int]:
    return list(accumulate((len(frame) for frame in frames[:-1]), initial=0))


@st.composite
def reads(draw: st.DrawFn, frames: list[bytes]) -> list[bytes]:
    """C{frames} cut into reads anywhere, often inside headers, with runs of 1-byte reads."""
    stream, starts = b"".join(frames), starts_of(frames)
    near = st.builds(int.__add__, st.sampled_from(starts), st.integers(0, 11))
    points = draw(st.lists(st.one_of(near, st.integers(0, len(stream))), max_size=12))
    for start in draw(st.lists(st.sampled_from(starts), max_size=3)):
        points += range(start, start + 14)
    edges = sorted({0, len(stream), *(p for p in points if p < len(stream))})
    return [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def check(frames: list[bytes], expected: list[Message], cut: list[bytes]) -> None:
    """C{frames}, read as C{cut}, give the C{expected} messages and a pong for each ping."""
    socket, peer, replies = run(cut, limit=1 << 20)
    got, want = ([(len(p), b) for p, b in some] for some in (peer.messages, expected))
    assert got == want, [len(read) for read in cut]
    assert peer.messages == expected, "a payload differs"
    assert not socket.failedByMe and not socket.closedByMe
    assert replies == [(0xA, frame[2:]) for frame in frames if frame[0] == 0x89]


@settings(max_examples=200, deadline=None)
@given(st.lists(messages(), min_size=1, max_size=5), st.data())
def test_messages_arrive_whole_and_in_order_however_they_are_cut(
    sent: list[tuple[Message, list[bytes]]], data: st.DataObject
) -> None:
    """Every length form, fragments and pings, cut anywhere: the same messages, in order."""
    frames = [frame for _, message_frames in sent for frame in message_frames]
    check(frames, [message for message, _ in sent], data.draw(reads(frames)))


PING = ws_frame(0x89, b"", False)
# Payloads chosen so that a read starting inside a header would parse as frames.
SENT: list[tuple[Message, list[int]]] = [
    (("h\xe9llo".encode(), False), []),
    ((b"\x01" * 130, True), []),  # header 82 7e 00 82
    (("\u2603".encode() * 100, False), [1, 200]),
    ((b"\x05" * 0x18205, True), []),  # header 82 7f ... 01 82 05
    ((b"", True), []),  # a lone last byte must not wait for more
]
FRAMES = [frame for message, cuts in SENT for frame in [PING, *frames_of(message, cuts)]]


def test_every_header_cut_into_reads_of_every_short_length() -> None:
    """Whatever read ends inside a header, fast path's or autobahn's, the next may be short."""
    stream, expected = b"".join(FRAMES), [message for message, _ in SENT]
    for p in {start + d for start in starts_of(FRAMES) for d in range(1, 12)}:
        for q in [*range(p + 1, p + 13), len(stream)]:
            check(FRAMES, expected, [stream[:p], stream[p:q], stream[q:]])


# Lengths autobahn refuses: 16 bits for a 7-bit length, 64 for a 7- or 16-bit one, or the top bit set.
NON_MINIMAL = st.one_of(
    st.integers(0, 125).map(lambda n: b"\x7e" + n.to_bytes(2, "big") + b"a" * n),
    st.integers(0, 65535).map(lambda n: b"\x7f" + n.to_bytes(8, "big") + b"a" * n),
    st.integers(1 << 63, (1 << 64) - 1).map(lambda n: b"\x7f" + n.to_bytes(8, "big") + b"a" * 50),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(payloads(st.integers(0, 300)), max_size=3),
    st.sampled_from([b"\x81", b"\x82"]),
    NON_MINIMAL,
    st.data(),
)
def test_a_length_not_in_its_shortest_form_fails_the_connection(
    before: list[Message], first: bytes, rest: bytes, data: st.DataObject
) -> None:
    """autobahn refuses these with 1002; the fast path must not read them as frames."""
    frames = [*(frames_of(message, [])[0] for message in before), first + rest]
    _, peer, replies = run(data.draw(reads([*frames, ws_frame(0x82, b"after", False)])))
    assert peer.messages == before
    assert replies[0][0] == 0x8 and replies[0][1][:2] == (1002).to_bytes(2, "big")


LIMIT = 1000


@settings(max_examples=200, deadline=None)
@given(
    st.lists(payloads(st.integers(0, LIMIT)), max_size=3),
    payloads(st.integers(LIMIT + 1, 70_000)),
    st.lists(st.integers(0, LIMIT + 1), max_size=3),
    st.data(),
)
def test_a_message_over_the_limit_is_refused_with_1009(
    before: list[Message], over: Message, cuts: list[int], data: st.DataObject
) -> None:
    """Over maxMessagePayloadSize, whole or in fragments, in one read or many: 1009, not delivered."""
    frames = [*(frames_of(message, [])[0] for message in before), *frames_of(over, cuts)]
    socket, peer, replies = run(data.draw(reads(frames)), limit=LIMIT)
    assert peer.messages == before
    assert replies[0][0] == 0x8 and replies[0][1][:2] == (1009).to_bytes(2, "big")
    assert socket.failedByMe


@given(st.lists(payloads(st.integers(0, 70_000)), max_size=4))
@settings(max_examples=100, deadline=None)
def test_whole_messages_go_out_byte_for_byte_as_autobahn_frames_them(sent: list[Message]) -> None:
    """The socket's own framing and masking (up to 64 KiB) against autobahn's, with the same masks."""
    ours, _, ours_wrote = open_socket()
    theirs, _, theirs_wrote = open_socket()
    for seed, (payload, binary) in enumerate(sent):
        random.seed(seed)
        ours.send_whole(payload, binary)
        random.seed(seed)
        theirs.sendMessage(payload, binary)
    ours.flush()
    assert ours_wrote.value() == theirs_wrote.value()
    assert written(ours_wrote.value()) == [
        (2 if binary else 1, payload) for payload, binary in sent
    ]
    ours.connectionLost()
    theirs.connectionLost()


def test_held_messages_go_out_before_what_autobahn_writes_after_them() -> None:
    """A POST's messages wait for flush, unless autobahn writes a frame (ping, close) first."""
    socket, _, wrote = open_socket()
    socket.send_whole(b"first", False)
    assert wrote.value() == b""
    socket.sendPing(b"p")
    socket.send_whole(b"second", True)
    socket.sendClose(1000)
    socket.flush()
    assert written(wrote.value()) == [
        (0x1, b"first"),
        (0x9, b"p"),
        (0x2, b"second"),
        (0x8, (1000).to_bytes(2, "big")),
    ]
    socket.connectionLost()


def test_a_frame_begun_before_a_close_goes_to_autobahn_whole() -> None:
    """The start of a frame held back, then wsse closes: autobahn gets the frame from its first byte."""
    socket, _, _ = open_socket()
    frame = ws_frame(0x81, b"hello there", False)
    socket.dataReceived(frame[:1])
    socket.sendClose(1000)
    socket.dataReceived(frame[1:] + ws_frame(0x88, (1000).to_bytes(2, "big"), False))
    assert socket.remoteCloseCode == 1000  # the app's close arrived: no protocol error on the way
    socket.connectionLost()
