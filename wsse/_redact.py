"""
URLs as log lines may show them: without the secrets apps put in queries.

Apps that run without a login put their token in the page's or the socket's
query (Jupyter's C{?token=}, marimo's C{?session_id=}, signed URLs), and a
native socket whose query wsse carries in its path (C{__wsse/ws/<base64url>})
holds that query too.  Logs are read by more people than the app's users, so
values of parameters whose names look like secrets are replaced, and a carried
URL is shown decoded and redacted.  wsse's own session ids travel in a header
and never appear in a URL.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from wsse import _protocol

REDACTED = "***"

_SECRET_NAME = re.compile(
    rb"token|key|secret|pass|auth|session|sig|code|ticket|jwt|credential|xsrf|csrf|nonce",
    re.IGNORECASE,
)
_CARRIED = re.compile(
    rb"(/" + _protocol.ENDPOINT_SEGMENT + rb"/" + _protocol.CARRIED_ENDPOINT + rb"/)([^/?#]+)"
)


def _redact_query(query: bytes) -> bytes:
    pairs = []
    for pair in query.split(b"&"):
        name, equals, _ = pair.partition(b"=")
        # Matched as the app reads it: %74oken is token.
        secret = equals and _SECRET_NAME.search(unquote_to_bytes(name.replace(b"+", b" ")))
        pairs.append(name + b"=" + REDACTED.encode() if secret else pair)
    return b"&".join(pairs)


def _redact_path_and_query(uri: bytes) -> bytes:
    path, question, query = uri.partition(b"?")
    return path + question + _redact_query(query) if question else path


def redact_uri(uri: bytes) -> str:
    """C{uri} (a request target: path and query) for a log line."""

    def carried(match: re.Match[bytes]) -> bytes:
        try:
            url = _protocol.decode_carried(match.group(2))
        except ValueError:
            return match.group(1) + REDACTED.encode()
        return match.group(1) + b"[" + _redact_path_and_query(url) + b"]"

    return _CARRIED.sub(carried, _redact_path_and_query(uri)).decode("latin-1")
