"""The streaming HTML injector, the page rewriter and the decision to rewrite."""

from __future__ import annotations

import gzip
import zlib
from importlib.resources import files

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.web.http_headers import Headers

from wsse import Settings, Target
from wsse._encoding import DecodingError, codec_for, restrict_accept_encoding
from wsse._injection import HTMLInjector, PageRewriter, plan_page_rewrite, request_wants_page
from wsse._shim import Shim, compact

MARK = b"<script>SHIM</script>"


def inject(document: bytes, known_document: bool = True, chunk: int | None = None) -> bytes:
    injector = HTMLInjector(MARK, known_document=known_document)
    if chunk is None:
        pieces = [document]
    else:
        pieces = [document[i : i + chunk] for i in range(0, len(document), chunk)]
    return b"".join(injector.feed(p) for p in pieces) + injector.close()


CASES = [
    # (document, expected), insertion shown as |
    (
        b"<!DOCTYPE html><html><head><script>x</script>",
        b"<!DOCTYPE html><html><head>|<script>x</script>",
    ),
    (
        b"<!DOCTYPE HTML><HTML><HEAD><SCRIPT>x</SCRIPT>",
        b"<!DOCTYPE HTML><HTML><HEAD>|<SCRIPT>x</SCRIPT>",
    ),
    (
        b"<!-- <script>a</script> <head> --><!doctype html><script>",
        b"<!-- <script>a</script> <head> --><!doctype html>|<script>",
    ),
    (b"<!doctype html><!--><head><!---><script>", b"<!doctype html><!--><head><!--->|<script>"),
    (b"<!doctype html><title>t</title>", b"<!doctype html>|<title>t</title>"),
    (
        b'<!doctype html>\n<html lang=en>\n  <head>\n    <meta charset="utf-8">\n    <title>',
        b'<!doctype html>\n<html lang=en>\n  <head>\n    <meta charset="utf-8">\n    |<title>',
    ),
    (
        b'<!doctype html><head><meta http-equiv="Content-Security-Policy" content="x"><script>',
        b'<!doctype html><head>|<meta http-equiv="Content-Security-Policy" content="x"><script>',
    ),
    (
        b'<!doctype html><html data-x="a>b" data-y=\'c>d\'><head data-z="<head>"><body>',
        b'<!doctype html><html data-x="a>b" data-y=\'c>d\'><head data-z="<head>">|<body>',
    ),
    (b"<!doctype html><header><script>", b"<!doctype html>|<header><script>"),
    (
        b"<!doctype html><html><head></head><body>no script</body></html>",
        b"<!doctype html><html><head>|</head><body>no script</body></html>",
    ),
    (b"\xef\xbb\xbf<!doctype html><p>", b"\xef\xbb\xbf<!doctype html>|<p>"),
    (
        b'<?xml version="1.0"?><!DOCTYPE html><html><body>',
        b'<?xml version="1.0"?><!DOCTYPE html><html>|<body>',
    ),
    (
        b'<!doctype html><head><meta name=viewport content="width=device-width"><meta charset=utf-8><script>',
        b'<!doctype html><head><meta name=viewport content="width=device-width"><meta charset=utf-8>|<script>',
    ),
    (b"<!doctype html>", b"<!doctype html>|"),
    (b"<!doctype html><html><head>   ", b"<!doctype html><html><head>   |"),
    (
        b"<!doctype html><!--[if IE]><script>ie</script><![endif]--><script>",
        b"<!doctype html><!--[if IE]><script>ie</script><![endif]-->|<script>",
    ),
    (b"<!doctype html><!-- ends --!><script>", b"<!doctype html><!-- ends --!>|<script>"),
]


@pytest.mark.parametrize("document,expected", CASES)
@pytest.mark.parametrize("chunk", [None, 1, 2, 3, 7])
def test_insertion_point(document: bytes, expected: bytes, chunk: int | None) -> None:
    assert inject(document, chunk=chunk) == expected.replace(b"|", MARK)


@pytest.mark.parametrize(
    "document",
    [
        b"<div>a fragment</div>",
        b"<tr><td>row</td></tr>",
        b"  <script>x</script>",
        b"plain text",
        b"<body>no doctype</body>",
    ],
)
def test_fragments_pass_untouched(document: bytes) -> None:
    assert inject(document, known_document=False) == document
    assert inject(document, known_document=False, chunk=1) == document


def test_a_navigation_gets_the_shim_even_without_a_doctype() -> None:
    assert inject(b"<p>hi", known_document=True) == MARK + b"<p>hi"


@pytest.mark.parametrize(
    "document",
    [
        b"\xff\xfe<\x00h\x00t\x00m\x00l\x00>\x00",  # UTF-16: not ASCII-compatible
        b"<!doctype html><!-- never closed <script>",
        b'<!doctype html><html data-x="never closed',
    ],
)
def test_documents_that_cannot_take_the_shim_pass_untouched(document: bytes) -> None:
    assert inject(document) == document
    assert inject(document, chunk=1) == document


def test_bytes_before_the_insertion_point_stream_out() -> None:
    """A long comment is not held back: only a few bytes of a split token are."""
    injector = HTMLInjector(MARK, known_document=True)
    out = injector.feed(b"<!doctype html><!--" + b"x" * 100_000)
    assert len(out) >= 100_000
    # The comment's last three bytes wait in case they begin its end.
    assert injector.feed(b"--><script>") == b"xxx-->" + MARK + b"<script>"


def test_after_insertion_everything_passes_as_is() -> None:
    injector = HTMLInjector(MARK, known_document=True)
    assert injector.feed(b"<!doctype html><p>") == b"<!doctype html>" + MARK + b"<p>"
    chunk = b"<head><!-- <script>"
    assert injector.feed(chunk) is chunk
    assert injector.done


# Documents built from the tokens that matter, to check the injector on
# arbitrary documents and arbitrary chunkings.
TOKENS = st.sampled_from(
    [
        b"<!doctype html>",
        b"<!DOCTYPE HTML>",
        b"<html>",
        b"<HTML lang='a>b'>",
        b"<head>",
        b'<HEAD data-x="<script>">',
        b"<header>",
        b"<meta charset=utf-8>",
        b"<meta name=x>",
        b"<!-- c -->",
        b"<!-->",
        b"<!-- <script> -->",
        b"<script>s</script>",
        b"<title>t</title>",
        b"<body>",
        b"text",
        b" ",
        b"\n",
        b"<",
        b">",
        b"-->",
        b'"',
        b"'",
        b"<?pi?>",
        b"\xef\xbb\xbf",
        b"<h",
        b"<!",
        b"<!-",
        b"\xc3\xa9",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    tokens=st.lists(TOKENS, max_size=25),
    cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20),
    known=st.booleans(),
)
def test_any_chunking_gives_the_same_bytes_and_touches_nothing_else(
    tokens: list[bytes], cuts: list[int], known: bool
) -> None:
    document = b"".join(tokens)
    whole = inject(document, known_document=known)
    injector = HTMLInjector(MARK, known_document=known)
    out, position = [], 0
    for cut in cuts:
        out.append(injector.feed(document[position : position + cut]))
        position += cut
    out.append(injector.feed(document[position:]))
    out.append(injector.close())
    chunked = b"".join(out)
    assert chunked == whole
    assert whole.count(MARK) <= 1 + document.count(MARK)
    if MARK in whole:
        at = whole.index(MARK)
        assert whole[:at] + whole[at + len(MARK) :] == document
    else:
        assert whole == document


# The page rewriter with content codings.

DOCUMENT = (
    b"<!doctype html><html><head><title>t</title></head><body>"
    + b"caf\xc3\xa9 " * 5000
    + b"</body></html>"
)
EXPECTED = DOCUMENT.replace(b"<head>", b"<head>" + MARK, 1)


def _rewrite(encoding: bytes | None, body: bytes, chunk: int = 1000) -> bytes:
    codec = codec_for([encoding] if encoding else None)
    rewriter = PageRewriter(HTMLInjector(MARK, known_document=True), codec)
    out = [rewriter.feed(body[i : i + chunk]) for i in range(0, len(body), chunk)]
    out.append(rewriter.finish())
    return b"".join(out)


@pytest.mark.parametrize(
    "encoding,compress,decompress",
    [
        (None, lambda b: b, lambda b: b),
        (b"gzip", gzip.compress, gzip.decompress),
        (b"x-gzip", gzip.compress, gzip.decompress),
        (b"deflate", zlib.compress, zlib.decompress),
        (b"br", brotli.compress, brotli.decompress),
    ],
)
def test_compressed_pages_come_out_injected_and_in_the_same_coding(
    encoding, compress, decompress
) -> None:
    assert decompress(_rewrite(encoding, compress(DOCUMENT))) == EXPECTED


def test_raw_deflate_is_accepted() -> None:
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = raw.compress(DOCUMENT) + raw.flush()
    assert zlib.decompress(_rewrite(b"deflate", body)) == EXPECTED


def test_multi_member_gzip_is_decoded_whole() -> None:
    body = gzip.compress(DOCUMENT[:100]) + gzip.compress(DOCUMENT[100:])
    assert gzip.decompress(_rewrite(b"gzip", body)) == EXPECTED


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_multi_member_gzip_is_decoded_whole_whatever_the_reads(chunk: int) -> None:
    body = gzip.compress(DOCUMENT[:100]) + gzip.compress(DOCUMENT[100:])
    assert gzip.decompress(_rewrite(b"gzip", body, chunk)) == EXPECTED


@pytest.mark.parametrize("chunk", [1, 7, 1000])
@pytest.mark.parametrize("trailer", [b"\n", b"\0" * 8, b"\x1f", b"\x1fX and more"])
def test_bytes_after_the_last_gzip_member_are_ignored_as_browsers_do(
    trailer: bytes, chunk: int
) -> None:
    assert gzip.decompress(_rewrite(b"gzip", gzip.compress(DOCUMENT) + trailer, chunk)) == EXPECTED


@pytest.mark.parametrize("encoding", [None, b"gzip", b"deflate", b"br"])
def test_an_empty_body_stays_empty_even_when_it_says_it_is_compressed(
    encoding: bytes | None,
) -> None:
    assert _rewrite(encoding, b"") == b""


def test_each_chunk_is_flushed_so_a_streamed_page_renders_as_it_arrives() -> None:
    codec = codec_for([b"gzip"])
    rewriter = PageRewriter(HTMLInjector(MARK, known_document=True), codec)
    source = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = source.compress(b"<!doctype html><p>first part") + source.flush(zlib.Z_SYNC_FLUSH)
    out = rewriter.feed(first)
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert decoder.decompress(out) == b"<!doctype html>" + MARK + b"<p>first part"


@pytest.mark.parametrize(
    "encoding,body",
    [
        (b"gzip", gzip.compress(DOCUMENT)[:-20]),
        (b"br", brotli.compress(DOCUMENT)[:-5]),
        (b"deflate", zlib.compress(DOCUMENT)[:-10]),
    ],
)
def test_a_truncated_compressed_body_is_an_error(encoding: bytes, body: bytes) -> None:
    with pytest.raises(DecodingError):
        _rewrite(encoding, body)


def test_a_corrupt_compressed_body_is_an_error() -> None:
    with pytest.raises(DecodingError):
        _rewrite(b"gzip", b"\x1f\x8b\x08\x00garbage that is not deflate")


@pytest.mark.parametrize("value", [[b"zstd"], [b"gzip, br"], [b"compress"]])
def test_codings_wsse_cannot_undo_are_refused(value: list[bytes]) -> None:
    with pytest.raises(LookupError):
        codec_for(value)


def test_identity_needs_no_codec() -> None:
    assert codec_for(None) is None
    assert codec_for([b"identity"]) is None


@pytest.mark.parametrize(
    "offered,kept",
    [
        ([b"gzip, deflate, br, zstd"], [b"gzip, deflate, br"]),
        ([b"zstd;q=1.0, br;q=0.5"], [b"br;q=0.5"]),
        ([b"zstd", b"*"], [b"identity"]),
    ],
)
def test_accept_encoding_is_limited_to_what_wsse_can_decode(offered, kept) -> None:
    assert restrict_accept_encoding(offered) == kept


# Deciding whether to rewrite.

SHIM = Shim(b"window.shim = 1;")
SETTINGS = Settings(target=Target("http", "app", 80), shim=SHIM)


def _plan(request: dict[bytes, bytes], response: dict[bytes, list[bytes]], method=b"GET", code=200):
    request_headers = Headers({k: [v] for k, v in request.items()})
    response_headers = Headers(response)
    rewriter = plan_page_rewrite(
        request_headers, method, code, response_headers, SETTINGS, b"/page", b"/"
    )
    return rewriter, response_headers


HTML = {b"content-type": [b"text/html; charset=utf-8"]}


@pytest.mark.parametrize(
    "request_headers,expected",
    [
        ({b"sec-fetch-dest": b"document"}, True),
        ({b"sec-fetch-dest": b"iframe"}, True),
        ({b"sec-fetch-dest": b"empty"}, False),
        ({b"sec-fetch-dest": b"script"}, False),
        ({b"hx-request": b"true"}, False),
        ({b"x-requested-with": b"XMLHttpRequest"}, False),
        ({b"turbo-frame": b"main"}, False),
        ({}, None),
    ],
)
def test_what_the_request_says_about_wanting_a_page(request_headers, expected) -> None:
    assert request_wants_page(Headers({k: [v] for k, v in request_headers.items()})) is expected


def test_a_navigation_to_an_html_page_is_rewritten() -> None:
    response = {**HTML, b"content-length": [b"100"], b"etag": [b'"abc"']}
    rewriter, headers = _plan({b"sec-fetch-dest": b"document"}, response)
    assert rewriter is not None
    assert not headers.hasHeader(b"content-length")
    assert headers.getRawHeaders(b"etag") == [b'W/"abc"']


def test_pages_vary_with_the_request_destination() -> None:
    _, rewritten = _plan({b"sec-fetch-dest": b"document"}, {**HTML, b"vary": [b"Accept-Encoding"]})
    assert rewritten.getRawHeaders(b"vary") == [b"Accept-Encoding, Sec-Fetch-Dest"]
    _, fetched = _plan({b"sec-fetch-dest": b"empty"}, dict(HTML))
    assert fetched.getRawHeaders(b"vary") == [b"Sec-Fetch-Dest"]
    _, other = _plan({b"sec-fetch-dest": b"document"}, {b"content-type": [b"text/css"]})
    assert other.getRawHeaders(b"vary") is None


def test_a_revalidated_page_keeps_the_weak_etag_of_its_rewritten_copy() -> None:
    rewriter, headers = _plan({b"sec-fetch-dest": b"document"}, {b"etag": [b'"v1"']}, code=304)
    assert rewriter is None
    assert headers.getRawHeaders(b"etag") == [b'W/"v1"']
    assert headers.getRawHeaders(b"vary") == [b"Sec-Fetch-Dest"]


@pytest.mark.parametrize(
    "request_headers,weakened",
    [
        ({b"sec-fetch-dest": b"document"}, True),
        ({b"sec-fetch-dest": b"image"}, False),
        # No Fetch Metadata (a plain-http host): the copy's own validator tells.
        ({b"if-none-match": b'W/"v1"'}, True),
        ({b"if-none-match": b'"v1"', b"accept": b"image/avif,image/webp,*/*"}, False),
        ({b"if-none-match": b'"v1"', b"accept": b"text/html,*/*;q=0.8"}, False),
        # Revalidated by date alone: what the browser asked for.
        ({b"accept": b"text/html,application/xhtml+xml,*/*;q=0.8"}, True),
        ({b"accept": b"video/*,*/*"}, False),
    ],
)
def test_a_revalidation_weakens_the_etag_only_of_what_may_be_a_rewritten_copy(
    request_headers: dict[bytes, bytes], weakened: bool
) -> None:
    # A 304 has no Content-Type: an image's or a video's (whose ranges a
    # strong ETag lets the browser resume) must keep its ETag as it is.
    _, headers = _plan(request_headers, {b"etag": [b'"v1"']}, code=304)
    assert headers.getRawHeaders(b"etag") == [b'W/"v1"' if weakened else b'"v1"']
    assert headers.hasHeader(b"vary") is weakened


def test_a_rewritten_page_drops_the_digests_of_the_apps_bytes() -> None:
    digests = {
        b"content-md5": [b"Q2hlY2sgSW50ZWdyaXR5IQ=="],
        b"digest": [b"sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="],
        b"content-digest": [b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"],
        b"repr-digest": [b"sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"],
    }
    rewriter, headers = _plan({b"sec-fetch-dest": b"document"}, {**HTML, **digests})
    assert rewriter is not None
    assert [name for name in digests if headers.hasHeader(name)] == []
    # Passed through untouched, they stay.
    _, kept = _plan({b"sec-fetch-dest": b"empty"}, {**HTML, **digests})
    assert [name for name in digests if kept.hasHeader(name)] == list(digests)


@pytest.mark.parametrize(
    "content_type",
    [
        b"text/html; charset=utf-8",
        b'text/html; charset="windows-1251"',
        b"text/html; foo=utf-16; charset=iso-8859-1",
        b"text/html;charset=UTF-8",
    ],
)
def test_ascii_compatible_pages_are_rewritten(content_type: bytes) -> None:
    rewriter, _ = _plan({}, {b"content-type": [content_type]})
    assert rewriter is not None


def test_a_page_shown_inline_is_rewritten() -> None:
    rewriter, _ = _plan({}, {**HTML, b"content-disposition": [b'inline; filename="r.html"']})
    assert rewriter is not None


def test_a_rewritten_page_offers_no_ranges() -> None:
    _, headers = _plan({}, {**HTML, b"accept-ranges": [b"bytes"]})
    assert not headers.hasHeader(b"accept-ranges")


def test_a_weak_etag_stays_as_it_was() -> None:
    _, headers = _plan({}, {**HTML, b"etag": [b'W/"abc"']})
    assert headers.getRawHeaders(b"etag") == [b'W/"abc"']


@pytest.mark.parametrize(
    "request_headers,response,method,code",
    [
        ({b"sec-fetch-dest": b"empty"}, HTML, b"GET", 200),
        ({}, {b"content-type": [b"application/json"]}, b"GET", 200),
        ({}, {b"content-type": [b"application/xhtml+xml"]}, b"GET", 200),
        ({}, {b"content-type": [b"text/html; charset=utf-16"]}, b"GET", 200),
        # Every label browsers decode as UTF-16 (WHATWG), quoted or not.
        *(
            ({}, {b"content-type": [b"text/html; charset=" + label]}, b"GET", 200)
            for label in (
                b"unicode",
                b"UCS-2",
                b"iso-10646-ucs-2",
                b"csunicode",
                b"unicodefeff",
                b'"unicodeFFFE"',
                b"utf-16le",
                b"utf-16be",
                b"utf-32",
            )
        ),
        # A download: saved as the app made it.
        (
            {b"sec-fetch-dest": b"document"},
            {**HTML, b"content-disposition": [b'attachment; filename="notebook.html"']},
            b"GET",
            200,
        ),
        ({}, {**HTML, b"content-disposition": [b"Attachment"]}, b"GET", 200),
        ({}, {**HTML, b"content-encoding": [b"zstd"]}, b"GET", 200),
        ({}, HTML, b"HEAD", 200),
        ({}, HTML, b"GET", 204),
        ({}, HTML, b"POST", 205),
        ({}, HTML, b"GET", 206),
        ({}, HTML, b"GET", 304),
        ({}, {}, b"GET", 200),
    ],
)
def test_what_is_not_rewritten(request_headers, response, method, code) -> None:
    rewriter, headers = _plan(
        request_headers, {**response, b"content-length": [b"5"]}, method, code
    )
    assert rewriter is None
    assert headers.getRawHeaders(b"content-length") == [b"5"]


def test_the_script_element_carries_the_page_nonce_and_the_policy_stays() -> None:
    policy = [b"script-src 'nonce-r4nd0m' 'strict-dynamic'"]
    rewriter, headers = _plan({}, {**HTML, b"content-security-policy": policy})
    assert headers.getRawHeaders(b"content-security-policy") == policy
    out = rewriter.feed(b"<!doctype html><script nonce=r4nd0m>") + rewriter.finish()
    assert (
        b'<script data-wsse="path=/page&amp;base=__wsse/&amp;probe=3000" nonce="r4nd0m">'
        b"window.shim = 1;</script>" in out
    )


def test_report_only_policies_get_the_hash_not_the_enforced_nonce() -> None:
    _, headers = _plan(
        {},
        {
            **HTML,
            b"content-security-policy": [b"script-src 'nonce-aaa'"],
            b"content-security-policy-report-only": [b"script-src 'nonce-bbb'"],
        },
    )
    assert headers.getRawHeaders(b"content-security-policy") == [b"script-src 'nonce-aaa'"]
    report_only = headers.getRawHeaders(b"content-security-policy-report-only")[0]
    assert SHIM.hash_source in report_only


# The shim as pages get it.


def test_pages_get_the_shim_without_its_comment_lines_and_indentation() -> None:
    source = (
        b"/* A comment\n"
        b" * on lines of its own. */\n"
        b"(function () {\n"
        b"  // a line comment\n"
        b"\n"
        b"  var a = '/* not a comment */'; /* one after code stays */\n"
        b"    /* one line */\n"
        b"  return a;\n"
        b"})();\n"
    )
    assert compact(source) == (
        b"(function () {\n"
        b"var a = '/* not a comment */'; /* one after code stays */\n"
        b"return a;\n"
        b"})();\n"
    )


@pytest.mark.parametrize(
    "source",
    [
        b"/* a */ var a = 1;\n",
        b"/* a\n b */ var a = 1;\n",
        b"var a;\n/* open\n",
        b"var a = `x\n  // y\n  z`;\n",
        b"var a = 'x\\\n  y';\n",
        b"x(); /* open\n/* inside */\ny();\n",
    ],
)
def test_a_shim_that_compacting_could_change_is_refused(
    source: bytes,
) -> None:
    with pytest.raises(ValueError):
        compact(source)


def test_the_shim_pages_get_is_the_file_compacted() -> None:
    source = files("wsse").joinpath("shim/wsse-shim.js").read_bytes()
    served = Shim().source
    assert served == compact(source)
    assert len(served) < 0.7 * len(source)
