"""
Soak: many fallback and native sockets through a connection-cutting gateway,
with client drops and app restarts, for a long time.

Why: the resume guarantees (nothing lost, duplicated or reordered on a
fallback socket across stream cuts) and wsse's memory must hold under churn
for hours, not only in the short tests.  This script is not a CI test; a
2-minute run of it is (tests/test_soak.py).

    .venv/bin/python bench/soak.py                       # 30 min, 500 + 500 sockets
    .venv/bin/python bench/soak.py --duration 120 --fallback 50 --native 50

It starts, on 127.0.0.1 and free ports: an echo app (this file with
C{--serve-app}), wsse as its own process, and the cutting relay of the tests
(C{tests.support.gateways.TcpRelay}, a thread of this process) in front of
wsse.  Clients run in this process's reactor: native sockets (autobahn) and
fallback pages speaking the shim's protocol (an event stream resumed with
C{Last-Event-ID}, one POST in flight, retried with the same numbers).

Every message carries (socket instance, sequence number); the app echoes it
and also sends each socket its own numbered ticks.  The script counts, per
transport: sent, received, duplicated, reordered, gaps (a message missing
while later ones arrived), and lost: on a socket no fault touched (must be 0
on both transports), and lost to a deliberate fault (client drop or close,
app restart, and for native sockets the relay's cut: a native WebSocket has
no resume).  It samples wsse's RSS and says whether it is flat after warm-up.

The report is printed as a table and written as JSON (C{--json}).  The exit
status is 1 when a count that must be 0 is not, or when wsse's memory grew
after warm-up (a verdict skipped, and said so, when too few samples were taken).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The app's message kinds (text): "m IID SEQ PAD" echoed, "t N" a tick, "h GEN" hello.
TRANSPORTS = ("fallback", "native")


# -- the app ---------------------------------------------------------------------------


def serve_app(port: int, generation: int, tick_every: float) -> None:
    """
    The echo app behind wsse, as its own process, so that the soak can kill and
    restart it as a crashing app would be.
    """
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from twisted.internet import reactor, task

    class Echo(WebSocketServerProtocol):
        ticker: task.LoopingCall | None = None
        ticks = 0

        def onOpen(self) -> None:
            self.sendMessage(b"h %d" % generation)
            self.ticker = task.LoopingCall(self._tick)
            self.ticker.start(tick_every, now=False)

        def _tick(self) -> None:
            self.sendMessage(b"t %d" % self.ticks)
            self.ticks += 1

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.sendMessage(payload, isBinary)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            if self.ticker is not None and self.ticker.running:
                self.ticker.stop()

    factory = WebSocketServerFactory()
    factory.protocol = Echo
    factory.setProtocolOptions(echoCloseCodeReason=True, openHandshakeTimeout=30)
    reactor.listenTCP(port, factory, interface="127.0.0.1", backlog=1024)
    reactor.run()


class AppProcess:
    """The app as a process this script can kill and start again on the same port."""

    def __init__(self, port: int, tick_every: float, log: Path) -> None:
        self.port = port
        self.tick_every = tick_every
        self.log = log
        self.generation = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        from tests.support.processes import wait_for_port

        self.generation += 1
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--serve-app",
                    str(self.port),
                    "--generation",
                    str(self.generation),
                    "--tick-every",
                    str(self.tick_every),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        wait_for_port(self.port, 20, process=self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


# -- counting --------------------------------------------------------------------------


class Sequence:
    """Numbers 0, 1, 2... as they arrive: how many, duplicated, reordered, missing so far."""

    __slots__ = ("highest", "missing", "unique", "duplicated", "reordered")

    def __init__(self) -> None:
        self.highest = -1
        self.missing: set[int] = set()
        self.unique = 0
        self.duplicated = 0
        self.reordered = 0

    def see(self, number: int) -> None:
        if number > self.highest:
            self.missing.update(range(self.highest + 1, number))
            self.highest = number
            self.unique += 1
        elif number in self.missing:
            self.missing.discard(number)
            self.unique += 1
            self.reordered += 1
        else:
            self.duplicated += 1


@dataclass
class Totals:
    """What one transport's sockets did, summed over every socket instance."""

    sent: int = 0
    received: int = 0
    duplicated: int = 0
    reordered: int = 0
    gaps: int = 0  # echoes missing although later ones arrived (a hole, not a tail)
    lost: int = 0  # tail loss on sockets no fault touched
    lost_to_fault: Counter[str] = field(default_factory=Counter)
    ticks_received: int = 0
    tick_duplicated: int = 0
    tick_reordered: int = 0
    tick_gaps: int = 0
    sockets: int = 0  # instances that opened
    open_failures: int = 0
    closes: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "received": self.received,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "reordered": self.reordered,
            "gaps": self.gaps,
            "lost_to_fault": dict(self.lost_to_fault),
            "lost_to_fault_total": sum(self.lost_to_fault.values()),
            "ticks_received": self.ticks_received,
            "tick_duplicated": self.tick_duplicated,
            "tick_reordered": self.tick_reordered,
            "tick_gaps": self.tick_gaps,
            "sockets_opened": self.sockets,
            "open_failures": self.open_failures,
            "closes": dict(self.closes),
        }


class Instance:
    """One socket from its open to its close: its echoes and ticks."""

    counter = 0

    def __init__(self, transport: str, restarts: int) -> None:
        Instance.counter += 1
        self.transport = transport
        self.iid = f"{transport[0]}{Instance.counter}"
        self.restarts_at_open = restarts
        self.sent = 0
        self.echoes = Sequence()
        self.ticks = Sequence()
        self.opened = False
        self.done = False
        self.foreign = 0

    def message(self, size: int) -> bytes:
        text = f"m {self.iid} {self.sent} " + "x" * size
        self.sent += 1
        return text.encode()

    def received(self, payload: bytes) -> None:
        kind, _, rest = payload.partition(b" ")
        if kind == b"m":
            iid, seq, _ = rest.split(b" ", 2)
            if iid.decode() != self.iid:
                self.foreign += 1
            else:
                self.echoes.see(int(seq))
        elif kind == b"t":
            self.ticks.see(int(rest))

    def finish(self, totals: Totals, cause: str) -> None:
        """Fold this instance into C{totals}; C{cause} is why it ended ("end" or a fault)."""
        if self.done:
            return
        self.done = True
        if not self.opened:
            if cause != "end":  # not one still opening when the run ended
                totals.open_failures += 1
            return
        totals.sockets += 1
        totals.closes[cause] += 1
        totals.sent += self.sent
        totals.received += self.echoes.unique
        totals.duplicated += self.echoes.duplicated + self.foreign
        totals.reordered += self.echoes.reordered
        totals.gaps += len(self.echoes.missing)
        tail = self.sent - self.echoes.unique - len(self.echoes.missing)
        if cause in ("end", "unexpected"):
            totals.lost += tail
        else:
            totals.lost_to_fault[cause] += tail
        totals.ticks_received += self.ticks.unique
        totals.tick_duplicated += self.ticks.duplicated
        totals.tick_reordered += self.ticks.reordered
        totals.tick_gaps += len(self.ticks.missing)


# -- the soak --------------------------------------------------------------------------


@dataclass
class Config:
    duration: float
    fallback: int
    native: int
    per_page: int
    cut_every: float
    drop_rate: float
    restart_every: float
    interval: float
    max_size: int
    tick_every: float
    drain: float
    sample_every: float
    rss_tolerance: float
    json_path: Path | None
    log_dir: Path
    seed: int
    wsse_source: Path | None = None


class Soak:
    """The clients, the fault injection and the bookkeeping, in one reactor."""

    def __init__(self, config: Config, reactor: Any, relay_port: int, app: AppProcess) -> None:
        self.config = config
        self.reactor = reactor
        self.relay_port = relay_port
        self.app = app
        self.rng = random.Random(config.seed)
        self.totals = {name: Totals() for name in TRANSPORTS}
        self.restarts = 0
        self.app_down = False
        self.running = True  # sending and injecting faults
        self.stopping = False  # no more reconnects
        self.pages: list[FallbackPage] = []
        self.natives: list[NativeSlot] = []
        self.faults: Counter[str] = Counter()
        self.page_failures: Counter[str] = Counter()
        self.stream_resumes = 0
        self.post_retries = 0

    def later(self, delay: float, call: Callable[[], object]) -> Any:
        return self.reactor.callLater(delay, call)

    def payload_size(self) -> int:
        return self.rng.randrange(0, self.config.max_size + 1)

    def next_interval(self) -> float:
        return self.config.interval * self.rng.uniform(0.5, 1.5)

    def cause_of(self, instance: Instance, dropped: str | None) -> str:
        if dropped is not None:
            return dropped
        if self.restarts != instance.restarts_at_open:
            return "restart"
        return "unexpected"

    def inject_faults(self) -> None:
        """Once a second: drop clients at random (C{drop_rate} of them a minute)."""
        if not self.running:
            return
        chance = self.config.drop_rate / 60.0
        for slot in self.natives:
            if self.rng.random() < chance:
                slot.drop()
        for page in list(self.pages):
            if self.rng.random() < chance:
                if self.rng.random() < 0.5:
                    page.vanish()
                else:
                    page.close_one()

    def replace_page(self, page: Any) -> None:
        """A page that ended (dropped or failed) is replaced by a fresh one, as a reload would."""
        if page in self.pages:
            self.pages.remove(page)
        if self.stopping:
            return

        def again() -> None:
            if not self.stopping:
                fresh = FallbackPage(self, page.size)
                self.pages.append(fresh)
                fresh.start()

        self.later(1.0 * self.rng.uniform(0.5, 1.5), again)

    def restart_app(self) -> Any:
        """Kill the app (SIGKILL) and start it again, off the reactor's thread."""
        from twisted.internet import threads

        if not self.running:
            return None
        self.restarts += 1
        self.faults["app restart"] += 1
        self.app_down = True

        def cycle() -> None:
            self.app.kill()
            time.sleep(1.0)
            self.app.start()

        def up(_: object) -> None:
            self.app_down = False

        return threads.deferToThread(cycle).addBoth(up)


class NativeSlot:
    """A native socket that reconnects when it closes, as an app's reconnect logic does."""

    def __init__(self, soak: Soak, factory: Any) -> None:
        self.soak = soak
        self.factory = factory
        self.instance: Instance | None = None
        self.protocol: Any = None
        self.connected_at = 0.0
        self.dropped: str | None = None
        self.backoff = 0.0
        self.sender: Any = None

    def connect(self) -> None:
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        if self.soak.stopping:
            return
        self.instance = Instance("native", self.soak.restarts)
        self.dropped = None
        self.connected_at = time.monotonic()
        protocol = NativeClient(self, self.instance)
        protocol.factory = self.factory
        self.protocol = protocol
        endpoint = TCP4ClientEndpoint(self.soak.reactor, "127.0.0.1", self.soak.relay_port)
        connectProtocol(endpoint, protocol).addErrback(lambda _: self.closed(protocol))

    def opened(self) -> None:
        assert self.instance is not None
        self.instance.opened = True
        self.backoff = 0.0
        self.schedule()

    def schedule(self) -> None:
        self.sender = self.soak.later(self.soak.next_interval(), self.send)

    def send(self) -> None:
        self.sender = None
        if self.instance is None or self.protocol is None or not self.soak.running:
            return
        self.protocol.sendMessage(self.instance.message(self.soak.payload_size()))
        self.schedule()

    def drop(self) -> None:
        """The client vanishes: the connection is aborted, no close frame."""
        if self.protocol is not None and self.instance is not None and self.instance.opened:
            self.dropped = "client drop"
            self.soak.faults["native drop"] += 1
            self.protocol.transport.abortConnection()

    def closed(self, protocol: Any) -> None:
        if protocol is not self.protocol or self.instance is None:
            return
        if self.sender is not None and self.sender.active():
            self.sender.cancel()
        self.sender = None
        instance, self.instance, self.protocol = self.instance, None, None
        cause = self.soak.cause_of(instance, self.dropped)
        if cause == "unexpected" and (
            time.monotonic() - self.connected_at >= self.soak.config.cut_every - 0.5
        ):
            cause = "cut"
        if self.soak.stopping and cause == "unexpected":
            cause = "end"
        instance.finish(self.soak.totals["native"], cause)
        if not instance.opened:
            self.backoff = min(max(self.backoff * 2, 0.2), 5.0)
        else:
            self.backoff = 0.1
        self.soak.later(self.backoff * self.soak.rng.uniform(0.5, 1.5), self.connect)

    def end(self) -> None:
        if self.instance is not None:
            self.instance.finish(self.soak.totals["native"], "end")
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()


def _native_client_class() -> type:
    from autobahn.twisted.websocket import WebSocketClientProtocol

    class Client(WebSocketClientProtocol):
        def __init__(self, slot: NativeSlot, instance: Instance) -> None:
            super().__init__()
            self.slot = slot
            self.instance = instance

        def onOpen(self) -> None:
            self.slot.opened()

        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            self.instance.received(payload)

        def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
            self.slot.closed(self)

    return Client


# The client classes are built when the soak starts (L{_run}): they import
# Twisted's reactor, autobahn and treq, which the app process (C{--serve-app})
# and tests importing this file for its bookkeeping do not need.
NativeClient: Any = None


class FallbackSocket:
    """One socket of a fallback page."""

    def __init__(self, page: FallbackPage, number: int) -> None:
        self.page = page
        self.number = number
        self.instance = Instance("fallback", page.soak.restarts)
        self.closing = False
        self.sender: Any = None

    def handle(self, name: str, data: dict[str, Any]) -> None:
        soak = self.page.soak
        if name == "open":
            self.instance.opened = True
            self.schedule()
        elif name == "text":
            self.instance.received(data["d"].encode("utf-8"))
        elif name == "close":
            self.stop_sending()
            cause = "client close" if self.closing else soak.cause_of(self.instance, None)
            if soak.stopping and cause == "unexpected":
                cause = "end"
            self.instance.finish(soak.totals["fallback"], cause)
            self.page.socket_closed(self, failed_open=not self.instance.opened)

    def schedule(self) -> None:
        self.sender = self.page.soak.later(self.page.soak.next_interval(), self.send)

    def send(self) -> None:
        from wsse import _protocol

        self.sender = None
        if self.closing or self.page.ended or not self.page.soak.running:
            return
        payload = self.instance.message(self.page.soak.payload_size())
        self.page.enqueue(_protocol.FRAME_TEXT, self.number, payload)
        self.schedule()

    def stop_sending(self) -> None:
        if self.sender is not None and self.sender.active():
            self.sender.cancel()
        self.sender = None

    def close(self) -> None:
        """The page closes the socket (1000), as C{ws.close()} does."""
        from wsse import _protocol

        self.closing = True
        self.stop_sending()
        self.page.enqueue(_protocol.FRAME_CLOSE, self.number, b"\x03\xe8bye")


def _fallback_page_class() -> type:
    from twisted.internet import defer, task
    from twisted.internet.interfaces import ITCPTransport
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.http_headers import Headers

    from tests.support.pageclient import PageClient
    from wsse import _protocol

    class Page(PageClient):
        """
        A page like the shim's: its stream comes back at once when cut (then
        backing off), resumed from the last event it holds; one POST in flight,
        retried with the same numbers; acknowledgements within a second.
        """

        def __init__(self, soak: Soak, size: int) -> None:
            from treq.client import HTTPClient

            super().__init__(soak.relay_port)
            self.soak = soak
            self.size = size
            self.pool = HTTPConnectionPool(soak.reactor, persistent=True)
            self.pool.maxPersistentPerHost = 1
            self.http = HTTPClient(Agent(soak.reactor, pool=self.pool))
            self.sockets: dict[int, FallbackSocket] = {}
            self.next_number = 1
            self.queue: list[tuple[int, int, int, bytes]] = []
            self.next_seq = 0
            self.posting = False
            self.post_retry = 0.0
            self.stream_retry = 0.0
            self.acked = 0
            self.last_bytes = time.monotonic()
            self.ended = False
            self.watchdog_after = 15.0
            self.ready: defer.Deferred[None] = defer.Deferred()
            self.ticker = task.LoopingCall(self._every_second)

        def start(self) -> None:
            self.ticker.start(1.0, now=False)
            defer.ensureDeferred(self._stream_loop()).addErrback(self._crashed)
            self.ready.addCallback(self._open_sockets)

        def _open_sockets(self, _: object) -> None:
            for _ in range(self.size):
                self.open_socket()

        def _crashed(self, failure: Any) -> None:
            print("page crashed:", failure.getTraceback(), file=sys.stderr)
            self.fail("crash")

        # The stream.

        async def _stream_loop(self) -> None:
            while not self.ended:
                try:
                    status = await self._request()
                except Exception:
                    status = 0
                if self.ended:
                    break
                if status == 200:
                    self.last_bytes = time.monotonic()
                    assert self.stream is not None
                    await self.stream.done
                    if self.ended:
                        break
                    self.soak.stream_resumes += 1
                elif status == _protocol.SESSION_GONE:
                    self.fail("session gone (410 on resume)")
                    return
                self.stream_retry = min(max(self.stream_retry * 2, 0.1), 5.0)
                await task.deferLater(self.soak.reactor, self.stream_retry, lambda: None)

        def _received(self, events: list[Any]) -> None:
            self.last_bytes = time.monotonic()
            if self.ended:
                return
            for event in events:
                if event.id <= self.last_id:
                    continue  # replayed, already handled
                self.last_id = event.id
                self.stream_retry = 0.0
                if event.name == "session":
                    self.session = event.data["session"]
                    self.watchdog_after = max(3 * event.data["heartbeat"] / 1000, 3.0)
                    if not self.ready.called:
                        self.ready.callback(None)
                elif event.name == "sent":
                    pass
                else:
                    socket = self.sockets.get(event.data["s"])
                    if socket is not None:
                        socket.handle(event.name, event.data)
                if self.ended:
                    return
            if self.last_id - self.acked >= 64:
                self.kick()

        def _every_second(self) -> None:
            if self.ended:
                return
            if self.last_id > self.acked:
                self.kick()
            stream = self.stream
            if (
                stream is not None
                and not stream.done.called
                and time.monotonic() - self.last_bytes > self.watchdog_after
            ):
                # A stream gone silent: taken for lost and reopened, as the shim does.
                self.soak.faults["silent stream reopened"] += 1
                if stream.transport is not None:
                    cast(ITCPTransport, stream.transport).abortConnection()

        # Sockets.

        def open_socket(self) -> None:
            if self.ended or self.soak.stopping:
                return
            number = self.next_number
            self.next_number += 1
            socket = FallbackSocket(self, number)
            self.sockets[number] = socket
            body = json.dumps({"url": "/soak", "protocols": []}).encode()
            self.enqueue(_protocol.FRAME_OPEN, number, body)

        def socket_closed(self, socket: FallbackSocket, failed_open: bool) -> None:
            self.sockets.pop(socket.number, None)
            delay = (2.0 if failed_open else 0.5) * self.soak.rng.uniform(0.5, 1.5)
            self.soak.later(delay, self.open_socket)

        def close_one(self) -> None:
            open_sockets = [s for s in self.sockets.values() if s.instance.opened and not s.closing]
            if open_sockets:
                self.soak.faults["fallback socket closed by page"] += 1
                self.soak.rng.choice(open_sockets).close()

        # The POST channel.

        def enqueue(self, kind: int, number: int, payload: bytes) -> None:
            self.queue.append((self.next_seq, kind, number, payload))
            self.next_seq += 1
            self.kick()

        def kick(self) -> None:
            if self.posting or self.ended or self.session is None:
                return
            if not self.queue and self.last_id <= self.acked:
                return
            self.posting = True
            defer.ensureDeferred(self._post()).addErrback(self._crashed)

        async def _post(self) -> None:
            batch: list[tuple[int, int, bytes]] = []
            size = 8
            for _, kind, number, payload in self.queue:
                if batch and size + 9 + len(payload) > _protocol.BATCH_LIMIT:
                    break
                batch.append((kind, number, payload))
                size += 9 + len(payload)
            first = self.queue[0][0] if self.queue else self.next_seq
            ack = self.last_id
            assert self.session is not None
            headers = Headers(
                {
                    **self.headers,
                    b"Content-Type": [_protocol.FRAMES_CONTENT_TYPE],
                    _protocol.SESSION_HEADER: [self.session.encode()],
                    _protocol.ACK_HEADER: [b"%d" % ack],
                }
            )
            try:
                response = await self.http.post(
                    self.base + "send",
                    data=_protocol.encode_frames(first, batch),
                    headers=headers,
                    timeout=60,
                )
                await response.content()
                status = int(response.code)
            except Exception:
                status = 0
            self.posting = False
            if self.ended:
                return
            if status == 204:
                del self.queue[: len(batch)]
                self.acked = max(self.acked, ack)
                self.post_retry = 0.0
                self.kick()
            elif status == _protocol.SESSION_GONE:
                self.fail("session gone (410 on POST)")
            elif status in (400, 409, 413, 415):
                self.fail(f"POST refused ({status})")
            else:
                self.soak.post_retries += 1
                self.post_retry = min(max(self.post_retry * 2, 0.1), 5.0)
                self.soak.later(self.post_retry, self.kick)

        # Endings.

        def vanish(self) -> None:
            """The page goes away without a word (a killed tab): a deliberate drop."""
            self.soak.faults["fallback page vanished"] += 1
            self._end("client drop")
            self.soak.replace_page(self)

        def fail(self, why: str) -> None:
            """wsse gave up on the session: every socket of the page fails (unexpected)."""
            if self.ended:
                return
            self.soak.page_failures[why] += 1
            self._end("end" if self.soak.stopping else "unexpected")
            self.soak.replace_page(self)

        def end(self) -> None:
            self._end("end")

        def _end(self, cause: str) -> None:
            if self.ended:
                return
            self.ended = True
            if self.ticker.running:
                self.ticker.stop()
            for socket in list(self.sockets.values()):
                socket.stop_sending()
                socket.instance.finish(self.soak.totals["fallback"], cause)
            self.sockets.clear()
            stream = self.stream
            if stream is not None and stream.transport is not None and not stream.done.called:
                cast(ITCPTransport, stream.transport).abortConnection()
            self.pool.closeCachedConnections()

    return Page


FallbackPage: Any = None


# -- memory ----------------------------------------------------------------------------


def flatness(samples: list[tuple[float, int]], tolerance: float) -> dict[str, Any]:
    """
    Whether RSS is flat after warm-up: the first third is warm-up, and the
    median of the last third may exceed that of the second third by at most
    C{tolerance} (a fraction), or 4 MiB, whichever is more.
    """
    if len(samples) < 6:
        return {"flat": None, "why": "too few samples"}
    third = len(samples) // 3
    middle = [kib for _, kib in samples[third : 2 * third]]
    last = [kib for _, kib in samples[2 * third :]]
    middle_median, last_median = statistics.median(middle), statistics.median(last)
    allowed = max(middle_median * tolerance, 4096)
    growth = last_median - middle_median
    after = samples[third:]
    slope = 0.0
    if len(after) >= 2:
        xs = [t for t, _ in after]
        ys = [kib for _, kib in after]
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mean_x) ** 2 for x in xs)
        if var:
            slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    return {
        "flat": growth <= allowed,
        "warmup_samples": third,
        "second_third_median_kib": middle_median,
        "last_third_median_kib": last_median,
        "growth_kib": growth,
        "allowed_growth_kib": allowed,
        "slope_kib_per_min_after_warmup": round(slope * 60, 1),
        "peak_kib": max(kib for _, kib in samples),
    }


# -- running it ------------------------------------------------------------------------


async def _run(reactor: Any, config: Config, report: dict[str, Any]) -> None:
    from tests.support.gateways import TcpRelay
    from tests.support.processes import free_port, rss_kib, running, wsse_command

    global NativeClient, FallbackPage
    NativeClient = _native_client_class()
    FallbackPage = _fallback_page_class()

    config.log_dir.mkdir(parents=True, exist_ok=True)
    app_port, wsse_port = free_port(), free_port()
    app = AppProcess(app_port, config.tick_every, config.log_dir / "soak-app.log")
    app.start()
    try:
        options = (
            "--target",
            f"http://127.0.0.1:{app_port}",
            "--listen",
            f"tcp:{wsse_port}:interface=127.0.0.1",
            "--log-level",
            "warning",
        )
        command = wsse_command(*options)
        if config.wsse_source is not None:
            # Another checkout's wsse (to compare builds): its package first on the path.
            start = f"import sys; sys.path.insert(0, {str(config.wsse_source)!r}); "
            command = [sys.executable, "-c", start + "from wsse._cli import main; main()"]
            command += list(options)
        with running(command, wsse_port, log=config.log_dir / "soak-wsse.log") as wsse:
            relay = TcpRelay(wsse_port, cut_every=config.cut_every).start()
            try:
                await _soak(reactor, config, report, relay, app, wsse.pid, rss_kib)
            finally:
                relay.close()
                report["wsse_exit"] = wsse.poll()
    finally:
        app.kill()


async def _soak(
    reactor: Any,
    config: Config,
    report: dict[str, Any],
    relay: Any,
    app: AppProcess,
    wsse_pid: int,
    rss_kib: Callable[[int], int],
) -> None:
    from autobahn.twisted.websocket import WebSocketClientFactory
    from twisted.internet import task

    soak = Soak(config, reactor, relay.port, app)
    # A browser's socket from a page served through the relay: the page's own origin.
    factory = WebSocketClientFactory(
        f"ws://127.0.0.1:{relay.port}/soak", origin=f"http://127.0.0.1:{relay.port}"
    )
    factory.setProtocolOptions(openHandshakeTimeout=30, closeHandshakeTimeout=2, autoPingInterval=0)
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    live: list[dict[str, Any]] = []

    def sample() -> None:
        now = round(time.monotonic() - started, 1)
        try:
            samples.append((now, rss_kib(wsse_pid)))
        except (OSError, LookupError):
            return
        live.append(
            {
                "t": now,
                "native_open": sum(1 for s in soak.natives if s.instance and s.instance.opened),
                "fallback_open": sum(
                    1 for p in soak.pages for s in p.sockets.values() if s.instance.opened
                ),
                "relay_open": relay.open,
                "relay_cuts": relay.cuts,
            }
        )

    sampler = task.LoopingCall(sample)
    sampler.start(config.sample_every, now=True)

    # Start clients gradually so the warm-up is not one burst of 1000 handshakes.
    pages = max(1, -(-config.fallback // config.per_page)) if config.fallback else 0
    remaining = config.fallback
    for index in range(pages):
        size = min(config.per_page, remaining)
        remaining -= size
        page = FallbackPage(soak, size)
        soak.pages.append(page)
        reactor.callLater(index * 0.05, page.start)
    for index in range(config.native):
        slot = NativeSlot(soak, factory)
        soak.natives.append(slot)
        reactor.callLater(index * 0.01, slot.connect)

    faults = task.LoopingCall(soak.inject_faults)
    faults.start(1.0, now=False)
    restarts = None
    if config.restart_every > 0:
        restarts = task.LoopingCall(soak.restart_app)
        restarts.start(config.restart_every, now=False)

    last_report = started
    while time.monotonic() - started < config.duration:
        await task.deferLater(reactor, 1.0, lambda: None)
        if time.monotonic() - last_report >= 60:
            last_report = time.monotonic()
            fb, nt = soak.totals["fallback"], soak.totals["native"]
            print(
                f"[{last_report - started:6.0f}s] rss={samples[-1][1] if samples else 0} KiB "
                f"cuts={relay.cuts} restarts={soak.restarts} "
                f"closed fallback={sum(fb.closes.values())} native={sum(nt.closes.values())}",
                flush=True,
            )

    # Stop sending and injecting; let what is in flight arrive, then count.
    soak.running = False
    faults.stop()
    if restarts is not None and restarts.running:
        restarts.stop()
    while soak.app_down:
        await task.deferLater(reactor, 0.2, lambda: None)
    await task.deferLater(reactor, config.drain, lambda: None)
    soak.stopping = True
    sampler.stop()
    for page in list(soak.pages):
        page.end()
    for slot in soak.natives:
        slot.end()
    await task.deferLater(reactor, 0.5, lambda: None)

    report.update(
        {
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(config).items()},
            "elapsed_s": round(time.monotonic() - started, 1),
            "fallback": soak.totals["fallback"].as_json(),
            "native": soak.totals["native"].as_json(),
            "faults": dict(soak.faults),
            "page_failures": dict(soak.page_failures),
            "stream_resumes": soak.stream_resumes,
            "post_retries": soak.post_retries,
            "relay": {"accepted": relay.accepted, "cuts": relay.cuts},
            "app_restarts": soak.restarts,
            "rss_kib": samples,
            "live": live,
            "memory": flatness(samples, config.rss_tolerance),
        }
    )
    report["checks"] = checks(report)


MEMORY_CHECK = "memory flat after warm-up"


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """
    The counts the guarantees say must be 0, with their values.  Fallback:
    nothing lost, duplicated, reordered or missing on sockets no fault touched,
    no session failure; every transport: no duplicate, reordering or hole
    (a fault may cut a socket's tail, never its middle).  And wsse's memory
    flat after warm-up (L{flatness}), its growth in KiB as the value; C{ok} is
    C{None} (skipped) when there were too few samples to tell.
    """
    fb, nt = report["fallback"], report["native"]
    values = {
        "fallback lost (no fault)": fb["lost"],
        "fallback duplicated": fb["duplicated"],
        "fallback reordered": fb["reordered"],
        "fallback gaps": fb["gaps"],
        "fallback tick gaps": fb["tick_gaps"],
        "fallback tick duplicated": fb["tick_duplicated"],
        "fallback tick reordered": fb["tick_reordered"],
        "fallback unexpected closes": fb["closes"].get("unexpected", 0),
        "fallback page failures": sum(report["page_failures"].values()),
        "native duplicated": nt["duplicated"],
        "native reordered": nt["reordered"],
        "native gaps": nt["gaps"],
        "native tick gaps": nt["tick_gaps"],
        "native tick duplicated": nt["tick_duplicated"],
        "native tick reordered": nt["tick_reordered"],
        "native lost (no fault)": nt["lost"],
    }
    found = {name: {"value": value, "ok": value == 0} for name, value in values.items()}
    memory = report["memory"]
    found[MEMORY_CHECK] = {"value": memory.get("growth_kib"), "ok": memory["flat"]}
    if memory["flat"] is None:
        found[MEMORY_CHECK]["skipped"] = memory["why"]
    return found


def failed(report: dict[str, Any]) -> list[str]:
    """The checks that failed (a skipped one has not)."""
    return [name for name, check in report["checks"].items() if check["ok"] is False]


def summary(report: dict[str, Any]) -> str:
    """The human table."""
    fb, nt = report["fallback"], report["native"]
    rows = [
        ("sent", "sent"),
        ("received", "received"),
        ("lost (no fault; must be 0)", "lost"),
        ("duplicated (must be 0)", "duplicated"),
        ("reordered (must be 0)", "reordered"),
        ("gaps (must be 0)", "gaps"),
        ("lost to a deliberate fault", "lost_to_fault_total"),
        ("ticks received", "ticks_received"),
        ("tick gaps/dup/reorder (must be 0)", None),
        ("socket instances opened", "sockets_opened"),
        ("opens failed (app down)", "open_failures"),
    ]
    lines = [f"{'':36} {'fallback':>12} {'native':>12}"]
    for label, key in rows:
        if key is None:
            f = fb["tick_gaps"] + fb["tick_duplicated"] + fb["tick_reordered"]
            n = nt["tick_gaps"] + nt["tick_duplicated"] + nt["tick_reordered"]
        else:
            f, n = fb[key], nt[key]
        lines.append(f"{label:36} {f:>12,} {n:>12,}")
    lines.append("")
    lines.append(f"fallback lost to faults: {fb['lost_to_fault']}")
    lines.append(f"native lost to faults:   {nt['lost_to_fault']}")
    lines.append(f"fallback closes: {fb['closes']}   native closes: {nt['closes']}")
    lines.append(
        f"faults: {report['faults']}; relay cuts {report['relay']['cuts']} of "
        f"{report['relay']['accepted']} connections; stream resumes {report['stream_resumes']}; "
        f"POST retries {report['post_retries']}; page failures {report['page_failures']}"
    )
    memory = report["memory"]
    if memory.get("flat") is None:
        lines.append(f"wsse RSS: {memory.get('why')}")
    else:
        lines.append(
            "wsse RSS (KiB): median of 2nd third {second_third_median_kib:,.0f}, last third "
            "{last_third_median_kib:,.0f}, growth {growth_kib:,.0f} (allowed {allowed_growth_kib:,.0f}), "
            "slope after warm-up {slope_kib_per_min_after_warmup} KiB/min, peak {peak_kib:,} -> ".format(
                **memory
            )
            + ("FLAT" if memory["flat"] else "GROWING")
        )
    series = ", ".join(
        f"{t:.0f}s:{kib // 1024}"
        for t, kib in report["rss_kib"][:: max(1, len(report["rss_kib"]) // 12)]
    )
    lines.append(f"wsse RSS series (MiB): {series}")
    violated = failed(report)
    lines.append(
        "guarantees: " + ("all hold" if not violated else "VIOLATED: " + ", ".join(violated))
    )
    lines.extend(
        f"{name}: skipped ({check['skipped']})"
        for name, check in report["checks"].items()
        if check["ok"] is None
    )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, Config | None]:
    parser = argparse.ArgumentParser(
        description="Soak wsse with fallback and native sockets through a cutting relay."
    )
    parser.add_argument("--duration", type=float, default=1800, help="seconds (default 1800)")
    parser.add_argument("--fallback", type=int, default=500, help="fallback sockets (500)")
    parser.add_argument("--native", type=int, default=500, help="native sockets (500)")
    parser.add_argument("--per-page", type=int, default=5, help="fallback sockets a page (5)")
    parser.add_argument(
        "--cut-every", type=float, default=10, help="the relay cuts each connection after S (10)"
    )
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=0.02,
        help="fraction of clients (native sockets, fallback pages) dropped a minute (0.02)",
    )
    parser.add_argument(
        "--restart-every", type=float, default=300, help="seconds between app restarts; 0: none"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="mean seconds between sends")
    parser.add_argument("--max-size", type=int, default=512, help="largest padding a message")
    parser.add_argument("--tick-every", type=float, default=2.0, help="app ticks, seconds")
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to wait at the end")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sample, seconds")
    parser.add_argument("--rss-tolerance", type=float, default=0.10, help="flat within (0.10)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--log-dir", type=Path, default=ROOT / "test-artifacts" / "soak", help="process logs"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--wsse-source",
        type=Path,
        default=None,
        help="run wsse from this directory's wsse/ package (to compare builds)",
    )
    parser.add_argument("--serve-app", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--generation", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_app is not None:
        return args, None
    config = Config(
        duration=args.duration,
        fallback=args.fallback,
        native=args.native,
        per_page=max(1, args.per_page),
        cut_every=args.cut_every,
        drop_rate=args.drop_rate,
        restart_every=args.restart_every,
        interval=args.interval,
        max_size=args.max_size,
        tick_every=args.tick_every,
        drain=args.drain,
        sample_every=args.sample_every,
        rss_tolerance=args.rss_tolerance,
        json_path=args.json,
        log_dir=args.log_dir,
        seed=args.seed if args.seed is not None else random.randrange(1 << 30),
        wsse_source=args.wsse_source,
    )
    return args, config


def main(argv: list[str] | None = None) -> int:
    """Run the soak (or, with the hidden C{--serve-app}, the app); 1 if a check failed."""
    args, config = parse(argv)
    if config is None:
        serve_app(args.serve_app, args.generation, args.tick_every)
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from twisted.internet import defer, reactor

    report: dict[str, Any] = {}
    outcome: list[object] = []

    def go() -> None:
        d = defer.ensureDeferred(_run(reactor, config, report))
        d.addErrback(lambda f: outcome.append(f))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if outcome:
        print(outcome[0], file=sys.stderr)
        getattr(outcome[0], "printTraceback", lambda: None)()
        return 2
    print(summary(report))
    if config.json_path is not None:
        config.json_path.parent.mkdir(parents=True, exist_ok=True)
        config.json_path.write_text(json.dumps(report, indent=1))
    return 1 if failed(report) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
