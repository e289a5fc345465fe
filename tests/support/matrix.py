"""
The end-to-end matrix's parts: real apps in their own virtual environments,
what a browser does with each, and the table of results.

Apps (L{APPS}):

  - C{marimo}: C{marimo edit --headless --no-token} on a one-cell notebook
    (C{value = 6 * 7}); the interaction edits the cell to C{6 * 9} and runs it,
    and is done when the cell's output says 54.  marimo's socket URL carries
    a query (C{/ws?session_id=...}).
  - C{bokeh}: C{bokeh serve} on L{BOKEH_APP} (a slider, a line, a status
    line); the interaction moves the slider one step and is done when the
    line's data in the browser's document have changed.  Bokeh checks the
    socket's C{Origin} (C{--allow-websocket-origin} names the gateway) and
    sends its session token in the subprotocol.  Its resources are inlined
    (C{BOKEH_RESOURCES=inline}): Bokeh's own C{/static/} URLs are absolute,
    which a gateway that mounts the app under a prefix breaks with or without
    wsse.
  - C{sockets}: L{tests.support.sockets_app}, three tabs with eight sockets
    each; the interaction pings from every tab and is done when every socket
    of every tab has answered and seen every tab's ping.

marimo and Bokeh are installed, pinned, each in its own virtual environment
under L{CACHE} (C{$WSSE_MATRIX_CACHE}, by default C{~/.cache/wsse-matrix}),
made on first use and reused after; a lock keeps two runs from making the same
one at once.

Gateways (L{GATEWAYS}) are the kinds of L{tests.support.gateways}; C{cut} is the
relay that cuts every connection after L{CUT_AFTER} seconds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path

from playwright.sync_api import BrowserContext, Page

from tests.support.processes import ROOT, free_port, running
from wsse._settings import Settings

ARTIFACTS = ROOT / "test-artifacts" / "matrix"
CACHE = Path(os.environ.get("WSSE_MATRIX_CACHE", Path.home() / ".cache" / "wsse-matrix"))
MARIMO = "marimo==0.25.2"
BOKEH = "bokeh==3.9.2"

GATEWAYS = ("relay", "strip", "buffer", "prefix", "noquery", "cut")
GATEWAY_TITLES = {
    "relay": "1 relays WebSocket",
    "strip": "2 strips Upgrade",
    "buffer": "3 strips Upgrade, holds events back",
    "prefix": "4 mounts under /proxy/8081/",
    "noquery": "5 drops the query of upgrades",
    "cut": "6 cuts connections after 10 s",
}
# Where the browser's own WebSocket must work (and the fallback must not be used).
NATIVE_GATEWAYS = ("relay", "noquery")
CUT_AFTER = 10.0
# wsse's default, which the matrix runs with.
PROBE_TIMEOUT: float = next(f.default for f in fields(Settings) if f.name == "probe_timeout")
# How long one interaction may take before the case fails.
INTERACTION_TIMEOUT_MS = 60_000
# How long an app may take to start listening.
APP_START_TIMEOUT = 90.0

BOKEH_APP = """\
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, Div, Slider
from bokeh.plotting import figure

xs = [x / 10 for x in range(11)]
source = ColumnDataSource(data={"x": xs, "y": xs}, name="curve")
plot = figure(height=250, width=400, title="y = x ** power")
plot.line("x", "y", source=source, line_width=2)
slider = Slider(start=1, end=5, value=1, step=1, title="power", name="power")
status = Div(text="power 1", name="status")


def update(attr, old, new):
    source.data = {"x": xs, "y": [x**new for x in xs]}
    status.text = f"power {new}"


slider.on_change("value", update)
curdoc().add_root(column(slider, plot, status))
"""

MARIMO_NOTEBOOK = """\
import marimo

app = marimo.App()


@app.cell
def _():
    value = 6 * 7
    value
    return (value,)


if __name__ == "__main__":
    app.run()
"""


def app_venv(name: str, requirement: str) -> Path:
    """
    A virtual environment with C{requirement} installed, made once and kept
    under L{CACHE}; returns its C{bin} directory.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    home = CACHE / name
    marker = home / "wsse-matrix-requirement"
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.exists() and marker.read_text() == requirement):
            shutil.rmtree(home, ignore_errors=True)
            python = shutil.which("python3") or sys.executable
            subprocess.run([python, "-m", "venv", str(home)], check=True)
            subprocess.run(
                [str(home / "bin" / "pip"), "install", "--quiet", requirement],
                check=True,
                timeout=1200,
            )
            marker.write_text(requirement)
    return home / "bin"


@dataclass
class Served:
    """An app running for one case: where its page is, and how to use it."""

    path: str
    interact: Callable[[list[Page], int], None]
    tabs: int = 1


@dataclass
class Case:
    """One app behind one gateway, as the browser saw it."""

    app: str
    gateway: str
    passed: bool = False
    failure: str = ""
    load: float | None = None
    reload: float | None = None
    after_cut: float | None = None
    transports: set[str] = field(default_factory=set)
    console_errors: list[str] = field(default_factory=list)


# --- the apps ------------------------------------------------------------------


@contextmanager
def marimo(workdir: Path, origin: str) -> Iterator[tuple[int, Served]]:
    """marimo's editor on a fresh copy of the notebook."""
    bin_dir = app_venv("marimo", MARIMO)
    notebook = workdir / "notebook.py"
    notebook.write_text(MARIMO_NOTEBOOK)
    port = free_port()
    command = [
        str(bin_dir / "marimo"),
        "edit",
        "--headless",
        "--no-token",
        "--skip-update-check",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        str(notebook),
    ]
    env = dict(os.environ, HOME=str(workdir), MARIMO_SKIP_UPDATE_CHECK="1")
    with running(command, port, env=env, log=workdir / "marimo.log", timeout=APP_START_TIMEOUT):
        yield port, Served("", _marimo_interact)


def _marimo_interact(pages: list[Page], round: int) -> None:
    page = pages[0]
    editor = page.locator(".cm-content").first
    editor.wait_for(timeout=INTERACTION_TIMEOUT_MS)
    expected = 6 * (9 + round)
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(f"value = 6 * {9 + round}\nvalue")
    page.keyboard.press("Control+Enter")
    page.locator(".output-area", has_text=str(expected)).first.wait_for(
        timeout=INTERACTION_TIMEOUT_MS
    )


@contextmanager
def bokeh(workdir: Path, origin: str) -> Iterator[tuple[int, Served]]:
    """A Bokeh server with the slider app, accepting sockets from C{origin} only."""
    bin_dir = app_venv("bokeh", BOKEH)
    script = workdir / "slider.py"
    script.write_text(BOKEH_APP)
    port = free_port()
    command = [
        str(bin_dir / "bokeh"),
        "serve",
        str(script),
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        "--allow-websocket-origin",
        origin,
    ]
    env = dict(os.environ, BOKEH_RESOURCES="inline", HOME=str(workdir))
    with running(command, port, env=env, log=workdir / "bokeh.log", timeout=APP_START_TIMEOUT):
        yield port, Served("slider", _bokeh_interact)


def _bokeh_interact(pages: list[Page], round: int) -> None:
    page = pages[0]
    handle = page.locator(".noUi-handle").first
    handle.wait_for(timeout=INTERACTION_TIMEOUT_MS)
    page.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length > 0"
        " && Bokeh.documents[0].get_model_by_name('curve') !== null",
        timeout=INTERACTION_TIMEOUT_MS,
    )
    power = page.evaluate("Bokeh.documents[0].get_model_by_name('power').value")
    handle.focus()
    page.keyboard.press("ArrowRight" if power < 5 else "ArrowLeft")
    target = power + 1 if power < 5 else power - 1
    # The server computed y = x ** power; the browser's copy of the line shows it.
    page.wait_for_function(
        "(power) => Bokeh.documents[0].get_model_by_name('curve').data.y[5] === 0.5 ** power",
        arg=target,
        timeout=INTERACTION_TIMEOUT_MS,
    )


TABS = ("a", "b", "c")


@contextmanager
def sockets(workdir: Path, origin: str) -> Iterator[tuple[int, Served]]:
    """The board app: three tabs of eight sockets."""
    port = free_port()
    command = [sys.executable, "-m", "tests.support.sockets_app", "--port", str(port)]
    with running(command, port, log=workdir / "sockets.log"):
        yield port, Served("board?tab=a&sockets=8", _sockets_interact, tabs=len(TABS))


def _sockets_interact(pages: list[Page], round: int) -> None:
    for page in pages:
        page.wait_for_function(
            "() => window.board && board.open === board.sockets.length",
            timeout=INTERACTION_TIMEOUT_MS,
        )
    for page in pages:
        page.evaluate("(tabs) => { board.expect = tabs; }", list(TABS))
        page.click("#ping")
    for page in pages:
        page.wait_for_function(
            "() => { board.render(); return board.done; }", timeout=INTERACTION_TIMEOUT_MS
        )


APPS: dict[str, Callable[[Path, str], AbstractContextManager[tuple[int, Served]]]] = {
    "marimo": marimo,
    "bokeh": bokeh,
    "sockets": sockets,
}


def open_tabs(context: BrowserContext, url: str, served: Served) -> list[Page]:
    """The app's pages, one per tab it needs (the board app names each tab)."""
    pages = []
    for index in range(served.tabs):
        page = context.new_page()
        pages.append(page)
        tab_url = url.replace("tab=a", f"tab={TABS[index]}") if served.tabs > 1 else url
        page.goto(tab_url)
    return pages


def timed(action: Callable[[], None]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


# --- the table -----------------------------------------------------------------

#: Every case run so far in this process, by (app, gateway), in the order run.
RESULTS: dict[tuple[str, str], Case] = {}


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def table(results: dict[tuple[str, str], Case]) -> str:
    """
    The results as a Markdown table.  The budget is the issue's: the same
    app's time behind the gateway that relays WebSocket, plus the probe
    timeout, plus 1 s; it is reported, not asserted.
    """
    lines = [
        "| App | Gateway | Result | Transport | Load to first interaction (s) | Budget (s) "
        "| Reload to interaction (s) | After the cut (s) |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for (app, kind), case in results.items():
        native = results.get((app, "relay"))
        budget = ""
        if kind not in NATIVE_GATEWAYS and native is not None and native.load is not None:
            limit = native.load + PROBE_TIMEOUT + 1.0
            within = case.load is not None and case.load <= limit
            budget = f"{limit:.1f} {'within' if within else 'OVER'}"
        result = "PASS" if case.passed else f"FAIL: {case.failure}"
        lines.append(
            f"| {app} | {GATEWAY_TITLES[kind]} | {result} | {', '.join(sorted(case.transports))} "
            f"| {_seconds(case.load)} | {budget} | {_seconds(case.reload)} "
            f"| {_seconds(case.after_cut)} |"
        )
    return "\n".join(lines) + "\n"
