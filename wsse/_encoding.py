"""
Content-Encoding codecs for rewriting compressed pages as they stream.

A compressed page is decoded, the shim inserted, and the result encoded again
with the same coding, so the browser gets what it asked for and never raw
compressed bytes under a missing Content-Encoding.  Every encoder flushes at
each chunk so that a page the app streams still renders as it arrives.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol

import brotli

# Codings wsse can decode and re-encode, in the Accept-Encoding spelling.
SUPPORTED = frozenset({b"gzip", b"x-gzip", b"deflate", b"br", b"identity"})

_LEVEL = 6
_BROTLI_QUALITY = 5


class Codec(Protocol):
    def decode(self, data: bytes) -> bytes: ...
    def encode(self, data: bytes) -> bytes: ...
    def finish(self) -> bytes:
        """Check that the input ended where its coding says it ends; return the encoded tail."""
        ...


class DecodingError(Exception):
    """The app's body is not valid in the coding it declared."""


class _Gzip:
    def __init__(self) -> None:
        self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._encoder = zlib.compressobj(_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        out = []
        try:
            while data:
                out.append(self._decoder.decompress(data))
                # A gzip body may hold several members back to back.
                data = self._decoder.unused_data
                if data:
                    self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        except zlib.error as e:
            raise DecodingError(str(e)) from None
        return b"".join(out)

    def encode(self, data: bytes) -> bytes:
        return self._encoder.compress(data) + self._encoder.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        if not self._decoder.eof:
            raise DecodingError("gzip body ended early")
        return self._encoder.flush(zlib.Z_FINISH)


class _Deflate:
    """HTTP's "deflate" is zlib-wrapped; some servers send raw deflate, which is accepted."""

    def __init__(self) -> None:
        self._decoder: zlib._Decompress | None = None
        self._head = b""
        self._encoder = zlib.compressobj(_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS)

    def decode(self, data: bytes) -> bytes:
        if self._decoder is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        try:
            return self._decoder.decompress(data)
        except zlib.error as e:
            raise DecodingError(str(e)) from None

    def encode(self, data: bytes) -> bytes:
        return self._encoder.compress(data) + self._encoder.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        if self._decoder is None or not self._decoder.eof:
            raise DecodingError("deflate body ended early")
        return self._encoder.flush(zlib.Z_FINISH)


class _Brotli:
    def __init__(self) -> None:
        self._decoder = brotli.Decompressor()
        self._encoder = brotli.Compressor(quality=_BROTLI_QUALITY)

    def decode(self, data: bytes) -> bytes:
        try:
            return bytes(self._decoder.process(data))
        except brotli.error as e:
            raise DecodingError(str(e)) from None

    def encode(self, data: bytes) -> bytes:
        return bytes(self._encoder.process(data) + self._encoder.flush())

    def finish(self) -> bytes:
        if not self._decoder.is_finished():
            raise DecodingError("br body ended early")
        return bytes(self._encoder.finish())


_CODECS: dict[bytes, type[_Gzip] | type[_Deflate] | type[_Brotli]] = {
    b"gzip": _Gzip,
    b"x-gzip": _Gzip,
    b"deflate": _Deflate,
    b"br": _Brotli,
}


def codings(header_values: Sequence[bytes] | None) -> list[bytes]:
    """The content codings named by Content-Encoding headers, in order, lower-cased."""
    result = []
    for value in header_values or ():
        for token in value.split(b","):
            token = token.strip().lower()
            if token and token != b"identity":
                result.append(token)
    return result


def codec_for(header_values: Sequence[bytes] | None) -> Codec | None:
    """
    A fresh codec for a response's Content-Encoding, C{None} for an identity body.

    @raise LookupError: wsse cannot decode this coding (or a stack of several),
        so the body must pass through untouched.
    """
    names = codings(header_values)
    if not names:
        return None
    if len(names) > 1 or names[0] not in _CODECS:
        raise LookupError(b", ".join(names).decode("latin-1"))
    return _CODECS[names[0]]()


def restrict_accept_encoding(values: Sequence[bytes]) -> list[bytes]:
    """
    Drop codings from an Accept-Encoding that wsse could not decode (zstd, ...).

    Applied to requests whose answer may be a page to rewrite, so the app picks a
    coding that still lets the shim in; C{*} is dropped too, since it admits any.
    """
    kept = []
    for value in values:
        for item in value.split(b","):
            name = item.split(b";", 1)[0].strip().lower()
            if name in SUPPORTED:
                kept.append(item.strip())
    # An absent header would mean "any coding", so an emptied one says identity.
    return [b", ".join(kept) if kept else b"identity"]
