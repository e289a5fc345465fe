"""
Gateways in front of wsse, for tests: real nginx configurations and small TCP relays.

Each gateway listens on 127.0.0.1 on a free port and forwards to wsse (or any
HTTP server) on 127.0.0.1.  They stand for what sits between a browser and
wsse in the deployments wsse is for.

nginx (L{nginx_gateway}, L{NginxGateway}), one process per gateway, run in the
foreground (C{-g 'daemon off; master_process off;'}) with everything it
writes (config, error log, access log, pid, temp directories) in a directory
of the test's, HTTP/1.1 to the upstream, C{Host} passed as the browser sent
it, C{X-Forwarded-For} and C{X-Forwarded-Proto} added, and a read timeout
of an hour so long streams are not cut.  Kinds:

  - C{"relay"}: relays WebSocket (C{Upgrade}/C{Connection} from the browser's
    C{Upgrade} through the usual C{map}); C{proxy_buffering off}, so every
    response streams.
  - C{"strip"}: the same, but C{Upgrade} and C{Connection} are set to empty, so
    a WebSocket handshake reaches the upstream as a plain GET and the
    browser's WebSocket fails.  C{proxy_buffering} is left at nginx's default
    C{on}, which nginx turns off per response that says
    C{X-Accel-Buffering: no}.  Measured with nginx 1.22: even with buffering on,
    nginx passes a trickle on as it arrives (test_gateways checks this), so a
    stream flows through C{"strip"} with or without the header.  The header only
    makes a difference once nginx also compresses: see C{compress}.
  - C{"prefix"}: like C{"strip"}, mounted under C{/proxy/8081/} which it strips,
    as jupyter-server-proxy does: C{/proxy/8081/x?q} reaches the upstream as
    C{/x?q}; C{/proxy/8081} is redirected (301) to C{/proxy/8081/} by nginx's
    own rule for a location that ends with a slash; anything outside the
    prefix is a 404 from nginx.
  - C{"prefix-relay"}: the prefix mount, relaying WebSocket and with
    C{proxy_buffering off}, like C{"relay"}.
  - C{"buffer"}: like C{"strip"}, and holding small events back: buffering on
    with C{X-Accel-Buffering} ignored (C{proxy_ignore_headers}), and gzip on
    for event streams.  gzip keeps a trickle in its deflate state until its
    buffers fill or the response ends, so an event stream delivers nothing
    for a long while (not even its 2 KiB preamble, which compresses to a few
    bytes); a long-poll, which ends, gets through.
  - C{"noquery"}: like C{"relay"}, but a WebSocket upgrade reaches the upstream
    without its query string (C{/ws?token=1} as C{/ws}), as users report of
    SageMaker Studio.  Plain requests keep theirs.
  - C{"noquery-nocarry"}: like C{"noquery"}, and answering 403 itself to
    anything under C{/__wsse/ws/}, where a native socket carries its query:
    a gateway where carrying the query fails too, so only the fallback is left.

Every kind takes C{compress=True}: nginx gzips responses (C{text/event-stream}
and JSON included) for clients that accept gzip, as some gateways do.  With
buffering on, gzip holds a stream's bytes until its buffers fill or the
response ends, unless the response says C{X-Accel-Buffering: no}, which turns
nginx's buffering off for it and makes nginx flush each piece it compresses.
That is the gateway where the header wsse sends is needed.

The relays (L{cutting_relay}, L{stalling_relay}, L{TcpRelay}) are what nginx
cannot play: a byte relay in a thread of the test process (a selector loop,
so it serves blocking test code and a Twisted reactor alike) that cuts every
connection some seconds after it was opened, as the gateways of SageMaker
notebooks do, or that swallows WebSocket handshakes without an answer.
"""

from __future__ import annotations

import errno
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import free_port, wait_for_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

KINDS = ("relay", "strip", "prefix", "prefix-relay", "buffer", "noquery", "noquery-nocarry")

DEFAULT_PREFIX = "/proxy/8081"


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll C{predicate} until it is true; C{TimeoutError} after C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true after {timeout}s: {predicate!r}")
        time.sleep(interval)


# -- nginx -------------------------------------------------------------------

_MAIN = """\
pid {dir}/nginx.pid;
error_log {dir}/error.log {error_level};
worker_processes 1;
events {{
    worker_connections 1024;
}}
http {{
    client_body_temp_path {dir}/temp/client_body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;

    log_format gateway '$remote_addr "$request" $status $body_bytes_sent '
                       'upgrade="$http_upgrade" upstream=$upstream_addr '
                       'upstream_status=$upstream_status rt=$request_time';
    access_log {dir}/access.log gateway;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}

    # The request's raw path without its query, and what the "noquery" kind
    # asks the upstream for: that, for an upgrade, else the whole target.
    map $request_uri $request_path {{
        "~^(?<path>[^?]*)" $path;
    }}
    map $http_upgrade $noquery_target {{
        default $request_path;
        ''      $request_uri;
    }}

{gzip}
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
{locations}
    }}
}}
"""

_PROXY = """\
            proxy_pass http://127.0.0.1:{upstream}{target};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Upgrade {upgrade};
            proxy_set_header Connection {connection};
            proxy_read_timeout {read_timeout};
            proxy_send_timeout {read_timeout};
{buffering}"""


def nginx_config(
    kind: str,
    *,
    port: int,
    upstream_port: int,
    directory: Path,
    prefix: str = DEFAULT_PREFIX,
    buffering: bool | None = None,
    read_timeout: str = "3600s",
    compress: bool = False,
    error_level: str = "info",
) -> str:
    """
    The nginx configuration for a gateway of C{kind} (see the module docstring).

    C{buffering} overrides the kind's choice of C{proxy_buffering}: C{None}
    keeps it (off for the relaying kinds, nginx's default for the others).
    C{compress} turns gzip on for JSON, text and event streams too.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown gateway kind {kind!r}, expected one of {KINDS}")
    noquery = kind.startswith("noquery")
    relays = kind in ("relay", "prefix-relay") or noquery
    if buffering is None:
        buffering = not relays
    if relays:
        upgrade, connection = "$http_upgrade", "$connection_upgrade"
    else:
        upgrade, connection = '""', '""'
    # Left at nginx's default (on) when buffering, so X-Accel-Buffering: no is honoured.
    buffering_line = "" if buffering else "            proxy_buffering off;\n"
    if kind == "buffer":
        buffering_line = "            proxy_ignore_headers X-Accel-Buffering;\n"
        compress = True
    prefixed = kind.startswith("prefix")
    target = "/" if prefixed else "$noquery_target" if noquery else ""
    proxy = _PROXY.format(
        upstream=upstream_port,
        target=target,
        upgrade=upgrade,
        connection=connection,
        read_timeout=read_timeout,
        buffering=buffering_line,
    )
    if prefixed:
        mount = "/" + prefix.strip("/") + "/"
        locations = (
            f"        location {mount} {{\n{proxy}        }}\n"
            "        location / {\n            return 404;\n        }\n"
        )
    else:
        locations = f"        location / {{\n{proxy}        }}\n"
    if kind == "noquery-nocarry":
        locations = (
            "        location ~ /__wsse/ws/ {\n            return 403;\n        }\n" + locations
        )
    gzip = (
        "    gzip on;\n"
        "    gzip_proxied any;\n"
        "    gzip_min_length 0;\n"
        "    gzip_types text/event-stream text/plain text/css application/json"
        " application/javascript;\n"
        if compress
        else ""
    )
    return _MAIN.format(
        dir=directory, port=port, locations=locations, error_level=error_level, gzip=gzip
    )


class NginxGateway:
    """
    One nginx process in front of C{upstream_port}, configured as C{kind}.

    C{start()} returns once nginx listens on C{port}; C{stop()} ends it
    (SIGTERM, so open streams and WebSockets are cut at once).  For trial
    tests: C{gw.start(); self.addCleanup(gw.stop)}.
    """

    def __init__(
        self,
        kind: str,
        upstream_port: int,
        tmp_path: Path | None = None,
        *,
        prefix: str = DEFAULT_PREFIX,
        buffering: bool | None = None,
        read_timeout: str = "3600s",
        compress: bool = False,
        port: int | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown gateway kind {kind!r}, expected one of {KINDS}")
        self.kind = kind
        self.upstream_port = upstream_port
        self._own_dir = tmp_path is None
        base = Path(tempfile.mkdtemp(prefix="wsse-nginx-")) if tmp_path is None else tmp_path
        base.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix=f"nginx-{kind}-", dir=base))
        self.port = port if port is not None else free_port()
        #: What the browser's paths start with: "" or e.g. "/proxy/8081".
        self.prefix = ("/" + prefix.strip("/")) if kind.startswith("prefix") else ""
        self.config = nginx_config(
            kind,
            port=self.port,
            upstream_port=upstream_port,
            directory=self.directory,
            prefix=prefix,
            buffering=buffering,
            read_timeout=read_timeout,
            compress=compress,
        )
        self.config_path = self.directory / "nginx.conf"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of the app's root as the browser sees it (ends with a slash)."""
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    @property
    def ws_base(self) -> str:
        """C{ws://} form of L{url}."""
        return f"ws://127.0.0.1:{self.port}{self.prefix}/"

    @property
    def access_log_path(self) -> Path:
        return self.directory / "access.log"

    @property
    def error_log_path(self) -> Path:
        return self.directory / "error.log"

    def access_log(self) -> list[str]:
        """
        The access log's lines so far (format C{gateway} in L{_MAIN}).  nginx
        writes a line when a request ends; for a WebSocket, when it closes.
        """
        try:
            return self.access_log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 20.0) -> None:
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.directory / "temp" / name).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config)
        output = open(self.directory / "nginx.out", "wb")
        try:
            self.process = subprocess.Popen(
                [
                    NGINX,
                    "-p",
                    f"{self.directory}/",
                    "-e",
                    str(self.error_log_path),
                    "-c",
                    str(self.config_path),
                    "-g",
                    "daemon off; master_process off;",
                ],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        finally:
            output.close()
        try:
            wait_for_port(self.port, timeout=timeout, process=self.process)
        except (RuntimeError, TimeoutError) as e:
            self.stop()
            out = (self.directory / "nginx.out").read_text(errors="replace")
            raise RuntimeError(
                f"nginx ({self.kind}) did not start: {e}\n{out}\n{self.error_log()}"
            ) from e

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_dir:
            shutil.rmtree(self.directory.parent, ignore_errors=True)

    def __enter__(self) -> NginxGateway:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def nginx_gateway(
    kind: str,
    upstream_port: int,
    tmp_path: Path | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    buffering: bool | None = None,
    read_timeout: str = "3600s",
    compress: bool = False,
) -> Iterator[NginxGateway]:
    """A running L{NginxGateway} for the block."""
    gateway = NginxGateway(
        kind,
        upstream_port,
        tmp_path,
        prefix=prefix,
        buffering=buffering,
        read_timeout=read_timeout,
        compress=compress,
    )
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


# -- TCP relays --------------------------------------------------------------

_WEBSOCKET_UPGRADE = re.compile(rb"(?im)^upgrade[ \t]*:[ \t]*websocket[ \t]*\r?$")
_HIGH_WATER = 256 * 1024
_HEAD_LIMIT = 16 * 1024
_FIN_GRACE = 2.0  # seconds a cut connection waits for the peer's FIN before closing


class _Side:
    """One socket of a relayed connection, and the bytes waiting to be written to it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.read_eof = False  # the peer sent FIN
        self.shut_wr = False  # we sent FIN (after flushing out)
        self.want_shut_wr = False
        self.closed = False


class _Connection:
    def __init__(self, client: socket.socket, opened: float) -> None:
        self.client = _Side(client)
        self.upstream: _Side | None = None
        self.opened = opened
        self.head = bytearray()  # client bytes held back while deciding (stall mode)
        self.stalled = False
        self.draining_until: float | None = None  # cut with a FIN, waiting for the peers'

    def sides(self) -> list[_Side]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]

    def other(self, side: _Side) -> _Side | None:
        return self.upstream if side is self.client else self.client


class TcpRelay:
    """
    A TCP relay on 127.0.0.1:C{port} to 127.0.0.1:C{upstream_port}, in a thread.

    Bytes are forwarded both ways as they come, half-closes included.  With
    C{cut_every}, each client connection still open C{cut_every} seconds after
    it was accepted is cut: C{cut_with="fin"} (default) shuts both sockets
    down for writing, so the browser and the upstream each read an orderly
    end, as when a gateway drops an idle or old connection, then closes them
    once the peers close theirs (or after a short grace); C{cut_with="rst"}
    closes both with C{SO_LINGER} 0, so both read a reset.  With
    C{stall_websocket}, a connection whose first request head carries
    C{Upgrade: websocket} (any case) is accepted and read but never forwarded
    nor answered: the browser's WebSocket stays CONNECTING until it gives up.

    Counters (read them from any thread): C{accepted} connections, C{cuts}
    made, C{stalled} handshakes, C{open} connections right now.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        cut_every: float | None = None,
        cut_with: str = "fin",
        stall_websocket: bool = False,
        upstream_host: str = "127.0.0.1",
    ) -> None:
        if cut_with not in ("fin", "rst"):
            raise ValueError("cut_with is 'fin' or 'rst'")
        self.upstream = (upstream_host, upstream_port)
        self.cut_every = cut_every
        self.cut_with = cut_with
        self.stall_websocket = stall_websocket
        self.accepted = 0
        self.cuts = 0
        self.stalled = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._stopping = False
        self._connections: set[_Connection] = set()
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name=f"TcpRelay:{self.port}", daemon=True)
        self.error: BaseException | None = None

    @property
    def open(self) -> int:
        return len(self._connections)

    def start(self) -> TcpRelay:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the relay and close every connection (with a reset)."""
        self._stopping = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(10)
        if self._thread.ident is None:  # never started
            self._shutdown()

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The loop thread.

    def _run(self) -> None:
        sel = self._selector
        sel.register(self._listener, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping:
                for key, mask in sel.select(self._timeout()):
                    if key.fileobj is self._listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        try:
                            self._wake_r.recv(64)
                        except OSError:
                            pass
                    else:
                        connection, side = key.data
                        if connection in self._connections:
                            self._ready(connection, side, mask)
                self._deadlines()
        except BaseException as e:  # pragma: no cover - reported to the test
            self.error = e
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for connection in list(self._connections):
            self._close(connection, reset=True)
        for sock in (self._listener, self._wake_r, self._wake_w):
            try:
                self._selector.unregister(sock)
            except (KeyError, ValueError):
                pass
            sock.close()
        self._selector.close()

    def _timeout(self) -> float | None:
        now = time.monotonic()
        times = []
        for connection in self._connections:
            if connection.draining_until is not None:
                times.append(connection.draining_until)
            elif self.cut_every is not None:
                times.append(connection.opened + self.cut_every)
        if not times:
            return None
        return max(0.0, min(times) - now)

    def _deadlines(self) -> None:
        now = time.monotonic()
        for connection in list(self._connections):
            if connection.draining_until is not None:
                if now >= connection.draining_until:
                    self._close(connection, reset=False)
            elif self.cut_every is not None and now >= connection.opened + self.cut_every:
                self._cut(connection)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.accepted += 1
            connection = _Connection(client, time.monotonic())
            self._connections.add(connection)
            if not self.stall_websocket:
                if not self._connect(connection):
                    continue
            self._update(connection)

    def _connect(self, connection: _Connection) -> bool:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            self._close(connection, reset=False)
            return False
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.upstream = _Side(upstream)
        return True

    def _update(self, connection: _Connection) -> None:
        """(Re-)register both sockets for the events they wait for now."""
        for side in connection.sides():
            if side.closed:
                continue
            events = 0
            other = connection.other(side)
            if not side.read_eof and (other is None or len(other.out) < _HIGH_WATER):
                events |= selectors.EVENT_READ
            if side.out or (side.want_shut_wr and not side.shut_wr):
                events |= selectors.EVENT_WRITE
            try:
                key = self._selector.get_key(side.sock)
            except KeyError:
                key = None
            if events and key is None:
                self._selector.register(side.sock, events, (connection, side))
            elif events and key is not None and key.events != events:
                self._selector.modify(side.sock, events, (connection, side))
            elif not events and key is not None:
                self._selector.unregister(side.sock)
        # A connection whose both directions are done is over.
        if connection.upstream is not None and all(
            s.read_eof and s.shut_wr for s in connection.sides()
        ):
            self._close(connection, reset=False)

    def _ready(self, connection: _Connection, side: _Side, mask: int) -> None:
        if mask & selectors.EVENT_READ:
            try:
                data = side.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                self._close(connection, reset=True)
                return
            if data is not None:
                if connection.draining_until is not None:
                    if not data:
                        side.read_eof = True
                        if all(s.read_eof for s in connection.sides()):
                            self._close(connection, reset=False)
                            return
                elif not data:
                    side.read_eof = True
                    other = connection.other(side)
                    if other is None:  # the client left before we decided
                        self._close(connection, reset=False)
                        return
                    other.want_shut_wr = True
                elif side is connection.client and connection.upstream is None:
                    if not connection.stalled:
                        self._decide(connection, data)
                        if connection not in self._connections:
                            return
                    # stalled: swallow what the client sends
                else:
                    other = connection.other(side)
                    assert other is not None
                    other.out += data
                    self._flush(connection, other)
                    if connection not in self._connections:
                        return
        if mask & selectors.EVENT_WRITE:
            self._flush(connection, side)
            if connection not in self._connections:
                return
        self._update(connection)

    def _decide(self, connection: _Connection, data: bytes) -> None:
        """Stall mode: hold the client's bytes until its request head is whole."""
        connection.head += data
        head = bytes(connection.head)
        end = head.find(b"\r\n\r\n")
        if end < 0 and len(head) < _HEAD_LIMIT:
            return
        if _WEBSOCKET_UPGRADE.search(head if end < 0 else head[: end + 2]):
            connection.stalled = True
            connection.head.clear()
            self.stalled += 1
            return
        if not self._connect(connection):
            return
        assert connection.upstream is not None
        connection.upstream.out += head
        connection.head.clear()
        self._flush(connection, connection.upstream)

    def _flush(self, connection: _Connection, side: _Side) -> None:
        if side.closed or side.shut_wr:
            side.out.clear()
            return
        while side.out:
            try:
                sent = side.sock.send(side.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(connection, reset=True)
                return
            del side.out[:sent]
        if side.want_shut_wr:
            try:
                side.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            side.shut_wr = True

    def _cut(self, connection: _Connection) -> None:
        self.cuts += 1
        if self.cut_with == "rst":
            self._close(connection, reset=True)
            return
        # FIN both ways now, drop what was in flight, wait (briefly) for the peers' FIN
        # so that closing does not turn into a reset over unread bytes.
        for side in connection.sides():
            side.out.clear()
            if not side.shut_wr:
                try:
                    side.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                side.shut_wr = True
        connection.draining_until = time.monotonic() + _FIN_GRACE
        for side in connection.sides():
            try:
                self._selector.unregister(side.sock)
            except KeyError:
                pass
            if not side.read_eof:
                self._selector.register(side.sock, selectors.EVENT_READ, (connection, side))
        if all(s.read_eof for s in connection.sides()):
            self._close(connection, reset=False)

    def _close(self, connection: _Connection, reset: bool) -> None:
        self._connections.discard(connection)
        for side in connection.sides():
            if side.closed:
                continue
            side.closed = True
            try:
                self._selector.unregister(side.sock)
            except (KeyError, ValueError):
                pass
            if reset:
                try:
                    side.sock.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                except OSError as e:  # pragma: no cover
                    if e.errno not in (errno.EBADF, errno.ENOTCONN):
                        raise
            side.sock.close()


@contextmanager
def cutting_relay(
    upstream_port: int, cut_every: float, *, cut_with: str = "fin"
) -> Iterator[TcpRelay]:
    """
    A L{TcpRelay} to C{upstream_port} that cuts each connection C{cut_every}
    seconds after accepting it, with a FIN both ways (C{cut_with="fin"}) or
    a reset (C{cut_with="rst"}).  C{relay.accepted}, C{relay.cuts} count.
    """
    with TcpRelay(upstream_port, cut_every=cut_every, cut_with=cut_with) as relay:
        yield relay


@contextmanager
def stalling_relay(upstream_port: int, *, cut_every: float | None = None) -> Iterator[TcpRelay]:
    """
    A L{TcpRelay} to C{upstream_port} that forwards plain HTTP but accepts a
    WebSocket handshake (C{Upgrade: websocket} in the first request head)
    and never forwards nor answers it.  C{relay.stalled} counts those.
    """
    with TcpRelay(upstream_port, cut_every=cut_every, stall_websocket=True) as relay:
        yield relay


__all__ = [
    "DEFAULT_PREFIX",
    "KINDS",
    "NginxGateway",
    "TcpRelay",
    "cutting_relay",
    "nginx_config",
    "nginx_gateway",
    "stalling_relay",
    "wait_until",
]
