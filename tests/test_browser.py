"""
wsse in a real browser: Chromium (Debian's, driven by Playwright) loads pages of
a small app (L{tests.support.browser_app}) through a wsse process.

Every test runs in a fresh browser context, checks that the shim ran
(C{window.__wsse}), and that neither the console nor the page reported an
error other than the ones the test provokes on purpose; a screenshot of each
test's final page is kept in C{test-artifacts/browser/}.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect

from tests.support import browser_app
from tests.support.chromium import OTHER_HOST
from tests.support.processes import ROOT, free_port, running, wsse_command
from wsse._shim import compact

ARTIFACTS = ROOT / "test-artifacts" / "browser"
# How long a script in the page may take before the test gives up on it.
SCRIPT_TIMEOUT_MS = 15_000


def _shim_hash() -> str:
    """The shim's C{'sha256-...'} hash source, as CSP messages about it would name it."""
    source = compact((ROOT / "wsse" / "shim" / "wsse-shim.js").read_bytes())
    return "'sha256-" + base64.b64encode(hashlib.sha256(source).digest()).decode("ascii") + "'"


SHIM_HASH = _shim_hash()


# --- servers and browser ------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts() -> Any:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def app_port(artifacts: Any) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "tests.support.browser_app", "--port", str(port)]
    with running(command, port, log=artifacts / "app.log"):
        yield port


@pytest.fixture(scope="module")
def wsse_port(app_port: int, artifacts: Any) -> Iterator[int]:
    port = free_port()
    command = wsse_command(
        "--target", f"http://127.0.0.1:{app_port}", "--listen", f"tcp:{port}:interface=127.0.0.1"
    )
    with running(command, port, log=artifacts / "wsse.log"):
        yield port


@pytest.fixture(scope="module")
def demo_port(artifacts: Any) -> Iterator[int]:
    port = free_port()
    command = wsse_command("--demo", "--listen", f"tcp:{port}:interface=127.0.0.1")
    with running(command, port, log=artifacts / "wsse-demo.log"):
        yield port


@dataclass
class Tab:
    """A page in a fresh context, with what its console and its scripts reported."""

    page: Page
    console: list[ConsoleMessage] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

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

    def assert_shim_ran(self) -> None:
        assert self.page.evaluate("typeof window.__wsse") == "object"
        assert self.page.evaluate("typeof window.__wsse.transportOf") == "function"

    def assert_clean(self, expected: Callable[[str], bool] = lambda text: False) -> None:
        """
        No page error; no console error except those C{expected}; no CSP report
        that the shim was blocked.

        @param expected: tells an expected error from its text and, in brackets
            after it, the URL the console gives as its source.
        """
        assert self.page_errors == []
        about_shim = [m.text for m in self.console if blocked_script_hash(m.text) == SHIM_HASH]
        assert about_shim == []
        # Each error with where it came from (a failed resource names its URL there).
        errors = [
            f"{m.text} [{m.location.get('url', '')}]" for m in self.console if m.type == "error"
        ]
        unexpected = [text for text in errors if not expected(text)]
        assert unexpected == []


@pytest.fixture
def tab(browser: Browser, artifacts: Any, request: pytest.FixtureRequest) -> Iterator[Tab]:
    context = browser.new_context()
    page = context.new_page()
    tab = Tab(page)
    page.on("console", lambda message: tab.console.append(message))
    page.on("pageerror", lambda error: tab.page_errors.append(f"{error.name}: {error.message}"))
    try:
        yield tab
    finally:
        try:
            page.screenshot(path=str(artifacts / f"{request.node.name}.png"))
        finally:
            context.close()


# Chromium's report of a blocked inline script names the policy's directive
# (which may list the shim's hash) and then the hash of the script it blocked.
_BLOCKED_HASH = re.compile(
    r"Content Security Policy.*a hash \(('sha256-[A-Za-z0-9+/=]+')\)", re.DOTALL
)


def blocked_script_hash(text: str) -> str | None:
    """The hash source of the inline script a CSP violation message is about."""
    match = _BLOCKED_HASH.search(text)
    return match.group(1) if match else None


def blocked_script_message(text: str) -> bool:
    """A CSP violation report about one of the page's own deliberately blocked scripts."""
    return blocked_script_hash(text) in browser_app.BLOCKED_HASHES


# --- 1. the native path is transparent ----------------------------------------

NATIVE_SCRIPT = r"""
const r = {};
const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));
const once = (ws, type) => new Promise((resolve) => ws.addEventListener(type, resolve, { once: true }));
const thrown = (f) => {
  try { f(); return "no exception"; }
  catch (e) { return e instanceof DOMException ? e.name : "not a DOMException: " + e; }
};
const sameBytes = async (data, expected) => {
  const buffer = data instanceof Blob ? await data.arrayBuffer() : data;
  const got = new Uint8Array(buffer);
  return got.length === expected.length && got.every((v, i) => v === expected[i]);
};

const url = new URL("/ws/echo", location.href);
url.protocol = "ws:";
const ws = new WebSocket(url.href, ["v1", "v2"]);
r.initialState = ws.readyState;
r.instanceOfWebSocket = ws instanceof WebSocket;
r.instanceOfEventTarget = ws instanceof EventTarget;
r.constructorConstants = [WebSocket.CONNECTING, WebSocket.OPEN, WebSocket.CLOSING, WebSocket.CLOSED];
r.instanceConstants = [ws.CONNECTING, ws.OPEN, ws.CLOSING, ws.CLOSED];
r.url = ws.url;
r.expectedUrl = url.href;
r.transport = window.__wsse.transportOf(ws);
r.defaultBinaryType = ws.binaryType;
r.sendBeforeOpen = thrown(() => ws.send("too early"));

const inbox = [];
const waiting = [];
ws.addEventListener("message", (e) => { if (waiting.length) waiting.shift()(e); else inbox.push(e); });
const next = () => inbox.length ? Promise.resolve(inbox.shift()) : new Promise((resolve) => waiting.push(resolve));

await once(ws, "open");
r.openState = ws.readyState;
r.protocol = ws.protocol;

// Text, with line ends, NUL and characters outside the BMP.
const text = "cr\r lf\n crlf\r\n nul\u0000 astral \u{1F600}\u{1D11E} end";
ws.send(text);
let m = await next();
r.textEchoed = m.data === text;
r.textEcho = m.data;
r.messageIsMessageEvent = m instanceof MessageEvent;
r.messageTargetIsSocket = m.target === ws;

// Binary, binaryType "blob" (the default).
const bytes = new Uint8Array(256);
for (let i = 0; i < 256; i++) bytes[i] = i;
ws.send(bytes.buffer);
m = await next();
r.arrayBufferEcho = { blob: m.data instanceof Blob, same: await sameBytes(m.data, bytes) };
ws.send(new Uint8Array(bytes.buffer, 10, 20));
m = await next();
r.uint8ArrayEcho = { blob: m.data instanceof Blob, same: await sameBytes(m.data, bytes.slice(10, 30)) };
ws.send(new Blob([bytes.slice(100, 164)]));
m = await next();
r.blobEcho = { blob: m.data instanceof Blob, same: await sameBytes(m.data, bytes.slice(100, 164)) };

// binaryType switched after construction applies to the next message.
ws.binaryType = "arraybuffer";
r.binaryTypeAfterSet = ws.binaryType;
ws.binaryType = "nonsense";
r.binaryTypeAfterInvalid = ws.binaryType;
ws.send(bytes);
m = await next();
r.afterSwitch = { arrayBuffer: m.data instanceof ArrayBuffer, same: await sameBytes(m.data, bytes) };

// onmessage and addEventListener both receive; removeEventListener removes.
const counts = { property: 0, listener: 0 };
const handler = () => { counts.property++; };
const listener = () => { counts.listener++; };
ws.onmessage = handler;
r.onmessageGetter = ws.onmessage === handler;
ws.addEventListener("message", listener);
ws.send("one");
await next();
await tick(50);
r.countsAfterOne = [counts.property, counts.listener];
ws.removeEventListener("message", listener);
ws.send("two");
await next();
await tick(50);
r.countsAfterRemove = [counts.property, counts.listener];
ws.onmessage = null;
r.onmessageAfterNull = ws.onmessage;
ws.send("three");
await next();
await tick(50);
r.countsAfterNull = [counts.property, counts.listener];

// Invalid close arguments throw and leave the socket open.
r.close1234 = thrown(() => ws.close(1234));
r.closeLongReason = thrown(() => ws.close(1000, "x".repeat(200)));
r.stateAfterBadCloses = ws.readyState;

// A close by the page: one close event, CLOSING then CLOSED.
const closes = [];
let oncloseCalls = 0;
ws.addEventListener("close", (e) => {
  closes.push({
    code: e.code, reason: e.reason, wasClean: e.wasClean,
    isCloseEvent: e instanceof CloseEvent, targetIsSocket: e.target === ws,
    state: ws.readyState,
  });
});
ws.onclose = () => { oncloseCalls++; };
const closed = once(ws, "close");
ws.close(4000, "bye");
r.stateAfterClose = ws.readyState;
await closed;
await tick(300);
r.clientClose = closes;
r.oncloseCalls = oncloseCalls;
r.finalState = ws.readyState;

// A close by the server, asked for by the page; the URL is relative this time.
const ws2 = new WebSocket("/ws/echo");
r.relativeUrl = ws2.url;
r.transport2 = window.__wsse.transportOf(ws2);
await once(ws2, "open");
r.protocol2 = ws2.protocol;
const closes2 = [];
const messages2 = [];
ws2.addEventListener("message", (e) => messages2.push(e.data));
ws2.addEventListener("close", (e) => closes2.push({ code: e.code, reason: e.reason, wasClean: e.wasClean }));
const closed2 = once(ws2, "close");
ws2.send("close:4001:bye");
await closed2;
await tick(300);
r.serverClose = closes2;
r.serverCloseMessages = messages2;
r.serverCloseState = ws2.readyState;
return r;
"""


def test_native_path_is_transparent(tab: Tab, wsse_port: int) -> None:
    origin = f"http://127.0.0.1:{wsse_port}"
    tab.page.goto(f"{origin}/p/native")
    tab.assert_shim_ran()
    r = tab.run(NATIVE_SCRIPT)

    assert r["instanceOfWebSocket"] is True
    assert r["instanceOfEventTarget"] is True
    assert r["constructorConstants"] == [0, 1, 2, 3]
    assert r["instanceConstants"] == [0, 1, 2, 3]
    assert r["initialState"] == 0
    assert r["openState"] == 1
    assert r["url"] == r["expectedUrl"] == f"ws://127.0.0.1:{wsse_port}/ws/echo"
    assert r["transport"] == "native"
    assert r["sendBeforeOpen"] == "InvalidStateError"
    assert r["protocol"] == "v2"

    assert r["textEcho"] == "cr\r lf\n crlf\r\n nul\x00 astral \U0001f600\U0001d11e end"
    assert r["textEchoed"] is True
    assert r["messageIsMessageEvent"] is True
    assert r["messageTargetIsSocket"] is True

    assert r["defaultBinaryType"] == "blob"
    assert r["arrayBufferEcho"] == {"blob": True, "same": True}
    assert r["uint8ArrayEcho"] == {"blob": True, "same": True}
    assert r["blobEcho"] == {"blob": True, "same": True}
    assert r["binaryTypeAfterSet"] == "arraybuffer"
    assert r["binaryTypeAfterInvalid"] == "arraybuffer"
    assert r["afterSwitch"] == {"arrayBuffer": True, "same": True}

    assert r["onmessageGetter"] is True
    assert r["countsAfterOne"] == [1, 1]
    assert r["countsAfterRemove"] == [2, 1]
    assert r["onmessageAfterNull"] is None
    assert r["countsAfterNull"] == [2, 1]

    assert r["close1234"] == "InvalidAccessError"
    assert r["closeLongReason"] == "SyntaxError"
    assert r["stateAfterBadCloses"] == 1

    assert r["stateAfterClose"] == 2
    assert r["clientClose"] == [
        {
            "code": 4000,
            "reason": "bye",
            "wasClean": True,
            "isCloseEvent": True,
            "targetIsSocket": True,
            "state": 3,
        }
    ]
    assert r["oncloseCalls"] == 1
    assert r["finalState"] == 3

    assert r["relativeUrl"] == f"ws://127.0.0.1:{wsse_port}/ws/echo"
    assert r["transport2"] == "native"
    assert r["protocol2"] == ""
    assert r["serverCloseMessages"] == []
    assert r["serverClose"] == [{"code": 4001, "reason": "bye", "wasClean": True}]
    assert r["serverCloseState"] == 3
    tab.assert_clean()


# --- 2. a refused upgrade -------------------------------------------------------

DENY_SCRIPT = r"""
const events = [];
const ws = new WebSocket(arg);
ws.onopen = () => events.push("open");
ws.onerror = (e) => events.push(e.type);
const closed = new Promise((resolve) => {
  ws.onclose = (e) => { events.push({ code: e.code, wasClean: e.wasClean }); resolve(); };
});
await closed;
await new Promise((resolve) => setTimeout(resolve, 300));
return { events, state: ws.readyState, transport: window.__wsse.transportOf(ws) };
"""


def test_refused_upgrade_errors_then_closes_1006(tab: Tab, wsse_port: int) -> None:
    tab.page.goto(f"http://127.0.0.1:{wsse_port}/p/native")
    tab.assert_shim_ran()
    r = tab.run(DENY_SCRIPT, f"ws://127.0.0.1:{wsse_port}/ws/deny")
    assert r["events"] == ["error", {"code": 1006, "wasClean": False}]
    assert r["state"] == 3
    # The native socket failed, so the shim tried the fallback, which the app
    # refused too: the page sees one failure, and nothing is remembered.
    assert r["transport"] == "fallback"
    assert tab.page.evaluate("sessionStorage.getItem('wsse:verdict')") is None
    # Chromium reports the failed handshake itself, as it does without wsse.
    tab.assert_clean(expected=lambda text: "/ws/deny" in text)


# --- 3. injection keeps the rendering mode --------------------------------------


def test_injection_keeps_standards_mode(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    page.goto(f"http://127.0.0.1:{wsse_port}/p/doctype-only")
    tab.assert_shim_ran()
    assert page.evaluate("document.compatMode") == "CSS1Compat"
    assert page.evaluate("document.doctype && document.doctype.name") == "html"
    assert page.evaluate("document.getElementById('p').textContent") == "no head, no script"
    tab.assert_clean()


def test_shim_runs_before_the_pages_first_script(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    page.goto(f"http://127.0.0.1:{wsse_port}/p/comment-first")
    tab.assert_shim_ran()
    assert page.evaluate("window.pageScriptRan") is True
    assert page.title() == "t"
    assert page.evaluate("document.compatMode") == "CSS1Compat"
    # The comment is still the document's first node, the shim the first script.
    assert page.evaluate("document.firstChild.nodeType === Node.COMMENT_NODE") is True
    assert page.evaluate("document.firstChild.data") == " comment "
    assert page.evaluate("document.scripts[0].hasAttribute('data-wsse')") is True
    assert page.evaluate("document.scripts.length") == 2
    tab.assert_clean()


# --- 4-6. Content-Security-Policy ----------------------------------------------


def test_csp_nonce_is_lent_to_the_shim(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    response = page.goto(f"http://127.0.0.1:{wsse_port}/p/csp-nonce")
    assert response is not None
    tab.assert_shim_ran()
    assert page.evaluate("window.ok") == 1
    assert page.evaluate("typeof window.bad") == "undefined"
    assert page.evaluate("document.querySelector('script[data-wsse]').nonce") == browser_app.NONCE
    assert response.headers["content-security-policy"] == browser_app.NONCE_POLICY
    tab.assert_clean(expected=blocked_script_message)
    # The page's blocked script was reported, and nothing else.
    reports = [m.text for m in tab.console if m.type == "error"]
    assert len(reports) == 1
    assert blocked_script_hash(reports[0]) == browser_app.csp_hash(browser_app.BLOCKED_NONCE_SCRIPT)


def test_csp_hash_policy_admits_the_shim(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    response = page.goto(f"http://127.0.0.1:{wsse_port}/p/csp-hash")
    assert response is not None
    tab.assert_shim_ran()
    assert page.evaluate("window.hashed") == 1
    assert page.evaluate("typeof window.bad") == "undefined"
    # The page's own directive is kept as it was.
    policy = response.headers["content-security-policy"]
    assert policy.split(";")[0].strip() == browser_app.HASH_POLICY
    tab.assert_clean(expected=blocked_script_message)
    reports = [m.text for m in tab.console if m.type == "error"]
    assert len(reports) == 1
    assert blocked_script_hash(reports[0]) == browser_app.csp_hash(browser_app.BLOCKED_HASH_SCRIPT)


def test_csp_default_src_admits_the_shim(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    response = page.goto(f"http://127.0.0.1:{wsse_port}/p/csp-default")
    assert response is not None
    tab.assert_shim_ran()
    assert page.evaluate("typeof window.inlineRan") == "undefined"
    assert page.evaluate("window.extRan") == 1
    policy = response.headers["content-security-policy"]
    assert policy.split(";")[0].strip() == browser_app.DEFAULT_POLICY
    tab.assert_clean(expected=blocked_script_message)
    reports = [m.text for m in tab.console if m.type == "error"]
    assert len(reports) == 1
    assert blocked_script_hash(reports[0]) == browser_app.csp_hash(
        browser_app.BLOCKED_DEFAULT_SCRIPT
    )


# --- 7. a page that is not a secure context -------------------------------------

ECHO_SCRIPT = r"""
const ws = new WebSocket(arg);
const opened = new Promise((resolve, reject) => {
  ws.onopen = resolve;
  ws.onclose = (e) => reject(new Error("closed " + e.code));
});
await opened;
const echoed = new Promise((resolve) => { ws.onmessage = (e) => resolve(e.data); });
ws.send("hello \u{1F600}");
const data = await echoed;
ws.onclose = null;
const closed = new Promise((resolve) => { ws.onclose = (e) => resolve(e.code); });
ws.close();
return { data, transport: window.__wsse.transportOf(ws), closeCode: await closed };
"""


def test_non_secure_context(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    origin = f"http://{OTHER_HOST}:{wsse_port}"
    page.goto(f"{origin}/p/native")
    assert page.url == f"{origin}/p/native"
    tab.assert_shim_ran()
    assert page.evaluate("window.isSecureContext") is False
    assert page.evaluate("typeof crypto.randomUUID") == "undefined"
    r = tab.run(ECHO_SCRIPT, f"ws://{OTHER_HOST}:{wsse_port}/ws/echo")
    assert r == {"data": "hello \U0001f600", "transport": "native", "closeCode": 1005}
    tab.assert_clean()


# --- 8. compressed pages ---------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_compressed_page(tab: Tab, wsse_port: int, coding: str) -> None:
    page = tab.page
    response = page.goto(f"http://127.0.0.1:{wsse_port}/p/big?enc={coding}")
    assert response is not None
    assert response.status == 200
    assert coding in response.request.all_headers().get("accept-encoding", "")
    assert response.headers.get("content-encoding") == coding
    tab.assert_shim_ran()
    assert page.evaluate("document.scripts[0].hasAttribute('data-wsse')") is True
    text = page.evaluate("document.getElementById('text').textContent")
    assert len(text) == len(browser_app.BIG_TEXT)
    assert text == browser_app.BIG_TEXT
    assert page.title() == "big"
    tab.assert_clean()


# --- 9. the demo -----------------------------------------------------------------


def test_demo(tab: Tab, demo_port: int) -> None:
    page = tab.page
    page.goto(f"http://127.0.0.1:{demo_port}/")
    tab.assert_shim_ran()
    expect(page.locator("#state")).to_have_text("open")
    expect(page.locator("#transport")).to_have_text("native")
    message = "hello from the browser test"
    page.locator("#text").fill(message)
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#log")).to_contain_text(message)
    expect(page.locator("#text")).to_have_value("")
    # The demo app has no favicon; Chromium's request for it is all that may fail.
    tab.assert_clean(expected=lambda text: "404" in text and text.endswith("/favicon.ico]"))


# --- 10. fragments are not injected --------------------------------------------

FETCH_SCRIPT = r"""
const results = {};
for (const path of arg) {
  const response = await fetch(path);
  results[path] = { status: response.status, text: await response.text() };
}
return results;
"""


def test_fetched_html_is_not_injected(tab: Tab, wsse_port: int) -> None:
    page = tab.page
    page.goto(f"http://127.0.0.1:{wsse_port}/p/native")
    tab.assert_shim_ran()
    assert page.evaluate("document.querySelectorAll('script[data-wsse]').length") == 1
    paths = ["/p/native", "/p/doctype-only"]
    fetched = tab.run(FETCH_SCRIPT, paths)
    for path in paths:
        name = path.rsplit("/", 1)[1]
        assert fetched[path]["status"] == 200
        assert "data-wsse=" not in fetched[path]["text"]
        assert fetched[path]["text"] == browser_app.PAGES[name][0].decode("utf-8")
    tab.assert_clean()
