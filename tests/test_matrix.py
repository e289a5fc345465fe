"""
The end-to-end matrix: real apps behind real broken gateways, driven by
headless Chromium through wsse, every app with every gateway.

Apps, gateways and interactions are described in L{tests.support.matrix}.
Each case starts its own gateway, app and wsse (default options), then:

  1. opens the app's page(s) and does the interaction, timed from the first
     navigation to the interaction's visible result;
  2. behind the gateway that cuts connections: waits for the cut, checks the
     app came back through the fallback, and does the interaction again;
  3. reloads the page(s) and does the interaction again, timed (the verdict
     of the first load, if any, is remembered by then).

It checks that the interaction completed every time, that the transport was
the one the gateway allows (the browser's own WebSocket where the gateway
relays it, the fallback only where it does not: event stream, or long polls
behind the gateway that holds events back), and that neither the console nor
the page reports an error from the shim.  Screenshots and logs of each case
go to C{test-artifacts/matrix/APP-GATEWAY/} (C{failed-N.png}: each page open
when the case failed); the table of results (printed at the end of the run)
to C{test-artifacts/matrix/table.md}.

Timings are recorded and reported against the budget (the native time of the
same app, plus the probe timeout, plus 1 s), not asserted: the team measures
speed in reports, never in pass/fail.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, WebSocket
from playwright.sync_api import Error as PlaywrightError

from tests.support.gateways import cutting_relay, nginx_gateway
from tests.support.matrix import (
    APPS,
    ARTIFACTS,
    CUT_AFTER,
    GATEWAYS,
    NATIVE_GATEWAYS,
    RESULTS,
    Case,
    open_tabs,
    timed,
)
from tests.support.processes import free_port, running, wsse_command
from wsse._protocol import CARRIED_ENDPOINT, ENDPOINT_SEGMENT, EVENTS_ENDPOINT, POLL_ENDPOINT

ENDPOINTS = "/" + ENDPOINT_SEGMENT.decode() + "/"


@contextmanager
def gateway(kind: str, wsse_port: int, directory: Path) -> Iterator[tuple[str, str]]:
    """The gateway in front of wsse: yields the app's root URL and its origin's host:port."""
    if kind == "cut":
        with cutting_relay(wsse_port, CUT_AFTER) as relay:
            yield f"http://127.0.0.1:{relay.port}/", f"127.0.0.1:{relay.port}"
    else:
        with nginx_gateway(kind, wsse_port, directory) as gw:
            yield gw.url, f"127.0.0.1:{gw.port}"


@dataclass
class Watch:
    """What the browser did on the network and reported, for one case."""

    native: list[tuple[str, list[int]]] = field(default_factory=list)
    fallback: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def attach(self, context: BrowserContext) -> None:
        context.on("page", self._page)

    def _page(self, page: Page) -> None:
        page.on("websocket", self._socket)
        page.on("request", self._request)
        page.on("console", self._console)
        page.on(
            "pageerror", lambda error: self.page_errors.append(f"{error.name}: {error.message}")
        )

    def _socket(self, socket: WebSocket) -> None:
        frames: list[int] = []
        self.native.append((socket.url, frames))
        socket.on("framereceived", lambda payload: frames.append(len(payload)))

    def _request(self, request: Request) -> None:
        path = urlsplit(request.url).path
        if ENDPOINTS in path:
            self.fallback.append(path.rsplit(ENDPOINTS, 1)[1])

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console.append(f"{message.text} [{message.location.get('url', '')}]")

    def mark(self) -> tuple[int, int]:
        return len(self.native), len(self.fallback)

    def transports(self, since: tuple[int, int] = (0, 0)) -> set[str]:
        """The transports that carried messages since C{mark()} returned C{since}."""
        used = set()
        for url, frames in self.native[since[0] :]:
            if frames:
                carried = ENDPOINTS + CARRIED_ENDPOINT.decode() + "/" in unquote(url)
                used.add("native, query in path" if carried else "native")
        requests = self.fallback[since[1] :]
        if EVENTS_ENDPOINT.decode() in requests:
            used.add("event stream")
        if POLL_ENDPOINT.decode() in requests:
            used.add("long polls")
        return used

    def failed_native_attempts(self) -> list[str]:
        """Chromium's reports of a WebSocket the gateway kept from opening."""
        return [text for text in self.console if _FAILED_SOCKET.match(text)]

    def shim_errors(self, cutting: bool) -> list[str]:
        """
        Errors that come from the shim: any uncaught error (the shim throws none
        and the apps throw none when their sockets work), and console errors
        about wsse's own endpoints, other than Chromium's own reports of what a
        gateway did: a native socket it kept from opening (on the way to the
        fallback) and, behind a gateway that cuts connections, a response it
        cut short (the shim resumes the stream).
        """
        about_wsse = [text for text in self.console if ENDPOINTS in text]
        gateways = [_FAILED_SOCKET] + ([_CUT_SHORT] if cutting else [])
        return self.page_errors + [
            text for text in about_wsse if not any(p.match(text) for p in gateways)
        ]


_FAILED_SOCKET = re.compile(r"WebSocket connection to '[^']*' failed")
_CUT_SHORT = re.compile(
    r"Failed to load resource: net::ERR_(INCOMPLETE_CHUNKED_ENCODING|EMPTY_RESPONSE|CONNECTION_RESET|CONNECTION_CLOSED) "
)


def screenshots(pages: list[Page], directory: Path, name: str) -> None:
    for index, page in enumerate(pages):
        page.screenshot(path=str(directory / f"{name}-{index + 1}.png"), full_page=True)


def failure_screenshots(context: BrowserContext, directory: Path) -> None:
    """
    What every page still open showed when its case failed (C{failed-N.png}),
    the one view of a failure that the logs lack.  A page that cannot be shot
    is reported, not raised: the case's own failure is the one that counts.
    """
    for index, page in enumerate(context.pages):
        try:
            page.screenshot(
                path=str(directory / f"failed-{index + 1}.png"), full_page=True, timeout=10_000
            )
        except PlaywrightError as error:
            print(f"no screenshot of page {index + 1} of the failed case: {error}")


CASES = [(app, kind) for app in APPS for kind in GATEWAYS]


@pytest.mark.parametrize(("app", "kind"), CASES, ids=[f"{a}-{k}" for a, k in CASES])
def test_app_behind_gateway(browser: Browser, app: str, kind: str) -> None:
    case = RESULTS[(app, kind)] = Case(app, kind)
    directory = ARTIFACTS / f"{app}-{kind}"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    watch = Watch()
    wsse_port = free_port()
    try:
        with (
            gateway(kind, wsse_port, directory) as (root, origin),
            APPS[app](directory, origin) as (app_port, served),
            running(
                wsse_command(
                    "--target",
                    f"http://127.0.0.1:{app_port}",
                    "--listen",
                    f"tcp:{wsse_port}:interface=127.0.0.1",
                ),
                wsse_port,
                log=directory / "wsse.log",
            ),
        ):
            context = browser.new_context()
            watch.attach(context)
            pages: list[Page] = []
            try:

                def first() -> None:
                    pages.extend(open_tabs(context, root + served.path, served))
                    served.interact(pages, 0)

                case.load = timed(first)
                first_transports = watch.transports()
                screenshots(pages, directory, "load")

                if kind == "cut":
                    cut = watch.mark()
                    # Every native socket is cut CUT_AFTER s after it opened; the
                    # apps connect again, and the shim sends them to the fallback.
                    time.sleep(CUT_AFTER + 2)
                    case.after_cut = timed(lambda: served.interact(pages, 1))
                    after_cut = watch.transports(cut)
                    screenshots(pages, directory, "after-cut")

                reload = watch.mark()

                def again() -> None:
                    for page in pages:
                        page.reload()
                    served.interact(pages, 2)

                case.reload = timed(again)
                reload_transports = watch.transports(reload)
                screenshots(pages, directory, "reload")
            except BaseException:
                failure_screenshots(context, directory)
                raise
            finally:
                context.close()

        case.transports = first_transports | reload_transports
        (directory / "console.log").write_text("\n".join(watch.page_errors + watch.console) + "\n")
        if kind in NATIVE_GATEWAYS:
            assert first_transports and all(t.startswith("native") for t in first_transports)
            assert reload_transports and all(t.startswith("native") for t in reload_transports)
            assert watch.fallback == [], "the fallback was used where WebSocket works"
            assert watch.failed_native_attempts() == []
        elif kind == "cut":
            assert first_transports and all(t.startswith("native") for t in first_transports)
            assert after_cut == {"event stream"}, after_cut
            assert reload_transports == {"event stream"}, reload_transports
            case.transports = {f"{' + '.join(sorted(first_transports))}, then event stream"}
        elif kind == "buffer":
            assert "long polls" in first_transports, first_transports
            assert reload_transports == {"long polls"}, reload_transports
            case.transports = {"event stream held back, then long polls"}
        else:
            assert first_transports == {"event stream"}, first_transports
            assert reload_transports == {"event stream"}, reload_transports
        assert watch.shim_errors(cutting=kind == "cut") == []
        case.passed = True
    except BaseException as failure:
        case.failure = _one_line(failure)
        raise


def _one_line(failure: BaseException) -> str:
    text = str(failure).strip().splitlines()
    return re.sub(r"\s+", " ", f"{type(failure).__name__}: {text[0] if text else ''}")[:160]
