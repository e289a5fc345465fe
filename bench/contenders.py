"""
The contenders bench/compare.py measures, each a real process on 127.0.0.1 in
front of one bench app (bench/bench_app.py), started as context managers that
yield a L{Running} with the port to aim at and the PID to read CPU and memory
from.

  - C{direct}: the app itself (no proxy; its PID is the app's).
  - C{wsse}: C{python -m wsse --target http://127.0.0.1:APP --listen
    tcp:PORT:interface=127.0.0.1}, default options otherwise.
  - C{nginx}: one nginx process (C{worker_processes 1}, C{master_process off}),
    relaying WebSocket, C{proxy_buffering off} with a 64 KiB buffer (its
    default 4 KiB buffer passed a 1 MiB page on in 256 reads and writes, at a
    third of the rate), keep-alive to the app, access log off.  Not tests/support/gateways.py's C{"relay"} kind: that one sends
    C{Connection: close} to the upstream on every plain request (no upstream
    keep-alive) and writes an access log line per request, which would measure
    nginx's connection set-up rather than its relaying.
  - C{ws-sse-proxy} and C{ws-sse-proxy+uvicorn[standard]}: ws-sse-proxy 0.1.3
    from PyPI, as C{pip install ws-sse-proxy} installs it, and with
    C{uvicorn[standard]} added (uvloop, httptools), each in its own virtualenv
    cached under C{~/.cache/wsse-bench/} (or C{$WSSE_BENCH_CACHE}), created
    once under a file lock and marked ready by a marker file.  Run as
    C{ws-sse-proxy --target-port APP --target-host 127.0.0.1 --listen-port
    PORT --host 127.0.0.1} (its default C{--host} is 0.0.0.0).

Every contender runs at its own default log level (wsse and ws-sse-proxy both
log one line per request at C{info}), its output going to a file in the
harness's work directory (L{Running.log}, nginx's error log for nginx), which
the harness scans for warnings and errors once the run is over.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.processes import free_port, wait_for_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
WSSP_VERSION = "0.1.3"

#: Every contender, in the order the tables list them.
CONTENDERS = ("direct", "wsse", "nginx", "ws-sse-proxy", "ws-sse-proxy+uvicorn[standard]")
#: The contenders that cannot relay a real WebSocket (reported as 'cannot').
NO_WEBSOCKET = frozenset({"ws-sse-proxy", "ws-sse-proxy+uvicorn[standard]"})

_VENVS = {
    "ws-sse-proxy": (f"ws-sse-proxy-{WSSP_VERSION}", [f"ws-sse-proxy=={WSSP_VERSION}"]),
    "ws-sse-proxy+uvicorn[standard]": (
        f"ws-sse-proxy-{WSSP_VERSION}-uvicorn-standard",
        [f"ws-sse-proxy=={WSSP_VERSION}", "uvicorn[standard]"],
    ),
}

_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Running:
    """A contender that listens: where to send requests, and whose CPU and memory to read."""

    name: str
    port: int
    pid: int
    #: What it is (command line, versions), for the report.
    description: str = ""
    #: Where its output goes, to look for warnings and errors after the run.
    log: Path | None = None

    def pids(self) -> list[int]:
        """The contender's process and its descendants (a forking server counts whole)."""
        return [self.pid, *descendants(self.pid)]

    def cpu_seconds(self) -> float:
        """User plus system CPU time of the process tree so far."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss_kib(self) -> int:
        """Resident memory of the process tree, in KiB."""
        return sum(rss_kib(pid) for pid in self.pids())


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        fields = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every live descendant of C{pid}, found by scanning /proc for parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry))[1])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """Terminate, then kill if it lingers; always reap."""
    if process.poll() is None:
        try:
            process.terminate()
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    else:
        process.wait()


@contextmanager
def _process(
    args: list[str], port: int, log: Path | None = None, timeout: float = 60.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run C{args} until the block ends, once it listens on C{port}; stop it even on failure."""
    output = open(log, "wb") if log is not None else subprocess.DEVNULL
    try:
        process = subprocess.Popen(
            args,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[union-attr]
    try:
        try:
            wait_for_port(port, timeout, process=process)
        except (RuntimeError, TimeoutError) as e:
            tail = log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise RuntimeError(f"{args[0]} did not start: {e}\n{tail}") from e
        yield process
    finally:
        stop(process)


@contextmanager
def bench_app() -> Iterator[Running]:
    """The bench app on a free port."""
    port = free_port()
    with _process([sys.executable, str(ROOT / "bench" / "bench_app.py"), str(port)], port) as p:
        yield Running("app", port, p.pid, "bench/bench_app.py (asyncio, hand-written HTTP/WS)")


_TROUBLE = re.compile(r"error|warn|traceback|exception|critical", re.I)


def log_trouble(log: Path | None, keep: int = 20) -> dict[str, object]:
    """
    How many lines a contender wrote, and the first few that look like trouble
    (a warning, an error, a traceback): a benchmark that fails quietly is worse
    than none.
    """
    if log is None or not log.exists():
        return {"lines": 0, "trouble": 0, "first": []}
    lines = trouble = 0
    first: list[str] = []
    with open(log, errors="replace") as f:
        for line in f:
            lines += 1
            if _TROUBLE.search(line):
                trouble += 1
                if len(first) < keep:
                    first.append(line.rstrip()[:300])
    return {"lines": lines, "trouble": trouble, "first": first}


# -- ws-sse-proxy virtualenvs ---------------------------------------------------


def cache_dir() -> Path:
    """Where the ws-sse-proxy virtualenvs live (created once, reused by every run)."""
    base = os.environ.get("WSSE_BENCH_CACHE")
    return Path(base) if base else Path.home() / ".cache" / "wsse-bench"


def ensure_venv(name: str) -> Path:
    """
    The virtualenv for contender C{name}, created and filled by pip if it is not
    there yet.  A lock file serialises concurrent runs; the marker file is
    written last, so a half-made venv (an interrupted pip) is made again.
    """
    slug, requirements = _VENVS[name]
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    venv = base / slug
    marker = venv / ".wsse-bench-ready"
    wanted = "\n".join(requirements) + "\n"
    with open(base / f"{slug}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text() == wanted:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.write_text(wanted)
    return venv


def venv_versions(venv: Path) -> str:
    """The versions that matter in a ws-sse-proxy venv, for the report."""
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    keep = ("ws-sse-proxy", "uvicorn", "uvloop", "httptools", "starlette", "httpx", "websockets")
    return ", ".join(line for line in out.splitlines() if line.split("==")[0].lower() in keep)


# -- nginx ------------------------------------------------------------------------

_NGINX = """\
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_processes 1;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {dir}/temp/client_body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    access_log off;

    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 128;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
            proxy_buffer_size 64k;
            proxy_buffers 4 64k;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"""


def nginx_config(port: int, upstream: int, directory: Path) -> str:
    """The relay configuration described in the module docstring."""
    return _NGINX.format(dir=directory, port=port, upstream=upstream)


# -- contenders ----------------------------------------------------------------


@contextmanager
def contender(name: str, app: Running, workdir: Path) -> Iterator[Running]:
    """Contender C{name} in front of C{app}, until the block ends."""
    if name == "direct":
        yield Running(name, app.port, app.pid, app.description)
        return
    port = free_port()
    log = workdir / f"{name.replace('+', '-').replace('[', '-').replace(']', '')}.log"
    if name == "wsse":
        args = [
            sys.executable,
            "-m",
            "wsse",
            "--target",
            f"http://127.0.0.1:{app.port}",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        ]
        with _process(args, port, log=log) as process:
            yield Running(name, port, process.pid, "python -m wsse (default options)", log)
    elif name == "nginx":
        directory = Path(tempfile.mkdtemp(prefix="nginx-", dir=workdir))
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (directory / "temp" / sub).mkdir(parents=True, exist_ok=True)
        config = directory / "nginx.conf"
        config.write_text(nginx_config(port, app.port, directory))
        args = [
            NGINX,
            "-p",
            f"{directory}/",
            "-e",
            str(directory / "error.log"),
            "-c",
            str(config),
            "-g",
            "daemon off; master_process off;",
        ]
        version = subprocess.run([NGINX, "-v"], capture_output=True, text=True).stderr.strip()
        with _process(args, port, log=log) as process:
            yield Running(
                name,
                port,
                process.pid,
                f"{version}, 1 worker, keep-alive upstream",
                directory / "error.log",
            )
    elif name in _VENVS:
        venv = ensure_venv(name)
        args = [
            str(venv / "bin" / "ws-sse-proxy"),
            "--target-port",
            str(app.port),
            "--target-host",
            "127.0.0.1",
            "--listen-port",
            str(port),
            "--host",
            "127.0.0.1",
        ]
        with _process(args, port, log=log) as process:
            yield Running(name, port, process.pid, venv_versions(venv), log)
    else:
        raise ValueError(f"unknown contender {name!r}; expected one of {CONTENDERS}")
