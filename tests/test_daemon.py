"""
The init script (etc/init.d/wsse) driving a real daemonized twistd wsse.

Each test writes a defaults file under a temporary prefix, points the script at
it with WSSE_DEFAULTS, and runs C{sh etc/init.d/wsse ACTION} as an administrator
would, in front of a real HTTP app on loopback.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.processes import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
INIT_SCRIPT = ROOT / "etc" / "init.d" / "wsse"
TWISTD = Path(sys.executable).parent / "twistd"
PAGE = "<!doctype html><html><head><title>daemon test</title></head><body>app page</body></html>"

# No proxy from the environment between the test and loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def cmdline(pid: int) -> str:
    """The command line of a process, "" if it is gone or a zombie."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def alive(pid: int) -> bool:
    return cmdline(pid) != ""


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains C{text}."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and text in cmdline(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def get(port: int, path: str = "/") -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Sec-Fetch-Dest": "document"}
    )
    with _opener.open(request, timeout=10) as response:
        return response.status, response.read().decode("utf-8")


class Prefix:
    """A defaults file, pidfile and log file under one directory, and the script run on them."""

    def __init__(self, root: Path, app_port: int, twistd: Path = TWISTD) -> None:
        self.root = root
        self.app_port = app_port
        self.twistd = twistd
        self.port = free_port()
        self.defaults = root / "default" / "wsse"
        self.pidfile = root / "run" / "wsse" / "wsse.pid"
        self.logfile = root / "log" / "wsse" / "wsse.log"
        self.configure()

    def configure(self, opts: str | None = None, **settings: str) -> None:
        if opts is None:
            opts = (
                f"--target-port {self.app_port} --target-host 127.0.0.1 "
                f"--host 127.0.0.1 --listen-port {self.port}"
            )
        values = {
            "ENABLED": "yes",
            "WSSE_TWISTD": str(self.twistd),
            "WSSE_OPTS": opts,
            "WSSE_PIDFILE": str(self.pidfile),
            "WSSE_LOGFILE": str(self.logfile),
            "WSSE_RUNDIR": str(self.root),
            **settings,
        }
        self.defaults.parent.mkdir(parents=True, exist_ok=True)
        self.defaults.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))

    def run(self, action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(INIT_SCRIPT), action],
            check=False,
            env={**os.environ, "WSSE_DEFAULTS": str(self.defaults)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
        )

    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def cleanup(self) -> None:
        """Stop the daemon, then kill anything of ours the script missed."""
        if self.pidfile.exists():
            self.run("stop")
        for pid in processes_mentioning(str(self.pidfile)):
            os.kill(pid, signal.SIGKILL)


def assert_wsse_serving(prefix: Prefix) -> None:
    wait_for_port(prefix.port, timeout=5)
    status, body = get(prefix.port)
    assert status == 200
    assert "app page" in body
    assert "data-wsse=" in body, "the shim was not injected into the app's page"


def assert_wsse_process(pid: int) -> None:
    command = cmdline(pid)
    assert "twistd" in command and " wsse " in command, command


class App(NamedTuple):
    """A real HTTP app: http.server serving an index.html on loopback."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid


@pytest.fixture
def app(tmp_path: Path) -> Iterator[App]:
    directory = tmp_path / "www"
    directory.mkdir()
    (directory / "index.html").write_text(PAGE)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=process)
        yield App(process, port)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def prefix(tmp_path: Path, app: App) -> Iterator[Prefix]:
    p = Prefix(tmp_path / "prefix", app.port)
    try:
        yield p
    finally:
        p.cleanup()


def test_start_status_restart_stop(prefix: Prefix) -> None:
    started = prefix.run("start")
    assert started.returncode == 0, started.stdout
    assert prefix.pidfile.exists(), started.stdout
    pid = prefix.pid()
    assert_wsse_process(pid)
    assert_wsse_serving(prefix)

    status = prefix.run("status")
    assert status.returncode == 0, status.stdout
    assert str(pid) in status.stdout

    again = prefix.run("start")
    assert again.returncode == 0, again.stdout
    assert "already running" in again.stdout
    assert prefix.pid() == pid
    assert alive(pid)

    restarted = prefix.run("restart")
    assert restarted.returncode == 0, restarted.stdout
    new_pid = prefix.pid()
    assert new_pid != pid
    assert not alive(pid), "restart left the old daemon running"
    assert_wsse_process(new_pid)
    assert_wsse_serving(prefix)

    stopped = prefix.run("stop")
    assert stopped.returncode == 0, stopped.stdout
    assert not prefix.pidfile.exists()
    assert not alive(new_pid)

    status = prefix.run("status")
    assert status.returncode == 3, status.stdout

    again = prefix.run("stop")
    assert again.returncode == 0, again.stdout


@pytest.mark.parametrize(
    ("opts", "error"),
    [
        ("--target-port 99999", "out of range"),
        ("--target-port {app} --listen tcp:{port}:interface=10.255.255.1", "cannot listen"),
    ],
    ids=["bad-target-port", "unusable-listen-address"],
)
def test_bad_configuration_fails_to_start(prefix: Prefix, opts: str, error: str) -> None:
    prefix.configure(opts.format(app=prefix.app_port, port=prefix.port))
    started = prefix.run("start")
    assert started.returncode != 0, started.stdout
    assert error in started.stdout
    assert "failed to start" in started.stdout
    assert not prefix.pidfile.exists()
    assert processes_mentioning(str(prefix.pidfile)) == []
    status = prefix.run("status")
    assert status.returncode == 3, status.stdout


def test_stale_pidfile(prefix: Prefix, app: App) -> None:
    """A pidfile naming a dead process, or a live one that is not wsse, is stale."""
    exited = subprocess.Popen(["true"])
    exited.wait()
    for stale_pid in (exited.pid, app.pid):
        prefix.pidfile.parent.mkdir(parents=True, exist_ok=True)
        prefix.pidfile.write_text(f"{stale_pid}\n")
        status = prefix.run("status")
        assert status.returncode == 1, status.stdout
        stopped = prefix.run("stop")
        assert stopped.returncode == 0, stopped.stdout
        assert not prefix.pidfile.exists()
    assert app.process.poll() is None, "stop killed a process that is not wsse"

    prefix.pidfile.write_text(f"{app.pid}\n")
    started = prefix.run("start")
    assert started.returncode == 0, started.stdout
    assert prefix.pid() != app.pid
    assert_wsse_serving(prefix)


def test_disabled(prefix: Prefix) -> None:
    prefix.configure(ENABLED="no")
    started = prefix.run("start")
    assert started.returncode == 0, started.stdout
    assert "not starting" in started.stdout
    assert not prefix.pidfile.exists()
    assert prefix.run("status").returncode == 3


def log_has(path: Path, text: str) -> bool:
    try:
        return text in path.read_text()
    except FileNotFoundError:
        return False


def check_rotation(prefix: Prefix) -> None:
    """Move the log away as logrotate does; the daemon goes on in a new file."""
    get(prefix.port, "/?before-rotation")
    wait_until(lambda: log_has(prefix.logfile, "before-rotation"), 10, "the first access line")

    rotated = prefix.logfile.with_name(prefix.logfile.name + ".1")
    subprocess.run(["mv", str(prefix.logfile), str(rotated)], check=True)
    get(prefix.port, "/?after-rotation")
    wait_until(lambda: log_has(prefix.logfile, "after-rotation"), 10, "a new log file")

    assert "before-rotation" in rotated.read_text()
    assert "after-rotation" not in rotated.read_text()
    assert "before-rotation" not in prefix.logfile.read_text()


def test_log_rotation(prefix: Prefix) -> None:
    started = prefix.run("start")
    assert started.returncode == 0, started.stdout
    check_rotation(prefix)


def runs_as(user: pwd.struct_passwd, args: list[str]) -> bool:
    try:
        result = subprocess.run(
            args,
            check=False,
            user=user.pw_uid,
            group=user.pw_gid,
            extra_groups=[],
            cwd="/",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    except PermissionError:  # the interpreter itself cannot be executed
        return False
    return result.returncode == 0


# Can the Python runtime be read in full: wsse, and the standard library that
# the daemon imports lazily after twistd drops privileges?
_RUNTIME_CHECK = "import os, encodings, wsse.tap; os.listdir(os.path.dirname(encodings.__file__))"


def twistd_for(user: pwd.struct_passwd, directory: Path) -> Path:
    """
    A twistd that C{user} can run after twistd switches to it.

    The project's venv may be built on an interpreter the user cannot read (a
    pyenv under /root); then a venv on a same-version system Python, seeing the
    project's site-packages, stands in for it.
    """
    if runs_as(user, [str(TWISTD.parent / "python"), "-c", _RUNTIME_CHECK]):
        return TWISTD
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for base in (f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        if not os.access(base, os.X_OK) or not runs_as(user, [base, "-c", "pass"]):
            continue
        venv = directory / "venv"
        shutil.rmtree(venv, ignore_errors=True)
        made = subprocess.run(
            [base, "-m", "venv", "--without-pip", str(venv)], check=False, capture_output=True
        )
        if made.returncode != 0:
            continue
        python = venv / "bin" / "python"
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in site.getsitepackages())
        (Path(purelib) / "wsse-project.pth").write_text(lines)
        twistd = venv / "bin" / "twistd"
        twistd.write_text(
            f"#!{python}\nimport sys\nfrom twisted.scripts.twistd import run\nsys.exit(run())\n"
        )
        twistd.chmod(0o755)
        if runs_as(user, [str(python), "-c", _RUNTIME_CHECK]):
            return twistd
    pytest.skip(
        f"{user.pw_name} cannot run the project's Python ({TWISTD.parent / 'python'} resolves "
        f"to {os.path.realpath(TWISTD.parent / 'python')}), and no readable {version} was found "
        "to stand in for it"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another user needs root")
def test_runs_as_another_user(app: App) -> None:
    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    # pytest's tmp_path is inside a directory only its owner may enter.
    directory = Path(tempfile.mkdtemp(prefix="wsse-daemon-test-"))
    directory.chmod(0o755)
    prefix = None
    try:
        prefix = Prefix(directory, app.port, twistd_for(nobody, directory))
        prefix.configure(WSSE_USER="nobody", WSSE_GROUP=group)
        started = prefix.run("start")
        assert started.returncode == 0, started.stdout
        pid = prefix.pid()
        assert_wsse_process(pid)
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        assert [int(uid) for uid in fields["Uid"].split()] == [nobody.pw_uid] * 4
        assert [int(gid) for gid in fields["Gid"].split()] == [nobody.pw_gid] * 4
        # The script made the directories it created the daemon's.
        for made in (prefix.pidfile.parent, prefix.logfile.parent):
            assert made.stat().st_uid == nobody.pw_uid, made
        assert_wsse_serving(prefix)
        # As that user, the daemon can reopen its log after a rotation.
        check_rotation(prefix)
        assert prefix.logfile.stat().st_uid == nobody.pw_uid

        stopped = prefix.run("stop")
        assert stopped.returncode == 0, stopped.stdout
        assert not alive(pid)
        assert not prefix.pidfile.exists()
    finally:
        if prefix is not None:
            prefix.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
