"""The wire contract: frames and events, and the shim speaking the same names as the server."""

from __future__ import annotations

import base64
import json
import re
import string
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.pageclient import event_data
from wsse import _protocol

SHIM = (Path(_protocol.__file__).parent / "shim" / "wsse-shim.js").read_text()


def shim_constant(name: str) -> str:
    match = re.search(rf"\b{name} = ([^,;]+)[,;]", SHIM)
    assert match, f"the shim defines no {name}"
    return match.group(1).strip()


def test_the_shim_and_the_server_agree_on_frame_types_and_limits() -> None:
    for name in ["OPEN", "TEXT", "BINARY", "CLOSE", "TEXT_PART", "BINARY_PART", "ABORT"]:
        assert int(shim_constant(f"FRAME_{name}")) == getattr(_protocol, f"FRAME_{name}"), name
    assert eval(shim_constant("PART_BYTES")) == _protocol.PART_LIMIT
    assert eval(shim_constant("BATCH_BYTES")) == _protocol.BATCH_LIMIT


def test_the_shim_and_the_server_agree_on_names() -> None:
    assert json.loads(shim_constant("SESSION_HEADER")).lower().encode() == _protocol.SESSION_HEADER
    assert json.loads(shim_constant("ACK_HEADER")).lower().encode() == _protocol.ACK_HEADER
    assert json.loads(shim_constant("FRAMES_TYPE")).encode() == _protocol.FRAMES_CONTENT_TYPE
    assert int(shim_constant("SESSION_GONE")) == _protocol.SESSION_GONE
    for name in [
        _protocol.EVENTS_ENDPOINT,
        _protocol.POLL_ENDPOINT,
        _protocol.SEND_ENDPOINT,
        _protocol.EVENT_SESSION,
        _protocol.EVENT_OPEN,
        _protocol.EVENT_TEXT,
        _protocol.EVENT_BINARY,
        _protocol.EVENT_CLOSE,
        _protocol.EVENT_SENT,
    ]:
        assert f'"{name.decode()}"' in SHIM, name
    for key in [
        _protocol.CONFIG_PATH,
        _protocol.CONFIG_BASE,
        _protocol.CONFIG_PROBE,
        _protocol.CONFIG_FORCE,
    ]:
        assert f'config.get("{key}")' in SHIM, key
    assert f'getAttribute("{_protocol.CONFIG_ATTRIBUTE}")' in SHIM
    assert (
        f'"{_protocol.FORCE_QUERY}"' in SHIM
        and f"{_protocol.FORCE_COOKIE}={_protocol.FORCE_VALUE}" in SHIM
    )
    assert f'window, "{_protocol.SHIM_GLOBAL}"' in SHIM
    assert f'"{_protocol.CARRIED_ENDPOINT.decode()}/"' in SHIM


PATHS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300).map(
    lambda rest: "/" + rest
)


@given(PATHS)
def test_a_carried_url_decodes_to_the_path_and_query_the_shim_encoded(url: str) -> None:
    # What the shim does: btoa, then base64url without padding.
    segment = base64.b64encode(url.encode()).translate(bytes.maketrans(b"+/", b"-_")).rstrip(b"=")
    assert _protocol.decode_carried(segment) == url.encode()


@given(st.binary(max_size=100))
def test_any_segment_decodes_to_a_path_or_is_refused_cleanly(segment: bytes) -> None:
    try:
        url = _protocol.decode_carried(segment)
    except ValueError:
        return
    assert url.startswith(b"/") and all(0x21 <= c <= 0x7E for c in url)


@pytest.mark.parametrize(
    "segment",
    [b"", b"L3dz=", b"L3dz/", b"L3dz+", b"d3M", base64.urlsafe_b64encode(b"/a b").rstrip(b"=")],
)
def test_malformed_carried_urls_are_refused(segment: bytes) -> None:
    with pytest.raises(ValueError):
        _protocol.decode_carried(segment)


FRAMES = st.lists(
    st.tuples(
        st.integers(min_value=_protocol.FRAME_OPEN, max_value=_protocol.FRAME_ABORT),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.binary(max_size=300),
    ),
    max_size=20,
)


@given(first=st.integers(min_value=0, max_value=2**63), frames=FRAMES)
def test_frames_round_trip(first: int, frames: list[tuple[int, int, bytes]]) -> None:
    parsed = _protocol.parse_frames(_protocol.encode_frames(first, frames))
    assert [(f.seq, f.kind, f.socket, f.payload) for f in parsed] == [
        (first + n, kind, socket, payload) for n, (kind, socket, payload) in enumerate(frames)
    ]


@given(body=st.binary(max_size=64))
def test_any_bytes_parse_or_are_refused_cleanly(body: bytes) -> None:
    try:
        frames = _protocol.parse_frames(body)
    except _protocol.MalformedFrames:
        return
    assert all(_protocol.FRAME_OPEN <= f.kind <= _protocol.FRAME_ABORT for f in frames)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00" * 7,
        b"\x00" * 8 + b"\x02\x00",
        b"\x00" * 8 + b"\x09" + b"\x00" * 8,
        b"\x00" * 8 + b"\x02" + b"\x00\x00\x00\x01\x00\x00\x00\x05ab",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(_protocol.MalformedFrames):
        _protocol.parse_frames(body)


@given(
    text=st.text() | st.text(alphabet='ab\r\n\x00"\\: '),
    socket=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_text_events_carry_any_text_exactly(text: str, socket: int) -> None:
    payload = text.encode("utf-8", "replace")
    name, data = _protocol.message_data(socket, payload, False)
    encoded = _protocol.event(7, name, data)
    # Read as the shim reads a stream: lines end at line feeds, an empty line
    # ends the event, data lines join with line feeds.
    assert encoded.endswith(b"\n\n") and b"\n\n" not in encoded[:-2]
    lines = encoded[:-2].split(b"\n")
    assert lines[:2] == [b"id: 7", b"event: text"]
    assert all(line.startswith(b"data: ") for line in lines[2:])
    joined = b"\n".join(line[len(b"data: ") :] for line in lines[2:])
    assert joined == b"%d " % socket + payload
    assert event_data("text", joined) == {"s": socket, "d": payload.decode()}


@given(payload=st.binary(max_size=1000))
def test_binary_events_round_trip(payload: bytes) -> None:
    name, data = _protocol.message_data(3, payload, True)
    assert name == _protocol.EVENT_BINARY
    assert data == b"3 " + base64.b64encode(payload)


def test_open_and_close_payloads() -> None:
    request = _protocol.parse_open(b'{"url": "/ws?x=1", "protocols": ["a", "b"]}')
    assert (request.url, request.protocols) == (b"/ws?x=1", ["a", "b"])
    for bad in [b"not json", b'{"url": "ws://x/"}', b'{"url": "/", "protocols": [1]}', b"{}"]:
        with pytest.raises(_protocol.MalformedFrames):
            _protocol.parse_open(bad)
    assert _protocol.parse_close(b"") == (None, "")
    assert _protocol.parse_close(struct.pack(">H", 4000) + "bye é".encode()) == (4000, "bye é")
    for bad in [b"\x03", struct.pack(">H", 4000) + b"\xff"]:
        with pytest.raises(_protocol.MalformedFrames):
            _protocol.parse_close(bad)


# --- batches that must be refused -------------------------------------------------------


def frame_offsets(frames: list[tuple[int, int, bytes]]) -> list[int]:
    """
    Where each frame of an encoded batch starts, and (last) where the batch
    ends: after the 8-byte sequence number, each frame is a 9-byte header
    (type, socket, length) and its payload.
    """
    offsets = [8]
    for _, _, payload in frames:
        offsets.append(offsets[-1] + 9 + len(payload))
    return offsets


@given(frames=FRAMES, data=st.data())
def test_a_batch_cut_anywhere_but_a_frame_boundary_is_refused(
    frames: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    body = _protocol.encode_frames(0, frames)
    boundaries = set(frame_offsets(frames))
    cut = data.draw(st.sampled_from([n for n in range(len(body)) if n not in boundaries]))
    with pytest.raises(_protocol.MalformedFrames):
        _protocol.parse_frames(body[:cut])


@given(
    frames=FRAMES.filter(bool),
    kind=st.integers(0, 255).filter(
        lambda k: not _protocol.FRAME_OPEN <= k <= _protocol.FRAME_ABORT
    ),
    data=st.data(),
)
def test_a_batch_with_an_unknown_frame_type_is_refused(
    frames: list[tuple[int, int, bytes]], kind: int, data: st.DataObject
) -> None:
    body = bytearray(_protocol.encode_frames(0, frames))
    body[data.draw(st.sampled_from(frame_offsets(frames)[:-1]))] = kind
    with pytest.raises(_protocol.MalformedFrames):
        _protocol.parse_frames(bytes(body))


@given(frames=FRAMES.filter(bool), data=st.data())
def test_a_batch_with_a_length_past_its_end_is_refused(
    frames: list[tuple[int, int, bytes]], data: st.DataObject
) -> None:
    body = bytearray(_protocol.encode_frames(0, frames))
    start = data.draw(st.sampled_from(frame_offsets(frames)[:-1]))
    rest = len(body) - (start + 9)  # the bytes after this frame's header
    struct.pack_into(">I", body, start + 5, data.draw(st.integers(rest + 1, 2**32 - 1)))
    with pytest.raises(_protocol.MalformedFrames):
        _protocol.parse_frames(bytes(body))


# --- open and close frames ------------------------------------------------------------

# Subprotocols as a browser's WebSocket accepts them: HTTP tokens.
TOKEN_CHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
TOKENS = st.text(alphabet=TOKEN_CHARS, min_size=1)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(url=st.text().map(lambda rest: "/" + rest), protocols=st.lists(TOKENS, max_size=5))
def test_open_requests_round_trip(url: str, protocols: list[str]) -> None:
    payload = json.dumps({"url": url, "protocols": protocols}).encode()
    assert _protocol.parse_open(payload) == _protocol.OpenRequest(url.encode(), protocols)


def assert_open_parses_to_a_path_and_tokens_or_is_refused(payload: bytes) -> None:
    try:
        request = _protocol.parse_open(payload)
    except _protocol.MalformedFrames:
        return
    assert request.url.startswith(b"/")
    assert all(p and set(p) <= set(TOKEN_CHARS) for p in request.protocols)


@given(payload=st.binary(max_size=100) | JSON.map(lambda value: json.dumps(value).encode()))
def test_any_open_payload_parses_or_is_refused_cleanly(payload: bytes) -> None:
    assert_open_parses_to_a_path_and_tokens_or_is_refused(payload)


@given(
    url=st.text().map(lambda rest: "/" + rest) | st.text() | JSON,
    protocols=st.lists(TOKENS | st.text(), max_size=3) | JSON,
)
def test_open_fields_of_any_shape_parse_to_a_path_and_tokens_or_are_refused(
    url: object, protocols: object
) -> None:
    assert_open_parses_to_a_path_and_tokens_or_is_refused(
        json.dumps({"url": url, "protocols": protocols}).encode()
    )


@given(code=st.integers(0, 2**16 - 1), reason=st.text(max_size=60))
def test_close_frames_round_trip(code: int, reason: str) -> None:
    assert _protocol.parse_close(struct.pack(">H", code) + reason.encode()) == (code, reason)


@given(payload=st.binary(max_size=40))
def test_any_close_payload_parses_to_what_it_holds_or_is_refused_cleanly(payload: bytes) -> None:
    try:
        code, reason = _protocol.parse_close(payload)
    except _protocol.MalformedFrames:
        assert len(payload) == 1 or not _is_utf8(payload[2:])
        return
    if code is None:
        assert (payload, reason) == (b"", "")
    else:
        assert struct.pack(">H", code) + reason.encode() == payload


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
