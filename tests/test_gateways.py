"""
The gateways of L{tests.support.gateways} behave as they claim, with real upstreams.

Upstreams: wsse's own demo (C{python -m wsse --demo}: a page at C{/}, a chat
WebSocket at C{/ws} that says "welcome" first, then echoes), wsse in front of
a small app of this module's (a JSON echo of the request it saw, and a
response that trickles a line at a time), that app alone when a test looks at
what nginx itself sends, and raw sockets when a test looks at TCP.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from tests.support.gateways import (
    KINDS,
    TcpRelay,
    cutting_relay,
    nginx_config,
    nginx_gateway,
    stalling_relay,
    wait_until,
)
from tests.support.processes import free_port, http_server_thread, running, wsse_command

# --- upstreams ----------------------------------------------------------------

LINES = 8
INTERVAL = 0.25


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path.endswith("/stream"):
            self._stream(parse_qs(url.query))
            return
        body = json.dumps(
            {"path": self.path, "headers": [[n, v] for n, v in self.headers.items()]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self, query: dict[str, list[str]]) -> None:
        """Server-sent events, one every INTERVAL seconds, chunked."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        if query.get("accel") == ["no"]:
            self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        for i in range(LINES):
            event = f"data: {i}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.flush()
            time.sleep(INTERVAL)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    """The app, in a thread: its port."""
    with http_server_thread(_Handler) as port:
        yield port


@pytest.fixture(scope="module")
def wsse_app(app: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """wsse in front of the app: its port."""
    port = free_port()
    log = tmp_path_factory.mktemp("wsse-app") / "wsse.log"
    args = wsse_command(
        "--target", f"http://127.0.0.1:{app}", "--listen", f"tcp:{port}:interface=127.0.0.1"
    )
    with running(args, port, log=log):
        yield port


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """wsse's demo (chat WebSocket at /ws): its port."""
    port = free_port()
    log = tmp_path_factory.mktemp("wsse-demo") / "wsse.log"
    with running(
        wsse_command("--demo", "--listen", f"tcp:{port}:interface=127.0.0.1"), port, log=log
    ):
        yield port


# --- clients ------------------------------------------------------------------


def get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def echoed(port: int, path: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    status, _, body = get(port, path, headers)
    assert status == 200, body
    seen: dict[str, Any] = json.loads(body)
    seen["header"] = {n.lower(): v for n, v in seen["headers"]}
    return seen


def arrivals(port: int, path: str, gzip: bool = False) -> list[float]:
    """
    Seconds after the request at which each event of /stream arrived; with
    C{gzip}, the client accepts gzip and the response must be gzipped.
    """
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        start = time.monotonic()
        connection.request("GET", path, headers={"Accept-Encoding": "gzip" if gzip else "identity"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("content-type") == "text/event-stream"
        assert response.getheader("content-encoding") == ("gzip" if gzip else None)
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
        times, text = [], b""
        while True:
            data = response.read1(65536)
            if not data:
                break
            if decoder is not None:
                data = decoder.decompress(data)
            now = time.monotonic() - start
            text += data
            times += [now] * data.count(b"\n\n")
        assert text == b"".join(f"data: {i}\n\n".encode() for i in range(LINES))
        return times
    finally:
        connection.close()


def assert_streamed(times: list[float]) -> None:
    """Events came as they were sent, not all at the end."""
    total = (LINES - 1) * INTERVAL
    assert times[0] < total / 2, times
    assert times[-1] - times[0] > total / 2, times


def assert_buffered(times: list[float]) -> None:
    """Events came together at the end."""
    total = (LINES - 1) * INTERVAL
    assert times[0] > total * 0.8, times
    assert times[-1] - times[0] < INTERVAL, times


def chat(url: str) -> None:
    """A WebSocket to the demo works: welcome, then an echo."""
    with connect(url, open_timeout=10) as ws:
        assert str(ws.recv(timeout=10)).startswith("welcome")
        ws.send("hello through the gateway")
        assert ws.recv(timeout=10) == "hello through the gateway"


def websocket_refused(url: str) -> None:
    with pytest.raises(InvalidStatus) as caught:
        with connect(url, open_timeout=10):
            pass
    assert caught.value.response.status_code != 101


# --- nginx: configuration -----------------------------------------------------


def test_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        nginx_config("tunnel", port=1, upstream_port=2, directory=tmp_path)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_starts_and_cleans_up(kind: str, demo: int, tmp_path: Path) -> None:
    with nginx_gateway(kind, upstream_port=demo, tmp_path=tmp_path) as gw:
        assert gw.process is not None
        process = gw.process
        status, _, body = get(gw.port, gw.prefix + "/")
        assert status == 200
        assert b"wsse demo" in body
        config = gw.config_path.read_text()
        assert f"listen 127.0.0.1:{gw.port};" in config
        assert "proxy_http_version 1.1;" in config
        assert "proxy_read_timeout 3600s;" in config
        assert str(gw.directory) in config
        wait_until(
            lambda: any('"GET ' + gw.prefix + '/ HTTP/1.1" 200' in line for line in gw.access_log())
        )
    assert process.poll() is not None
    assert gw.access_log_path.parent == gw.directory
    assert gw.directory.is_relative_to(tmp_path)


def test_without_tmp_path_uses_and_removes_its_own_directory(demo: int) -> None:
    with nginx_gateway("relay", upstream_port=demo) as gw:
        assert get(gw.port, "/")[0] == 200
        directory = gw.directory
        assert directory.is_dir()
    assert not directory.exists()


# --- nginx: relay -------------------------------------------------------------


def test_relay_passes_websocket(demo: int, tmp_path: Path) -> None:
    with nginx_gateway("relay", upstream_port=demo, tmp_path=tmp_path) as gw:
        assert gw.prefix == ""
        chat(f"ws://127.0.0.1:{gw.port}/ws")
        wait_until(lambda: any('"GET /ws HTTP/1.1" 101' in line for line in gw.access_log()))
        line = next(line for line in gw.access_log() if "/ws" in line)
        assert 'upgrade="websocket"' in line


def test_relay_headers(app: int, tmp_path: Path) -> None:
    """What nginx sends upstream: Host as the browser sent it, X-Forwarded-*, the Upgrade."""
    with nginx_gateway("relay", upstream_port=app, tmp_path=tmp_path) as gw:
        seen = echoed(gw.port, "/x?q=1", {"Host": "app.example:8888"})
        assert seen["path"] == "/x?q=1"
        assert seen["header"]["host"] == "app.example:8888"
        assert seen["header"]["x-forwarded-for"] == "127.0.0.1"
        assert seen["header"]["x-forwarded-proto"] == "http"
        assert seen["header"]["connection"] == "close"
        assert "upgrade" not in seen["header"]
        upgrade = echoed(gw.port, "/ws", {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert upgrade["header"]["upgrade"] == "websocket"
        assert upgrade["header"]["connection"] == "upgrade"


def test_relay_streams_without_asking(wsse_app: int, tmp_path: Path) -> None:
    with nginx_gateway("relay", upstream_port=wsse_app, tmp_path=tmp_path) as gw:
        assert_streamed(arrivals(gw.port, "/stream"))


# --- nginx: strip -------------------------------------------------------------


def test_strip_fails_websocket_but_passes_http(demo: int, tmp_path: Path) -> None:
    with nginx_gateway("strip", upstream_port=demo, tmp_path=tmp_path) as gw:
        websocket_refused(f"ws://127.0.0.1:{gw.port}/ws")
        status, _, body = get(gw.port, "/")
        assert status == 200 and b"wsse demo" in body
        wait_until(lambda: any('"GET /ws HTTP/1.1" 200' in line for line in gw.access_log()))


def test_strip_removes_upgrade(app: int, tmp_path: Path) -> None:
    with nginx_gateway("strip", upstream_port=app, tmp_path=tmp_path) as gw:
        seen = echoed(gw.port, "/ws", {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert "upgrade" not in seen["header"]
        assert "connection" not in seen["header"]
        assert seen["header"]["x-forwarded-for"] == "127.0.0.1"


def test_strip_streams_what_says_x_accel_buffering_no(wsse_app: int, tmp_path: Path) -> None:
    """The stream passes through wsse, then nginx; it says X-Accel-Buffering: no."""
    with nginx_gateway("strip", upstream_port=wsse_app, tmp_path=tmp_path) as gw:
        assert_streamed(arrivals(gw.port, "/stream?accel=no"))


def test_strip_leaves_buffering_on_yet_a_trickle_flows(wsse_app: int, tmp_path: Path) -> None:
    """proxy_buffering on does not hold back a stream that trickles, header or not."""
    with nginx_gateway("strip", upstream_port=wsse_app, tmp_path=tmp_path) as gw:
        assert "proxy_buffering" not in gw.config
        assert_streamed(arrivals(gw.port, "/stream"))


@pytest.mark.parametrize("kind", ["strip", "prefix"])
def test_compressing_gateway_needs_x_accel_buffering_no(
    kind: str, wsse_app: int, tmp_path: Path
) -> None:
    """Buffering and gzip together hold a stream to its end, unless it opts out."""
    with nginx_gateway(kind, upstream_port=wsse_app, tmp_path=tmp_path, compress=True) as gw:
        assert "gzip on;" in gw.config
        assert_buffered(arrivals(gw.port, gw.prefix + "/stream", gzip=True))
        assert_streamed(arrivals(gw.port, gw.prefix + "/stream?accel=no", gzip=True))
        # A client that does not accept gzip gets the stream as it comes.
        assert_streamed(arrivals(gw.port, gw.prefix + "/stream"))


def test_compressing_relay_gateway_streams(wsse_app: int, tmp_path: Path) -> None:
    """proxy_buffering off: compressed or not, every piece is flushed."""
    with nginx_gateway("relay", upstream_port=wsse_app, tmp_path=tmp_path, compress=True) as gw:
        assert_streamed(arrivals(gw.port, "/stream", gzip=True))


def test_strip_without_buffering(wsse_app: int, tmp_path: Path) -> None:
    with nginx_gateway("strip", upstream_port=wsse_app, tmp_path=tmp_path, buffering=False) as gw:
        assert "proxy_buffering off;" in gw.config
        assert_streamed(arrivals(gw.port, "/stream"))


# --- nginx: buffer ------------------------------------------------------------


def test_buffer_holds_a_stream_back_even_when_it_opts_out(wsse_app: int, tmp_path: Path) -> None:
    with nginx_gateway("buffer", upstream_port=wsse_app, tmp_path=tmp_path) as gw:
        assert "proxy_ignore_headers X-Accel-Buffering;" in gw.config
        assert_buffered(arrivals(gw.port, "/stream?accel=no", gzip=True))


def test_buffer_fails_websocket(demo: int, tmp_path: Path) -> None:
    with nginx_gateway("buffer", upstream_port=demo, tmp_path=tmp_path) as gw:
        websocket_refused(f"ws://127.0.0.1:{gw.port}/ws")


# --- nginx: noquery -----------------------------------------------------------


def test_noquery_drops_the_query_of_upgrades_only(app: int, tmp_path: Path) -> None:
    with nginx_gateway("noquery", upstream_port=app, tmp_path=tmp_path) as gw:
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
        seen = echoed(gw.port, "/ws/a%2Fb?token=1&x=%20", upgrade)
        assert seen["path"] == "/ws/a%2Fb"
        assert seen["header"]["upgrade"] == "websocket"
        assert echoed(gw.port, "/page/a%2Fb?token=1&x=%20")["path"] == "/page/a%2Fb?token=1&x=%20"


def test_noquery_passes_websocket(demo: int, tmp_path: Path) -> None:
    with nginx_gateway("noquery", upstream_port=demo, tmp_path=tmp_path) as gw:
        chat(f"ws://127.0.0.1:{gw.port}/ws?room=1")
        wait_until(lambda: any('"GET /ws?room=1 HTTP/1.1" 101' in line for line in gw.access_log()))


# --- nginx: prefix ------------------------------------------------------------


def test_prefix_strips_the_prefix(app: int, tmp_path: Path) -> None:
    with nginx_gateway("prefix", upstream_port=app, tmp_path=tmp_path) as gw:
        assert gw.prefix == "/proxy/8081"
        assert gw.url == f"http://127.0.0.1:{gw.port}/proxy/8081/"
        assert echoed(gw.port, "/proxy/8081/x?q=1")["path"] == "/x?q=1"
        assert echoed(gw.port, "/proxy/8081/")["path"] == "/"
        assert echoed(gw.port, "/proxy/8081/a/b/")["path"] == "/a/b/"
        seen = echoed(gw.port, "/proxy/8081/ws", {"Upgrade": "websocket", "Connection": "Upgrade"})
        assert "upgrade" not in seen["header"]


def test_prefix_redirects_and_404s(app: int, tmp_path: Path) -> None:
    with nginx_gateway("prefix", upstream_port=app, tmp_path=tmp_path) as gw:
        status, headers, _ = get(gw.port, "/proxy/8081")
        assert status == 301
        assert headers["location"].endswith("/proxy/8081/")
        assert get(gw.port, "/x")[0] == 404
        assert get(gw.port, "/proxy/80810/")[0] == 404


def test_prefix_through_wsse(demo: int, wsse_app: int, tmp_path: Path) -> None:
    with nginx_gateway("prefix", upstream_port=wsse_app, tmp_path=tmp_path / "app") as gw:
        assert echoed(gw.port, "/proxy/8081/deep/path?x=y")["path"] == "/deep/path?x=y"
        assert_streamed(arrivals(gw.port, "/proxy/8081/stream?accel=no"))
    with nginx_gateway("prefix", upstream_port=demo, tmp_path=tmp_path / "demo") as gw:
        status, _, body = get(gw.port, "/proxy/8081/")
        assert status == 200 and b"wsse demo" in body
        websocket_refused(f"ws://127.0.0.1:{gw.port}/proxy/8081/ws")
        wait_until(
            lambda: any('"GET /proxy/8081/ws HTTP/1.1" 200' in line for line in gw.access_log())
        )


def test_prefix_relay_passes_websocket(demo: int, wsse_app: int, tmp_path: Path) -> None:
    with nginx_gateway("prefix-relay", upstream_port=demo, tmp_path=tmp_path) as gw:
        assert gw.prefix == "/proxy/8081"
        assert gw.ws_base == f"ws://127.0.0.1:{gw.port}/proxy/8081/"
        chat(gw.ws_base + "ws")
        wait_until(
            lambda: any('"GET /proxy/8081/ws HTTP/1.1" 101' in line for line in gw.access_log())
        )
    with nginx_gateway("prefix-relay", upstream_port=wsse_app, tmp_path=tmp_path) as gw:
        assert_streamed(arrivals(gw.port, "/proxy/8081/stream"))


def test_other_prefix(app: int, tmp_path: Path) -> None:
    with nginx_gateway(
        "prefix", upstream_port=app, tmp_path=tmp_path, prefix="/user/me/proxy/9/"
    ) as gw:
        assert gw.prefix == "/user/me/proxy/9"
        assert echoed(gw.port, "/user/me/proxy/9/x")["path"] == "/x"


# --- TCP relays ---------------------------------------------------------------


class RawUpstream:
    """A listening socket whose connections the test accepts itself."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = int(self.listener.getsockname()[1])

    def accept(self, timeout: float = 5.0) -> socket.socket:
        self.listener.settimeout(timeout)
        sock, _ = self.listener.accept()
        sock.settimeout(5)
        return sock

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_upstream() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    try:
        yield upstream
    finally:
        upstream.close()


def client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, f"EOF after {data!r}"
        data += chunk
    return data


def test_relay_forwards_both_ways_and_half_closes(raw_upstream: RawUpstream) -> None:
    with TcpRelay(raw_upstream.port) as relay:
        browser = client(relay.port)
        server = raw_upstream.accept()
        try:
            browser.sendall(b"ping" * 100_000)
            assert recv_exactly(server, 400_000) == b"ping" * 100_000
            server.sendall(b"pong")
            assert recv_exactly(browser, 4) == b"pong"
            browser.shutdown(socket.SHUT_WR)
            assert server.recv(10) == b""
            server.sendall(b"after")
            assert recv_exactly(browser, 5) == b"after"
            server.close()
            assert browser.recv(10) == b""
            wait_until(lambda: relay.open == 0)
            assert relay.accepted == 1 and relay.cuts == 0
        finally:
            browser.close()
            server.close()


@pytest.mark.parametrize("cut_with", ["fin", "rst"])
def test_cutting_relay_cuts_after_cut_every(raw_upstream: RawUpstream, cut_with: str) -> None:
    with cutting_relay(raw_upstream.port, cut_every=1, cut_with=cut_with) as relay:
        start = time.monotonic()
        browser = client(relay.port)
        server = raw_upstream.accept()
        try:
            browser.sendall(b"ping")
            assert recv_exactly(server, 4) == b"ping"
            server.sendall(b"pong")
            assert recv_exactly(browser, 4) == b"pong"
            assert relay.accepted == 1 and relay.cuts == 0
            browser.settimeout(5)
            server.settimeout(5)
            if cut_with == "fin":
                assert browser.recv(10) == b""
                ended = time.monotonic() - start
                assert server.recv(10) == b""
            else:
                with pytest.raises(ConnectionResetError):
                    browser.recv(10)
                ended = time.monotonic() - start
                with pytest.raises(ConnectionResetError):
                    server.recv(10)
            assert 0.9 <= ended < 3, ended
            assert relay.cuts == 1
            wait_until(lambda: relay.open == 0)
        finally:
            browser.close()
            server.close()


def test_cutting_relay_counts_and_spares_short_connections(demo: int) -> None:
    with cutting_relay(demo, cut_every=1) as relay:
        for _ in range(3):
            status, _, body = get(relay.port, "/")
            assert status == 200 and b"wsse demo" in body
        wait_until(lambda: relay.open == 0)
        assert relay.accepted == 3 and relay.cuts == 0


def test_cutting_relay_cuts_a_websocket(demo: int) -> None:
    with cutting_relay(demo, cut_every=1) as relay:
        start = time.monotonic()
        with connect(f"ws://127.0.0.1:{relay.port}/ws", open_timeout=5) as ws:
            assert str(ws.recv(timeout=5)).startswith("welcome")
            ws.send("echo")
            assert ws.recv(timeout=5) == "echo"
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        assert 0.9 <= time.monotonic() - start < 3
        with connect(f"ws://127.0.0.1:{relay.port}/ws", open_timeout=5) as ws:
            assert str(ws.recv(timeout=5)).startswith("welcome")
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=5)
        assert relay.accepted == 2 and relay.cuts == 2


def test_cutting_relay_in_front_of_nginx(demo: int, tmp_path: Path) -> None:
    with nginx_gateway("relay", upstream_port=demo, tmp_path=tmp_path) as gw:
        with cutting_relay(gw.port, cut_every=1) as relay:
            with connect(f"ws://127.0.0.1:{relay.port}/ws", open_timeout=5) as ws:
                assert str(ws.recv(timeout=5)).startswith("welcome")
                with pytest.raises(ConnectionClosed):
                    ws.recv(timeout=5)
            assert relay.cuts == 1


def test_stalling_relay_passes_http(demo: int) -> None:
    with stalling_relay(demo) as relay:
        status, _, body = get(relay.port, "/")
        assert status == 200 and b"wsse demo" in body
        # Keep-alive: a second request on the same connection still passes.
        connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=10)
        try:
            for _ in range(2):
                connection.request("GET", "/")
                assert connection.getresponse().read().count(b"wsse demo") >= 1
        finally:
            connection.close()
        assert relay.stalled == 0


def test_stalling_relay_leaves_websocket_unanswered(demo: int) -> None:
    with stalling_relay(demo) as relay:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            connect(f"ws://127.0.0.1:{relay.port}/ws", open_timeout=1)
        assert 0.9 <= time.monotonic() - start < 3
        assert relay.stalled == 1
        # The browser's socket to the demo, through the relay, still works otherwise.
        assert get(relay.port, "/")[0] == 200


def test_stalling_relay_never_reaches_upstream(raw_upstream: RawUpstream) -> None:
    with stalling_relay(raw_upstream.port) as relay:
        browser = client(relay.port)
        try:
            browser.sendall(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUPGRADE:  WebSocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            wait_until(lambda: relay.stalled == 1)
            browser.settimeout(0.5)
            with pytest.raises(TimeoutError):
                browser.recv(10)
            with pytest.raises(TimeoutError):
                raw_upstream.accept(timeout=0.5)
            assert relay.open == 1
        finally:
            browser.close()
        wait_until(lambda: relay.open == 0)
        # A plain request is forwarded, head and all.
        browser = client(relay.port)
        try:
            request = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
            browser.sendall(request)
            server = raw_upstream.accept()
            try:
                assert recv_exactly(server, len(request)) == request
            finally:
                server.close()
        finally:
            browser.close()
        assert relay.stalled == 1 and relay.accepted == 2


def test_stalling_relay_can_also_cut(demo: int) -> None:
    with stalling_relay(demo, cut_every=1) as relay:
        with pytest.raises((InvalidMessage, ConnectionClosed, OSError)):
            connect(f"ws://127.0.0.1:{relay.port}/ws", open_timeout=5)
        assert relay.stalled == 1 and relay.cuts == 1
