"""
The fallback's POST channel in Chromium, where it must not stall: an
acknowledgement does not wait behind frames the server holds back for a slow
app, a POST that a gateway never answers goes again, and frames held back for
long are not taken for a server gone.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager

import pytest
from playwright.sync_api import Browser, Route

from tests.support.processes import ROOT, conformance_app, free_port, running, wsse_process

ARTIFACTS = ROOT / "test-artifacts" / "post-channel"


def wsse(app: int, log: str, *options: str) -> AbstractContextManager[int]:
    """wsse forcing the fallback in front of the app; its port."""
    return wsse_process(app, ARTIFACTS / log, "--force-fallback", *options)


# --- an acknowledgement while frames are held back ----------------------------------


@pytest.fixture(scope="module")
def streaming_app() -> Iterator[int]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "tests.support.streaming_app", "--port", str(port)]
    with running(command, port, log=ARTIFACTS / "streaming-app.log"):
        yield port


STREAM_WHILE_SENDING = """async ({pushed, sent, size}) => {
    const ws = new WebSocket(`ws://${location.host}/ws/stream?count=${pushed}&size=${size}&pace=10`);
    ws.binaryType = "arraybuffer";
    let received = 0;
    const all = new Promise((resolve) => {
        const timer = setTimeout(resolve, 30000);
        ws.onclose = () => { clearTimeout(timer); resolve(); };
        ws.onmessage = (e) => {
            if (e.data.byteLength === size && ++received === pushed + sent) {
                clearTimeout(timer);
                resolve();
            }
        };
    });
    ws.onopen = () => { for (let i = 0; i < sent; i++) ws.send(new Uint8Array(size)); };
    await all;
    ws.close();
    return {transport: __wsse.transportOf(ws), received};
}"""


def test_an_app_streaming_while_the_page_sends_gets_its_acknowledgements(
    browser: Browser, streaming_app: int
) -> None:
    """
    The app streams 50 MiB, 10 ms a message, and reads nothing until it is
    done, while the page sends 12 MiB at once.  The server holds the page's
    POST back once the app's socket is full, and stops reading the app once
    4 MiB of events wait for the page's acknowledgement: the
    acknowledgement must not wait behind that POST (it did, and neither side
    moved again).  Natively the browser reads while it sends; the fallback
    gets every message too.
    """
    with wsse(streaming_app, "wsse-stream.log") as port:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        result = page.evaluate(STREAM_WHILE_SENDING, {"pushed": 200, "sent": 48, "size": 262144})
        page.context.close()
    assert result == {"transport": "fallback", "received": 248}


# --- a POST that is never answered ----------------------------------------------------


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    with conformance_app(ARTIFACTS) as port:
        yield port


ECHO = """async (id) => {
    const ws = new WebSocket(`ws://${location.host}/ws/echo?id=${id}`);
    const opened = await new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 20000);
        ws.onopen = () => { clearTimeout(timer); resolve(true); };
        ws.onclose = () => { clearTimeout(timer); resolve(false); };
    });
    if (!opened) return "not open after 20 s: " + ws.readyState;
    const echoes = [];
    ws.onmessage = (e) => echoes.push(e.data);
    ws.send("one");
    ws.send("two");
    const deadline = Date.now() + 20000;
    while (echoes.length < 2 && Date.now() < deadline) await new Promise(r => setTimeout(r, 20));
    await new Promise(r => setTimeout(r, 200));  // (a duplicate would be here by now)
    ws.close();
    return echoes;
}"""


@pytest.mark.parametrize("lost", ["request", "answer"])
def test_a_post_never_answered_goes_again_and_is_applied_once(
    browser: Browser, app: int, lost: str
) -> None:
    """
    The first POST of frames (the socket's open) gets no answer, as on a
    connection a gateway dropped without a word: it never reaches wsse
    (C{request}), or wsse applies it and its answer never reaches the page
    (C{answer}).  The page sends it again once it has waited as long as it
    waits for a silent stream (three heartbeats, 3 s here): the socket
    opens, once, and echoes.
    """
    swallowed: list[str] = []

    def swallow_first(route: Route) -> None:
        body = route.request.post_data_buffer or b""
        if len(body) > 8 and not swallowed:  # frames, not an acknowledgement alone
            swallowed.append(route.request.url)
            if lost == "answer":
                route.fetch()  # wsse gets it; the page never hears back
            return
        route.continue_()

    with wsse(app, f"wsse-lost-{lost}.log", "--heartbeat", "1") as port:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{port}/plain")
        page.route("**/__wsse/send", swallow_first)
        echoes = page.evaluate(ECHO, f"lost-{lost}")
        page.context.close()
    assert len(swallowed) == 1
    assert echoes == ["one", "two"]
    url = f"http://127.0.0.1:{app}/handshakes?id=lost-{lost}"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert len(json.loads(response.read())) == 1


def test_frames_held_back_longer_than_the_grace_period_do_not_fail_the_page(
    browser: Browser, streaming_app: int
) -> None:
    """
    The app reads nothing for 8 s while the page sends 8 MiB: the server
    holds the page's POST back past three heartbeats (3 s here, after which
    the page asks again) and past the grace period (2 s), after which a page
    whose POSTs keep failing gives up.  A POST the server holds back is not a
    failing one: the socket stays open and every message arrives.
    """
    with wsse(streaming_app, "wsse-slow.log", "--heartbeat", "1", "--grace", "2") as port:
        page = browser.new_context().new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        result = page.evaluate(
            STREAM_WHILE_SENDING.replace("pace=10", "pace=8000"),
            {"pushed": 1, "sent": 32, "size": 262144},
        )
        page.context.close()
    assert result == {"transport": "fallback", "received": 33}


SEND_ONE = """async (size) => {
    const ws = new WebSocket(`ws://${location.host}/ws/echo?id=slow-upload`);
    await new Promise((resolve) => { ws.onopen = resolve; ws.onclose = resolve; });
    if (ws.readyState !== WebSocket.OPEN) return "not open";
    return await new Promise((resolve) => {
        const timer = setTimeout(() => resolve("no echo after 30 s"), 30000);
        ws.onmessage = (e) => { clearTimeout(timer); ws.close(); resolve(e.data.length); };
        ws.onclose = (e) => { clearTimeout(timer); resolve("closed " + e.code); };
        ws.send("x".repeat(size));
    });
}"""


def test_a_post_slower_to_upload_than_three_heartbeats_is_let_finish(
    browser: Browser, app: int
) -> None:
    """
    A 200 kB message over an upload link of 30 kB/s (Chromium's own
    throttling) takes about 7 s, past the 3 s after which a POST that moves
    nothing is taken for lost: it keeps moving, and goes once.
    """
    bodies: list[int] = []
    with wsse(app, "wsse-slow-upload.log", "--heartbeat", "1", "--grace", "10") as port:
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/plain")
        page.on(
            "request",
            lambda r: (
                bodies.append(len(r.post_data_buffer or b""))
                if r.url.endswith("/__wsse/send")
                else None
            ),
        )
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send(
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 30_000},
        )
        echoed = page.evaluate(SEND_ONE, 200_000)
        context.close()
    assert echoed == 200_000
    assert [size for size in bodies if size > 100_000] == [200_017]
