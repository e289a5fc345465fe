"""
The fallback socket behaving as Chromium's own, where it did not: events that
arrive together fire in tasks of their own, a page back from the back/forward
cache finds its sockets failed, a message after close() is dropped, the
switches kept for the tab are cleared by ?wsse=native, slow response headers
are not taken for a gateway holding the stream back, a URL with an empty
fragment and the constructor's arguments are refused or converted as
natively, and a page leaving with a Blob still unread does not close cleanly
as if it had been sent.

Where a native socket can show the expected behaviour, the test runs the
same script with the browser's own WebSocket (C{__wsse.NativeWebSocket},
straight to the app) and compares.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Route
from playwright.sync_api import Error as PlaywrightError

from tests.support.processes import ROOT, conformance_app, wsse_process

ARTIFACTS = ROOT / "test-artifacts" / "shim-fidelity"


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    with conformance_app(ARTIFACTS) as port:
        yield port


@pytest.fixture(scope="module")
def fallback(app: int) -> Iterator[int]:
    """wsse forcing the fallback, in front of the app."""
    with wsse_process(app, ARTIFACTS / "wsse-fallback.log", "--force-fallback") as port:
        yield port


def app_json(app: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{app}{path}", timeout=5) as response:
        return json.loads(response.read())


def new_page(browser: Browser, url: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(url)
    return page


# Run in the page before a test's script: where its sockets go, and a wait.
HELPERS = """() => {
    // The fallback's socket (through wsse, to the app), or the browser's own
    // straight to the app.
    window.socketURL = (path, app) => {
        const url = new URL(path, app ? `http://127.0.0.1:${app}/` : location.href);
        url.protocol = "ws:";
        return url.href;
    };
    window.makeSocket = (path, app, protocols) => app
        ? new __wsse.NativeWebSocket(socketURL(path, app), protocols)
        : (protocols === undefined
            ? new WebSocket(socketURL(path))
            : new WebSocket(socketURL(path), protocols));
    window.opened = (ws) => new Promise((resolve, reject) => {
        ws.addEventListener("open", resolve);
        ws.addEventListener("close", (e) => reject(new Error("closed " + e.code)));
    });
    // The next message, as an app that listens only once it is ready.
    window.nextMessage = (ws, ms) => new Promise((resolve) => {
        const timer = setTimeout(() => resolve("(none within " + ms + " ms)"), ms);
        ws.addEventListener("message", (e) => { clearTimeout(timer); resolve(e.data); }, { once: true });
    });
}"""


def page_for(browser: Browser, fallback: int, path: str = "/plain") -> Page:
    page = new_page(browser, f"http://127.0.0.1:{fallback}{path}")
    page.evaluate(HELPERS)
    return page


# --- 1. events that arrive together ----------------------------------------------


AWAIT_THEN_LISTEN = """async ({id, app}) => {
    // An app that greets as soon as the socket opens: its open and its first
    // message reach wsse, and the page, together.
    const ws = makeSocket("ws/echo?greet=hello&id=" + id, app);
    await opened(ws);
    const greeting = await nextMessage(ws, 3000);
    // Three messages the app sends at once, listened for one after the other.
    ws.send("wsse-cmd:repeat:3:2");
    const rest = [];
    for (let i = 0; i < 3; i++) rest.push(await nextMessage(ws, 3000));
    // A promise callback runs between two messages that arrived together.
    const order = [];
    ws.onmessage = (e) => {
        order.push(e.data);
        Promise.resolve().then(() => order.push("microtask"));
    };
    ws.send("wsse-cmd:repeat:2:1");
    const deadline = Date.now() + 3000;
    while (order.length < 4 && Date.now() < deadline) await new Promise(r => setTimeout(r, 20));
    ws.close();
    return {greeting, rest, order};
}"""


def test_events_that_arrive_together_fire_in_tasks_of_their_own(
    browser: Browser, fallback: int, app: int
) -> None:
    page = page_for(browser, fallback)
    expected = {
        "greeting": "hello",
        "rest": ["rr", "rr", "rr"],
        "order": ["r", "microtask", "r", "microtask"],
    }
    assert page.evaluate(AWAIT_THEN_LISTEN, {"id": "native-together", "app": app}) == expected
    assert page.evaluate(AWAIT_THEN_LISTEN, {"id": "together", "app": None}) == expected
    page.context.close()


# --- 2. back from the back/forward cache -----------------------------------------


def test_a_page_back_from_the_bfcache_finds_its_fallback_sockets_failed(
    browser: Browser, fallback: int, app: int
) -> None:
    """
    Chromium closes native sockets as a page enters the back/forward cache
    (the server sees 1001) and fires error then close (1006) at them when it
    is back.  Headless Chromium under Playwright does not keep these pages
    (they are no-store), so the page's pagehide and pageshow are dispatched
    as the browser would dispatch them, with persisted=true.
    """
    page = page_for(browser, fallback)
    result = page.evaluate(
        """async () => {
            const ws = makeSocket("ws/echo?id=bfcache");
            await opened(ws);
            const transport = __wsse.transportOf(ws);
            const events = [];
            ws.onerror = () => events.push(["error", ws.readyState]);
            ws.onclose = (e) => events.push(["close", e.code, e.wasClean]);
            window.dispatchEvent(new PageTransitionEvent("pagehide", {persisted: true}));
            window.dispatchEvent(new PageTransitionEvent("pageshow", {persisted: true}));
            const deadline = Date.now() + 3000;
            while (events.length < 2 && Date.now() < deadline) {
                await new Promise(r => setTimeout(r, 20));
            }
            // The app's reconnect gets a working socket, on a new session.
            const again = makeSocket("ws/echo?id=bfcache-again");
            await opened(again);
            again.send("back");
            const echo = await nextMessage(again, 3000);
            again.close();
            return {transport, events, readyState: ws.readyState, echo};
        }"""
    )
    assert result == {
        "transport": "fallback",
        "events": [["error", 3], ["close", 1006, False]],
        "readyState": 3,
        "echo": "back",
    }
    deadline = time.monotonic() + 10
    while app_json(app, "/last-close?id=bfcache") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app_json(app, "/last-close?id=bfcache") == {"code": 1001, "reason": ""}
    page.context.close()


# --- 3. a message after close() ---------------------------------------------------


CLOSE_WITH_AN_ECHO_ON_ITS_WAY = """({id, app}) => new Promise(resolve => {
    const ws = makeSocket("ws/echo?id=" + id, app);
    const events = [];
    ws.onopen = () => {
        ws.send("late");  // echoed before the app sees the close that follows
        ws.close(1000, "bye");
        events.push(["readyState", ws.readyState]);
    };
    ws.onmessage = (e) => events.push(["message", e.data]);
    ws.onerror = () => events.push("error");
    ws.onclose = (e) => { events.push(["close", e.code, e.reason, e.wasClean]); resolve(events); };
})"""


def test_a_message_that_arrives_after_close_is_dropped(
    browser: Browser, fallback: int, app: int
) -> None:
    page = page_for(browser, fallback)
    expected = [["readyState", 2], ["close", 1000, "bye", True]]
    assert page.evaluate(CLOSE_WITH_AN_ECHO_ON_ITS_WAY, {"id": "native-late", "app": app}) == (
        expected
    )
    assert page.evaluate(CLOSE_WITH_AN_ECHO_ON_ITS_WAY, {"id": "late", "app": None}) == expected
    page.context.close()


# --- 4. ?wsse=native clears what the tab remembers ----------------------------------


def test_asking_for_native_clears_the_remembered_long_polling(
    browser: Browser, fallback: int
) -> None:
    page = new_page(browser, f"http://127.0.0.1:{fallback}/plain")
    page.evaluate(
        """() => {
            sessionStorage.setItem("wsse:force", "1");
            sessionStorage.setItem("wsse:verdict", String(Date.now()));
            sessionStorage.setItem("wsse:poll", String(Date.now()));
        }"""
    )
    page.goto(f"http://127.0.0.1:{fallback}/plain?wsse=native")
    remembered = page.evaluate(
        """() => ["wsse:force", "wsse:verdict", "wsse:poll"].map(k => sessionStorage.getItem(k))"""
    )
    assert remembered == [None, None, None]
    page.context.close()


# --- 5. slow response headers ------------------------------------------------------


def test_a_server_slow_to_answer_does_not_switch_the_tab_to_long_polls(
    browser: Browser, fallback: int
) -> None:
    """
    Every request for events (stream or poll) waits 3 s before it goes (held
    here, as a slow network would): past the 2 s in which a stream must
    show its preamble once answered.  A slow answer is not a gateway holding
    the stream back: the socket works, and the tab is not switched to
    long-polls for ten minutes.  (A stream whose headers do not come at all
    may be held back by a gateway, headers included: nginx compressing does
    it, see test_fallback_browser; the shim tries a poll, and only a poll
    answered at once shows that.)
    """
    page = page_for(browser, fallback)
    held: list[tuple[float, Route]] = []
    requests: list[str] = []

    def hold(route: Route) -> None:
        held.append((time.monotonic() + 3.0, route))

    page.on("request", lambda request: requests.append(request.url))
    page.route("**/__wsse/events", hold)
    page.route("**/__wsse/poll", hold)
    page.evaluate(
        """() => {
            window.slow = null;
            const ws = makeSocket("ws/echo?id=slow-answers");
            opened(ws).then(() => {
                ws.send("through");
                return nextMessage(ws, 5000);
            }).then(
                (echo) => { window.slow = [echo, __wsse.transportOf(ws)]; },
                (error) => { window.slow = String(error); },
            );
        }"""
    )
    deadline = time.monotonic() + 30
    while page.evaluate("window.slow") is None and time.monotonic() < deadline:
        for due, route in [entry for entry in held if entry[0] <= time.monotonic()]:
            held.remove((due, route))
            _let_through(route)
        page.wait_for_timeout(50)
    assert page.evaluate("window.slow") == ["through", "fallback"]
    assert page.evaluate("sessionStorage.getItem('wsse:poll')") is None
    assert any("/__wsse/events" in url for url in requests)
    page.unroute("**/__wsse/events")
    page.unroute("**/__wsse/poll")
    for _, route in held:
        _let_through(route)
    page.context.close()


def _let_through(route: Route) -> None:
    with contextlib.suppress(PlaywrightError):  # a request the page gave up on meanwhile
        route.continue_()


# --- 6 and 7. the constructor's arguments --------------------------------------------


def test_a_url_with_an_empty_fragment_is_refused(browser: Browser, fallback: int, app: int) -> None:
    page = page_for(browser, fallback)
    thrown = page.evaluate(
        """(app) => ["ws/echo?id=fragment#", "ws/echo?id=fragment#x"].map(path => {
            const names = [];
            for (const native of [app, null]) {
                try {
                    makeSocket(path, native).close();
                    names.push("constructed");
                } catch (e) {
                    names.push(e.name);
                }
            }
            return names;
        })""",
        app,
    )
    assert thrown == [["SyntaxError", "SyntaxError"], ["SyntaxError", "SyntaxError"]]
    assert app_json(app, "/handshakes?id=fragment") == []
    page.context.close()


def test_the_constructor_converts_its_arguments_as_webidl_does(
    browser: Browser, fallback: int, app: int
) -> None:
    """
    No argument is a TypeError; a protocols argument that is not an object
    (null, 5) is one string, so the app is offered "null" or "5".
    """
    page = page_for(browser, fallback)
    result = page.evaluate(
        """async (app) => {
            const thrown = [];
            for (const make of [() => new WebSocket(), () => new __wsse.NativeWebSocket()]) {
                try { make(); thrown.push("constructed"); } catch (e) { thrown.push(e.name); }
            }
            const settled = [];
            for (const [id, protocols] of [["null", null], ["5", 5]]) {
                for (const native of [app, null]) {
                    const name = (native ? "native-" : "") + "protocol-" + id;
                    try {
                        const ws = makeSocket("ws/echo?id=" + name, native, protocols);
                        // Open (the fallback) or failed (Chromium: no protocol chosen).
                        settled.push(new Promise(resolve => {
                            ws.onopen = () => { ws.close(); resolve(); };
                            ws.onclose = () => resolve();
                        }));
                    } catch (e) {
                        thrown.push(name + ": " + e.name);
                    }
                }
            }
            await Promise.all(settled);
            return thrown;
        }""",
        app,
    )
    assert result == ["TypeError", "TypeError"]
    for native in ("native-", ""):
        for offered in ("null", "5"):
            handshakes = app_json(app, f"/handshakes?id={native}protocol-{offered}")
            assert [h["protocols"] for h in handshakes] == [[offered]], (native, offered)  # type: ignore[index]
    page.context.close()


# --- 8. leaving with a Blob not read yet ---------------------------------------------


def test_a_page_leaving_with_a_blob_unread_sends_nothing_after_it(
    browser: Browser, fallback: int
) -> None:
    """
    The POST sent on pagehide stops at the Blob (no frame after it goes, none
    takes its number) and aborts the socket rather than claim a clean 1001
    close for it.  The pagehide is dispatched by the test, in the same task as
    the sends, so the Blob is certainly unread.
    """
    page = page_for(browser, fallback)
    result = page.evaluate(
        """async () => {
            const ws = makeSocket("ws/echo?id=leaving-blob");
            await opened(ws);
            const sent = [];
            const fetch = window.fetch;
            window.fetch = function (url, init) {
                const answer = fetch.apply(this, arguments);
                if (init && init.keepalive) {
                    sent.push(answer.then(r => [r.status, new Uint8Array(init.body)]));
                }
                return answer;
            };
            ws.send("one");
            ws.send(new Blob(["two"]));
            ws.send("three");
            window.dispatchEvent(new PageTransitionEvent("pagehide", {persisted: false}));
            window.fetch = fetch;
            const posts = await Promise.all(sent);
            return posts.map(([status, body]) => {
                const view = new DataView(body.buffer);
                let seq = view.getUint32(0) * 4294967296 + view.getUint32(4);
                const frames = [];
                for (let at = 8; at < body.length;) {
                    const length = view.getUint32(at + 5);
                    const payload = body.slice(at + 9, at + 9 + length);
                    frames.push([seq++, view.getUint8(at), view.getUint32(at + 1),
                                 new TextDecoder().decode(payload)]);
                    at += 9 + length;
                }
                return [status, frames];
            });
        }"""
    )
    assert len(result) == 1
    status, frames = result[0]
    assert status == 204
    first = frames[0][0]
    # text "one", then an abort (type 7) under the Blob's number, for socket 1
    assert frames == [[first, 2, 1, "one"], [first + 1, 7, 1, ""]]
    page.context.close()
