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

from wsse._wsrelay import _FrameCursor


def frame(opcode: int, size: int, masked: bool, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first, bit | size])
    elif size < 65536:
        head = bytes([first, bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + size.to_bytes(8, "big")
    return head + (b"\x01\x02\x03\x04" if masked else b"") + b"\x88" * size


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
