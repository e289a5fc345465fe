"""
Nothing lost, duplicated or reordered when a gateway keeps cutting the
browser's connections: SageMaker notebook gateways cut every 10-13 s.

Chromium talks to wsse through a TCP relay that cuts each of the browser's
connections 10 s after it opened (the event stream, and every POST connection
too); the page is forced onto the fallback.  10,000 messages go each way.
Resets run again with the page on long polls, which a gateway that holds the
event stream back leaves it on: a poll's answer cut on the way must lose
nothing either.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Request

from tests.support.gateways import cutting_relay
from tests.support.processes import ROOT, free_port, running

ARTIFACTS = ROOT / "test-artifacts" / "resume"
# Where the shim remembers, for the tab, that it moved to long polls (a timestamp in ms).
POLLING_KEY = "wsse:poll"
ENDPOINTS = "/__wsse/"


@pytest.fixture(scope="module")
def wsse_port() -> Iterator[int]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app, port = free_port(), free_port()
    with running(
        [sys.executable, "-m", "tests.support.resume_app", str(app)], app, log=ARTIFACTS / "app.log"
    ):
        with running(
            [
                sys.executable,
                "-m",
                "wsse",
                "--target",
                f"http://127.0.0.1:{app}",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--force-fallback",
            ],
            port,
            log=ARTIFACTS / "wsse.log",
        ):
            yield port


def defects(received: list[int], count: int) -> dict[str, int]:
    """How the numbers 0..count-1 arrived: lost, duplicated and out of order."""
    seen: set[int] = set()
    duplicated = out_of_order = 0
    highest = -1
    for number in received:
        if number in seen:
            duplicated += 1
            continue
        seen.add(number)
        if number < highest:
            out_of_order += 1
        highest = max(highest, number)
    return {"lost": count - len(seen), "duplicated": duplicated, "reordered": out_of_order}


def run(
    browser: Browser, port: int, count: int, per_second: int, name: str, polling: bool = False
) -> dict[str, object]:
    """
    The page's run, plus under C{"endpoints"} the fallback endpoints it
    requested.  With C{polling}, the tab is on long polls before the shim runs,
    as the shim leaves it once a gateway held its stream back.
    """
    context = browser.new_context()
    if polling:
        context.add_init_script(
            f"sessionStorage.setItem({json.dumps(POLLING_KEY)}, String(Date.now()));"
        )
    page = context.new_page()
    errors: list[str] = []
    endpoints: list[str] = []

    def on_request(request: Request) -> None:
        path = urlsplit(request.url).path
        if ENDPOINTS in path:
            endpoints.append(path.rpartition(ENDPOINTS)[2])

    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", on_request)
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_function("typeof window.runResume === 'function'")
    result = page.evaluate(f"runResume({count}, {per_second})")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    context.close()
    assert errors == []
    result["endpoints"] = endpoints
    return result


def check(result: dict[str, object], count: int) -> None:
    assert result["transport"] == "fallback"
    assert result["closed"] is None, f"the socket closed: {result['closed']}"
    inbound = defects(result["echoes"], count)  # type: ignore[arg-type]
    outbound = defects(result["pushes"], count)  # type: ignore[arg-type]
    print(f"page to app: {inbound}; app to page: {outbound}")
    assert inbound == {"lost": 0, "duplicated": 0, "reordered": 0}
    assert outbound == {"lost": 0, "duplicated": 0, "reordered": 0}


def test_10000_messages_each_way_through_a_gateway_cutting_every_10_seconds(
    browser: Browser, wsse_port: int
) -> None:
    count = 10_000
    log = ARTIFACTS / "wsse.log"
    resumed_before = log.read_text().count("fallback event stream resumed")
    with cutting_relay(wsse_port, cut_every=10) as relay:
        result = run(browser, relay.port, count, per_second=250, name="cut-every-10s")
        cuts = relay.cuts
    print(f"{cuts} connections cut during the run")
    assert cuts >= 4
    check(result, count)
    # The stream was cut and resumed, again and again, with Last-Event-ID.
    resumed = log.read_text().count("fallback event stream resumed") - resumed_before
    print(f"{count} messages each way; the event stream resumed {resumed} times")
    assert resumed >= 3


def test_a_burst_of_sends_goes_in_few_posts_in_order(browser: Browser, wsse_port: int) -> None:
    """One POST in flight at a time, carrying whatever queued meanwhile."""
    count = 5_000
    log = ARTIFACTS / "wsse.log"
    before = log.read_text().count('"POST /__wsse/send ')
    result = run(browser, wsse_port, count, per_second=count * 50, name="burst")
    posts = log.read_text().count('"POST /__wsse/send ') - before
    print(f"{count} messages sent at once went in {posts} POSTs")
    check(result, count)
    assert posts < count / 20


def test_connections_reset_every_2_seconds(browser: Browser, wsse_port: int) -> None:
    """Resets rather than orderly closes, and more often: still nothing lost."""
    count = 2_000
    with cutting_relay(wsse_port, cut_every=2, cut_with="rst") as relay:
        result = run(browser, relay.port, count, per_second=250, name="reset-every-2s")
        cuts = relay.cuts
    print(f"{cuts} connections reset during the run")
    assert cuts >= 4
    check(result, count)


def check_polled(result: dict[str, object]) -> None:
    """The page's events came by long polls, again and again, and never by a stream."""
    endpoints: list[str] = result["endpoints"]  # type: ignore[assignment]
    print(f"{endpoints.count('poll')} polls, {endpoints.count('send')} POSTs")
    assert endpoints.count("poll") >= 10
    assert "events" not in endpoints


def test_connections_reset_every_half_second_while_long_polling(
    browser: Browser, wsse_port: int
) -> None:
    """
    A reset can take a poll's answer with it: the next poll must get it again.
    An answer is in flight for a millisecond or so, so resets come every
    0.5 s, not every 2 s as above, for a run to catch some (about 3 a run
    when measured).
    """
    count = 2_000
    with cutting_relay(wsse_port, cut_every=0.5, cut_with="rst") as relay:
        result = run(
            browser,
            relay.port,
            count,
            per_second=250,
            name="poll-reset-every-half-second",
            polling=True,
        )
        cuts = relay.cuts
    print(f"{cuts} connections reset during the run")
    assert cuts >= 10
    check_polled(result)
    check(result, count)


@pytest.mark.parametrize(
    "how,closed",
    [("killed", ["error", ["close", 1006, False]]), ("stopped", [["close", 1001, True]])],
)
def test_a_session_the_server_no_longer_holds_closes_the_page_s_sockets(
    browser: Browser, tmp_path: Path, how: str, closed: list[object]
) -> None:
    """
    wsse restarts.  Killed, it leaves the page's fallback socket to fail
    (error, 1006) once the new wsse answers that it holds no such session;
    stopped, it closes it with 1001 first.  Either way the socket the page
    opens at once, from its close handler, as apps do, works: one made while
    the old session was still thought alive opens again on a new one.
    """
    app, port = free_port(), free_port()
    wsse = [
        sys.executable, "-m", "wsse", "--target", f"http://127.0.0.1:{app}",
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--force-fallback",
    ]  # fmt: skip
    with running([sys.executable, "-m", "tests.support.resume_app", str(app)], app):
        context = browser.new_context()
        page = context.new_page()
        with running(wsse, port, log=tmp_path / "first.log") as first:
            page.goto(f"http://127.0.0.1:{port}/")
            page.evaluate(
                """() => new Promise(resolve => {
                    window.events = [];
                    const url = new URL("ws?count=0&rate=1", location.href);
                    url.protocol = "ws:";
                    window.first = new WebSocket(url.href);
                    first.onopen = () => { events.push("open"); resolve(); };
                    first.onerror = () => events.push("error");
                    first.onclose = (e) => {
                        events.push(["close", e.code, e.wasClean]);
                        const again = new WebSocket(first.url);
                        again.onopen = () => again.send("c:1");
                        again.onmessage = (e) => { window.reconnected = [__wsse.transportOf(again), e.data]; };
                        again.onclose = (e) => { window.reconnected = ["closed", e.code]; };
                    };
                })"""
            )
            if how == "killed":
                first.kill()
        with running(wsse, port, log=tmp_path / "second.log"):
            page.wait_for_function("window.reconnected !== undefined", timeout=30000)
            assert page.evaluate("events") == ["open", *closed]
            assert page.evaluate("window.reconnected") == ["fallback", "c:1"]
        context.close()


def test_a_page_that_cannot_reach_wsse_fails_its_sockets_after_the_grace_period(
    browser: Browser, tmp_path: Path
) -> None:
    """wsse is gone for good: past its grace period, the page's socket fails as native would."""
    app, port = free_port(), free_port()
    wsse = [
        sys.executable, "-m", "wsse", "--target", f"http://127.0.0.1:{app}",
        "--listen", f"tcp:{port}:interface=127.0.0.1", "--force-fallback", "--grace", "2",
    ]  # fmt: skip
    with running([sys.executable, "-m", "tests.support.resume_app", str(app)], app):
        context = browser.new_context()
        page = context.new_page()
        with running(wsse, port, log=tmp_path / "wsse.log") as process:
            page.goto(f"http://127.0.0.1:{port}/")
            page.evaluate(
                """() => new Promise(resolve => {
                    window.events = [];
                    const url = new URL("ws?count=0&rate=1", location.href);
                    url.protocol = "ws:";
                    const ws = new WebSocket(url.href);
                    ws.onopen = () => { events.push("open"); resolve(); };
                    ws.onerror = () => events.push("error");
                    ws.onclose = (e) => events.push(["close", e.code, e.wasClean]);
                })"""
            )
            process.kill()  # gone without closing anything (a stopped wsse closes with 1001)
        page.wait_for_function("events.length >= 3", timeout=30000)
        assert page.evaluate("events") == ["open", "error", ["close", 1006, False]]
        context.close()
