"""
The wire contract between the injected shim and the server, in one place.

The shim (C{wsse/shim/wsse-shim.js}) and the server must agree on every name
and format here; the README's protocol section documents the same.  The server
hands the shim its endpoints and settings through the injected script
element's attribute, so the JavaScript hard-codes only the formats.

Fallback sockets of one page share one page session: one event stream from
the server (Server-Sent Events) and one channel of POSTs to it.

Event stream: C{GET <base>events}, with C{X-WSSE-Session} once the page has a
session and C{Last-Event-ID} when resuming.  The answer that opens a session
sets its key as a cookie (L{KEY_COOKIE_PREFIX}), which every later request of
the session must carry, and deletes the key cookies of sessions gone.  Every event has
an C{id:} (one sequence per session), an C{event:} name and data: one line of JSON, or for a
message the socket's number and the message (L{message_data}).  Lines end at
line feeds alone.
Where a gateway holds the stream back, C{GET <base>poll} takes the same
headers and answers with the same events, ending as soon as it has some.

POST channel: C{POST <base>send}, with C{X-WSSE-Session}, C{X-WSSE-Ack} (the
last event id the page has) and a body of frames: an 8-byte sequence number
for the first frame, then per frame a type byte, a 4-byte socket number, a
4-byte length and the payload, all big-endian; the frames' sequence numbers
follow on from the first.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from dataclasses import dataclass

# Every endpoint wsse itself answers lives under this path segment, at the point
# where wsse is mounted (the site root, or a child such as /app/).
ENDPOINT_SEGMENT = b"__wsse"
EVENTS_ENDPOINT = b"events"
# The same events by long-poll, for gateways that hold a stream back.
POLL_ENDPOINT = b"poll"
SEND_ENDPOINT = b"send"
# A native WebSocket whose URL has a query, with that URL (path and query, as
# the page's frames name it) in the path instead: <base>ws/<base64url, no
# padding>.  Some gateways drop the query of an upgrade request.
CARRIED_ENDPOINT = b"ws"

# Attribute on the injected <script> carrying the per-page configuration, as
# URL-encoded key=value pairs (see _shim.script_tag):
#   path  - the request path wsse saw for this page, so the shim can learn a
#           prefix that a gateway in front stripped (location.pathname minus it);
#   base  - wsse's own endpoint directory, relative to the page's directory;
#   probe - milliseconds a native socket may stay CONNECTING before the fallback;
#   force - "1" when the server forces the fallback.
CONFIG_ATTRIBUTE = "data-wsse"
CONFIG_PATH = "path"
CONFIG_BASE = "base"
CONFIG_PROBE = "probe"
CONFIG_FORCE = "force"

# The global object the shim publishes for pages and tests.
SHIM_GLOBAL = "__wsse"

# A page (query parameter) or browser (cookie) may ask for the fallback.
FORCE_QUERY = "wsse"
FORCE_COOKIE = "wsse"
FORCE_VALUE = "fallback"

# Headers of the page session's requests.
SESSION_HEADER = b"x-wsse-session"
# The session's key: an HttpOnly cookie named by this prefix and the session id,
# set by the stream that opens the session (scoped to wsse's endpoint
# directory).  A session answers only requests carrying its key, so its id
# alone is no use; one cookie per session, so pages opening at once do not
# overwrite each other's.
KEY_COOKIE_PREFIX = b"wsse-key-"
ACK_HEADER = b"x-wsse-ack"
LAST_EVENT_ID_HEADER = b"last-event-id"
FRAMES_CONTENT_TYPE = b"application/x-wsse-frames"

# A session the server does not hold (never, expired, or broken by a gap).
SESSION_GONE = 410

# Event names.
EVENT_SESSION = b"session"  # {"session": id, "heartbeat": ms, "grace": ms}
EVENT_OPEN = b"open"  # {"s": socket, "protocol": str, "extensions": str}
EVENT_TEXT = b"text"  # "<socket> <text>", over several data lines if it has line feeds
EVENT_BINARY = b"binary"  # "<socket> <base64>"
EVENT_CLOSE = b"close"  # {"s": socket, "code": int, "reason": str, "clean": bool}
# Frames up to this sequence number are applied: sent on the stream before any
# event they cause, so a page's bufferedAmount is down before an echo arrives.
# It goes out with the next event, or after SENT_DELAY seconds if none comes
# (the POST's answer has told the page as much): one write, not two.
EVENT_SENT = b"sent"  # {"seq": int}
SENT_DELAY = 0.05

# Frame types.
FRAME_OPEN = 1  # payload: JSON {"url": path and query, "protocols": [str]}
FRAME_TEXT = 2  # payload: UTF-8
FRAME_BINARY = 3  # payload: bytes
FRAME_CLOSE = 4  # payload: empty, or a 2-byte code and a UTF-8 reason
# Parts of a message sent in several frames, each followed by more parts and
# then a FRAME_TEXT or FRAME_BINARY with the last part.  Gateways limit the
# size of a request body (nginx: 1 MiB by default), so the shim never sends a
# POST body over BATCH_LIMIT, nor a frame payload over PART_LIMIT.
FRAME_TEXT_PART = 5
FRAME_BINARY_PART = 6
PART_LIMIT = 240 * 1024
BATCH_LIMIT = 256 * 1024
# The page gave up on a socket before it opened (close() while CONNECTING):
# the app's socket is dropped, and the page's fails (1006), as natively.
FRAME_ABORT = 7

# Sent first on every stream: 2 KiB of comment, so that intermediaries which
# hold a response until they have a buffer's worth pass the stream on at once.
PREAMBLE = b":" + b" " * 2048 + b"\n\n"
HEARTBEAT = b":\n\n"

_FRAME_HEAD = struct.Struct(">BII")
_FIRST_SEQ = struct.Struct(">Q")


def json_data(data: object) -> bytes:
    """An event's data: compact JSON in UTF-8, on one line."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event(event_id: int, name: bytes, data: bytes) -> bytes:
    """One event of the stream, ready to write; C{data} as L{json_data} or L{message_data} make it."""
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event_id, name, data)


def message_data(socket: int, payload: bytes, is_binary: bool) -> tuple[bytes, bytes]:
    """
    The event name and data carrying one WebSocket message: the socket's
    number, a space, and the text as it is (valid UTF-8: the upstream socket
    checks it) or the bytes in base64.

    Text needs no escaping: a line feed continues it on a new data line (the
    page joins data lines with one), and the page splits lines at line feeds
    alone, so a carriage return is just a character.  No JSON: encoding and
    parsing it was most of the cost of a big message, on both sides.
    """
    if is_binary:
        return EVENT_BINARY, b"%d %s" % (socket, base64.b64encode(payload))
    if b"\n" in payload:
        payload = payload.replace(b"\n", b"\ndata: ")
    return EVENT_TEXT, b"%d %s" % (socket, payload)


class MalformedFrames(ValueError):
    """A POST body that is not a well-formed batch of frames."""


@dataclass(frozen=True)
class Frame:
    seq: int
    kind: int
    socket: int
    payload: bytes


def parse_frames(body: bytes) -> list[Frame]:
    """The frames of a POST body, in order, with their sequence numbers."""
    if len(body) < _FIRST_SEQ.size:
        raise MalformedFrames("the body has no sequence number")
    (seq,) = _FIRST_SEQ.unpack_from(body)
    frames = []
    offset = _FIRST_SEQ.size
    while offset < len(body):
        if len(body) - offset < _FRAME_HEAD.size:
            raise MalformedFrames("a frame header is cut short")
        kind, socket, length = _FRAME_HEAD.unpack_from(body, offset)
        offset += _FRAME_HEAD.size
        if not FRAME_OPEN <= kind <= FRAME_ABORT:
            raise MalformedFrames(f"unknown frame type {kind}")
        if len(body) - offset < length:
            raise MalformedFrames("a frame is cut short")
        frames.append(Frame(seq, kind, socket, body[offset : offset + length]))
        offset += length
        seq += 1
    return frames


def encode_frames(first_seq: int, frames: list[tuple[int, int, bytes]]) -> bytes:
    """A POST body (what the shim builds; the tests use it to speak for a page)."""
    parts = [_FIRST_SEQ.pack(first_seq)]
    for kind, socket, payload in frames:
        parts.append(_FRAME_HEAD.pack(kind, socket, len(payload)))
        parts.append(payload)
    return b"".join(parts)


@dataclass(frozen=True)
class OpenRequest:
    url: bytes
    protocols: list[str]


# A subprotocol is an HTTP token (RFC 6455 section 4.1), as a browser's WebSocket requires.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_open(payload: bytes) -> OpenRequest:
    try:
        fields = json.loads(payload)
        url = fields["url"]
        protocols = fields.get("protocols", [])
        if not isinstance(url, str) or not url.startswith("/"):
            raise ValueError("url must be a path")
        if not isinstance(protocols, list) or not all(
            isinstance(p, str) and _TOKEN.fullmatch(p) for p in protocols
        ):
            # autobahn writes them into the app's handshake as they are.
            raise ValueError("protocols must be tokens")
        return OpenRequest(url.encode("utf-8"), protocols)
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        # RecursionError: JSON nested deeper than the parser goes.
        raise MalformedFrames(f"bad open frame: {e}") from None


_BASE64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def decode_carried(segment: bytes) -> bytes:
    """The URL carried in a L{CARRIED_ENDPOINT} path segment; C{ValueError} if it is not one."""
    if not segment or segment.translate(None, _BASE64URL):
        raise ValueError("not base64url")
    try:
        url = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except binascii.Error:
        # Its own words: binascii's would reach the client in the 400.
        raise ValueError("not base64url (a length no encoding has)") from None
    if not url.startswith(b"/") or any(c < 0x21 or c > 0x7E for c in url):
        raise ValueError("not a path and query")
    return url


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """A close frame's code (C{None} for none) and reason."""
    if not payload:
        return None, ""
    if len(payload) < 2:
        raise MalformedFrames("a close code needs two bytes")
    try:
        return struct.unpack(">H", payload[:2])[0], payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedFrames("a close reason must be UTF-8") from None
