"""
The fallback in a real browser: headless Chromium, real nginx gateways, wsse
and a small app (L{tests.support.conformance_app}) each as its own process.

  1. Conformance: the WPT-style page C{tests/support/conformance.html} runs the
     same WebSocket assertions behind a gateway that relays WebSocket (the
     browser's own socket carries them) and behind one that strips Upgrade
     (the fallback carries them), the latter once more from a host name that
     is not a secure context.
  2. Detection: when the fallback is used and when not, what it costs (native
     attempts and requests, read from nginx's access log), the probe timeout,
     the three ways of forcing it, and a native socket that drops.
  3. One event stream per page, whatever its number of sockets and tabs.
  4. Gateways that mount the app under a prefix, relaying WebSocket or not.
  5. Gateways that defeat a transport: one that holds the event stream back
     (the page moves to long polls), one that drops the query of upgrades
     (native sockets carry it in the path) and one that refuses that path too
     (the fallback carries the query).

A screenshot of each test's final page goes to C{test-artifacts/fallback-browser/},
with the logs of the processes.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.support.chromium import OTHER_HOST
from tests.support.gateways import NginxGateway, nginx_gateway, stalling_relay, wait_until
from tests.support.processes import ROOT, free_port, running, wsse_process

ARTIFACTS = ROOT / "test-artifacts" / "fallback-browser"
# How long a script in the page may take before the test gives up on it.
SCRIPT_TIMEOUT_MS = 30_000
# How long the whole conformance page may take (16 MiB messages included).
CONFORMANCE_TIMEOUT_MS = 600_000


# --- processes and browser ------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def app_port(artifacts: Path) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "tests.support.conformance_app", "--port", str(port)]
    with running(command, port, log=artifacts / "conformance-app.log"):
        yield port


@pytest.fixture(scope="module")
def wsse_port(app_port: int, artifacts: Path) -> Iterator[int]:
    with wsse_process(app_port, artifacts / "wsse.log") as port:
        yield port


@dataclass
class Tab:
    """A page, with what its console and its scripts reported."""

    page: Page
    console: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @classmethod
    def open(cls, context: BrowserContext) -> Tab:
        page = context.new_page()
        tab = cls(page)
        page.on("console", lambda message: tab.console.append(message))
        page.on("pageerror", lambda error: tab.page_errors.append(f"{error.name}: {error.message}"))
        return tab

    def run(self, body: str, arg: Any = None) -> Any:
        """Run an async function body in the page (C{arg} in scope), with a time limit."""
        script = (
            "async (arg) => {\n"
            "  let timer;\n"
            "  const limit = new Promise((_, reject) => {\n"
            f"    timer = setTimeout(() => reject(new Error('page script timed out')), {SCRIPT_TIMEOUT_MS});\n"
            "  });\n"
            "  try {\n"
            f"    return await Promise.race([(async () => {{\n{body}\n}})(), limit]);\n"
            "  } finally { clearTimeout(timer); }\n"
            "}"
        )
        return self.page.evaluate(script, arg)

    def close(self) -> None:
        """Close the page (ending its event stream), after its screenshot."""
        if not self.page.is_closed():
            if self.screenshot is not None:
                self.page.screenshot(path=str(self.screenshot), full_page=True)
            self.page.close()

    def assert_shim_ran(self) -> None:
        assert self.page.evaluate("typeof window.__wsse") == "object"

    def assert_clean(self, expected: Callable[[str], bool] = lambda text: False) -> None:
        """No page error; no console error except those C{expected}."""
        assert self.page_errors == []
        errors = [
            f"{m.text} [{m.location.get('url', '')}]" for m in self.console if m.type == "error"
        ]
        assert [text for text in errors if not expected(text)] == []


def failed_native_attempt(text: str) -> bool:
    """Chromium's report of a WebSocket that a gateway kept from opening (expected on the way to the fallback)."""
    return text.startswith("WebSocket connection to ")


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def tab(context: BrowserContext, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Tab]:
    tab = Tab.open(context)
    tab.screenshot = artifacts / f"{request.node.name}.png"
    try:
        yield tab
    finally:
        tab.close()


def app_json(app_port: int, path: str) -> Any:
    """A report of the app's (C{/handshakes?id=...}, C{/last-close?id=...}), read directly."""
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}{path}", timeout=10) as response:
        return json.loads(response.read())


# --- what nginx saw ---------------------------------------------------------------

_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d+)')


_CARRIED = "/__wsse/ws/"


def socket_url(target: str) -> str:
    """The URL a native socket's request was for, its query carried in the path or not."""
    before, carried, segment = target.partition(_CARRIED)
    if not carried:
        return target
    return before + base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def log_requests(gw: NginxGateway) -> list[dict[str, str]]:
    """The gateway's access log, one dict per request: method, target, status, upgrade, line."""
    requests = []
    for line in gw.access_log():
        match = _REQUEST.search(line)
        if match is None:
            continue
        upgrade = re.search(r'upgrade="([^"]*)"', line)
        requests.append(
            {**match.groupdict(), "upgrade": upgrade.group(1) if upgrade else "", "line": line}
        )
    return requests


def native_attempts(gw: NginxGateway, path: str) -> list[str]:
    """Requests for C{path} (query aside) that carried the browser's C{Upgrade: websocket}."""
    return [
        r["line"]
        for r in log_requests(gw)
        if socket_url(r["target"]).split("?")[0] == path and r["upgrade"].lower() == "websocket"
    ]


def fallback_requests(gw: NginxGateway) -> list[str]:
    """The fallback's requests (native sockets with their query carried aside)."""
    return [
        r["line"]
        for r in log_requests(gw)
        if "/__wsse/" in r["target"] and _CARRIED not in r["target"]
    ]


def event_streams(gw: NginxGateway) -> list[str]:
    return [
        r["line"]
        for r in log_requests(gw)
        if r["method"] == "GET" and r["target"].split("?")[0].endswith("/__wsse/events")
    ]


def settled(read: Callable[[], list[str]], at_least: int, settle: float = 0.5) -> list[str]:
    """
    What C{read} returns once it has C{at_least} entries and stayed the same for
    C{settle} seconds (nginx logs a request when it ends: a stream when its
    connection closes).
    """
    wait_until(lambda: len(read()) >= at_least, timeout=15)
    last = read()
    quiet_since = time.monotonic()
    deadline = quiet_since + 10
    while time.monotonic() - quiet_since < settle and time.monotonic() < deadline:
        time.sleep(0.05)
        now = read()
        if now != last:
            last, quiet_since = now, time.monotonic()
    return last


# --- scripts run in the page ------------------------------------------------------

# Opens sockets to arg.paths (relative to the page), waits until every one is
# open, then echoes one message on each.  The sockets stay open, in
# window.testSockets, for later scripts.
OPEN_AND_ECHO = r"""
const wsUrl = (path) => {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
};
window.testSockets = window.testSockets || [];
const sockets = arg.paths.map((path) => new WebSocket(wsUrl(path)));
window.testSockets.push(...sockets);
const states = sockets.map((ws) => ws.readyState);
await Promise.all(sockets.map((ws) => new Promise((resolve, reject) => {
  ws.addEventListener("open", resolve, { once: true });
  ws.addEventListener("close", (e) => reject(new Error(ws.url + " closed " + e.code)), { once: true });
})));
const echoes = await Promise.all(sockets.map((ws, i) => new Promise((resolve) => {
  ws.addEventListener("message", (e) => resolve(e.data), { once: true });
  ws.send("echo " + i + " \u{1F600}");
})));
return {
  urls: sockets.map((ws) => ws.url),
  statesAtConstruction: states,
  echoes,
  expected: sockets.map((ws, i) => "echo " + i + " \u{1F600}"),
  transports: sockets.map((ws) => window.__wsse.transportOf(ws)),
  session: window.__wsse.sessionId(),
  verdict: sessionStorage.getItem("wsse:verdict"),
  force: sessionStorage.getItem("wsse:force"),
};
"""

# Echoes once more on every socket the page holds.
ECHO_ALL = r"""
const open = window.testSockets.filter((ws) => ws.readyState === WebSocket.OPEN);
const echoes = await Promise.all(open.map((ws, i) => new Promise((resolve) => {
  ws.addEventListener("message", (e) => resolve(e.data), { once: true });
  ws.send("again " + i);
})));
return { open: open.length, ok: echoes.every((data, i) => data === "again " + i) };
"""

CLOSE_ALL = r"""
const closing = window.testSockets.filter((ws) => ws.readyState !== WebSocket.CLOSED);
await Promise.all(closing.map((ws) => new Promise((resolve) => {
  ws.addEventListener("close", resolve, { once: true });
  ws.close();
})));
return closing.length;
"""


def open_and_echo(tab: Tab, *paths: str) -> dict[str, Any]:
    result = tab.run(OPEN_AND_ECHO, {"paths": list(paths)})
    assert result["echoes"] == result["expected"]
    assert result["statesAtConstruction"] == [0] * len(paths)
    return result


def socket_id(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


# --- 1. conformance ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "host", "transport"),
    [
        ("relay", "127.0.0.1", "native"),
        ("strip", "127.0.0.1", "fallback"),
        ("strip", OTHER_HOST, "fallback"),
    ],
    ids=["relay-native", "strip-fallback", "strip-fallback-non-secure"],
)
def test_conformance(
    kind: str,
    host: str,
    transport: str,
    wsse_port: int,
    tab: Tab,
    tmp_path: Path,
) -> None:
    with nginx_gateway(kind, wsse_port, tmp_path) as gw:
        page = tab.page
        page.goto(f"http://{host}:{gw.port}/conformance")
        tab.assert_shim_ran()
        secure = page.evaluate("window.isSecureContext")
        assert secure is (host == "127.0.0.1")
        # The page's script ran and listed its tests (no syntax error, no blocked script).
        page.wait_for_function("Array.isArray(window.conformanceTests)", timeout=10_000)
        assert tab.page_errors == []
        try:
            page.wait_for_function(
                "window.conformanceResults !== undefined",
                timeout=CONFORMANCE_TIMEOUT_MS,
                polling=250,
            )
        except PlaywrightTimeoutError:
            progress = page.evaluate("window.conformanceProgress")
            raise AssertionError(
                f"the conformance page did not finish; it was at {progress!r}"
            ) from None
        results = page.evaluate("window.conformanceResults")
        sockets = page.evaluate("window.conformanceSockets")
        names = page.evaluate("window.conformanceTests")

    assert [r["name"] for r in results] == names
    assert len(results) >= 45
    failures = [f"{r['name']}: {r['message']}" for r in results if not r["pass"]]
    # Every socket that opened was carried by the expected transport.  Refused
    # sockets (ws/deny) never open; the shim tries the fallback for them too.
    opened = [s for s in sockets if s["opened"]]
    assert len(opened) >= 40
    failures += [
        f"{s['test']}: the socket to {s['url']} went {s['transport']}, not {transport}"
        for s in opened
        if s["transport"] != transport
    ]
    failures += [
        f"{s['test']}: a refused socket opened" for s in sockets if s.get("refused") and s["opened"]
    ]
    assert not failures, (
        f"{len(failures)} conformance assertions of {len(results)} tests failed "
        f"behind the {kind} gateway ({transport} path, {host}):\n  " + "\n  ".join(failures)
    )

    # The only console errors are Chromium's own reports of WebSockets that did
    # not open natively (the refused ones, and behind strip every native try).
    tab.assert_clean(expected=failed_native_attempt)


# --- 2. detection -----------------------------------------------------------------


def test_relay_uses_native_and_the_fallback_adds_nothing(
    tab: Tab, context: BrowserContext, wsse_port: int, tmp_path: Path
) -> None:
    with nginx_gateway("relay", wsse_port, tmp_path) as gw:
        tab.page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        result = open_and_echo(tab, "ws/echo?id=relay-a", "ws/echo?id=relay-b")
        assert result["transports"] == ["native", "native"]
        assert result["session"] is None
        assert result["verdict"] is None
        assert tab.run(CLOSE_ALL) == 2
        tab.assert_clean()
        # Both sockets went through nginx as WebSockets (logged once closed).
        upgrades = settled(lambda: native_attempts(gw, "/ws/echo"), at_least=2)
        assert len(upgrades) == 2
        assert all('" 101 ' in line for line in upgrades)
        assert fallback_requests(gw) == []


def test_strip_falls_back_once_then_goes_straight_to_the_fallback(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    with nginx_gateway("strip", wsse_port, tmp_path) as gw:
        page = tab.page
        page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        assert page.evaluate("sessionStorage.getItem('wsse:verdict')") is None

        first = open_and_echo(tab, "ws/echo?id=strip-first")
        assert first["transports"] == ["fallback"]
        assert first["session"]
        # The failed native try is logged as soon as the app has answered it.
        assert len(settled(lambda: native_attempts(gw, "/ws/echo"), at_least=1)) == 1
        verdict = page.evaluate("sessionStorage.getItem('wsse:verdict')")
        assert verdict is not None and verdict.isdigit()
        assert abs(int(verdict) / 1000 - time.time()) < 120

        # A socket created after the first fell back goes straight to the fallback.
        second = open_and_echo(tab, "ws/echo?id=strip-second")
        assert second["transports"] == ["fallback"]
        assert second["session"] == first["session"]
        assert tab.run(ECHO_ALL) == {"open": 2, "ok": True}
        assert len(native_attempts(gw, "/ws/echo")) == 1, "a second native attempt was made"
        # The app saw one handshake per socket, both from wsse's bridge.
        assert len(app_json(app_port, "/handshakes?id=strip-first")) == 1
        assert len(app_json(app_port, "/handshakes?id=strip-second")) == 1

        # A new page load in the same tab goes straight to the fallback as well.
        page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        assert page.evaluate("sessionStorage.getItem('wsse:verdict')") == verdict
        third = open_and_echo(tab, "ws/echo?id=strip-third")
        assert third["transports"] == ["fallback"]
        assert third["session"] and third["session"] != first["session"]
        assert len(native_attempts(gw, "/ws/echo")) == 1, "the reloaded page tried natively"
        tab.assert_clean(expected=failed_native_attempt)
        # Chromium reported the one failed native attempt, nothing else.
        assert len([m for m in tab.console if m.type == "error"]) == 1


PROBE_SCRIPT = r"""
const url = new URL("ws/echo?id=" + arg, location.href);
url.protocol = "ws:";
const started = performance.now();
const ws = new WebSocket(url.href);
const events = [];
ws.onerror = () => events.push("error");
ws.onclose = (e) => events.push("close " + e.code);
const opened = new Promise((resolve) => { ws.onopen = () => { events.push("open"); resolve(performance.now() - started); }; });
const stateAtHalfSecond = await new Promise((resolve) => setTimeout(() => resolve(ws.readyState), 500));
const transportAtHalfSecond = window.__wsse.transportOf(ws);
const openedAfter = await Promise.race([opened, new Promise((resolve) => setTimeout(() => resolve(null), 10000))]);
let echo = null;
if (openedAfter !== null) {
  echo = await new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); ws.send("after the probe"); });
}
return { stateAtHalfSecond, transportAtHalfSecond, openedAfter, events, echo,
         transport: window.__wsse.transportOf(ws), verdict: sessionStorage.getItem("wsse:verdict") };
"""


def test_probe_timeout_moves_a_stalled_socket_to_the_fallback(
    tab: Tab, app_port: int, artifacts: Path
) -> None:
    with wsse_process(app_port, artifacts / "wsse-probe.log", "--probe-timeout", "1") as port:
        with stalling_relay(port) as relay:
            tab.page.goto(f"http://127.0.0.1:{relay.port}/plain")
            tab.assert_shim_ran()
            r = tab.run(PROBE_SCRIPT, "probe")
            assert r["stateAtHalfSecond"] == 0
            assert r["openedAfter"] is not None, f"not open within 10 s: {r}"
            assert r["openedAfter"] >= 500
            assert r["events"] == ["open"]
            assert r["echo"] == "after the probe"
            assert r["transport"] == "fallback"
            assert r["verdict"] is not None
            assert relay.stalled == 1
            tab.assert_clean()


def _forced(tab: Tab, gw: NginxGateway, path: str) -> dict[str, Any]:
    tab.page.goto(f"{gw.url}{path}")
    tab.assert_shim_ran()
    return open_and_echo(tab, f"ws/echo?id={socket_id('forced')}")


def test_forced_by_query_kept_for_the_tab_and_cleared_by_native(
    tab: Tab, context: BrowserContext, wsse_port: int, tmp_path: Path
) -> None:
    with nginx_gateway("relay", wsse_port, tmp_path) as gw:
        forced = _forced(tab, gw, "plain?wsse=fallback")
        assert forced["transports"] == ["fallback"]
        assert forced["force"] == "1"
        # Kept for the tab: a later page without the query still uses it.
        kept = _forced(tab, gw, "plain")
        assert kept["transports"] == ["fallback"]
        # Without any native attempt.
        assert native_attempts(gw, "/ws/echo") == []
        # ?wsse=native turns it off again.
        native = _forced(tab, gw, "plain?wsse=native")
        assert native["transports"] == ["native"]
        assert native["force"] is None and native["verdict"] is None
        after = _forced(tab, gw, "plain")
        assert after["transports"] == ["native"]
        tab.close()
        # Two fallback pages, two event streams; the native sockets went through as such.
        assert len(settled(lambda: event_streams(gw), at_least=2)) == 2
        assert len(settled(lambda: native_attempts(gw, "/ws/echo"), at_least=2)) == 2
        tab.assert_clean()


def test_forced_by_cookie(
    tab: Tab, context: BrowserContext, wsse_port: int, tmp_path: Path
) -> None:
    with nginx_gateway("relay", wsse_port, tmp_path) as gw:
        context.add_cookies([{"name": "wsse", "value": "fallback", "url": gw.url}])
        forced = _forced(tab, gw, "plain")
        assert forced["transports"] == ["fallback"]
        assert forced["force"] is None
        context.clear_cookies()
        unforced = _forced(tab, gw, "plain")
        assert unforced["transports"] == ["native"]
        tab.close()
        assert len(settled(lambda: native_attempts(gw, "/ws/echo"), at_least=1)) == 1
        assert len(event_streams(gw)) == 1
        tab.assert_clean()


def test_forced_by_the_server(
    tab: Tab, context: BrowserContext, app_port: int, tmp_path: Path, artifacts: Path
) -> None:
    with wsse_process(app_port, artifacts / "wsse-forced.log", "--force-fallback") as port:
        with nginx_gateway("relay", port, tmp_path) as gw:
            forced = _forced(tab, gw, "plain")
            assert forced["transports"] == ["fallback"]
            # Not even ?wsse=native turns the server's choice off.
            still = _forced(tab, gw, "plain?wsse=native")
            assert still["transports"] == ["fallback"]
            tab.close()
            assert len(settled(lambda: event_streams(gw), at_least=2)) == 2
            assert native_attempts(gw, "/ws/echo") == []
            tab.assert_clean()


DROP_SCRIPT = r"""
const url = new URL("ws/echo?id=" + arg, location.href);
url.protocol = "ws:";
const ws = new WebSocket(url.href);
const events = [];
ws.onerror = () => events.push({ type: "error" });
const closed = new Promise((resolve) => {
  ws.onclose = (e) => { events.push({ type: "close", code: e.code, wasClean: e.wasClean }); resolve(); };
});
await new Promise((resolve, reject) => { ws.onopen = resolve; });
events.push({ type: "open" });
const transportWhenOpen = window.__wsse.transportOf(ws);
ws.onmessage = (e) => events.push({ type: "message", data: e.data });
ws.send("wsse-cmd:abort");
await closed;
// Give a replacement, if the shim made one, time to show.
await new Promise((resolve) => setTimeout(resolve, 1500));
return { events, transportWhenOpen, transport: window.__wsse.transportOf(ws),
         state: ws.readyState, session: window.__wsse.sessionId(),
         verdict: sessionStorage.getItem("wsse:verdict") };
"""


def test_a_native_socket_that_is_cut_closes_as_native_and_later_sockets_take_the_fallback(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    with nginx_gateway("relay", wsse_port, tmp_path) as gw:
        tab.page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        r = tab.run(DROP_SCRIPT, "dropped")
        assert r["transportWhenOpen"] == "native"
        assert r["transport"] == "native"
        assert r["state"] == 3
        assert r["events"][0] == {"type": "open"}
        closes = [e for e in r["events"] if e["type"] == "close"]
        assert len(closes) == 1
        assert r["events"][-1]["type"] == "close"
        assert r["events"][1:] in (
            [{"type": "error"}, {"type": "close", "code": 1006, "wasClean": False}],
            [closes[0]],
        )
        assert r["session"] is None
        # The app saw the one handshake: nothing dialled it again.
        assert len(app_json(app_port, "/handshakes?id=dropped")) == 1
        assert len(settled(lambda: native_attempts(gw, "/ws/echo"), at_least=1)) == 1
        assert fallback_requests(gw) == []
        # A gateway that cut one socket would cut the next: the tab remembers,
        # and the app's next socket takes the fallback, which resumes across cuts.
        assert r["verdict"] is not None and r["verdict"].isdigit()
        after = open_and_echo(tab, "ws/echo?id=after-the-cut")
        assert after["transports"] == ["fallback"]
        assert len(native_attempts(gw, "/ws/echo")) == 1
        tab.assert_clean(expected=failed_native_attempt)


# --- 3. one event stream per page ---------------------------------------------------


def test_a_page_with_eight_sockets_uses_one_event_stream(
    tab: Tab, wsse_port: int, tmp_path: Path
) -> None:
    with nginx_gateway("strip", wsse_port, tmp_path) as gw:
        tab.page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        paths = [f"ws/echo?id=eight-{i}" for i in range(8)]
        r = open_and_echo(tab, *paths)
        assert r["transports"] == ["fallback"] * 8
        assert r["session"]
        assert tab.run(ECHO_ALL) == {"open": 8, "ok": True}
        assert tab.run("return window.__wsse.sessionId();") == r["session"]
        tab.close()
        assert len(settled(lambda: event_streams(gw), at_least=1)) == 1
        tab.assert_clean(expected=failed_native_attempt)


def test_three_tabs_with_two_sockets_each_use_one_event_stream_each(
    context: BrowserContext, wsse_port: int, tmp_path: Path, artifacts: Path
) -> None:
    with nginx_gateway("strip", wsse_port, tmp_path) as gw:
        tabs = [Tab.open(context) for _ in range(3)]
        results = []
        for n, tab in enumerate(tabs):
            tab.page.goto(f"{gw.url}plain")
            tab.assert_shim_ran()
            results.append(open_and_echo(tab, f"ws/echo?id=tab{n}-a", f"ws/echo?id=tab{n}-b"))
        # Every tab's sockets still echo while all three tabs hold them.
        for tab in tabs:
            assert tab.run(ECHO_ALL) == {"open": 2, "ok": True}
        for n, tab in enumerate(tabs):
            tab.screenshot = artifacts / f"three-tabs-{n}.png"
        assert all(r["transports"] == ["fallback", "fallback"] for r in results)
        sessions = [r["session"] for r in results]
        assert all(sessions) and len(set(sessions)) == 3
        for tab in tabs:
            tab.close()
        assert len(settled(lambda: event_streams(gw), at_least=3)) == 3
        for tab in tabs:
            tab.assert_clean(expected=failed_native_attempt)


# --- 4. path prefixes -----------------------------------------------------------------

PREFIX_SCRIPT = r"""
const url = new URL(arg.path, location.href);
url.protocol = "ws:";
const ws = new WebSocket(url.href);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onclose = (e) => reject(new Error("closed " + e.code));
});
const echo = await new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); ws.send("prefixed \u00e9"); });
return { url: ws.url, echo, transport: window.__wsse.transportOf(ws),
         prefix: window.__wsse.prefix, pagePath: window.__wsse.pagePath };
"""


def test_a_prefix_gateway_needs_no_option(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    with nginx_gateway("prefix", wsse_port, tmp_path) as gw:
        assert gw.prefix == "/proxy/8081"
        tab.page.goto(f"{gw.url}some/page")
        tab.assert_shim_ran()
        r = tab.run(PREFIX_SCRIPT, {"path": "../ws?id=prefixed"})
        assert r["url"] == f"ws://127.0.0.1:{gw.port}/proxy/8081/ws?id=prefixed"
        assert r["echo"] == "prefixed \u00e9"
        assert r["transport"] == "fallback"
        assert r["prefix"] == "/proxy/8081"
        assert r["pagePath"] == "/some/page"
        # The app got the socket at its own path, without the prefix.
        handshakes = app_json(app_port, "/handshakes?id=prefixed")
        assert [h["path"] for h in handshakes] == ["/ws"]
        tab.close()
        streams = settled(lambda: event_streams(gw), at_least=1)
        assert len(streams) == 1
        assert '"GET /proxy/8081/__wsse/events ' in streams[0]
        assert all("/proxy/8081/__wsse/" in line for line in fallback_requests(gw))
        tab.assert_clean(expected=failed_native_attempt)


def fallback_endpoint_requests(page: Page) -> list[str]:
    """
    The page's requests to the fallback's endpoints (events, poll, send), as
    Chromium reports them while they start: nginx logs a stream only once it ends.
    """
    seen: list[str] = []

    def on_request(request: Any) -> None:
        endpoint = request.url.split("?")[0].rpartition("/__wsse/")[2]
        if endpoint in ("events", "poll", "send"):
            seen.append(request.url)

    page.on("request", on_request)
    return seen


def test_a_prefix_gateway_that_relays_websocket_keeps_sockets_native(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    """
    jupyter-server-proxy mounts the app under /proxy/PORT/ and relays
    WebSocket: there the page's sockets must stay native, their query carried
    through the prefix to the app, and the fallback must stay unused.
    """
    with nginx_gateway("prefix-relay", wsse_port, tmp_path) as gw:
        assert gw.prefix == "/proxy/8081"
        endpoint_requests = fallback_endpoint_requests(tab.page)
        tab.page.goto(f"{gw.url}some/page")
        tab.assert_shim_ran()
        r = open_and_echo(tab, "../ws/echo?id=prefix-relay-a&x=%20y%2F", "../ws?id=prefix-relay-b")
        assert r["transports"] == ["native", "native"]
        assert r["urls"] == [
            f"ws://127.0.0.1:{gw.port}/proxy/8081/ws/echo?id=prefix-relay-a&x=%20y%2F",
            f"ws://127.0.0.1:{gw.port}/proxy/8081/ws?id=prefix-relay-b",
        ]
        assert r["session"] is None
        assert tab.run(ECHO_ALL) == {"open": 2, "ok": True}
        # The app got each socket once, at its own path, with its query.
        (first,) = app_json(app_port, "/handshakes?id=prefix-relay-a")
        assert (first["path"], first["params"]) == (
            "/ws/echo",
            {"id": ["prefix-relay-a"], "x": [" y/"]},
        )
        (second,) = app_json(app_port, "/handshakes?id=prefix-relay-b")
        assert (second["path"], second["params"]) == ("/ws", {"id": ["prefix-relay-b"]})
        assert tab.run(CLOSE_ALL) == 2
        tab.close()
        # Through the prefix, each as one upgrade that the gateway relayed.
        upgrades = settled(
            lambda: (
                native_attempts(gw, "/proxy/8081/ws/echo") + native_attempts(gw, "/proxy/8081/ws")
            ),
            at_least=2,
        )
        assert len(upgrades) == 2
        assert all('"GET /proxy/8081/__wsse/ws/' in line for line in upgrades)
        assert all('" 101 ' in line for line in upgrades)
        assert endpoint_requests == []
        assert fallback_requests(gw) == []
        tab.assert_clean()


def test_a_page_and_socket_sharing_a_first_segment(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    with nginx_gateway("strip", wsse_port, tmp_path) as gw:
        tab.page.goto(f"{gw.url}app/page")
        tab.assert_shim_ran()
        r = tab.run(PREFIX_SCRIPT, {"path": "ws?id=shared-segment"})
        assert r["url"] == f"ws://127.0.0.1:{gw.port}/app/ws?id=shared-segment"
        assert r["echo"] == "prefixed \u00e9"
        assert r["transport"] == "fallback"
        assert r["prefix"] == ""
        assert r["pagePath"] == "/app/page"
        handshakes = app_json(app_port, "/handshakes?id=shared-segment")
        assert [h["path"] for h in handshakes] == ["/app/ws"]
        tab.close()
        streams = settled(lambda: event_streams(gw), at_least=1)
        assert len(streams) == 1
        assert '"GET /__wsse/events ' in streams[0]
        tab.assert_clean(expected=failed_native_attempt)


# --- 5. gateways that break the fallback's stream or the socket's query ----------------


def poll_requests(gw: NginxGateway) -> list[str]:
    return [
        r["line"]
        for r in log_requests(gw)
        if r["method"] == "GET" and r["target"].split("?")[0].endswith("/__wsse/poll")
    ]


def test_a_gateway_that_holds_the_stream_back_moves_the_page_to_long_polls(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    with nginx_gateway("buffer", wsse_port, tmp_path) as gw:
        page = tab.page
        page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        first = open_and_echo(tab, "ws/echo?id=buffer-a", "ws/echo?id=buffer-b")
        assert first["transports"] == ["fallback", "fallback"]
        remembered = page.evaluate("sessionStorage.getItem('wsse:poll')")
        assert remembered is not None and remembered.isdigit()
        for _ in range(3):
            assert tab.run(ECHO_ALL) == {"open": 2, "ok": True}
        assert len(app_json(app_port, "/handshakes?id=buffer-a")) == 1
        # The one event stream tried was given up for polls, which get through.
        assert len(settled(lambda: event_streams(gw), at_least=1)) == 1
        assert len(poll_requests(gw)) >= 3
        assert all('" 200 ' in line for line in poll_requests(gw))

        # The next page load in the tab polls from the start.
        page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        second = open_and_echo(tab, "ws/echo?id=buffer-c")
        assert second["transports"] == ["fallback"]
        assert second["session"] != first["session"]
        assert tab.run(ECHO_ALL) == {"open": 1, "ok": True}
        assert len(event_streams(gw)) == 1, "the reloaded page tried a stream again"
        tab.assert_clean(expected=failed_native_attempt)


DIRECT_SCRIPT = r"""
const url = new URL(arg, location.href);
url.protocol = "ws:";
const ws = new window.__wsse.NativeWebSocket(url.href);
await new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onclose = (e) => reject(new Error("closed " + e.code));
});
ws.close();
return ws.url;
"""


def test_a_gateway_that_drops_the_query_of_upgrades_still_gets_native_sockets(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    with nginx_gateway("noquery", wsse_port, tmp_path) as gw:
        page = tab.page
        page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        # The browser's own socket, dialled as the page wrote it, loses its query.
        tab.run(DIRECT_SCRIPT, "ws/echo?id=noquery-direct")
        assert app_json(app_port, "/handshakes?id=noquery-direct") == []

        r = open_and_echo(tab, "ws/echo?id=noquery-a&x=%20y%2F", "ws/echo?id=noquery-b")
        assert r["transports"] == ["native", "native"]
        assert r["urls"][0] == f"ws://127.0.0.1:{gw.port}/ws/echo?id=noquery-a&x=%20y%2F"
        (handshake,) = app_json(app_port, "/handshakes?id=noquery-a")
        assert handshake["path"] == "/ws/echo"
        assert handshake["params"] == {"id": ["noquery-a"], "x": [" y/"]}
        assert r["session"] is None
        assert tab.run(CLOSE_ALL) == 2
        upgrades = settled(lambda: native_attempts(gw, "/ws/echo"), at_least=3)
        assert len(upgrades) == 3 and all('" 101 ' in line for line in upgrades)
        assert fallback_requests(gw) == []
        tab.assert_clean()


def test_a_gateway_that_also_refuses_the_carried_query_moves_the_socket_to_the_fallback(
    tab: Tab, wsse_port: int, tmp_path: Path, app_port: int
) -> None:
    """
    Carrying the query in the path is the shim's answer to a gateway that
    drops it; where the gateway refuses that path too, the socket must still
    work, on the fallback, and the app must still get its query.
    """
    with nginx_gateway("noquery-nocarry", wsse_port, tmp_path) as gw:
        endpoint_requests = fallback_endpoint_requests(tab.page)
        tab.page.goto(f"{gw.url}plain")
        tab.assert_shim_ran()
        r = open_and_echo(tab, "ws/echo?id=nocarry")
        assert r["transports"] == ["fallback"]
        assert r["urls"] == [f"ws://127.0.0.1:{gw.port}/ws/echo?id=nocarry"]
        assert r["session"]
        assert tab.run(ECHO_ALL) == {"open": 1, "ok": True}
        # One handshake reached the app, the bridge's, with the query.
        (handshake,) = app_json(app_port, "/handshakes?id=nocarry")
        assert (handshake["path"], handshake["params"]) == ("/ws/echo", {"id": ["nocarry"]})
        # The one native try carried the query and the gateway refused it.
        (attempt,) = settled(lambda: native_attempts(gw, "/ws/echo"), at_least=1)
        assert '"GET /__wsse/ws/' in attempt and '" 403 ' in attempt
        assert any("/__wsse/events" in url for url in endpoint_requests)
        tab.assert_clean(expected=failed_native_attempt)


BIG_MESSAGES_SCRIPT = r"""
const url = new URL("ws/echo?id=big-acks", location.href);
url.protocol = "ws:";
const ws = new WebSocket(url.href);
const sizes = [];
await new Promise((resolve, reject) => {
  ws.onopen = () => ws.send(`${arg.command}repeat:${arg.count}:${arg.size}`);
  ws.onmessage = (event) => {
    sizes.push(event.data.length);
    if (sizes.length === arg.count) resolve();
  };
  ws.onclose = (event) => reject(new Error("closed " + event.code));
});
ws.close();
return sizes;
"""


def test_big_messages_from_the_app_arrive_whole_and_in_order_past_the_pause_threshold(
    tab: Tab, wsse_port: int
) -> None:
    """
    20 messages of 400 KB at once (8 MB, past the 4 MiB of unacknowledged
    events at which the server stops reading the app) all arrive, whole and in
    order.  How fast they come (the shim acknowledges by bytes too) is
    measured by bench/compare.py's "fallback app push, 64 KiB" case.
    """
    from tests.support.conformance_app import COMMAND

    acks: list[int] = []

    def on_request(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("__wsse/send"):
            acks.append(int(request.headers.get("x-wsse-ack", "0")))

    tab.page.on("request", on_request)
    tab.page.goto(f"http://127.0.0.1:{wsse_port}/plain?wsse=fallback")
    tab.assert_shim_ran()
    size, count = 400_000, 20
    sizes = tab.run(BIG_MESSAGES_SCRIPT, {"command": COMMAND, "size": size, "count": count})
    assert sizes == [size] * count
    # The page acknowledged along the way (or the server would still be paused),
    # and acknowledges the last events too: on the close, or after a second.  The
    # close's POST may wait for one in flight, so the last ack can come after
    # the script returned.
    deadline = time.monotonic() + 5
    while not (acks and acks[-1] >= count) and time.monotonic() < deadline:
        tab.page.wait_for_timeout(50)
    assert acks == sorted(acks) and acks[0] < count <= acks[-1], acks
    tab.assert_clean()
