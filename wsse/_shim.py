"""
The JavaScript shim and the <script> element that carries it into a page.

The shim goes inline: a gateway that mounts the app under a prefix it strips
would send an absolute C{src} to the wrong place, and an inline script can be
allowed by any Content-Security-Policy through the page's nonce or the shim's
hash.  The script text is the same on every page, so its hash is computed once;
what differs per page travels in an attribute, which a hash does not cover.
The file's comments, which are for its readers, are left out of pages.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cached_property
from importlib.resources import files
from urllib.parse import quote

from wsse._protocol import (
    CONFIG_ATTRIBUTE,
    CONFIG_BASE,
    CONFIG_FORCE,
    CONFIG_PATH,
    CONFIG_PROBE,
    ENDPOINT_SEGMENT,
)


class Shim:
    """The shim's text, its CSP hash source and the element that embeds it."""

    def __init__(self, source: bytes | None = None) -> None:
        if source is None:
            source = compact(files("wsse").joinpath("shim/wsse-shim.js").read_bytes())
        if not source.isascii():
            raise ValueError("the shim must be ASCII so that it fits any ASCII-compatible page")
        lowered = source.lower()
        if b"</script" in lowered or b"<!--" in lowered:
            raise ValueError("the shim must not contain '</script' or '<!--'")
        self.source = source

    @cached_property
    def hash_source(self) -> bytes:
        """The C{'sha256-...'} source expression that allows the inline shim."""
        digest = hashlib.sha256(self.source).digest()
        return b"'sha256-" + base64.b64encode(digest) + b"'"

    def script_tag(
        self,
        page_path: bytes,
        mount_path: bytes,
        nonce: bytes | None = None,
        probe_ms: int = 3000,
        force: bool = False,
    ) -> bytes:
        """
        The element to insert into a page.

        @param page_path: the raw request path of the page, as wsse received it.
        @param mount_path: the raw path at which wsse is mounted, ending in C{/}.
        @param nonce: the page's CSP nonce, when its policy calls for one.
        @param probe_ms: how long a native socket may stay CONNECTING.
        @param force: whether the page must use the fallback without probing.
        """
        fields = [
            (CONFIG_PATH, _component(page_path)),
            (CONFIG_BASE, _component(endpoint_base(page_path, mount_path))),
            (CONFIG_PROBE, b"%d" % probe_ms),
        ]
        if force:
            fields.append((CONFIG_FORCE, b"1"))
        config = b"&amp;".join(name.encode("ascii") + b"=" + value for name, value in fields)
        attributes = b" " + CONFIG_ATTRIBUTE.encode("ascii") + b'="' + config + b'"'
        if nonce is not None:
            attributes += b' nonce="' + nonce + b'"'
        return b"<script" + attributes + b">" + self.source + b"</script>"


def compact(source: bytes) -> bytes:
    """
    The shim without its comment lines, blank lines and indentation: a third
    less on every page, with nothing that a minifier might get wrong.  Only
    whole-line comments go; a source where that could change the code (code
    after a comment's end, a comment left open after code, a template literal
    or a string continued on the next line) is refused rather than guessed at.
    """
    kept = []
    in_comment = False
    for number, line in enumerate(source.splitlines(), 1):
        text = line.strip()
        if in_comment or text.startswith(b"/*"):
            end = text.find(b"*/", 0 if in_comment else 2)
            if 0 <= end < len(text) - 2:
                raise ValueError(f"shim line {number}: code after the end of a comment")
            in_comment = end < 0
        elif text and not text.startswith(b"//"):
            if b"`" in text or text.endswith(b"\\"):
                raise ValueError(f"shim line {number}: a string that may span lines")
            opened = text.rfind(b"/*")
            if opened >= 0 and text.find(b"*/", opened + 2) < 0:
                raise ValueError(f"shim line {number}: a comment left open after code")
            kept.append(text)
    if in_comment:
        raise ValueError("the shim ends inside a comment")
    return b"\n".join(kept) + b"\n"


def endpoint_base(page_path: bytes, mount_path: bytes) -> bytes:
    """
    wsse's endpoint directory relative to the page's directory.

    Relative, so that it still resolves when a gateway in front added a prefix
    (C{/proxy/8080/}) to every path: C{../} climbs the page's own directories and
    lands wherever wsse's mount point is, prefix included.
    """
    depth = max(page_path.count(b"/") - 1, 0)
    return b"../" * depth + mount_path.lstrip(b"/") + ENDPOINT_SEGMENT + b"/"


def _component(value: bytes) -> bytes:
    """Percent-encode for a URLSearchParams value inside a double-quoted attribute."""
    return quote(value, safe="/").encode("ascii")
