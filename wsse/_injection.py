"""
Putting the shim into HTML documents as they stream through.

L{HTMLInjector} finds the insertion point incrementally: it passes over what may
legally open a document (a BOM, whitespace, comments, the doctype, C{<html>},
C{<head>}, C{<meta>} tags) and inserts the shim before anything else, so it runs
before the page's first script, never lands inside a comment, leaves the doctype
first (no quirks mode) and keeps a charset declaration within the first
kilobyte where browsers look for it.  It stops at a C{<meta>} that carries a
Content-Security-Policy: a policy in a page applies only to what follows it.  Bytes are
emitted as soon as they are known to precede the insertion point; only a token
still being classified (a few bytes, or one C{<meta>} tag) is held back.

L{plan_page_rewrite} decides from a request and its response whether to rewrite
at all, and adjusts the response headers to match.
"""

from __future__ import annotations

from twisted.web.http_headers import Headers

from wsse import _csp, _encoding
from wsse._settings import Settings

_WHITESPACE = frozenset(b" \t\n\r\f")
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_TAG_DELIMITERS = frozenset(b" \t\n\r\f/>")
_MAX_META_TAG = 4096
# Longest prefix needed to classify a token ("<!doctype" is 9 bytes).
_CLASSIFY_LENGTH = 9

# Scanner modes.
_TOKEN, _COMMENT, _DECLARATION, _TAG, _META = range(5)

# Token kinds.
_KIND_COMMENT, _KIND_DECLARATION, _KIND_DOCTYPE, _KIND_OPENER, _KIND_META, _KIND_OTHER = range(6)


def _classify(head: bytes, final: bool) -> int | None:
    """What token starts with C{head} (which starts with C{<}); C{None} if more bytes are needed."""
    lowered = head.lower()
    if lowered.startswith(b"<!--"):
        return _KIND_COMMENT
    if lowered.startswith(b"<!"):
        if lowered.startswith(b"<!doctype"):
            return _KIND_DOCTYPE
        if not final and b"<!doctype".startswith(lowered) or b"<!--".startswith(lowered):
            return None if not final else _KIND_DECLARATION
        return _KIND_DECLARATION
    if lowered.startswith(b"<?"):
        return _KIND_DECLARATION
    for name, kind in ((b"<html", _KIND_OPENER), (b"<head", _KIND_OPENER), (b"<meta", _KIND_META)):
        if lowered.startswith(name):
            if len(lowered) == len(name):
                return None if not final else _KIND_OTHER
            return kind if lowered[len(name)] in _TAG_DELIMITERS else _KIND_OTHER
        if not final and name.startswith(lowered):
            return None
    return _KIND_OTHER


class HTMLInjector:
    """
    A streaming filter that inserts one snippet at a document's insertion point.

    @param known_document: the request says this is a document (a navigation);
        otherwise the body must open like one (doctype, C{<html>} or C{<head>})
        before anything else, or it is a fragment and passes untouched.
    """

    def __init__(self, insertion: bytes, *, known_document: bool) -> None:
        self._insertion = insertion
        self._opened_like_document = known_document
        self._buffer = b""
        self._pos = 0
        self._mode = _TOKEN
        self._tag_start = 0
        self._quote = 0
        self._after_equals = False
        self._at_start = True
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        self._buffer += data
        return self._scan(final=False)

    def close(self) -> bytes:
        if self.done:
            return b""
        return self._scan(final=True)

    def _finish(self, insert_at: int | None) -> bytes:
        buf = self._buffer
        self._buffer = b""
        self.done = True
        if insert_at is None or not self._opened_like_document:
            return buf
        return buf[:insert_at] + self._insertion + buf[insert_at:]

    def _scan(self, final: bool) -> bytes:
        buf = self._buffer
        n = len(buf)
        i = self._pos
        if self._at_start:
            if n < 3 and not final:
                return b""
            if buf[:2] in _UTF16_BOMS:
                return self._finish(None)  # not ASCII-compatible: leave it alone
            if buf.startswith(_BOM):
                i = 3
            self._at_start = False
        while True:
            mode = self._mode
            if mode == _TOKEN:
                while i < n and buf[i] in _WHITESPACE:
                    i += 1
                if i == n:
                    if final:
                        return self._finish(i)
                    break
                if buf[i] != 0x3C:  # text: the body has begun
                    return self._finish(i)
                kind = _classify(buf[i : i + _CLASSIFY_LENGTH], final or n - i >= _CLASSIFY_LENGTH)
                if kind is None:
                    break
                if kind == _KIND_COMMENT:
                    # Searching from the comment's own "--" also ends "<!-->" and "<!--->".
                    self._mode, i = _COMMENT, i + 2
                elif kind in (_KIND_DECLARATION, _KIND_DOCTYPE):
                    self._opened_like_document |= kind == _KIND_DOCTYPE
                    self._mode, i = _DECLARATION, i + 2
                elif kind == _KIND_OPENER:
                    self._opened_like_document = True
                    self._mode, i = _TAG, i + 5
                    self._quote, self._after_equals = 0, False
                elif kind == _KIND_META:
                    self._mode, self._tag_start, i = _META, i, i + 5
                    self._quote, self._after_equals = 0, False
                else:
                    return self._finish(i)
            elif mode == _COMMENT:
                ends = [
                    end + len(mark) for mark in (b"-->", b"--!>") if (end := buf.find(mark, i)) >= 0
                ]
                if not ends:
                    i = max(i, n - 3)
                    if final:
                        return self._finish(None)  # unterminated: the rest is comment
                    break
                self._mode, i = _TOKEN, min(ends)
            elif mode == _DECLARATION:
                end = buf.find(b">", i)
                if end < 0:
                    i = n
                    if final:
                        return self._finish(None)
                    break
                self._mode, i = _TOKEN, end + 1
            else:  # _TAG or _META: find the closing ">" outside quoted attribute values
                end = self._tag_end(buf, i)
                if end < 0:
                    i = n
                    if mode == _META and (final or n - self._tag_start > _MAX_META_TAG):
                        return self._finish(self._tag_start)
                    if final:
                        return self._finish(None)
                    break
                if (
                    mode == _META
                    and b"content-security-policy" in buf[self._tag_start : end].lower()
                ):
                    return self._finish(self._tag_start)
                self._mode, i = _TOKEN, end + 1
        hold = self._tag_start if self._mode == _META else i
        out, self._buffer = buf[:hold], buf[hold:]
        self._pos = i - hold
        self._tag_start -= hold
        return out

    def _tag_end(self, buf: bytes, i: int) -> int:
        quote, after_equals = self._quote, self._after_equals
        for j in range(i, len(buf)):
            c = buf[j]
            if quote:
                if c == quote:
                    quote = 0
            elif c == 0x3E:  # ">"
                self._quote, self._after_equals = 0, False
                return j
            elif c == 0x3D:  # "="
                after_equals = True
            elif c in _WHITESPACE:
                continue
            elif after_equals and c in (0x22, 0x27):
                quote, after_equals = c, False
            else:
                after_equals = False
        self._quote, self._after_equals = quote, after_equals
        return -1


class PageRewriter:
    """Decode, inject, encode: the body-rewriting consumer's transformation."""

    def __init__(self, injector: HTMLInjector, codec: _encoding.Codec | None) -> None:
        self._injector = injector
        self._codec = codec
        self._empty = True

    def feed(self, data: bytes) -> bytes:
        if data:
            self._empty = False
        codec = self._codec
        if codec is None:
            return self._injector.feed(data)
        # Piece by piece, so the decoded page is never held whole; one flush
        # per chunk from the app keeps a streamed page rendering as it comes.
        out = [codec.compress(self._injector.feed(piece)) for piece in codec.decode(data)]
        out.append(codec.flush())
        return b"".join(out)

    def finish(self) -> bytes:
        """The tail of the body; raises L{_encoding.DecodingError} if the body was cut short."""
        if self._empty:
            # No page (a redirect's or a 205's empty body, even one that says
            # it is compressed, as browsers accept): nothing to add the shim to.
            return b""
        out = self._injector.close()
        codec = self._codec
        if codec is None:
            return out
        return codec.compress(out) + codec.finish()


# Sec-Fetch-Dest values of a navigation that loads a whole document.
_DOCUMENT_DESTINATIONS = frozenset({b"document", b"iframe", b"frame"})
# Headers that mark a request as a script fetching a fragment (htmx, Turbo, jQuery...).
_FRAGMENT_MARKERS = (b"hx-request", b"turbo-frame", b"x-requested-with")
_HTML_TYPES = frozenset({b"text/html"})
# Charsets where the shim's ASCII bytes would be garbage: any label naming
# UTF-16 or UTF-32, and the other labels browsers decode as UTF-16 (WHATWG).
_WIDE_NAMES = (b"utf-16", b"utf-32", b"utf16", b"utf32")
_UTF16_LABELS = frozenset(
    {b"csunicode", b"iso-10646-ucs-2", b"ucs-2", b"unicode", b"unicodefeff", b"unicodefffe"}
)
# Statuses whose response has no body for a browser to read (HEAD aside).
_BODILESS = frozenset({204, 205, 304})
# Headers that vouch for the app's exact bytes, untrue once the shim is in.
_DIGESTS = (b"content-md5", b"digest", b"content-digest", b"repr-digest")


def request_wants_page(request_headers: Headers) -> bool | None:
    """
    C{True} for a navigation, C{False} for a fetch that cannot want a document,
    C{None} when only the body can tell.
    """
    destination = request_headers.getRawHeaders(b"sec-fetch-dest")
    if destination:
        return destination[0].strip().lower() in _DOCUMENT_DESTINATIONS
    if any(request_headers.hasHeader(name) for name in _FRAGMENT_MARKERS):
        return False
    return None


def may_rewrite_request(request_headers: Headers) -> bool:
    """Whether the response to this request might be a page wsse rewrites."""
    if request_wants_page(request_headers) is False:
        return False
    accept = b",".join(request_headers.getRawHeaders(b"accept", []))
    return not accept or b"text/html" in accept or b"*/*" in accept


def _is_html(response_headers: Headers) -> bool:
    values = response_headers.getRawHeaders(b"content-type")
    if not values:
        return False
    media, *params = values[0].split(b";")
    if media.strip().lower() not in _HTML_TYPES:
        return False
    for param in params:
        name, _, value = param.partition(b"=")
        if name.strip().lower() == b"charset":
            label = value.strip().strip(b'"').strip().lower()
            if label in _UTF16_LABELS or any(wide in label for wide in _WIDE_NAMES):
                return False
    return True


def _is_attachment(response_headers: Headers) -> bool:
    """Whether the browser saves the response as a file rather than showing it."""
    disposition = response_headers.getRawHeaders(b"content-disposition", [b""])[0]
    return disposition.split(b";")[0].strip().lower() == b"attachment"


def _may_have_cached_a_page(request_headers: Headers, wants_page: bool | None) -> bool:
    """
    Whether a revalidated copy may be one wsse rewrote: a navigation's; or,
    where the browser does not say (no Fetch Metadata, as on a plain-http
    host), a copy cached with a weak ETag, or one asked for as HTML.
    """
    if wants_page is not None:
        return wants_page
    tags = b",".join(request_headers.getRawHeaders(b"if-none-match", []))
    if tags:
        return b"W/" in tags
    return b"text/html" in b",".join(request_headers.getRawHeaders(b"accept", []))


def _weaken_etags(response_headers: Headers) -> None:
    etags = response_headers.getRawHeaders(b"etag")
    if etags:
        response_headers.setRawHeaders(
            b"etag", [tag if tag.startswith(b"W/") else b"W/" + tag for tag in etags]
        )


def _vary_on_destination(response_headers: Headers) -> None:
    vary = b", ".join(response_headers.getRawHeaders(b"vary", []))
    names = [name.strip().lower() for name in vary.split(b",")]
    if b"*" not in names and b"sec-fetch-dest" not in names:
        response_headers.setRawHeaders(
            b"vary", [vary + b", Sec-Fetch-Dest" if vary else b"Sec-Fetch-Dest"]
        )


def plan_page_rewrite(
    request_headers: Headers,
    method: bytes,
    code: int,
    response_headers: Headers,
    settings: Settings,
    page_path: bytes,
    mount_path: bytes,
) -> PageRewriter | None:
    """
    A rewriter for this response, with its headers adjusted; C{None} to pass it through.

    Rewriting drops Content-Length (the body grows), Accept-Ranges (ranges of
    the app's bytes are not ranges of these) and the digests of the app's
    bytes, weakens the ETag (the bytes differ, the meaning does not) and lets
    the shim through the page's CSP.  A download (an attachment) is left as
    the app made it.
    Every page says it varies with Sec-Fetch-Dest, so that a browser's cache
    never hands a navigation the copy a fetch got without the shim.
    """
    wants_page = request_wants_page(request_headers)
    if code == 304:
        if _may_have_cached_a_page(request_headers, wants_page):
            # The cached copy this revalidates may be a rewritten one.
            _weaken_etags(response_headers)
            _vary_on_destination(response_headers)
        return None
    if not _is_html(response_headers) or _is_attachment(response_headers):
        return None
    _vary_on_destination(response_headers)
    if wants_page is False or method == b"HEAD" or code in _BODILESS or code == 206:
        return None
    try:
        codec = _encoding.codec_for(response_headers.getRawHeaders(b"content-encoding"))
    except LookupError:
        return None
    shim = settings.shim
    nonce = None
    policy = response_headers.getRawHeaders(b"content-security-policy")
    if policy:
        policy, nonce = _csp.admit_inline_script(policy, shim.hash_source)
        response_headers.setRawHeaders(b"content-security-policy", policy)
    report_only = response_headers.getRawHeaders(b"content-security-policy-report-only")
    if report_only:
        report_only, _ = _csp.admit_inline_script(
            report_only, shim.hash_source, nonce, pick_nonce=False
        )
        response_headers.setRawHeaders(b"content-security-policy-report-only", report_only)
    for name in (b"content-length", b"accept-ranges", *_DIGESTS):
        response_headers.removeHeader(name)
    _weaken_etags(response_headers)
    injector = HTMLInjector(
        shim.script_tag(
            page_path,
            mount_path,
            nonce,
            probe_ms=round(settings.probe_timeout * 1000),
            force=settings.force_fallback,
        ),
        known_document=bool(wants_page),
    )
    return PageRewriter(injector, codec)
