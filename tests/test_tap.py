"""The twistd options and the service they make, without running it."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_network

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceCollection

from tests.support.processes import free_port
from wsse import HostHeader, Target
from wsse.tap import Options, makeService


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_ws_sse_proxy_options_and_defaults() -> None:
    options = parse("--target-port", "8080")
    assert options["target"] == Target("http", "localhost", 8080)
    assert options["listen"] == ["tcp:8081:interface=0.0.0.0"]
    assert options["log-level"] == "info"
    options = parse(
        "--target-port",
        "9000",
        "--target-host",
        "127.0.0.1",
        "--listen-port",
        "9001",
        "--host",
        "::1",
    )
    assert options["target"] == Target("http", "127.0.0.1", 9000)
    assert options["listen"] == ["tcp:9001:interface=\\:\\:1"]


def test_listen_endpoints_replace_host_and_port() -> None:
    options = parse(
        "--target-port",
        "8080",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        "unix:/tmp/wsse-test.sock",
    )
    assert options["listen"] == ["tcp:0:interface=127.0.0.1", "unix:/tmp/wsse-test.sock"]


def test_every_option_reaches_the_settings() -> None:
    options = parse(
        "--target", "https://app.internal:8443/base",
        "--connect-timeout", "2.5",
        "--response-timeout", "7",
        "--pool-size", "200",
        "--host-header", "target",
        "--forwarded-allow-ips", "10.0.0.0/8, 192.168.1.1",
        "--ws-deflate",
    )  # fmt: skip
    settings = options.settings(options["target"])
    assert settings.target == Target("https", "app.internal", 8443, b"/base")
    assert settings.connect_timeout == 2.5
    assert settings.response_timeout == 7.0
    assert settings.pool_size == 200
    assert settings.host_header is HostHeader.TARGET
    assert settings.forwarded_allow_ips == (ip_network("10.0.0.0/8"), ip_network("192.168.1.1/32"))
    assert settings.ws_deflate
    assert settings.trusts_forwarded_headers_from("10.1.2.3")
    assert not settings.trusts_forwarded_headers_from("127.0.0.1")


def test_forwarded_headers_are_trusted_from_loopback_by_default_or_from_everyone() -> None:
    default = parse("--target-port", "8080").settings(Target("http", "a", 1))
    assert default.trusts_forwarded_headers_from("127.0.0.1")
    assert default.trusts_forwarded_headers_from("::1")
    assert not default.trusts_forwarded_headers_from("203.0.113.9")
    everyone = parse("--target-port", "8080", "--forwarded-allow-ips", "*").settings(
        Target("http", "a", 1)
    )
    assert everyone.trusts_forwarded_headers_from("203.0.113.9")


def test_the_trust_remembered_per_address_belongs_to_its_settings() -> None:
    """Decisions are cached per address; a copy with other networks decides afresh."""
    settings = parse("--target-port", "8080").settings(Target("http", "a", 1))
    for _ in range(2):
        assert settings.trusts_forwarded_headers_from("127.0.0.1")
        assert not settings.trusts_forwarded_headers_from("10.1.2.3")
        assert not settings.trusts_forwarded_headers_from("not an address")
    gateway = replace(settings, forwarded_allow_ips=(ip_network("10.0.0.0/8"),))
    assert gateway.trusts_forwarded_headers_from("10.1.2.3")
    assert not gateway.trusts_forwarded_headers_from("127.0.0.1")
    assert settings.trusts_forwarded_headers_from("127.0.0.1")
    assert replace(gateway) == gateway and hash(replace(gateway)) == hash(gateway)


@pytest.mark.parametrize(
    "argv,complaint",
    [
        ([], "--target-port PORT or --target URL"),
        (["--target-port", "0"], "out of range"),
        (["--target-port", "8080", "--demo"], "choose one"),
        (["--target-port", "8080", "--log-level", "loud"], "unknown --log-level"),
        (["--target-port", "8080", "--host-header", "x"], "unknown --host-header"),
        (["--target", "http://a/?q"], "query"),
        (["--target-port", "8080", "--listen", "tcp:abc"], "not a valid endpoint"),
        (["--target-port", "8080", "--connect-timeout", "0"], "positive"),
        (["--target-port", "8080", "--pool-size", "0"], "positive"),
        (["--target-port", "8080", "--allow-origin", "evil.example"], "is not an origin"),
        (["--target-port", "8080", "--allow-origin", "https://a.example/path"], "is not an origin"),
        (["--target-port", "8080", "--max-sockets", "0"], "positive"),
        (["--target-port", "8080", "--ws-path", "/a/../b"], "--ws-path"),
    ],
)
def test_bad_options_exit_with_one_line(argv: list[str], complaint: str) -> None:
    with pytest.raises(SystemExit) as raised:
        parse(*argv)
    message = str(raised.value)
    assert message.startswith("wsse: error: ") and complaint in message
    assert "\n" not in message


def test_the_service_holds_one_listener_per_endpoint_and_checks_them_first() -> None:
    first, second = free_port(), free_port()
    options = parse(
        "--target-port", "8080",
        "--listen", f"tcp:{first}:interface=127.0.0.1",
        "--listen", f"tcp:{second}:interface=127.0.0.1",
    )  # fmt: skip
    service = makeService(options)
    listeners = [
        s for s in IServiceCollection(service) if isinstance(s, StreamServerEndpointService)
    ]
    assert len(listeners) == 2


def test_the_demo_adds_its_app_on_loopback() -> None:
    options = parse("--demo", "--listen", f"tcp:{free_port()}:interface=127.0.0.1")
    service = makeService(options)
    listeners = [
        s for s in IServiceCollection(service) if isinstance(s, StreamServerEndpointService)
    ]
    assert len(listeners) == 2


def test_the_fallback_s_defaults_and_options() -> None:
    default = parse("--target-port", "8080").settings(Target("http", "a", 1))
    assert (default.probe_timeout, default.heartbeat, default.grace) == (3.0, 5.0, 30.0)
    assert default.replay_buffer == 96 * 1024 * 1024
    assert not default.force_fallback
    options = parse(
        "--target-port", "8080", "--probe-timeout", "1.5", "--heartbeat", "2",
        "--grace", "60", "--replay-buffer", "8", "--force-fallback",
    )  # fmt: skip
    chosen = options.settings(options["target"])
    assert (chosen.probe_timeout, chosen.heartbeat, chosen.grace) == (1.5, 2.0, 60.0)
    assert chosen.replay_buffer == 8 * 1024 * 1024
    assert chosen.force_fallback


def test_the_security_defaults_and_options() -> None:
    default = parse("--target-port", "8080").settings(Target("http", "a", 1))
    assert default.allowed_origins == frozenset()
    assert (default.max_page_sockets, default.max_sockets) == (256, 20000)
    assert default.max_message_size == 64 * 1024 * 1024
    options = parse(
        "--target-port", "8080", "--allow-origin", "HTTPS://Tools.example:443",
        "--allow-origin", "http://127.0.0.1:9000", "--max-page-sockets", "8",
        "--max-sockets", "100", "--max-message-size", "2", "--ws-path", "ws/",
        "--ws-path", "/api/kernels",
    )  # fmt: skip
    chosen = options.settings(options["target"])
    assert chosen.allowed_origins == {"https://tools.example", "http://127.0.0.1:9000"}
    assert (chosen.max_page_sockets, chosen.max_sockets) == (8, 100)
    assert chosen.max_message_size == 2 * 1024 * 1024
    assert chosen.socket_paths == (b"/ws", b"/api/kernels")
    assert default.socket_paths == ()
    assert parse("--target-port", "8080")["idle-timeout"] == 75.0
