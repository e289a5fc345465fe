"""
The init script (etc/init.d/wsse) driving a real daemonized twistd wsse.

Each test writes a defaults file under a temporary prefix, points the script at
it with WSSE_DEFAULTS, and runs C{sh etc/init.d/wsse ACTION} as an administrator
would, in front of a real HTTP app on loopback.  The log is rotated under the
running daemon by a real logrotate (/usr/sbin/logrotate; .ci/run installs it)
with the project's etc/logrotate.d/wsse.
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
import sysconfig
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
LOGROTATE_CONFIG = ROOT / "etc" / "logrotate.d" / "wsse"
LOGROTATE = Path("/usr/sbin/logrotate")
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


def test_logrotate_with_the_projects_config(prefix: Prefix, tmp_path: Path) -> None:
    """A real logrotate run of etc/logrotate.d/wsse, pointed at the prefix, under the daemon."""
    assert LOGROTATE.is_file(), (
        f"{LOGROTATE} is missing: install logrotate (apt-get install -y logrotate, as .ci/run does)"
    )
    started = prefix.run("start")
    assert started.returncode == 0, started.stdout
    get(prefix.port, "/?before-logrotate")
    wait_until(lambda: log_has(prefix.logfile, "before-logrotate"), 10, "the first access line")

    # The project's file as it ships, but for the prefix's log and the test's
    # own user and group (there may be no wsse user here, and a non-root
    # logrotate can only give files to itself).
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    text = LOGROTATE_CONFIG.read_text()
    for shipped, here in (
        ("/var/log/wsse/*.log", f"{prefix.logfile.parent}/*.log"),
        ("create 0640 wsse adm", f"create 0640 {user} {group}"),
    ):
        assert text.count(shipped) == 1, f"{shipped!r} is not in {LOGROTATE_CONFIG} once:\n{text}"
        text = text.replace(shipped, here)
    config = tmp_path / "logrotate.conf"
    config.write_text(text)
    config.chmod(0o644)  # logrotate ignores a config file others may write
    rotate = subprocess.run(
        [str(LOGROTATE), "-f", "-s", str(tmp_path / "logrotate.state"), str(config)],
        check=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
    )
    assert rotate.returncode == 0, rotate.stdout

    # delaycompress: the first rotation leaves wsse.log.1 uncompressed; create
    # puts an empty log in its place, with the configured mode.
    rotated = prefix.logfile.with_name(prefix.logfile.name + ".1")
    assert rotated.is_file(), sorted(p.name for p in prefix.logfile.parent.iterdir())
    assert prefix.logfile.stat().st_mode & 0o777 == 0o640
    get(prefix.port, "/?after-logrotate")
    wait_until(lambda: log_has(prefix.logfile, "after-logrotate"), 10, "a line in the new log")

    assert "before-logrotate" in rotated.read_text()
    assert "after-logrotate" not in rotated.read_text()
    assert "before-logrotate" not in prefix.logfile.read_text()
    status = prefix.run("status")
    assert status.returncode == 0, status.stdout


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


def see_project_site_packages(python: Path) -> None:
    """Put the project's site-packages on C{python}'s path, by a .pth file in its own."""
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib).mkdir(parents=True, exist_ok=True)
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in site.getsitepackages())
    (Path(purelib) / "wsse-project.pth").write_text(lines)
    (Path(purelib) / "wsse-project.pth").chmod(0o644)


# What the daemon never imports: left out of a copy of the standard library.
_NOT_COPIED = shutil.ignore_patterns(
    "site-packages",
    "dist-packages",
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "config-*",
    "__pycache__",
)


def interpreter_copy(directory: Path) -> Path:
    """
    A copy of the interpreter the project's venv runs on, readable by everyone,
    under C{directory}: its executable, its libpython when it is built shared,
    and its standard library, seeing the project's site-packages.  Returns the
    twistd that runs on it, next to a C{python} that runs the copy.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    home = directory / "python"
    shutil.rmtree(home, ignore_errors=True)
    (home / "bin").mkdir(parents=True)
    (home / "lib").mkdir()
    executable = home / "bin" / version
    shutil.copy2(os.path.realpath(sys.executable), executable)
    # The copy finds its standard library next to itself, as lib/pythonX.Y.
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, home / "lib" / version, ignore=_NOT_COPIED, symlinks=True)
    environment = ""
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        library = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("INSTSONAME")
        shutil.copy2(library, home / "lib" / library.name)
        # The executable's own search path names the unreadable original.
        environment = f"LD_LIBRARY_PATH={shlex.quote(str(home / 'lib'))}; export LD_LIBRARY_PATH\n"
    python = home / "bin" / "python"
    python.write_text(f'#!/bin/sh\n{environment}exec {shlex.quote(str(executable))} "$@"\n')
    main = home / "bin" / "twistd.py"
    main.write_text("import sys\nfrom twisted.scripts.twistd import run\nsys.exit(run())\n")
    twistd = home / "bin" / "twistd"
    twistd.write_text(
        f"#!/bin/sh\n{environment}"
        f'exec {shlex.quote(str(executable))} {shlex.quote(str(main))} "$@"\n'
    )
    for script in (python, twistd):
        script.chmod(0o755)
    see_project_site_packages(python)
    for parent, directories, files in os.walk(home):
        for name in directories:
            (Path(parent) / name).chmod(0o755)
        for name in files:
            path = Path(parent) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o444)
    return twistd


def twistd_for(user: pwd.struct_passwd, directory: Path) -> Path:
    """
    A twistd that C{user} can run after twistd switches to it.

    The project's venv may be built on an interpreter the user cannot read (a
    pyenv under /root); then a venv on a same-version system Python, seeing the
    project's site-packages, stands in for it, or where there is none, a copy
    of the project's own interpreter under C{directory}.
    """
    if user.pw_uid == os.geteuid():
        return TWISTD
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
        see_project_site_packages(python)
        twistd = venv / "bin" / "twistd"
        twistd.write_text(
            f"#!{python}\nimport sys\nfrom twisted.scripts.twistd import run\nsys.exit(run())\n"
        )
        twistd.chmod(0o755)
        if runs_as(user, [str(python), "-c", _RUNTIME_CHECK]):
            return twistd
    twistd = interpreter_copy(directory)
    python = twistd.with_name("python")
    assert runs_as(user, [str(python), "-c", _RUNTIME_CHECK]), (
        f"{user.pw_name} cannot run {python}, a copy of the project's interpreter "
        f"({os.path.realpath(TWISTD.parent / 'python')})"
    )
    return twistd


def test_runs_as_the_configured_user(app: App) -> None:
    """
    With WSSE_USER and WSSE_GROUP, the script gives the directories and log it
    creates to that user, and twistd switches to it after binding.

    As root, the daemon runs as nobody.  Without root there is no other user
    to switch to, and a skipped test counts as a defect here, so the test then
    names its own user and group: the script still takes its WSSE_USER path
    (chown of what it creates, twistd's --uid and --gid), twistd switches to
    the ids it already has (it warns, and goes on), and every check below
    still holds.  Leaving --uid and --gid out instead would test less of the
    script.
    """
    if os.geteuid() == 0:
        user = pwd.getpwnam("nobody")
        gid = user.pw_gid
    else:
        user = pwd.getpwuid(os.geteuid())
        gid = os.getegid()
    group = grp.getgrgid(gid).gr_name
    # pytest's tmp_path is inside a directory only its owner may enter.
    directory = Path(tempfile.mkdtemp(prefix="wsse-daemon-test-"))
    directory.chmod(0o755)
    prefix = None
    try:
        prefix = Prefix(directory, app.port, twistd_for(user, directory))
        prefix.configure(WSSE_USER=user.pw_name, WSSE_GROUP=group)
        started = prefix.run("start")
        assert started.returncode == 0, started.stdout
        pid = prefix.pid()
        assert_wsse_process(pid)
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        assert [int(value) for value in fields["Uid"].split()] == [user.pw_uid] * 4
        assert [int(value) for value in fields["Gid"].split()] == [gid] * 4
        # The script made the directories it created the daemon's.
        for made in (prefix.pidfile.parent, prefix.logfile.parent):
            assert made.stat().st_uid == user.pw_uid, made
            assert made.stat().st_gid == gid, made
        assert_wsse_serving(prefix)
        # As that user, the daemon can reopen its log after a rotation.
        check_rotation(prefix)
        assert prefix.logfile.stat().st_uid == user.pw_uid

        stopped = prefix.run("stop")
        assert stopped.returncode == 0, stopped.stdout
        assert not alive(pid)
        assert not prefix.pidfile.exists()
    finally:
        if prefix is not None:
            prefix.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
