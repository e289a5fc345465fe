"""
wsse as users get it: the wheel's contents, a fresh install as the README
says (C{pip install .} in the project directory), an editable install, and an
uninstall, each in its own virtual environment.

The twistd plugin ships as C{twisted/plugins/wsse_plugin.py} and nothing else
under C{twisted/}: a wheel that carried C{twisted/__init__.py} or
C{twisted/plugins/__init__.py} would overwrite Twisted's own on install and
remove them on uninstall, breaking every twistd plugin.

Every command in a fresh environment but the README's C{pip install .} runs
from a scratch directory, so that nothing is imported from the source tree by
accident.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port, running, wait_for_port

INSTALL_TIMEOUT = 900
COMMAND_TIMEOUT = 120

OPTIONS = [
    "--target-port",
    "--listen-port",
    "--target-host",
    "--host",
    "--log-level",
    "--listen",
    "--target",
    "--demo",
]

LIST_PLUGINS = (
    "from twisted.plugin import IPlugin, getPlugins; "
    "from twisted.application.service import IServiceMaker; "
    "print([p.tapname for p in getPlugins(IServiceMaker)])"
)


def _clean_env() -> dict[str, str]:
    """The environment without anything pointing at the test run's own venv."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(
    args: list[str | Path], cwd: Path, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        check=False,
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output}"
    return output


@dataclass
class Venv:
    root: Path
    scratch: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def run(
        self, *args: str | Path, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return _run(list(args), cwd=self.scratch, timeout=timeout)

    def site_packages(self) -> Path:
        found = list((self.root / "lib").glob("python*/site-packages"))
        assert len(found) == 1, found
        return found[0]


def _make_venv(where: Path) -> Venv:
    scratch = where / "scratch"
    scratch.mkdir(parents=True)
    root = where / "venv"
    _check(_run([sys.executable, "-m", "venv", root], cwd=scratch, timeout=COMMAND_TIMEOUT))
    return Venv(root, scratch)


def _twistd_plugin_names(help_text: str) -> list[str]:
    """The plugin names in C{twistd --help}'s "Commands:" section."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Commands:")
    return [
        line.split()[0]
        for line in lines[start + 1 :]
        if line.startswith("    ") and len(line) > 4 and not line[4].isspace()
    ]


def _assert_lists_options(output: str) -> None:
    for option in OPTIONS:
        assert option + ("" if option == "--demo" else "=") in output, (
            f"{option} missing from:\n{output}"
        )


# -- the wheel ---------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", out, ROOT],
        cwd=out,
        timeout=INSTALL_TIMEOUT,
    )
    _check(result)
    wheels = list(out.glob("wsse-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_the_package_shim_and_plugin(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "twisted/plugins/wsse_plugin.py",
        "wsse/shim/wsse-shim.js",
        "wsse/py.typed",
        "wsse/tap.py",
        "wsse/__main__.py",
        "wsse/_cli.py",
    ):
        assert name in names, f"{name} missing from {wheel.name}: {sorted(names)}"


def test_wheel_does_not_overwrite_twisted(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not [n for n in names if n.endswith("dropin.cache")]
    # Under twisted/, only the plugin stub.
    assert sorted(n for n in names if n.startswith("twisted/")) == [
        "twisted/plugins/wsse_plugin.py"
    ]


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    [entry_points] = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = archive.read(entry_points).decode()
    assert "[console_scripts]" in text
    assert "wsse = wsse._cli:main" in text


# -- a fresh install, as the README says ---------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv with wsse installed by the README's command: C{pip install .} in the project."""
    venv = _make_venv(tmp_path_factory.mktemp("installed"))
    _check(_run([venv.bin / "pip", "install", "."], cwd=ROOT, timeout=INSTALL_TIMEOUT))
    return venv


def test_installed_twistd_lists_wsse(installed: Venv) -> None:
    output = _check(installed.run(installed.bin / "twistd", "--help"))
    assert "wsse" in _twistd_plugin_names(output), output
    # Twisted's own plugins are still there.
    assert "web" in _twistd_plugin_names(output), output


def test_installed_twisted_package_is_twisteds(installed: Venv) -> None:
    plugins = installed.site_packages() / "twisted" / "plugins"
    assert (plugins / "wsse_plugin.py").is_file()
    assert (plugins / "__init__.py").is_file()
    assert (plugins / "twisted_web.py").is_file()
    assert (installed.site_packages() / "twisted" / "__init__.py").is_file()
    # The plugin module is found at its installed place, not in the source tree.
    output = _check(
        installed.run(
            installed.bin / "python",
            "-c",
            "import twisted.plugins.wsse_plugin as m; print(m.__file__)",
        )
    )
    assert str(plugins / "wsse_plugin.py") in output, output
    output = _check(
        installed.run(installed.bin / "python", "-c", "import wsse; print(wsse.__file__)")
    )
    assert str(installed.site_packages() / "wsse") in output, output


def test_installed_twistd_wsse_help(installed: Venv) -> None:
    output = _check(installed.run(installed.bin / "twistd", "wsse", "--help"))
    assert "Traceback" not in output
    _assert_lists_options(output)


def test_installed_console_script_help(installed: Venv) -> None:
    output = _check(installed.run(installed.bin / "wsse", "--help"))
    assert "Traceback" not in output
    _assert_lists_options(output)


def test_installed_python_m_wsse_help(installed: Venv) -> None:
    output = _check(installed.run(installed.bin / "python", "-m", "wsse", "--help"))
    assert "Traceback" not in output
    _assert_lists_options(output)


def test_installed_get_plugins_finds_wsse(installed: Venv) -> None:
    output = _check(installed.run(installed.bin / "python", "-c", LIST_PLUGINS))
    assert "'wsse'" in output, output


@pytest.fixture
def app(tmp_path: Path) -> Iterator[int]:
    """A real app: Python's http.server on 127.0.0.1, serving one HTML page."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(
        "<!DOCTYPE html><html><head><title>packaged app</title></head>"
        "<body><p>packaged-app-content</p></body></html>"
    )
    port = free_port()
    with running(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(site),
        ],
        port,
    ):
        yield port


def test_installed_twistd_serves_an_app(installed: Venv, app: int, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "wsse.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                str(installed.bin / "twistd"),
                "-n",
                "--pidfile=",
                "wsse",
                "--target-port",
                str(app),
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
            ],
            cwd=installed.scratch,
            env=_clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, timeout=30, process=process)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/", headers={"Sec-Fetch-Dest": "document"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            page = response.read().decode()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert "packaged-app-content" in page, page
    assert "data-wsse=" in page, page
    assert "Traceback" not in log.read_text(), log.read_text()


# -- an editable install, then its uninstall -----------------------------------


@pytest.fixture(scope="module")
def editable(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = _make_venv(tmp_path_factory.mktemp("editable"))
    _check(
        venv.run(venv.bin / "python", "-m", "pip", "install", "-e", ROOT, timeout=INSTALL_TIMEOUT)
    )
    return venv


def test_editable_twistd_lists_wsse(editable: Venv) -> None:
    output = _check(editable.run(editable.bin / "twistd", "--help"))
    assert "wsse" in _twistd_plugin_names(output), output


def test_editable_twistd_wsse_help(editable: Venv) -> None:
    output = _check(editable.run(editable.bin / "twistd", "wsse", "--help"))
    assert "Traceback" not in output
    _assert_lists_options(output)


def test_editable_uninstall_leaves_twisted_working(editable: Venv) -> None:
    # Runs after the other editable tests (file order): it removes wsse.
    plugins = editable.site_packages() / "twisted" / "plugins"
    # twistd has run above, so the plugin cache holds wsse.
    _check(editable.run(editable.bin / "twistd", "--help"))
    _check(editable.run(editable.bin / "python", "-m", "pip", "uninstall", "-y", "wsse"))
    assert (plugins / "__init__.py").is_file(), (
        "uninstalling wsse removed Twisted's plugins/__init__.py"
    )
    assert (editable.site_packages() / "twisted" / "__init__.py").is_file()
    assert not (plugins / "wsse_plugin.py").exists()
    output = _check(editable.run(editable.bin / "twistd", "--help"))
    names = _twistd_plugin_names(output)
    assert "wsse" not in names, output
    assert "web" in names, output
    output = _check(editable.run(editable.bin / "python", "-c", LIST_PLUGINS))
    assert "'wsse'" not in output, output
