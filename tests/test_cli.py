"""
wsse's command line, run as real processes: C{twistd wsse} in the foreground
and as a daemon, and C{python -m wsse}.

Bad options end the process with one C{wsse: error:} line and a non-zero exit
status, never a traceback nor twistd's whole help, and a daemon that cannot
start says so before it forks instead of hanging or reporting "An error has
occurred".  Good options serve the app, log, and stop cleanly on SIGTERM;
an C{ssl:} endpoint serves it over https and wss.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as connect_async
from websockets.sync.client import connect

from tests.support.processes import BIN, ROOT, free_port, running, wait_for_port
from tests.support.tls import Certificate

TWISTD = str(BIN / "twistd")
PYTHON = sys.executable

# An address no interface of this machine has (and nothing routes to).
UNUSABLE = "10.255.255.1"


# -- bad options ----------------------------------------------------------------

# Each case: its options, with {port} for a free (or, for "in use", a busy) port.
BAD = {
    "no-target": [],
    "target-port-0": ["--target-port", "0"],
    "target-port-70000": ["--target-port", "70000"],
    "target-port-abc": ["--target-port", "abc"],
    "log-level-loud": ["--target-port", "8080", "--log-level", "loud"],
    "target-ftp": ["--target", "ftp://x"],
    "two-targets": ["--target-port", "8080", "--target", "http://127.0.0.1:9"],
    "host-header-bogus": ["--target-port", "8080", "--host-header", "bogus"],
    "listen-unusable-interface": [
        "--target-port",
        "8080",
        "--listen",
        f"tcp:{{port}}:interface={UNUSABLE}",
    ],
    "host-unusable": ["--target-port", "8080", "--host", UNUSABLE, "--listen-port", "{port}"],
    "port-in-use": ["--target-port", "8080", "--listen", "tcp:{port}:interface=127.0.0.1"],
    "listen-unknown-endpoint-type": ["--target-port", "8080", "--listen", "nonsense:1"],
    "listen-tcp-port-abc": ["--target-port", "8080", "--listen", "tcp:abc"],
    "listen-unix-missing-directory": [
        "--target-port",
        "8080",
        "--listen",
        "unix:/nonexistent/dir/wsse.sock",
    ],
    "forwarded-allow-ips-prefix-33": [
        "--target-port",
        "8080",
        "--forwarded-allow-ips",
        "10.0.0.0/33",
    ],
}

MODES = ["twistd-nodaemon", "twistd-daemon", "python-m-wsse"]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def _command(mode: str, options: list[str], tmp_path: Path) -> list[str]:
    if mode == "twistd-nodaemon":
        return [TWISTD, "-n", "--pidfile=", "wsse", *options]
    if mode == "twistd-daemon":
        return [
            TWISTD,
            f"--pidfile={tmp_path / 'p.pid'}",
            f"--logfile={tmp_path / 'l.log'}",
            "wsse",
            *options,
        ]
    return [PYTHON, "-m", "wsse", *options]


def _end_stray_daemon(pidfile: Path) -> int | None:
    """If a daemon started after all, end it (by its pid) and say which it was."""
    if not pidfile.exists():
        return None
    try:
        pid = int(pidfile.read_text().strip())
    except ValueError:
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_options_fail_with_one_line(
    case: str, mode: str, tmp_path: Path, busy_port: int
) -> None:
    port = busy_port if case == "port-in-use" else free_port()
    options = [o.format(port=port) for o in BAD[case]]
    command = _command(mode, options, tmp_path)
    try:
        result = subprocess.run(
            command,
            check=False,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=30,
        )
    finally:
        stray = _end_stray_daemon(tmp_path / "p.pid")
    assert stray is None, f"{command} started a daemon (pid {stray}) instead of failing"
    output = result.stdout
    lines = [line for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "wsse: error:" in line]
    assert result.returncode != 0, f"{command} exited 0:\n{output}"
    assert "Traceback" not in output, output
    assert len(errors) == 1, f"expected one 'wsse: error:' line from {command}:\n{output}"
    assert "Usage:" not in output, f"the whole help printed:\n{output}"
    if mode == "python-m-wsse":
        assert lines == errors, f"more than the error line:\n{output}"
        assert lines[0].startswith("wsse: error:"), output
    elif mode == "twistd-nodaemon":
        # At most twistd's own start-up lines, then the error.
        assert len(lines) <= 3, output
        assert lines[-1].startswith("wsse: error:"), output
    if case in ("listen-unusable-interface", "host-unusable", "port-in-use"):
        assert str(port) in errors[0], errors[0]


# -- good options ---------------------------------------------------------------


APP_CONTENT = "cli-test-app-content"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[int]:
    """A real app: Python's http.server on 127.0.0.1, serving one HTML page."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        f"<!DOCTYPE html><html><head><title>app</title></head><body><p>{APP_CONTENT}</p></body></html>"
    )
    port = free_port()
    with running(
        [PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        port,
    ):
        yield port


def _get_page(port: int, path: str = "/", context: ssl.SSLContext | None = None) -> str:
    """A page as a browser navigating to it asks for it; over https when given a TLS context."""
    scheme = "http" if context is None else "https"
    request = urllib.request.Request(
        f"{scheme}://127.0.0.1:{port}{path}", headers={"Sec-Fetch-Dest": "document"}
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        assert response.status == 200
        return response.read().decode()


def _assert_served_with_shim(port: int) -> None:
    page = _get_page(port)
    assert APP_CONTENT in page, page
    assert "data-wsse=" in page, page


def _stop(process: subprocess.Popen[bytes], within: float = 5.0) -> int:
    """SIGTERM, then the exit status, which must come within a few seconds."""
    process.send_signal(signal.SIGTERM)
    return process.wait(within)


# twistd ends a clean shutdown caused by a signal by re-raising that signal on
# itself (twisted.scripts.twistd.runApp, app._exitWithSignal), so its status is
# -SIGTERM; the wsse command exits 0.
TWISTD_SIGTERM_STATUS = (0, -signal.SIGTERM)


def _assert_clean_twistd_exit(status: int, log: str) -> None:
    assert status in TWISTD_SIGTERM_STATUS, status
    assert "Main loop terminated." in log, log
    assert "Traceback" not in log, log


def _listening_line(log: str) -> str:
    lines = [line for line in log.splitlines() if "listening on" in line]
    assert lines, f"no 'listening on' line in:\n{log}"
    return lines[0]


def test_python_m_wsse_serves_logs_and_stops_on_sigterm(app: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    listen = f"tcp:{port}:interface=127.0.0.1"
    with running(
        [PYTHON, "-m", "wsse", "--target-port", str(app), "--listen", listen], port, log=log
    ) as process:
        _assert_served_with_shim(port)
        started = time.monotonic()
        assert _stop(process) == 0
        assert time.monotonic() - started < 5
    output = log.read_text()
    assert "Traceback" not in output, output
    access = [line for line in output.splitlines() if "GET /" in line]
    assert access, f"no access line in:\n{output}"
    assert "200" in access[0], access[0]
    line = _listening_line(output)
    assert listen in line, line
    assert f":{app}" in line, line


def test_python_m_wsse_log_level_warning_hides_access_lines(app: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        PYTHON, "-m", "wsse", "--target-port", str(app),
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--log-level", "warning",
    ]  # fmt: skip
    with running(command, port, log=log) as process:
        _assert_served_with_shim(port)
        assert _stop(process) == 0
    output = log.read_text()
    assert "GET /" not in output, output
    assert "Traceback" not in output, output


def test_twistd_wsse_log_level_warning_hides_access_lines(app: int, tmp_path: Path) -> None:
    """twistd's own observer takes everything: wsse filters its events where they start."""
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        TWISTD, "-n", "--pidfile=", "wsse", "--target-port", str(app),
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--log-level", "warning",
    ]  # fmt: skip
    with running(command, port, log=log) as process:
        _assert_served_with_shim(port)
        status = _stop(process)
    output = log.read_text()
    _assert_clean_twistd_exit(status, output)
    assert "GET /" not in output, output


def test_twistd_pidfile_is_written_and_removed(app: int, tmp_path: Path) -> None:
    port = free_port()
    pidfile = tmp_path / "w.pid"
    log = tmp_path / "wsse.log"
    command = [
        TWISTD, "-n", f"--pidfile={pidfile}", "wsse", "--target-port", str(app),
        "--listen", f"tcp:{port}:interface=127.0.0.1",
    ]  # fmt: skip
    with running(command, port, log=log) as process:
        deadline = time.monotonic() + 10
        while (
            not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert pidfile.exists(), "twistd wrote no pidfile"
        assert int(pidfile.read_text().strip()) == process.pid
        _assert_served_with_shim(port)
        status = _stop(process)
    assert not pidfile.exists(), "twistd left its pidfile behind"
    output = log.read_text()
    _assert_clean_twistd_exit(status, output)
    line = _listening_line(output)
    assert f"tcp:{port}:interface=127.0.0.1" in line, line
    assert f":{app}" in line, line
    assert "GET /" in output, output


def test_twistd_daemon_with_logfile_serves_and_stops(app: int, tmp_path: Path) -> None:
    """Daemonized as an init script would run it: --pidfile and --logfile as twistd defines them."""
    port = free_port()
    pidfile, logfile = tmp_path / "d.pid", tmp_path / "d.log"
    started = subprocess.run(
        [
            TWISTD, f"--pidfile={pidfile}", f"--logfile={logfile}", "wsse",
            "--target-port", str(app), "--listen", f"tcp:{port}:interface=127.0.0.1",
        ],
        capture_output=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert started.returncode == 0, started
    pid = int(pidfile.read_text())
    try:
        wait_for_port(port)
        _assert_served_with_shim(port)
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pidfile.exists(), "the daemon did not stop and remove its pidfile"
    log = logfile.read_text()
    assert "listening on" in log and "GET / " in log, log
    assert "Traceback" not in log, log


def test_host_and_listen_port_options(app: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        PYTHON, "-m", "wsse", "--target-host", "127.0.0.1", "--target-port", str(app),
        "--host", "127.0.0.1", "--listen-port", str(port),
    ]  # fmt: skip
    with running(command, port, log=log) as process:
        _assert_served_with_shim(port)
        assert _stop(process) == 0
    output = log.read_text()
    line = _listening_line(output)
    assert f"tcp:{port}:interface=127.0.0.1" in line, line
    assert f"127.0.0.1:{app}" in line, line


def test_idle_keep_alive_connections_close_after_the_idle_timeout(app: int, tmp_path: Path) -> None:
    port = free_port()
    command = [
        PYTHON, "-m", "wsse", "--target", f"http://127.0.0.1:{app}",
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--idle-timeout", "1",
    ]  # fmt: skip
    with running(command, port, log=tmp_path / "wsse.log") as process:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"</html>" not in received.lower():
                received += client.recv(65536)
            # Kept alive, then closed by wsse once idle for a second (the
            # generous socket timeout only stops a broken test hanging).
            while chunk := client.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200")
        assert _stop(process) == 0


def test_host_and_listen_port_options_under_twistd(app: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        TWISTD, "-n", "--pidfile=", "wsse", "--target-port", str(app),
        "--host", "127.0.0.1", "--listen-port", str(port),
    ]  # fmt: skip
    with running(command, port, log=log) as process:
        _assert_served_with_shim(port)
        status = _stop(process)
    _assert_clean_twistd_exit(status, log.read_text())


def test_target_url(app: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        PYTHON,
        "-m",
        "wsse",
        "--target",
        f"http://127.0.0.1:{app}",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
    ]
    with running(command, port, log=log) as process:
        _assert_served_with_shim(port)
        assert _stop(process) == 0
    line = _listening_line(log.read_text())
    assert f"http://127.0.0.1:{app}" in line, line


@pytest.mark.parametrize("launcher", ["python-m-wsse", "twistd-nodaemon"])
def test_demo_serves_its_page_and_echoes(launcher: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    options = ["--demo", "--listen", f"tcp:{port}:interface=127.0.0.1"]
    if launcher == "python-m-wsse":
        command = [PYTHON, "-m", "wsse", *options]
    else:
        command = [TWISTD, "-n", "--pidfile=", "wsse", *options]
    with running(command, port, log=log) as process:
        page = _get_page(port)
        assert "wsse demo" in page, page
        assert "data-wsse=" in page, page
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, close_timeout=5) as ws:
            welcome = ws.recv(timeout=10)
            assert "welcome" in str(welcome), welcome
            message = json.dumps({"hello": "through wsse"})
            ws.send(message)
            assert ws.recv(timeout=10) == message
        status = _stop(process)
    output = log.read_text()
    if launcher == "python-m-wsse":
        assert status == 0
        assert "Traceback" not in output, output
    else:
        _assert_clean_twistd_exit(status, output)
    line = _listening_line(output)
    assert f"tcp:{port}:interface=127.0.0.1" in line, line


def test_sigint_stops_python_m_wsse(app: int, tmp_path: Path) -> None:
    """Ctrl-C, as the module docstring promises: a clean stop, no traceback."""
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        PYTHON,
        "-m",
        "wsse",
        "--target-port",
        str(app),
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
    ]
    with running(command, port, log=log) as process:
        # A response means the reactor runs, with its signal handlers installed.
        _assert_served_with_shim(port)
        process.send_signal(signal.SIGINT)
        assert process.wait(5) == 0
    assert "Traceback" not in log.read_text(), log.read_text()


def test_listen_on_two_endpoints(app: int, tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    while second == first:
        second = free_port()
    log = tmp_path / "wsse.log"
    command = [
        PYTHON, "-m", "wsse", "--target-port", str(app),
        "--listen", f"tcp:{first}:interface=127.0.0.1",
        "--listen", f"tcp:{second}:interface=127.0.0.1",
    ]  # fmt: skip
    with running(command, first, log=log) as process:
        wait_for_port(second, process=process)
        _assert_served_with_shim(first)
        _assert_served_with_shim(second)
        assert _stop(process) == 0
    listening = [line for line in log.read_text().splitlines() if "listening on" in line]
    assert len(listening) == 2, listening


def test_help_exits_zero_without_traceback() -> None:
    for command in ([TWISTD, "wsse", "--help"], [PYTHON, "-m", "wsse", "--help"]):
        result = subprocess.run(
            command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "--target-port=" in result.stdout
        assert "Traceback" not in result.stdout + result.stderr


# -- TLS: an ssl: endpoint --------------------------------------------------------


# An app that answers every GET with the request headers it received, as JSON
# pairs (repeated headers stay separate).
ECHO_HEADERS_APP = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(list(self.headers.items())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


@pytest.fixture
def echo_headers_app() -> Iterator[int]:
    port = free_port()
    with running([PYTHON, "-c", ECHO_HEADERS_APP, str(port)], port):
        yield port


def test_python_m_wsse_serves_over_tls(app: int, certificate: Certificate, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    listen = certificate.listen(port)
    with running(
        [PYTHON, "-m", "wsse", "--target-port", str(app), "--listen", listen], port, log=log
    ) as process:
        page = _get_page(port, context=certificate.context)
        assert APP_CONTENT in page, page
        assert "data-wsse=" in page, page
        assert _stop(process) == 0
    output = log.read_text()
    assert "Traceback" not in output, output
    line = _listening_line(output)
    assert f"ssl:{port}:" in line, line


def test_app_behind_tls_sees_forwarded_proto_https(
    echo_headers_app: int, certificate: Certificate, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    command = [
        PYTHON, "-m", "wsse", "--target-port", str(echo_headers_app),
        "--listen", certificate.listen(port),
    ]  # fmt: skip
    with running(command, port, log=log) as process:
        request = urllib.request.Request(f"https://127.0.0.1:{port}/headers")
        with urllib.request.urlopen(request, timeout=10, context=certificate.context) as response:
            assert response.status == 200
            received = json.loads(response.read())
        assert _stop(process) == 0
    forwarded = [value for name, value in received if name.lower() == "x-forwarded-proto"]
    assert forwarded == ["https"], received
    assert "Traceback" not in log.read_text(), log.read_text()


async def _welcome_and_echo_over_wss(
    port: int, certificate: Certificate, message: str
) -> tuple[str | bytes, str | bytes]:
    """The demo's welcome and the echo of `message`, over wss.

    The asyncio client, not the threaded one: the threaded client reads in one thread while it
    writes its handshake in another, and OpenSSL's connection objects are not safe for that (a
    TLS 1.3 session ticket arriving meanwhile fails the write with "internal error").
    """
    async with connect_async(
        f"wss://127.0.0.1:{port}/ws", ssl=certificate.context, open_timeout=10, close_timeout=5
    ) as ws:
        welcome = await asyncio.wait_for(ws.recv(), 10)
        await ws.send(message)
        return welcome, await asyncio.wait_for(ws.recv(), 10)


@pytest.mark.parametrize("launcher", ["python-m-wsse", "twistd-nodaemon"])
def test_demo_over_tls_serves_its_page_and_echoes_over_wss(
    launcher: str, certificate: Certificate, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    options = ["--demo", "--listen", certificate.listen(port)]
    if launcher == "python-m-wsse":
        command = [PYTHON, "-m", "wsse", *options]
    else:
        command = [TWISTD, "-n", "--pidfile=", "wsse", *options]
    with running(command, port, log=log) as process:
        page = _get_page(port, context=certificate.context)
        assert "wsse demo" in page, page
        assert "data-wsse=" in page, page
        message = json.dumps({"hello": "through wsse over TLS"})
        welcome, echoed = asyncio.run(_welcome_and_echo_over_wss(port, certificate, message))
        assert "welcome" in str(welcome), welcome
        assert echoed == message
        status = _stop(process)
    output = log.read_text()
    if launcher == "python-m-wsse":
        assert status == 0
        assert "Traceback" not in output, output
    else:
        _assert_clean_twistd_exit(status, output)
    line = _listening_line(output)
    assert f"ssl:{port}:" in line, line
