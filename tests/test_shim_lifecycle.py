"""
The shim's edges in Chromium: a socket closed while it connects, a page that
goes away, objects from another frame, close codes as WebIDL converts them,
the remembered verdict expiring, and the demo's switch to the fallback.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.support.gateways import nginx_gateway, stalling_relay
from tests.support.processes import ROOT, conformance_app, free_port, running
from tests.support.tls import Certificate

ARTIFACTS = ROOT / "test-artifacts" / "shim-lifecycle"


@pytest.fixture(scope="module")
def app() -> Iterator[int]:
    with conformance_app(ARTIFACTS) as port:
        yield port


def wsse(app: int, port: int, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "wsse", "--target", f"http://127.0.0.1:{app}",
        "--listen", f"tcp:{port}:interface=127.0.0.1", *options,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def fallback(app: int) -> Iterator[int]:
    """wsse forcing the fallback, in front of the app."""
    port = free_port()
    with running(wsse(app, port, "--force-fallback"), port, log=ARTIFACTS / "wsse-fallback.log"):
        yield port


def last_close(app: int, socket_id: str) -> object:
    url = f"http://127.0.0.1:{app}/last-close?id={socket_id}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def new_page(browser: Browser, url: str) -> Page:
    page = browser.new_context().new_page()
    page.goto(url)
    return page


OPEN_AND_WAIT = """(id) => new Promise((resolve, reject) => {
    const url = new URL("ws/echo?id=" + id, location.href);
    url.protocol = "ws:";
    const ws = new WebSocket(url.href);
    window.socket = ws;
    ws.onopen = () => resolve(__wsse.transportOf(ws));
    ws.onclose = (e) => reject(new Error("closed " + e.code));
})"""


def test_closing_while_connecting_fails_as_native_and_the_app_keeps_nothing(
    browser: Browser, fallback: int, app: int
) -> None:
    page = new_page(browser, f"http://127.0.0.1:{fallback}/plain")
    events = page.evaluate(
        """() => new Promise(resolve => {
            const url = new URL("ws/echo?id=closed-early", location.href);
            url.protocol = "ws:";
            const ws = new WebSocket(url.href);
            const events = [];
            ws.onopen = () => events.push("open");
            ws.onerror = () => events.push("error");
            ws.onclose = (e) => { events.push(["close", e.code, e.wasClean]); resolve(events); };
            ws.close();
            events.push(["readyState", ws.readyState]);
        })"""
    )
    assert events == [["readyState", 2], "error", ["close", 1006, False]]
    assert last_close(app, "closed-early") is None  # no closing handshake reached the app
    page.context.close()


def test_a_page_that_goes_away_closes_its_sockets_as_going_away(
    browser: Browser, fallback: int, app: int
) -> None:
    page = new_page(browser, f"http://127.0.0.1:{fallback}/plain")
    assert page.evaluate(OPEN_AND_WAIT, "leaving") == "fallback"
    page.goto(f"http://127.0.0.1:{fallback}/some/other")
    deadline = time.monotonic() + 10
    while last_close(app, "leaving") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last_close(app, "leaving") == {"code": 1001, "reason": ""}
    page.context.close()


def test_binary_from_another_frame_and_close_codes_as_webidl_converts_them(
    browser: Browser, fallback: int
) -> None:
    page = new_page(browser, f"http://127.0.0.1:{fallback}/plain")
    page.evaluate(OPEN_AND_WAIT, "realm")
    result = page.evaluate(
        """() => new Promise(resolve => {
            const frame = document.createElement("iframe");
            frame.src = "/some/frame";
            frame.onload = async () => {
                const other = frame.contentWindow;
                socket.binaryType = "arraybuffer";
                const got = [];
                socket.onmessage = (e) => got.push(Array.from(new Uint8Array(e.data)));
                socket.send(new other.Uint8Array([1, 2, 3]).buffer);
                socket.send(new other.Blob([new Uint8Array([4, 5])]));
                while (got.length < 2) await new Promise(r => setTimeout(r, 20));
                const checks = {
                    got,
                    length: WebSocket.length,
                    tag: Object.prototype.toString.call(socket),
                };
                try { socket.close(1000.5); checks.half = "ok"; } catch (e) { checks.half = e.name; }
                resolve(checks);
            };
            document.body.append(frame);
        })"""
    )
    assert result == {
        "got": [[1, 2, 3], [4, 5]],
        "length": 1,
        "tag": "[object WebSocket]",
        "half": "ok",  # [Clamp] rounds 1000.5 to the even 1000
    }
    page.context.close()


@pytest.fixture(scope="module")
def relayed(app: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """wsse behind a gateway that relays WebSocket: native sockets work."""
    port = free_port()
    with running(wsse(app, port), port, log=ARTIFACTS / "wsse-relayed.log"):
        with nginx_gateway("relay", port, tmp_path_factory.mktemp("relay")) as gateway:
            yield gateway.port


def test_a_remembered_verdict_expires_and_the_native_socket_is_tried_again(
    browser: Browser, relayed: int
) -> None:
    page = new_page(browser, f"http://127.0.0.1:{relayed}/plain")
    # A verdict remembered eleven minutes ago, then one a minute ago.
    page.evaluate("sessionStorage.setItem('wsse:verdict', String(Date.now() - 11 * 60 * 1000))")
    page.reload()
    assert page.evaluate(OPEN_AND_WAIT, "reprobe") == "native"
    page.evaluate("sessionStorage.setItem('wsse:verdict', String(Date.now() - 60 * 1000))")
    page.reload()
    assert page.evaluate(OPEN_AND_WAIT, "remembered") == "fallback"
    page.context.close()


def test_the_demo_offers_the_fallback(browser: Browser, tmp_path: Path) -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "wsse",
        "--demo",
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
    ]
    with running(command, port, log=tmp_path / "demo.log"):
        page = new_page(browser, f"http://127.0.0.1:{port}/")
        page.wait_for_function("document.getElementById('state').textContent === 'open'")
        assert page.inner_text("#transport") == "native"
        page.click("text=force the fallback")
        page.wait_for_function("document.getElementById('state').textContent === 'open'")
        assert page.inner_text("#transport") == "fallback"
        page.screenshot(path=str(ARTIFACTS / "demo-fallback.png"))
        page.click("text=go back to probing")
        page.wait_for_function("document.getElementById('state').textContent === 'open'")
        assert page.inner_text("#transport") == "native"
        page.context.close()


def test_the_probe_timeout_is_the_server_s_option(
    browser: Browser, app: int, tmp_path: Path
) -> None:
    """With --probe-timeout 8, a stalled native socket is still being probed past the default 3 s."""
    port = free_port()
    with running(wsse(app, port, "--probe-timeout", "8"), port, log=tmp_path / "wsse.log"):
        with stalling_relay(port) as relay:
            page = new_page(browser, f"http://127.0.0.1:{relay.port}/plain")
            assert "probe=8000" in page.evaluate(
                "document.querySelector('script[data-wsse]').getAttribute('data-wsse')"
            )
            states = page.evaluate(
                """() => new Promise(resolve => {
                    const url = new URL("ws/echo?id=probe", location.href);
                    url.protocol = "ws:";
                    const ws = new WebSocket(url.href);
                    const states = [];
                    setTimeout(() => states.push(ws.readyState), 4000);
                    ws.onopen = () => { states.push(__wsse.transportOf(ws)); resolve(states); };
                })"""
            )
            assert states == [0, "fallback"]
            page.context.close()


def test_a_socket_the_browser_will_not_open_natively_moves_to_the_fallback(
    browser: Browser, app: int, certificate: Certificate, tmp_path: Path
) -> None:
    """
    A page served over https may not open ws:// (mixed content: older browsers
    throw a SecurityError from the constructor, Chromium fails the socket); the
    fallback, over https, carries it.
    """
    port = free_port()
    command = [
        sys.executable, "-m", "wsse", "--target", f"http://127.0.0.1:{app}",
        "--listen", certificate.listen(port),
    ]  # fmt: skip
    with running(command, port, log=tmp_path / "wsse.log"):
        context = browser.new_context(ignore_https_errors=True)
        page = context.new_page()
        page.goto(f"https://127.0.0.1:{port}/plain")
        result = page.evaluate(
            """() => new Promise(resolve => {
                let thrown = null;
                try { new __wsse.NativeWebSocket(`ws://${location.host}/ws/echo`).close(); }
                catch (e) { thrown = e.name; }
                const ws = new WebSocket(`ws://${location.host}/ws/echo?id=mixed`);
                ws.onopen = () => ws.send("over https");
                ws.onmessage = (e) => resolve([thrown, __wsse.transportOf(ws), e.data, ws.url]);
                ws.onclose = (e) => resolve(["closed", e.code]);
            })"""
        )
        thrown, *carried = result
        assert thrown in (None, "SecurityError")
        assert carried == ["fallback", "over https", f"ws://127.0.0.1:{port}/ws/echo?id=mixed"]
        context.close()
