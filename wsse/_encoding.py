"""
Content-Encoding codecs for rewriting compressed pages as they stream.

A compressed page is decoded, the shim inserted, and the result encoded again
with the same coding, so the browser gets what it asked for and never raw
compressed bytes under a missing Content-Encoding.  Every encoder flushes at
each chunk so that a page the app streams still renders as it arrives.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

import brotli

_LEVEL = 6
_BROTLI_QUALITY = 5
_GZIP_MAGIC = b"\x1f\x8b"
# Decoded output comes in pieces of about this size, so that a small, highly
# compressed body never turns into one huge string.
PIECE = 64 * 1024


class Codec(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded bytes of C{data}, in pieces of about L{PIECE} bytes."""
        ...

    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes:
        """What is needed for the bytes compressed so far to be decodable now."""
        ...

    def finish(self) -> bytes:
        """Check that the input ended where its coding says it ends; return the encoded tail."""
        ...


class DecodingError(Exception):
    """The app's body is not valid in the coding it declared."""


def _pieces(decoder: zlib._Decompress, data: bytes) -> Iterator[bytes]:
    try:
        while True:
            piece = decoder.decompress(data, PIECE)
            data = decoder.unconsumed_tail
            if piece:
                yield piece
            if not data and len(piece) < PIECE:
                return
    except zlib.error as e:
        raise DecodingError(str(e)) from None


class _Zlib:
    """gzip and deflate: zlib streams with different wrappers."""

    def __init__(self, wbits: int) -> None:
        self._wbits = wbits
        self._decoder: zlib._Decompress | None = None
        self._head = b""
        self._encoder = zlib.compressobj(_LEVEL, zlib.DEFLATED, wbits)
        self._trailing = False

    def _decoder_for(self, data: bytes) -> zlib._Decompress:
        if self._wbits == zlib.MAX_WBITS:
            # HTTP's "deflate" is zlib-wrapped; some servers send raw deflate.
            zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        return zlib.decompressobj(self._wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._trailing:
            return
        if self._decoder is None or self._head:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            if self._decoder is not None and not data.startswith(_GZIP_MAGIC):
                # Bytes after the last gzip member (a newline, padding):
                # browsers ignore them, and so does wsse.
                self._trailing = True
                return
            self._decoder = self._decoder_for(data)
        while True:
            yield from _pieces(self._decoder, data)
            data = self._decoder.unused_data
            if not (self._decoder.eof and data):
                return
            if self._wbits == zlib.MAX_WBITS or not _GZIP_MAGIC.startswith(data[:2]):
                self._trailing = True  # (as above; and after a deflate stream)
                return
            if len(data) < 2:
                self._head = data  # the next member's first byte; its second is to come
                return
            # A gzip body may hold several members back to back.
            self._decoder = self._decoder_for(data)

    def compress(self, data: bytes) -> bytes:
        return self._encoder.compress(data)

    def flush(self) -> bytes:
        return self._encoder.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        if self._decoder is None or not self._decoder.eof:
            raise DecodingError("the compressed body ended early")
        return self._encoder.flush(zlib.Z_FINISH)


class _Brotli:
    def __init__(self) -> None:
        self._decoder = brotli.Decompressor()
        self._encoder = brotli.Compressor(quality=_BROTLI_QUALITY)

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            while True:
                piece = bytes(self._decoder.process(data, output_buffer_limit=PIECE))
                data = b""
                if piece:
                    yield piece
                elif self._decoder.can_accept_more_data():
                    return
        except brotli.error as e:
            raise DecodingError(str(e)) from None

    def compress(self, data: bytes) -> bytes:
        return bytes(self._encoder.process(data))

    def flush(self) -> bytes:
        return bytes(self._encoder.flush())

    def finish(self) -> bytes:
        if not self._decoder.is_finished():
            raise DecodingError("the br body ended early")
        return bytes(self._encoder.finish())


_CODECS: dict[bytes, Callable[[], Codec]] = {
    b"gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    b"x-gzip": lambda: _Zlib(16 + zlib.MAX_WBITS),
    b"deflate": lambda: _Zlib(zlib.MAX_WBITS),
    b"br": _Brotli,
}
# Codings wsse can decode and re-encode, in the Accept-Encoding spelling.
SUPPORTED = frozenset(_CODECS) | {b"identity"}


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
