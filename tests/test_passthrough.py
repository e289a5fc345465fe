"""HTTP passthrough over real loopback sockets: a real app behind wsse."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import struct
from typing import Any

import brotli
from twisted.internet import defer, reactor, task
from twisted.web.server import NOT_DONE_YET, Request

from tests.support.app import RawApp, RawAppFactory
from tests.support.clients import http, parse_response, raw_connection, raw_exchange
from tests.support.harness import ProxyTestCase
from wsse import HostHeader

PAGE = b"<!DOCTYPE html><html><head><title>page</title><script>var page = 1;</script></head><body>hello</body></html>"


def page(request: Request) -> bytes:
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    request.setHeader(b"etag", b'"v1"')
    return PAGE


class MethodsPathsBodies(ProxyTestCase):
    async def test_every_method_path_and_query_arrives_byte_for_byte(self) -> None:
        targets = [
            b"/",
            b"/a%2Fb/c%20d;e,f@g+h:i=j",
            b"//evil.example/x",
            b"/%2e%2e/%2E%2E/etc",
            b"/caf%C3%A9/%E2%82%AC",
            b"/q?flag&x=%20&y=a+b&z=%2B&&w==",
            b"/q?redirect=http://other.example/@x",
        ]
        for method in [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"PROPFIND"]:
            for target in targets:
                body = b"" if method in (b"GET", b"OPTIONS") else b"body of " + method
                response = await http(self.port, method, target, body=body)
                self.assertEqual(response.status, 200, (method, target))
                seen = self.app.seen[-1]
                self.assertEqual((seen.method, seen.uri, seen.body), (method, target, body))

    async def test_a_large_upload_arrives_whole(self) -> None:
        body = bytes(range(256)) * (20 * 1024 * 4)  # 20 MiB
        response = await http(self.port, b"POST", b"/upload", body=body)
        answer = json.loads(response.body)
        self.assertEqual(answer["length"], len(body))
        self.assertEqual(answer["sha256"], hashlib.sha256(body).hexdigest())

    async def test_form_bodies_reach_the_app_as_they_are_even_malformed(self) -> None:
        """wsse does not parse forms: the app judges a body, not the proxy."""
        forms = [
            (b"application/x-www-form-urlencoded", b"a=1&b=%ZZ&&c"),
            (b"multipart/form-data; boundary=xyz", b"--xyz\r\nnot a part at all"),
            (b"multipart/form-data", b"no boundary given"),
        ]
        for content_type, body in forms:
            response = await http(
                self.port, b"POST", b"/form", [(b"Content-Type", content_type)], body=body
            )
            self.assertEqual(response.status, 200, content_type)
            self.assertEqual(self.app.seen[-1].body, body)

    async def test_a_chunked_upload_arrives_whole(self) -> None:
        raw = await raw_exchange(
            self.port,
            b"POST /upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        self.assertEqual(json.loads(parse_response(raw).body)["length"], 11)
        self.assertEqual(self.app.seen[-1].body, b"hello world")

    async def test_an_absolute_form_target_is_refused(self) -> None:
        response = await http(self.port, target=b"http://other.example/")
        self.assertEqual(response.status, 400)
        self.assertEqual(self.app.seen, [])

    async def test_http_1_0_clients_are_served(self) -> None:
        self.app.route(b"/page", page)
        response = await http(self.port, target=b"/page", version=b"HTTP/1.0")
        self.assertEqual(response.status, 200)
        self.assertIn(b"hello", response.body)

    async def test_keep_alive_connections_to_the_app_are_reused(self) -> None:
        for _ in range(20):
            await http(self.port, target=b"/x")
        # Each request came over its own browser connection, yet the app
        # accepted one connection for all of them.
        self.assertEqual(self.proxy_factory.accepted, 20)
        self.assertEqual(self.app_factory.accepted, 1)
        self.assertEqual(len(self.app.seen), 20)


class Headers(ProxyTestCase):
    async def test_hop_by_hop_request_headers_are_dropped(self) -> None:
        await http(
            self.port,
            target=b"/h",
            headers=[
                (b"Keep-Alive", b"timeout=5"),
                (b"Connection", b"X-Hop"),
                (b"X-Hop", b"private"),
                (b"TE", b"trailers"),
                (b"Upgrade", b"h2c"),
                (b"Proxy-Connection", b"keep-alive"),
                (b"Proxy-Authorization", b"Basic eA=="),
                (b"Proxy", b"http://elsewhere.example:1"),
                (b"Proxy-Anything", b"y"),
                (b"Proxyish", b"kept"),
                (b"X-End-To-End", b"kept"),
            ],
        )
        seen = self.app.seen[-1]
        names = {name.lower() for name, _ in seen.headers}
        for hop in [
            b"keep-alive",
            b"x-hop",
            b"te",
            b"upgrade",
            b"proxy-connection",
            b"proxy-authorization",
            b"proxy",
            b"proxy-anything",
        ]:
            self.assertNotIn(hop, names)
        self.assertEqual(seen.header(b"x-end-to-end"), [b"kept"])
        self.assertEqual(seen.header(b"proxyish"), [b"kept"])

    async def test_hop_by_hop_response_headers_are_dropped(self) -> None:
        def hops(request: Request) -> bytes:
            request.setHeader(b"keep-alive", b"timeout=5")
            request.setHeader(b"proxy-connection", b"keep-alive")
            request.setHeader(b"upgrade", b"h2c")
            request.setHeader(b"x-end-to-end", b"kept")
            return b"ok"

        self.app.route(b"/hops", hops)
        response = await http(self.port, target=b"/hops")
        names = {name.lower() for name, _ in response.headers}
        self.assertFalse(names & {b"keep-alive", b"proxy-connection", b"upgrade"})
        self.assertEqual(response.header(b"x-end-to-end"), [b"kept"])

    async def test_repeated_request_headers_stay_separate(self) -> None:
        await http(
            self.port,
            target=b"/h",
            headers=[
                (b"X-Dup", b"one"),
                (b"X-Dup", b"two"),
                (b"Cookie", b"a=1"),
                (b"Cookie", b"b=2"),
            ],
        )
        seen = self.app.seen[-1]
        self.assertEqual(seen.header(b"x-dup"), [b"one", b"two"])
        self.assertEqual(seen.header(b"cookie"), [b"a=1", b"b=2"])

    async def test_wsse_s_own_key_cookies_never_reach_the_app(self) -> None:
        for cookies, expected in [
            ([b"wsse-key-s1=k1"], None),
            ([b"a=1; wsse-key-s1=k1; b=2"], [b"a=1; b=2"]),
            ([b"wsse-key-s1=k1; wsse-key-s2=k2", b"c=3"], [b"c=3"]),
            ([b"a=1;wsse-key-s1=k1"], [b"a=1"]),
            ([b"wsse=fallback; a=wsse-key-s1"], [b"wsse=fallback; a=wsse-key-s1"]),
        ]:
            await http(self.port, target=b"/h", headers=[(b"Cookie", c) for c in cookies])
            seen = self.app.seen[-1].header(b"cookie")
            self.assertEqual(seen or None, expected, cookies)

    async def test_forwarded_headers_are_added(self) -> None:
        await http(self.port, target=b"/h", headers=[(b"X-Forwarded-For", b"10.0.0.1")])
        seen = self.app.seen[-1]
        self.assertEqual(seen.header(b"x-forwarded-for"), [b"10.0.0.1, 127.0.0.1"])
        self.assertEqual(seen.header(b"x-forwarded-proto"), [b"http"])
        self.assertEqual(seen.header(b"x-forwarded-host"), [b"proxy.example"])
        self.assertEqual(seen.header(b"host"), [b"proxy.example"])

    async def test_a_gateway_s_forwarded_proto_and_host_are_kept(self) -> None:
        await http(
            self.port,
            target=b"/h",
            headers=[(b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"public.example")],
        )
        seen = self.app.seen[-1]
        self.assertEqual(seen.header(b"x-forwarded-proto"), [b"https"])
        self.assertEqual(seen.header(b"x-forwarded-host"), [b"public.example"])

    async def test_repeated_response_headers_stay_separate_and_nothing_is_doubled(self) -> None:
        def cookies(request: Request) -> bytes:
            request.responseHeaders.setRawHeaders(
                b"set-cookie", [b"a=1; Path=/", b"b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"]
            )
            request.responseHeaders.setRawHeaders(b"server", [b"TheApp/1.0"])
            return b"ok"

        self.app.route(b"/cookies", cookies)
        response = await http(self.port, target=b"/cookies")
        self.assertEqual(
            response.header(b"set-cookie"),
            [b"a=1; Path=/", b"b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"],
        )
        self.assertEqual(response.header(b"server"), [b"TheApp/1.0"])
        self.assertEqual(len(response.header(b"date")), 1)

    async def test_an_app_without_content_type_gets_none_added(self) -> None:
        def bare(request: Request) -> bytes:
            request.defaultContentType = None
            return b"raw"

        self.app.route(b"/bare", bare)
        response = await http(self.port, target=b"/bare")
        self.assertEqual(response.header(b"content-type"), [])
        self.assertEqual(response.body, b"raw")

    async def test_locations_on_the_app_s_address_map_back(self) -> None:
        app_origin = b"http://127.0.0.1:%d" % self.target.port

        def redirect(request: Request) -> bytes:
            request.setResponseCode(302)
            request.setHeader(b"location", app_origin + b"/next?x=1")
            request.setHeader(b"refresh", b"5; url=" + app_origin + b"/later")
            return b""

        self.app.route(b"/go", redirect)
        response = await http(self.port, target=b"/go")
        self.assertEqual(response.status, 302)
        self.assertEqual(response.header(b"location"), [b"/next?x=1"])
        self.assertEqual(response.header(b"refresh"), [b"5; url=/later"])


class UntrustedPeers(ProxyTestCase):
    overrides = {"forwarded_allow_ips": ()}

    async def test_a_client_cannot_choose_the_forwarded_proto_and_host(self) -> None:
        await http(
            self.port,
            target=b"/h",
            headers=[(b"X-Forwarded-Proto", b"https"), (b"X-Forwarded-Host", b"evil.example")],
        )
        seen = self.app.seen[-1]
        self.assertEqual(seen.header(b"x-forwarded-proto"), [b"http"])
        self.assertEqual(seen.header(b"x-forwarded-host"), [b"proxy.example"])

    async def test_the_forwarded_for_chain_is_still_appended_to(self) -> None:
        await http(self.port, target=b"/h", headers=[(b"X-Forwarded-For", b"10.0.0.1")])
        self.assertEqual(self.app.seen[-1].header(b"x-forwarded-for"), [b"10.0.0.1, 127.0.0.1"])


class TargetHostHeader(ProxyTestCase):
    overrides = {"host_header": HostHeader.TARGET}

    async def test_the_app_can_be_told_its_own_host(self) -> None:
        await http(self.port, target=b"/h")
        seen = self.app.seen[-1]
        self.assertEqual(seen.header(b"host"), [b"127.0.0.1:%d" % self.target.port])
        self.assertEqual(seen.header(b"x-forwarded-host"), [b"proxy.example"])


class NoBody(ProxyTestCase):
    async def test_head_has_no_body_and_the_length_of_the_get(self) -> None:
        self.app.route(b"/file", lambda request: b"x" * 1234)
        response = await http(self.port, b"HEAD", b"/file")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header(b"content-length"), [b"1234"])
        self.assertEqual(response.raw.split(b"\r\n\r\n", 1)[1], b"")

    async def test_head_of_a_page_is_not_rewritten(self) -> None:
        self.app.route(b"/page", page)
        response = await http(
            self.port, b"HEAD", b"/page", headers=[(b"Sec-Fetch-Dest", b"document")]
        )
        self.assertEqual(response.raw.split(b"\r\n\r\n", 1)[1], b"")
        self.assertEqual(response.header(b"etag"), [b'"v1"'])

    async def test_204_and_304_have_no_body(self) -> None:
        def status(code: int) -> Any:
            def handler(request: Request) -> bytes:
                request.setResponseCode(code)
                request.setHeader(b"etag", b'"v1"')
                return b""

            return handler

        self.app.route(b"/204", status(204))
        self.app.route(b"/304", status(304))
        for code in (204, 304):
            response = await http(self.port, target=b"/%d" % code)
            self.assertEqual(response.status, code)
            self.assertEqual(response.raw.split(b"\r\n\r\n", 1)[1], b"")
            self.assertEqual(response.header(b"transfer-encoding"), [])


class Failures(ProxyTestCase):
    async def test_app_down_is_a_plain_502_without_internals(self) -> None:
        await self.app_port.stopListening()
        response = await http(self.port, target=b"/x")
        self.assertEqual(response.status, 502)
        self.assertEqual(response.header(b"content-type"), [b"text/plain; charset=utf-8"])
        self.assertNotIn(b"127.0.0.1", response.body)
        self.assertNotIn(b"refused", response.body.lower())
        self.assertNotIn(b"Traceback", response.body)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_app_closing_without_an_answer_is_a_502(self) -> None:
        def hang_up(request: Request) -> int:
            request.channel.transport.abortConnection()
            return NOT_DONE_YET

        self.app.route(b"/hangup", hang_up)
        response = await http(self.port, b"POST", b"/hangup", body=b"x")
        self.assertEqual(response.status, 502)

    async def test_app_cutting_a_body_short_cuts_the_browser_s_response(self) -> None:
        def cut(request: Request) -> int:
            request.setHeader(b"content-type", b"text/plain")
            request.setHeader(b"content-length", b"100")
            request.write(b"only part")
            reactor.callLater(0.05, request.channel.transport.abortConnection)
            return NOT_DONE_YET

        self.app.route(b"/cut", cut)
        raw = await raw_exchange(self.port, b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        response = parse_response(raw)
        self.assertEqual(response.status, 200)
        # The connection closed before the promised 100 bytes: the browser
        # knows the body is incomplete.
        self.assertEqual(response.header(b"content-length"), [b"100"])
        self.assertEqual(response.body, b"only part")


class SlowApp(ProxyTestCase):
    overrides = {"response_timeout": 0.3}

    async def test_an_app_too_slow_to_answer_is_a_504_and_its_request_is_dropped(self) -> None:
        dropped: list[defer.Deferred[None]] = []
        self.app.route(
            b"/slow", lambda request: dropped.append(request.notifyFinish()) or NOT_DONE_YET
        )
        response = await http(self.port, target=b"/slow")
        self.assertEqual(response.status, 504)
        self.assertEqual(len(dropped), 1)
        await self.assertFailure(dropped[0], Exception)


class ClientLeaves(ProxyTestCase):
    async def test_leaving_before_the_answer_closes_the_app_request(self) -> None:
        gone: list[defer.Deferred[None]] = []
        self.app.route(
            b"/held", lambda request: gone.append(request.notifyFinish()) or NOT_DONE_YET
        )
        arrived = self.app.next_request()
        client = await raw_connection(self.port, b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
        await arrived
        client.transport.loseConnection()
        await self.assertFailure(gone[0], Exception)

    async def test_leaving_during_the_body_closes_the_app_request(self) -> None:
        streaming: list[Request] = []

        def stream(request: Request) -> int:
            streaming.append(request)
            request.setHeader(b"content-type", b"text/plain")
            request.write(b"first chunk")
            return NOT_DONE_YET

        self.app.route(b"/stream", stream)
        client = await raw_connection(self.port, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await client.first_data
        gone = streaming[0].notifyFinish()
        client.transport.loseConnection()
        await self.assertFailure(gone, Exception)


class Streaming(ProxyTestCase):
    async def test_chunks_reach_the_browser_as_the_app_writes_them(self) -> None:
        """
        Lock-step: the app writes chunk n+1 only once the browser holds chunk n,
        so a proxy that buffered the response would never finish.
        """
        received: defer.DeferredQueue[bytes] = defer.DeferredQueue()
        writer: list[Request] = []

        def stream(request: Request) -> int:
            request.setHeader(b"content-type", b"text/plain")
            writer.append(request)
            request.write(b"chunk 0;")
            return NOT_DONE_YET

        self.app.route(b"/stream", stream)
        client = await raw_connection(
            self.port, b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        client.dataReceived = lambda data, original=client.dataReceived: (
            original(data),
            received.put(data),
        )
        seen = b""
        for n in range(1, 20):
            while b"chunk %d;" % (n - 1) not in seen:
                seen += await received.get()
            writer[0].write(b"chunk %d;" % n)
        writer[0].finish()
        raw = await client.done
        self.assertEqual(parse_response(raw).body, b"".join(b"chunk %d;" % n for n in range(20)))


class LongStreams(ProxyTestCase):
    overrides = {"response_timeout": 2.0}
    site_timeout = 3.0

    async def test_an_event_stream_outlives_every_timeout(self) -> None:
        """
        A 40 s event stream, one event a second, each reaching the browser
        before the next is written, through a wsse whose response timeout (2 s)
        and idle timeout (3 s) are both far shorter than the stream.  The
        latency is printed here and measured in bench/relay.py.
        """
        received: defer.DeferredQueue[bytes] = defer.DeferredQueue()
        writer: list[Request] = []

        def events(request: Request) -> int:
            request.setHeader(b"content-type", b"text/event-stream")
            request.setHeader(b"cache-control", b"no-cache")
            writer.append(request)
            return NOT_DONE_YET

        self.app.route(b"/events", events)
        client = await raw_connection(
            self.port, b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        )
        client.dataReceived = lambda data, original=client.dataReceived: (
            original(data),
            received.put(data),
        )
        while not writer:
            await task.deferLater(reactor, 0.01, lambda: None)
        seen = b""
        latencies = []
        for n in range(40):
            written = reactor.seconds()
            writer[0].write(b"data: %d\n\n" % n)
            while b"data: %d\n\n" % n not in seen:
                seen += await received.get()
            latencies.append(reactor.seconds() - written)
            await task.deferLater(reactor, 1.0, lambda: None)
        writer[0].finish()
        client.transport.loseConnection()
        await client.done
        latencies.sort()
        print(
            f"event latency through wsse: median {latencies[20] * 1000:.2f} ms, max {latencies[-1] * 1000:.2f} ms"
        )

    test_an_event_stream_outlives_every_timeout.timeout = 90  # type: ignore[attr-defined]


class StreamingWithShortTimeouts(ProxyTestCase):
    overrides = {"response_timeout": 0.2}

    async def test_the_response_timeout_covers_headers_only(self) -> None:
        writer: list[Request] = []

        def slow_body(request: Request) -> int:
            request.write(b"headers sent;")
            writer.append(request)
            reactor.callLater(0.6, lambda: (request.write(b"late part"), request.finish()))
            return NOT_DONE_YET

        self.app.route(b"/slow-body", slow_body)
        response = await http(self.port, target=b"/slow-body")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"headers sent;late part")


class Injection(ProxyTestCase):
    async def test_a_navigation_gets_the_shim_and_adjusted_headers(self) -> None:
        self.app.route(b"/page", page)
        response = await http(
            self.port, target=b"/page", headers=[(b"Sec-Fetch-Dest", b"document")]
        )
        self.assertIn(
            b'<head><script data-wsse="path=/page&amp;base=__wsse/&amp;probe=3000">', response.body
        )
        self.assertIn(b"var page = 1;", response.body)
        self.assertTrue(response.chunked)
        self.assertEqual(response.header(b"content-length"), [])
        self.assertEqual(response.header(b"etag"), [b'W/"v1"'])

    async def test_a_fetch_of_the_same_page_is_left_alone(self) -> None:
        self.app.route(b"/page", page)
        response = await http(self.port, target=b"/page", headers=[(b"Sec-Fetch-Dest", b"empty")])
        self.assertEqual(response.body, PAGE)
        self.assertEqual(response.header(b"content-length"), [b"%d" % len(PAGE)])
        self.assertEqual(response.header(b"etag"), [b'"v1"'])

    async def test_other_content_passes_byte_for_byte_with_its_length(self) -> None:
        blob = bytes(range(256)) * 1000
        self.app.route(
            b"/blob",
            lambda request: (request.setHeader(b"content-type", b"application/octet-stream"), blob)[
                1
            ],
        )
        response = await http(self.port, target=b"/blob")
        self.assertEqual(response.body, blob)
        self.assertEqual(response.header(b"content-length"), [b"%d" % len(blob)])

    async def test_compressed_pages_stay_compressed_and_get_the_shim(self) -> None:
        codings = {
            b"gzip": (gzip.compress, gzip.decompress),
            b"br": (brotli.compress, brotli.decompress),
        }

        def compressed(request: Request) -> bytes:
            coding = request.args[b"c"][0]
            request.setHeader(b"content-type", b"text/html")
            request.setHeader(b"content-encoding", coding)
            request.setHeader(b"vary", b"accept-encoding")
            return codings[coding][0](PAGE)

        self.app.route(b"/z", compressed)
        for coding, (_, decompress) in codings.items():
            response = await http(
                self.port,
                target=b"/z?c=" + coding,
                headers=[
                    (b"Sec-Fetch-Dest", b"document"),
                    (b"Accept-Encoding", b"gzip, deflate, br, zstd"),
                ],
            )
            self.assertEqual(response.header(b"content-encoding"), [coding])
            body = decompress(response.body)
            self.assertIn(b"<head><script data-wsse=", body)
            self.assertTrue(body.endswith(b"<body>hello</body></html>"))
        self.assertEqual(self.app.seen[-1].header(b"accept-encoding"), [b"gzip, deflate, br"])

    async def test_a_coding_wsse_cannot_decode_passes_untouched(self) -> None:
        def zstd(request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/html")
            request.setHeader(b"content-encoding", b"zstd")
            return b"\x28\xb5\x2f\xfdopaque"

        self.app.route(b"/zstd", zstd)
        response = await http(
            self.port, target=b"/zstd", headers=[(b"Sec-Fetch-Dest", b"document")]
        )
        self.assertEqual(response.body, b"\x28\xb5\x2f\xfdopaque")
        self.assertEqual(response.header(b"content-encoding"), [b"zstd"])

    async def test_a_redirect_with_an_empty_compressed_body_arrives(self) -> None:
        def redirect(request: Request) -> bytes:
            request.setResponseCode(302)
            request.setHeader(b"location", b"/next")
            request.setHeader(b"content-type", b"text/html")
            request.setHeader(b"content-encoding", b"gzip")
            return b""

        self.app.route(b"/moved", redirect)
        response = await http(
            self.port,
            target=b"/moved",
            headers=[(b"Sec-Fetch-Dest", b"document"), (b"Accept-Encoding", b"gzip")],
        )
        self.assertEqual((response.status, response.body), (302, b""))
        self.assertEqual(response.header(b"location"), [b"/next"])

    async def test_a_broken_compressed_page_cuts_the_connection(self) -> None:
        def broken(request: Request) -> bytes:
            request.setHeader(b"content-type", b"text/html")
            request.setHeader(b"content-encoding", b"gzip")
            return gzip.compress(PAGE)[:-12]

        self.app.route(b"/broken", broken)
        raw = await raw_exchange(
            self.port, b"GET /broken HTTP/1.1\r\nHost: x\r\nSec-Fetch-Dest: document\r\n\r\n"
        )
        # Chunked, and closed without the last chunk: not a complete body.
        self.assertFalse(raw.endswith(b"0\r\n\r\n"))


class StreamingUploads(ProxyTestCase):
    """Request bodies reach the app while the browser is still sending them."""

    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory()
        return self.raw

    async def until_app_holds(self, marker: bytes) -> RawApp:
        while not self.raw.connections or marker not in self.raw.connections[-1].data:
            await self.raw.arrivals.get()
        return self.raw.connections[-1]

    async def test_a_chunked_upload_reaches_the_app_piece_by_piece(self) -> None:
        client = await raw_connection(
            self.port,
            b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        for n in range(10):
            piece = (b"piece %d;" % n) * 10_000
            client.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            # The app holds this piece before the browser sends the next one.
            app = await self.until_app_holds(b"piece %d;" % n)
        client.transport.write(b"0\r\n\r\n")
        await self.until_app_holds(b"0\r\n\r\n")
        app.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        response = parse_response(await client.done)
        self.assertEqual((response.status, response.body), (200, b"ok"))
        self.assertIn(b"Transfer-Encoding: chunked", app.data.split(b"\r\n\r\n", 1)[0])

    async def test_a_large_upload_with_a_length_streams_and_keeps_its_length(self) -> None:
        total = 5 * 1024 * 1024
        client = await raw_connection(
            self.port,
            b"PUT /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % total,
        )
        for n in range(5):
            client.transport.write(bytes([65 + n]) * (1024 * 1024))
            app = await self.until_app_holds(bytes([65 + n]) * 1000)
        head, body = app.data.split(b"\r\n\r\n", 1)
        self.assertIn(b"Content-Length: %d" % total, head)
        while len(app.data.split(b"\r\n\r\n", 1)[1]) < total:
            await self.raw.arrivals.get()
        app.transport.write(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(parse_response(await client.done).status, 201)

    async def test_an_early_answer_ends_the_connection_and_nothing_is_smuggled(self) -> None:
        self.raw.answer_at_once = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large"
        client = await raw_connection(
            self.port,
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000,
        )
        raw = await client.done
        response = parse_response(raw)
        self.assertEqual((response.status, response.body), (413, b"too large"))
        # Whatever the browser would have sent next on that connection is not a
        # request: the connection is closed.
        self.assertFalse(client.transport.connected)
        self.assertEqual(len(self.raw.connections), 1)

    async def test_the_app_going_away_mid_upload_is_a_502(self) -> None:
        client = await raw_connection(
            self.port,
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000,
        )
        app = await self.until_app_holds(b"aaaa")
        app.transport.abortConnection()
        response = parse_response(await client.done)
        self.assertEqual(response.status, 502)

    async def test_the_browser_going_away_mid_upload_closes_the_app_request(self) -> None:
        client = await raw_connection(
            self.port,
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"a" * 100_000,
        )
        app = await self.until_app_holds(b"aaaa")
        client.transport.abortConnection()
        while app not in self.raw.lost:
            await task.deferLater(reactor, 0.01, lambda: None)


class EarlyAnswerToAHeldUpload(ProxyTestCase):
    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory(paused=True, keep_data=False)
        return self.raw

    async def test_the_app_connection_closes_once_the_answer_is_relayed(self) -> None:
        client = await raw_connection(
            self.port,
            b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 << 20),
        )
        client.transport.write(b"u" * (32 << 20))
        app = await self.raw.connected.get()
        # The app reads nothing while the socket buffers fill and wsse's
        # writes to it pause, then refuses the upload and reads on.
        await task.deferLater(reactor, 1.0, lambda: None)
        app.transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
        response = parse_response(await client.done)
        self.assertEqual((response.status, response.body), (413, b"too large"))
        app.transport.resumeProducing()
        # wsse drops its connection to the app rather than leave it open for ever.
        for _ in range(200):
            if app in self.raw.lost:
                break
            await task.deferLater(reactor, 0.05, lambda: None)
        self.assertIn(app, self.raw.lost)


class StalledUploads(ProxyTestCase):
    """Neither side of an upload can hold the other's connection for ever."""

    overrides = {"response_timeout": 1.0}
    site_timeout = 1.0

    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory(keep_data=False)
        return self.raw

    async def test_an_app_that_takes_none_of_an_upload_gets_a_504(self) -> None:
        self.raw.paused = True
        client = await raw_connection(
            self.port,
            b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (64 << 20),
        )
        client.transport.write(b"u" * (32 << 20))
        app = await self.raw.connected.get()
        response = parse_response(await client.done)
        self.assertEqual(response.status, 504)
        # wsse dropped its connection to the app.
        app.transport.resumeProducing()
        while app not in self.raw.lost:
            await task.deferLater(reactor, 0.05, lambda: None)

    async def test_a_browser_that_stops_sending_is_cut_as_an_idle_one(self) -> None:
        client = await raw_connection(
            self.port,
            b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"u" * 100_000,
        )
        app = await self.raw.connected.get()
        while app.received < 100_000:
            await self.raw.arrivals.get()
        # Nothing more comes: after the idle timeout both connections close.
        await client.done
        while app not in self.raw.lost:
            await task.deferLater(reactor, 0.05, lambda: None)

    async def test_an_upload_that_keeps_coming_is_never_cut(self) -> None:
        total = 3 * 1024 * 1024
        client = await raw_connection(
            self.port,
            b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total,
        )
        app = await self.raw.connected.get()
        # Slower than both timeouts in all, each piece within them.
        for _ in range(6):
            client.transport.write(b"u" * (total // 6))
            await task.deferLater(reactor, 0.5, lambda: None)
        while app.received < total:
            await self.raw.arrivals.get()
        app.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await task.deferLater(reactor, 0.1, lambda: None)
        client.transport.loseConnection()
        self.assertEqual(parse_response(await client.done).status, 204)


class HeldUploads(ProxyTestCase):
    site_timeout = 0.5

    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory(paused=True, keep_data=False)
        return self.raw

    async def test_an_upload_held_back_longer_than_the_idle_timeout_completes(self) -> None:
        total = 32 * 1024 * 1024
        client = await raw_connection(
            self.port,
            b"PUT /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
            % total,
        )
        client.transport.write(b"u" * total)
        app = await self.raw.connected.get()
        # The app reads nothing for four idle timeouts; the browser waits.
        await task.deferLater(reactor, 2.0, lambda: None)
        app.transport.resumeProducing()
        while app.received < total:
            await self.raw.arrivals.get()
        app.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(parse_response(await client.done).status, 204)


class RawAppResponses(ProxyTestCase):
    def make_app(self) -> RawAppFactory:
        self.raw = RawAppFactory()
        return self.raw

    async def _next_request(self) -> RawApp:
        """The app connection that holds a request it has not answered yet."""
        while True:
            for app in self.raw.connections:
                if app.data.count(b"GET /r ") > app.answered:
                    app.answered += 1
                    return app
            await self.raw.arrivals.get()

    async def test_a_browser_leaving_as_the_app_finishes_gets_nothing_written(self) -> None:
        """
        The browser's close and the app's last chunk arrive together, in either
        order: wsse writes nothing to the finished request (trial fails the test
        on any error logged, such as finish() after the connection was lost).
        """
        for _ in range(20):
            client = await raw_connection(self.port, b"GET /r HTTP/1.1\r\nHost: x\r\n\r\n")
            app = await self._next_request()
            app.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n"
            )
            await client.first_data
            client.transport.abortConnection()
            app.transport.write(b"4\r\nlast\r\n0\r\n\r\n")
            await client.done
            await task.deferLater(reactor, 0.02, lambda: None)

    async def test_response_headers_the_app_names_in_connection_are_dropped(self) -> None:
        client = await raw_connection(
            self.port, b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        app = await self._next_request()
        app.transport.write(
            b"HTTP/1.1 200 OK\r\nConnection: X-Hop, x-other\r\nX-Hop: private\r\n"
            b"X-Other: private\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
        )
        response = parse_response(await client.done)
        self.assertEqual((response.status, response.body), (200, b"ok"))
        self.assertEqual(response.header(b"x-hop") + response.header(b"x-other"), [])
        self.assertEqual(response.header(b"x-kept"), [b"yes"])
        # The app's connection stays pooled: its Connection header named no close.
        self.assertEqual(self.raw.lost, [])

    async def test_a_body_ended_by_close_and_cut_by_a_reset_is_cut_for_the_browser(self) -> None:
        """
        A response with no length ends when the app closes; a reset (the app
        crashed) is not an end, and the browser must not take the part as whole.
        """
        for app_ends, whole in (
            (lambda app: app.transport.loseConnection(), True),
            (_reset, False),
        ):
            client = await raw_connection(
                self.port, b"GET /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            app = await self._next_request()
            app.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\npartial-data"
            )
            await client.first_data
            app_ends(app)
            raw = await client.done
            self.assertIn(b"partial-data", raw)
            self.assertEqual(raw.endswith(b"0\r\n\r\n"), whole)


def _reset(app: RawApp) -> None:
    """Close the app's socket with a reset, as a crashed process's is."""
    app.transport.getHandle().setsockopt(
        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
    )
    app.transport.abortConnection()
