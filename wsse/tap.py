"""
C{twistd wsse}: the command-line options and the service they make.

The options are ws-sse-proxy's, with its defaults, so that wsse is a drop-in for
its users (C{--target-port}, C{--listen-port}, C{--target-host}, C{--host},
C{--log-level}), plus what a twistd user expects: C{--listen} endpoint strings
(repeatable), a C{--target} URL, and timeouts.
"""

from __future__ import annotations

import os
import re
import socket
from typing import Any

from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python import usage

from wsse import _allocator, _demo, _logging, _socketpaths
from wsse._crosssite import origin_of
from wsse._resource import WSSEResource
from wsse._settings import HostHeader, Settings, parse_networks
from wsse._site import WSSESite, make_site
from wsse._target import Target

_log = Logger(observer=_logging.observer)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (1-65535)")
    return port


_port.coerceDoc = "A TCP port, 1-65535."  # type: ignore[attr-defined]


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:
        raise ValueError(f"{value!r} is not a positive number of seconds")
    return seconds


_seconds.coerceDoc = "Seconds (> 0)."  # type: ignore[attr-defined]


def _count(value: str) -> int:
    count = int(value)
    if count < 1:
        raise ValueError(f"{value!r} is not a positive count")
    return count


_count.coerceDoc = "A whole number (>= 1)."  # type: ignore[attr-defined]


def _endpoint_host(host: str) -> str:
    """Escape an address for an endpoint string (IPv6 colons)."""
    return host.replace(":", "\\:")


def _check_endpoint_syntax(description: str) -> None:
    from twisted.internet import reactor

    try:
        serverFromString(reactor, description)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise usage.UsageError(f"--listen {description!r} is not a valid endpoint: {e}") from None


class Options(usage.Options):
    synopsis = "--target-port PORT [options]"
    longdesc = (
        "Serve an app so that its WebSocket works behind gateways that block WebSocket: "
        "HTTP and real WebSocket pass through to the app, and HTML pages get a shim that "
        "falls back to Server-Sent Events and POST when the socket cannot open."
    )

    optParameters = [
        ["target-port", None, None, "Port of the app (on --target-host)", _port],
        ["target-host", None, "localhost", "Host of the app."],
        [
            "target",
            None,
            None,
            "URL of the app, instead of --target-host/--target-port: http://127.0.0.1:8080 "
            "(https:// and a base path such as /base are allowed).",
        ],
        ["listen-port", None, 8081, "Port to listen on (with --host).", _port],
        ["host", None, "0.0.0.0", "Address to listen on (with --listen-port)."],
        ["log-level", None, "info", "One of: " + ", ".join(_logging.LEVELS) + "."],
        ["connect-timeout", None, 10.0, "Seconds to connect to the app.", _seconds],
        [
            "response-timeout",
            None,
            60.0,
            "Seconds the app may take to start its response, or hold up a request body (then 504).",
            _seconds,
        ],
        [
            "pool-size",
            None,
            64,
            "Idle keep-alive connections kept to the app; match the expected concurrency.",
            _count,
        ],
        [
            "host-header",
            None,
            "original",
            "Host header sent to the app: 'original' (the browser's, what Jupyter, Tornado "
            "and Bokeh need to check Origin) or 'target' (the app's host:port, nginx's default).",
        ],
    ]

    optParameters += [
        [
            "forwarded-allow-ips",
            None,
            "127.0.0.1,::1",
            "Peers (addresses or networks, comma-separated, or *) whose X-Forwarded-Proto and "
            "X-Forwarded-Host are passed to the app; from others wsse sets them itself.",
        ],
    ]

    optParameters += [
        [
            "probe-timeout",
            None,
            3.0,
            "Seconds a browser's WebSocket may stay connecting before the shim uses the fallback.",
            _seconds,
        ],
        ["heartbeat", None, 5.0, "Seconds between heartbeats on an idle event stream.", _seconds],
        [
            "grace",
            None,
            30.0,
            "Seconds a page's sockets to the app wait for its dropped event stream to return.",
            _seconds,
        ],
        [
            "replay-buffer",
            None,
            96,
            "MiB of events a page may leave unacknowledged; a socket whose message would"
            " pass it closes (1013).",
            _count,
        ],
        [
            "idle-timeout",
            None,
            75.0,
            "Seconds an idle keep-alive connection from a browser or gateway stays open "
            "(nginx's keepalive_timeout), and a browser may pause within a request body; "
            "requests under way, event streams included, are not cut.",
            _seconds,
        ],
        [
            "max-message-size",
            None,
            64,
            "MiB: the largest WebSocket frame or message wsse relays, either way (the "
            "splice measures them from frame headers); bigger ones close their socket "
            "with 1009.",
            _count,
        ],
        [
            "max-page-sockets",
            None,
            256,
            "Fallback sockets one page may hold open; past it a socket closes with 1008.",
            _count,
        ],
        [
            "max-sockets",
            None,
            20000,
            "Sockets wsse holds open in all, fallback and native; past it a fallback "
            "socket closes with 1013 and a native upgrade gets 503 (no handshake to close).",
            _count,
        ],
    ]

    optFlags = [
        [
            "ws-deflate",
            None,
            "Relay WebSocket messages instead of bytes, offering permessage-deflate to browsers.",
        ],
        ["demo", None, "Run a built-in demo app and put wsse in front of it."],
        ["force-fallback", None, "Carry every page's sockets by the fallback, without probing."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allow-origin"] = []
        self["ws-path"] = []

    def opt_listen(self, description: str) -> None:
        """Listen on an endpoint string: tcp:8081:interface=127.0.0.1, unix:/run/wsse.sock, ssl:8443:privateKey=key.pem (repeatable; replaces --host and --listen-port)."""
        self["listen"].append(description)

    def opt_allow_origin(self, origin: str) -> None:
        """An origin other than the page's own whose pages may use the fallback: https://app.example.com (repeatable)."""
        parsed = origin_of(origin)
        if parsed is None:
            raise usage.UsageError(
                f"--allow-origin {origin!r} is not an origin (scheme://host[:port])"
            )
        self["allow-origin"].append(parsed)

    def opt_ws_path(self, prefix: str) -> None:
        """Serve WebSocket only on this app path and below it: /ws (repeatable; default: any path)."""
        try:
            self["ws-path"].append(_socketpaths.normalise_prefix(prefix))
        except ValueError as e:
            raise usage.UsageError(f"--ws-path: {e}") from None

    def parseOptions(self, options: Any = None) -> None:
        """twistd would print its whole help above the error; one line says more."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"wsse: error: {e}") from None

    def postOptions(self) -> None:
        if self["log-level"].lower() not in _logging.LEVELS:
            raise usage.UsageError(
                f"unknown --log-level {self['log-level']!r} (choose {', '.join(_logging.LEVELS)})"
            )
        try:
            self["host-header"] = HostHeader(self["host-header"])
        except ValueError:
            raise usage.UsageError(
                f"unknown --host-header {self['host-header']!r} (choose original or target)"
            ) from None
        chosen = [self["target"] is not None, self["target-port"] is not None, self["demo"]]
        if sum(chosen) == 0:
            raise usage.UsageError("say which app to serve: --target-port PORT or --target URL")
        if sum(chosen) > 1:
            raise usage.UsageError("choose one of --target-port, --target and --demo")
        if self["target"] is not None:
            try:
                self["target"] = Target.from_url(self["target"])
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
        elif self["target-port"] is not None:
            self["target"] = Target("http", self["target-host"], self["target-port"])
        if not self["listen"]:
            self["listen"] = [f"tcp:{self['listen-port']}:interface={_endpoint_host(self['host'])}"]
        for description in self["listen"]:
            _check_endpoint_syntax(description)
        try:
            self["forwarded-allow-ips"] = parse_networks(self["forwarded-allow-ips"])
        except ValueError as e:
            raise usage.UsageError(f"--forwarded-allow-ips: {e}") from None

    def settings(self, target: Target) -> Settings:
        return Settings(
            target=target,
            host_header=self["host-header"],
            connect_timeout=self["connect-timeout"],
            response_timeout=self["response-timeout"],
            pool_size=self["pool-size"],
            forwarded_allow_ips=self["forwarded-allow-ips"],
            probe_timeout=self["probe-timeout"],
            force_fallback=bool(self["force-fallback"]),
            heartbeat=self["heartbeat"],
            grace=self["grace"],
            replay_buffer=self["replay-buffer"] * 1024 * 1024,
            ws_deflate=bool(self["ws-deflate"]),
            allowed_origins=frozenset(self["allow-origin"]),
            max_message_size=self["max-message-size"] * 1024 * 1024,
            max_page_sockets=self["max-page-sockets"],
            max_sockets=self["max-sockets"],
            socket_paths=tuple(self["ws-path"]),
        )


# Seconds a stopping wsse waits for its sockets to close and its requests to be answered.
DRAIN_TIMEOUT = 5.0


class WSSEService(MultiService):
    """wsse's listeners (and the demo app), stating where it listens and for what."""

    def __init__(
        self,
        listen: list[str],
        target: Target,
        resource: WSSEResource,
        site: WSSESite,
        clock: IReactorTime,
    ) -> None:
        super().__init__()
        self._listen = listen
        self._target = target
        self._resource = resource
        self._site = site
        self._clock = clock

    def startService(self) -> None:
        super().startService()
        for description in self._listen:
            _log.info(
                "wsse listening on {where}, serving {target}",
                where=description,
                target=str(self._target),
            )
            if ":interface=0.0.0.0" in description or ":interface=\\:\\:" in description:
                _log.info(
                    "{where} accepts connections from every network; use --host 127.0.0.1 "
                    "if only a gateway on this machine should reach wsse",
                    where=description,
                )

    def stopService(self) -> Deferred[object]:
        """
        Stop listening, then close every socket with 1001 and answer the
        requests under way (a POST in flight gets its answer), for up to
        L{DRAIN_TIMEOUT} seconds; what is left then is cut.
        """
        stopped = super().stopService()
        stopped.addCallback(lambda _: self._drain())
        return stopped

    def _drain(self) -> Deferred[object]:
        _log.info("wsse stopping: closing sockets (1001) and answering requests under way")
        done: Deferred[object] = Deferred()

        def cut() -> None:
            _log.warn(
                "wsse stopping: cut what was still open after {seconds}s", seconds=DRAIN_TIMEOUT
            )
            self._resource.abort()
            self._site.abort()
            done.callback(None)

        def drained(_: object) -> None:
            if cutting.active():
                cutting.cancel()
                done.callback(None)

        cutting = self._clock.callLater(DRAIN_TIMEOUT, cut)
        draining = DeferredList([self._resource.close(), self._site.stop()], consumeErrors=True)
        draining.addCallback(drained)
        return done


def _endpoint_fields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """An endpoint string's type, positional and keyword fields (C{\\:} is a colon)."""
    kind, *fields = [f.replace("\\:", ":") for f in re.split(r"(?<!\\):", description)]
    positional = [f for f in fields if "=" not in f]
    keywords = dict(f.split("=", 1) for f in fields if "=" in f)
    return kind, positional, keywords


def _check_can_listen(description: str) -> None:
    """
    Fail before twistd daemonizes if a TCP address cannot be bound, or a UNIX
    socket's directory is missing.

    Past the fork, a listening failure reaches the user only as "An error has
    occurred" from twistd's parent process; here it is one line and exit status 1.
    """
    kind, positional, keywords = _endpoint_fields(description)
    problem = None
    if kind in ("tcp", "tcp6", "ssl"):
        interface = keywords.get("interface", "::" if kind == "tcp6" else "")
        port = int(keywords.get("port") or positional[0])
        family = socket.AF_INET6 if ":" in interface else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((interface, port))
            except OSError as e:
                problem = e.strerror or str(e)
    elif kind == "unix":
        directory = os.path.dirname(keywords.get("address") or positional[0]) or "."
        if not os.path.isdir(directory):
            problem = f"no directory {directory}"
        elif not os.access(directory, os.W_OK | os.X_OK):
            problem = f"cannot create a socket in {directory}"
    if problem is not None:
        raise SystemExit(f"wsse: error: cannot listen on {description}: {problem}")


def _free_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def makeService(options: Options, reactor: IReactorTime | None = None) -> IService:
    """The service for C{twistd wsse}: a MultiService of listeners."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    _logging.set_level(options["log-level"])
    _allocator.keep_big_buffers()
    target = options["target"]
    demo_listen = None
    if options["demo"]:
        port = _free_local_port()
        target = Target("http", "127.0.0.1", port)
        demo_listen = f"tcp:{port}:interface=127.0.0.1"
    resource = WSSEResource(options.settings(target), reactor=reactor)
    site = WSSESite(resource, timeout=options["idle-timeout"])
    service = WSSEService(options["listen"], target, resource, site, reactor)
    if demo_listen is not None:
        strports.service(demo_listen, make_site(_demo.demo_resource())).setServiceParent(service)
    for description in options["listen"]:
        _check_can_listen(description)
        strports.service(description, site).setServiceParent(service)
    return service
