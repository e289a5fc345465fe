"""
The splice's frame cursor, against a plain frame-by-frame reading of the same stream.

The cursor steps over runs of small frames in a fast loop and takes the
general way for the rest; whichever way a read falls, it must agree with the
reading below on where every frame ends and when a close frame has passed.
"""

from __future__ import annotations

import random
from functools import cache

import pytest

from tests.support.clients import ws_frame
from wsse._wsrelay import _FrameCursor


def frame(opcode: int, size: int, masked: bool, fin: bool = True) -> bytes:
    return ws_frame((0x80 if fin else 0) | opcode, b"\x88" * size, masked)


@cache
def ends(stream: bytes) -> tuple[list[int], list[int]]:
    """Where each frame ends, and where each close frame ends, read one header at a time."""
    every, closes, position = [], [], 0
    while position < len(stream):
        second = stream[position + 1]
        length = second & 0x7F
        extended = {126: 2, 127: 8}.get(length, 0)
        if extended:
            length = int.from_bytes(stream[position + 2 : position + 2 + extended], "big")
        closing = stream[position] & 0x0F == 8
        position += 2 + extended + (4 if second & 0x80 else 0) + length
        every.append(position)
        if closing:
            closes.append(position)
    return every, closes


def check(cursor: _FrameCursor, stream: bytes, seen: int) -> None:
    every, closes = ends(stream)
    assert cursor.at_boundary == (seen == 0 or seen in every), seen
    assert cursor.close_seen == any(end <= seen for end in closes), seen


# Every header shape: 7-, 16- and 64-bit lengths at their limits, masked or not,
# empty frames, control frames, and close frames between the others.
SHAPES = [
    frame(0x2, 0, False),
    frame(0x2, 1, True),
    frame(0x1, 125, False),
    frame(0x2, 126, True),
    frame(0x9, 4, False),
    frame(0x8, 0, True),
    frame(0x2, 64, False),
    frame(0x0, 300, False, fin=False),
    frame(0x8, 2, False),
    frame(0x2, 65535, True),
    frame(0xA, 0, True),
    frame(0x2, 65536, False),
    frame(0x1, 3, True),
]
STREAM = b"".join(SHAPES)
SMALL = b"".join(f for f in SHAPES if len(f) < 400)  # short enough to cut twice everywhere


def test_a_stream_cut_at_every_byte_agrees_with_a_plain_reading() -> None:
    for cut in range(len(SMALL) + 1):
        cursor = _FrameCursor()
        assert cursor.feed(SMALL[:cut]) == cut
        check(cursor, SMALL, cut)
        assert cursor.feed(SMALL[cut:]) == len(SMALL) - cut
        check(cursor, SMALL, len(SMALL))


def test_a_stream_cut_twice_anywhere_agrees_with_a_plain_reading() -> None:
    for first in range(len(SMALL) + 1):
        for second in range(first, len(SMALL) + 1):
            cursor = _FrameCursor()
            for start, stop in ((0, first), (first, second), (second, len(SMALL))):
                cursor.feed(SMALL[start:stop])
                check(cursor, SMALL, stop)


def test_long_frames_are_followed_across_reads() -> None:
    every, _ = ends(STREAM)
    cuts = sorted({c for end in every for c in range(end - 16, end + 16) if 0 < c < len(STREAM)})
    for cut in cuts:
        cursor = _FrameCursor()
        cursor.feed(STREAM[:cut])
        check(cursor, STREAM, cut)
        cursor.feed(STREAM[cut:])
        check(cursor, STREAM, len(STREAM))


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("size", [0, 64, 125, 126, 1000])
def test_many_small_frames_in_one_read_end_where_they_should(masked: bool, size: int) -> None:
    one = frame(0x2, size, masked)
    stream = one * 1000 + one[:-1]  # the last one not through
    cursor = _FrameCursor()
    assert cursor.feed(stream) == len(stream)
    assert not cursor.at_boundary and not cursor.close_seen
    assert cursor.feed(one[-1:] + one[:1], stop_at_boundary=True) == 1
    assert cursor.at_boundary


def test_from_anywhere_a_stop_at_the_boundary_takes_the_rest_of_the_frame() -> None:
    every, _ = ends(STREAM)
    for seen in [*range(len(SMALL) + 1), *(end + d for end in every for d in (-3, -1, 0, 1))]:
        if not 0 <= seen <= len(STREAM):
            continue
        cursor = _FrameCursor()
        cursor.feed(STREAM[:seen])
        following = next((end for end in every if end > seen), len(STREAM))
        expected = 0 if cursor.at_boundary else following - seen
        assert cursor.feed(STREAM[seen:], stop_at_boundary=True) == expected, seen
        check(cursor, STREAM, seen + expected)


@pytest.mark.parametrize(
    "other",
    [
        frame(0x2, 11, False),  # one byte longer
        frame(0x1, 10, False),  # another opcode
        frame(0x8, 10, False),  # a close frame of the same size
        frame(0x2, 6, True),  # masked, as long on the wire
        frame(0x2, 10, False, fin=False),
        frame(0x2, 200, False),
    ],
)
def test_a_run_of_equal_frames_ends_where_a_header_differs(other: bytes) -> None:
    one = frame(0x2, 10, False)
    stream = one * 20 + other + one * 20 + other
    for cut in range(len(stream) + 1):
        cursor = _FrameCursor()
        cursor.feed(stream[:cut])
        check(cursor, stream, cut)
        cursor.feed(stream[cut:])
        check(cursor, stream, len(stream))


def test_a_close_frame_among_small_ones_is_seen_once_it_is_through() -> None:
    small = frame(0x2, 10, False)
    close = frame(0x8, 2, False)
    stream = small * 50 + close + small * 50
    cursor = _FrameCursor()
    cursor.feed(stream[: 50 * len(small) + len(close) - 1])
    assert not cursor.close_seen
    cursor.feed(stream[50 * len(small) + len(close) - 1 :])
    assert cursor.close_seen and cursor.at_boundary


def test_random_frames_and_reads_agree_with_a_plain_reading() -> None:
    chance = random.Random(6455)
    for _ in range(200):
        frames = [
            frame(
                chance.choice([0x0, 0x1, 0x2, 0x8, 0x9]),
                chance.choice([0, 1, 2, 50, 125, 126, 127, 200, 65535, 65536, 70000]),
                chance.random() < 0.5,
            )
            for _ in range(chance.randint(1, 12))
        ]
        stream = b"".join(frames)
        cursor = _FrameCursor()
        seen = 0
        while seen < len(stream):
            piece = stream[seen : seen + chance.choice([1, 2, 5, 14, 100, 4096, 65536])]
            if chance.random() < 0.3:
                seen += cursor.feed(piece, stop_at_boundary=True)
            else:
                seen += cursor.feed(piece)
            check(cursor, stream, seen)


# What the splice checks: frame and message sizes both ways, and from a
# browser the headers it may not send.  Whichever way the reads cut the
# stream, the cursor relays everything before the frame that breaks a rule
# and nothing of it, not even part of its header (the relayed bytes only
# grow, so comparing them once at the end covers every read).

LIMIT = 1000


def header(first: int, length: int, masked: bool) -> bytes:
    """A header alone, for a length no test should have to allocate."""
    bit = 0x80 if masked else 0
    return bytes([first, bit | 127]) + length.to_bytes(8, "big") + (b"\x01\x02\x03\x04" * masked)


def relay_in_pieces(cursor: _FrameCursor, stream: bytes, cuts: list[int]) -> bytes:
    """What the cursor lets through of C{stream} read in pieces ending at C{cuts}."""
    return b"".join(
        cursor.pass_on(stream[start:stop])
        for start, stop in zip([0, *cuts], [*cuts, len(stream)], strict=True)
    )


def every_way_to_read(stream: bytes) -> list[list[int]]:
    """One cut at every byte, and the whole stream a byte at a time."""
    return [[cut] for cut in range(len(stream) + 1)] + [list(range(1, len(stream)))]


def fragment(opcode: int, size: int, masked: bool = True) -> bytes:
    return frame(opcode, size, masked, fin=False)


# A browser's frames that pass: within the limit, masked, control frames
# between the fragments of a message, a message of several frames.
GOOD = b"".join(
    [
        frame(0x2, 10, True),
        frame(0x1, 125, True),
        frame(0x9, 4, True),
        frame(0x2, 300, True),
        fragment(0x1, 20),
        fragment(0x0, 30),
        frame(0xA, 0, True),
        frame(0x0, 40, True),
        frame(0x2, LIMIT, True),
        frame(0x8, 2, True),
    ]
)

BROWSER_FAULTS = [
    # (frames before the culprit, the culprit, the close code)
    (b"", frame(0x3, 5, True), 1002),  # reserved opcodes
    (b"", frame(0xB, 0, True), 1002),
    (b"", bytes([0xC2]) + frame(0x2, 5, True)[1:], 1002),  # RSV1 with no extension
    (b"", bytes([0x92]) + frame(0x2, 5, True)[1:], 1002),  # RSV3
    (b"", frame(0x2, 5, False), 1002),  # unmasked
    (b"", frame(0x9, 126, True), 1002),  # a ping over 125 bytes
    (b"", fragment(0x9, 5), 1002),  # a fragmented ping
    (b"", frame(0x0, 5, True), 1002),  # a continuation with no message under way
    (fragment(0x1, 5), frame(0x2, 5, True), 1002),  # a new message inside one
    (b"", frame(0x2, LIMIT + 1, True), 1009),  # 16-bit length
    (b"", header(0x82, 1 << 40, True), 1009),  # 64-bit length
    (fragment(0x2, 600), frame(0x0, LIMIT - 599, True), 1009),  # the message
    (fragment(0x2, 600) + fragment(0x0, 400), frame(0x0, 1, True), 1009),
]


@pytest.mark.parametrize(("before", "culprit", "code"), BROWSER_FAULTS)
def test_a_browser_s_frame_that_breaks_a_rule_is_held_back_however_it_is_read(
    before: bytes, culprit: bytes, code: int
) -> None:
    stream = GOOD + before + culprit + frame(0x2, 10, True)
    for cuts in every_way_to_read(stream):
        cursor = _FrameCursor(LIMIT, from_browser=True)
        assert relay_in_pieces(cursor, stream, cuts) == GOOD + before, cuts
        assert cursor.fault is not None and cursor.fault[0] == code, cuts
        assert cursor.at_boundary


@pytest.mark.parametrize(
    ("culprit", "relayable"),
    [
        (frame(0x2, LIMIT + 1, False), b""),
        (header(0x82, 1 << 40, False), b""),
        (fragment(0x1, 600, False) + frame(0x0, 401, False), fragment(0x1, 600, False)),
    ],
)
def test_an_app_s_frame_or_message_over_the_limit_is_held_back(
    culprit: bytes, relayable: bytes
) -> None:
    before = frame(0x2, LIMIT, False) + fragment(0x1, 600, False) + frame(0x0, 400, False)
    stream = before + culprit
    for cuts in every_way_to_read(stream):
        cursor = _FrameCursor(LIMIT)
        assert relay_in_pieces(cursor, stream, cuts) == before + relayable, cuts
        assert cursor.fault is not None and cursor.fault[0] == 1009


def test_an_app_may_send_what_a_browser_may_not() -> None:
    """Only sizes are checked on the app's side: its frames are its client library's business."""
    stream = frame(0x2, 5, False) + frame(0x3, 5, False) + bytes([0xC2]) + frame(0x2, 5, False)[1:]
    for cuts in every_way_to_read(stream):
        cursor = _FrameCursor(LIMIT)
        assert relay_in_pieces(cursor, stream, cuts) == stream and cursor.fault is None


def test_reserved_bits_pass_when_the_app_granted_an_extension() -> None:
    compressed = bytes([0xC2]) + frame(0x2, 5, True)[1:]
    stream = compressed * 30 + frame(0x2, 5, True)
    for cuts in every_way_to_read(stream):
        cursor = _FrameCursor(LIMIT, from_browser=True, extensions=True)
        assert relay_in_pieces(cursor, stream, cuts) == stream and cursor.fault is None


@pytest.mark.parametrize("masked", [False, True])
def test_a_limit_below_126_bytes_holds_in_runs_of_equal_frames(masked: bool) -> None:
    """The fast loops step over equal frames in bulk; the first one too long still stops them."""
    stream = frame(0x2, 100, masked) * 50 + frame(0x2, 101, masked) + frame(0x2, 100, masked)
    for cuts in [[], [1], [len(stream) // 2], [50 * 108 + 1]]:
        cursor = _FrameCursor(100, from_browser=masked)
        relayed = relay_in_pieces(cursor, stream, cuts)
        assert relayed == frame(0x2, 100, masked) * 50, cuts
        assert cursor.fault == (1009, "a frame of 101 bytes, over 100")


def test_a_header_cut_by_a_read_waits_for_the_rest_of_it() -> None:
    cursor = _FrameCursor()
    long = frame(0x2, 70000, False)
    assert cursor.pass_on(long[:5]) == b""
    assert cursor.at_boundary  # so a close frame could go now
    assert cursor.pass_on(long[5:20]) == long[:20]
    assert cursor.pass_on(long[20:]) == long[20:] and cursor.at_boundary
