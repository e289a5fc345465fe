"""
Pages of other sites cannot open fallback sessions nor send into one.

  1. The rule itself (L{wsse._crosssite}), header by header.
  2. The bridge over real sockets: a session's id is not enough to send into
     it from another site, the frames are never applied, and
     C{--allow-origin} lets a listed origin in.
  3. Chromium: a page on another site (and one on the same host, another
     port) tries every way a browser lets it: a form, C{no-cors} fetches, a
     CORS fetch with the shim's headers, knowing the victim's session id.
     None reaches the app; the victim's socket carries on.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from playwright.sync_api import Browser
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tests.support.chromium import OTHER_HOST
from tests.support.processes import ROOT, free_port, http_server_thread, running, wsse_command
from tests.test_bridge import TEXT, BridgeTestCase
from wsse import _protocol
from wsse._crosssite import origin_of, refusal

# --- 1. the rule --------------------------------------------------------------


def _request(**headers: str) -> DummyRequest:
    request = DummyRequest([b"__wsse", b"send"])
    for name, value in headers.items():
        request.requestHeaders.addRawHeader(name.replace("_", "-"), value)
    return request


class Rule(SynchronousTestCase):
    def test_origins_are_normalised_and_anything_else_is_not_one(self) -> None:
        self.assertEqual(origin_of("HTTPS://App.Example.com:443"), "https://app.example.com")
        self.assertEqual(origin_of("http://127.0.0.1:8081/"), "http://127.0.0.1:8081")
        self.assertEqual(origin_of("http://[::1]:80"), "http://[::1]")
        for bad in ["null", "", "app.example.com", "ftp://x", "http://x/path", "http://u@x",
                    "http://x:99999", "http://x?q"]:  # fmt: skip
            self.assertIsNone(origin_of(bad), bad)

    def test_the_page_s_own_requests_pass(self) -> None:
        self.assertIsNone(refusal(_request(sec_fetch_site="same-origin"), ()))
        self.assertIsNone(
            refusal(_request(origin="http://127.0.0.1:8081", host="127.0.0.1:8081"), ())
        )
        # Behind a gateway that passes its own Host, X-Forwarded-Host names the page's.
        forwarded = _request(
            origin="https://notebook.example",
            host="127.0.0.1:8081",
            x_forwarded_host="notebook.example",
        )
        self.assertIsNone(refusal(forwarded, ()))
        # Not a browser crossing origins (curl, a same-origin GET).
        self.assertIsNone(refusal(_request(host="127.0.0.1:8081"), ()))

    def test_other_sites_are_refused(self) -> None:
        for headers in [
            {"sec_fetch_site": "cross-site", "origin": "https://evil.example"},
            {"sec_fetch_site": "same-site", "origin": "http://127.0.0.1:9999"},
            {"sec_fetch_site": "none"},
            # Sec-Fetch-Site is trusted over an Origin that looks right.
            {"sec_fetch_site": "cross-site", "origin": "http://127.0.0.1:8081", "host": "127.0.0.1:8081"},
            {"origin": "https://evil.example", "host": "127.0.0.1:8081"},
            {"origin": "null", "host": "127.0.0.1:8081"},
            {"origin": "http://127.0.0.1:8081.evil.example", "host": "127.0.0.1:8081"},
        ]:  # fmt: skip
            self.assertIsNotNone(refusal(_request(**headers), ()), headers)

    def test_listed_origins_pass(self) -> None:
        request = _request(sec_fetch_site="cross-site", origin="https://App.example")
        self.assertIsNotNone(refusal(request, ()))
        self.assertIsNone(refusal(request, {"https://app.example"}))


LABELS = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True)
HOSTS = (
    st.lists(LABELS, min_size=1, max_size=4).map(".".join)
    | st.ip_addresses(v=4).map(str)
    | st.ip_addresses(v=6).map(lambda address: f"[{address}]")
)


ORIGIN_PARTS = st.fixed_dictionaries(
    {
        "scheme": st.sampled_from(["http", "https", "HTTP", "hTTps"]),
        "userinfo": st.just(""),
        "host": HOSTS,
        "port": st.none() | st.sampled_from([80, 443]) | st.integers(0, 65535),
        "path": st.sampled_from(["", "/"]),
        "rest": st.just(""),
        "space": st.sampled_from(["", " ", "\t"]),
    }
)


def url_of(parts: dict[str, Any]) -> str:
    port = "" if parts["port"] is None else f":{parts['port']}"
    return (
        f"{parts['space']}{parts['scheme']}://{parts['userinfo']}{parts['host']}{port}"
        f"{parts['path']}{parts['rest']}{parts['space']}"
    )


@given(ORIGIN_PARTS)
def test_origins_are_normalised(parts: dict[str, Any]) -> None:
    scheme, port = parts["scheme"].lower(), parts["port"]
    default = 443 if scheme == "https" else 80
    expected = f"{scheme}://{parts['host'].lower()}" + (
        "" if port in (None, default) else f":{port}"
    )
    assert origin_of(url_of(parts)) == expected


@given(
    parts=ORIGIN_PARTS,
    defect=st.sampled_from(
        [("scheme", s) for s in ["ws", "ftp", "javascript", ""]]
        + [("userinfo", "user@"), ("userinfo", "user:pw@")]
        + [("path", "//"), ("path", "/x"), ("rest", "?q=1"), ("rest", "#f")]
    )
    | st.tuples(st.just("port"), st.integers(65536, 10**6)),
)
def test_a_url_with_anything_an_origin_has_not_is_refused(
    parts: dict[str, Any], defect: tuple[str, object]
) -> None:
    name, value = defect
    assert origin_of(url_of({**parts, name: value})) is None


@given(st.text(max_size=60) | st.text(max_size=40).map(lambda rest: "http://" + rest))
def test_anything_parses_to_a_bare_origin_or_to_none(value: str) -> None:
    origin = origin_of(value)
    if origin is not None:
        # Nothing but scheme and host[:port]; the host's characters are not
        # checked (a browser's Origin has a valid one; an odd one matches nothing).
        assert re.fullmatch(r"https?://[^/?#@]+", origin), origin
        assert origin_of(origin) == origin


# --- 2. the bridge --------------------------------------------------------------


class Bridge(BridgeTestCase):
    async def test_another_site_cannot_open_a_session(self) -> None:
        page = await self.page()
        page.headers[b"Sec-Fetch-Site"] = [b"cross-site"]
        page.headers[b"Origin"] = [b"https://evil.example"]
        page.session = None
        self.assertEqual(await page._request(), 403)
        self.assertEqual(len(self.proxy._bridge._pages), 1)  # the page's own, from self.page()

    async def test_a_session_id_is_not_enough_to_send_from_another_site(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        own = dict(page.headers)
        for site, origin in [
            (b"cross-site", b"https://evil.example"),
            (b"same-site", b"http://127.0.0.1:1"),
        ]:
            page.headers[b"Sec-Fetch-Site"] = [site]
            page.headers[b"Origin"] = [origin]
            # The frames that would come next; refused, they change nothing.
            self.assertEqual(await page.post([(TEXT, 1, b"injected")], seq=page.seq), 403)
            self.assertEqual(
                await page.post(
                    [(_protocol.FRAME_OPEN, 2, b'{"url": "/ws/echo", "protocols": []}')],
                    seq=page.seq,
                ),
                403,
            )
        page.headers = own
        await page.post([(TEXT, 1, b"mine")])
        self.assertEqual((await page.next_for(1)).data["d"], "mine")
        self.assertEqual(len(self.ws.handshakes), 1)

    async def test_an_origin_that_is_not_the_host_s_is_refused_without_fetch_metadata(self) -> None:
        page = await self.page()
        await page.open(1, "/ws/echo")
        page.headers.pop(b"Sec-Fetch-Site")
        page.headers[b"Origin"] = [b"https://evil.example"]
        self.assertEqual(await page.post([(TEXT, 1, b"injected")], seq=page.seq), 403)
        page.headers[b"Origin"] = [f"http://127.0.0.1:{self.port}".encode()]
        await page.post([(TEXT, 1, b"mine")])
        self.assertEqual((await page.next_for(1)).data["d"], "mine")


class AllowedOrigin(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "allowed_origins": frozenset({"https://tools.example"})}

    async def test_a_listed_origin_may_use_the_fallback(self) -> None:
        page = await self.page()
        page.headers[b"Sec-Fetch-Site"] = [b"cross-site"]
        page.headers[b"Origin"] = [b"https://tools.example"]
        await page.open(1, "/ws/echo")
        await page.post([(TEXT, 1, b"listed")])
        self.assertEqual((await page.next_for(1)).data["d"], "listed")
        page.headers[b"Origin"] = [b"https://evil.example"]
        self.assertEqual(await page.post([(TEXT, 1, b"not listed")], seq=page.seq), 403)


# --- 3. Chromium ------------------------------------------------------------------

ARTIFACTS = ROOT / "test-artifacts" / "crosssite"

ATTACK = """
async ({target, session, frames}) => {
  const body = Uint8Array.from(atob(frames), c => c.charCodeAt(0));
  const headers = {"Content-Type": "application/x-wsse-frames", "X-WSSE-Session": session};
  const outcomes = {};
  async function attempt(name, action) {
    try { const r = await action(); outcomes[name] = r.type === "opaque" ? "opaque" : r.status; }
    catch (e) { outcomes[name] = "blocked: " + e.name; }
  }
  await attempt("open a session", () => fetch(target + "__wsse/events", {mode: "no-cors"}));
  await attempt("no-cors POST", () => fetch(target + "__wsse/send",
    {method: "POST", mode: "no-cors", headers, body, credentials: "include"}));
  await attempt("CORS POST", () => fetch(target + "__wsse/send",
    {method: "POST", mode: "cors", headers, body, credentials: "include"}));
  await attempt("text/plain POST", () => fetch(target + "__wsse/send",
    {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body}));
  // A form, into a frame: the one way a page sends a POST without script limits.
  const frame = document.createElement("iframe");
  frame.name = "sink";
  document.body.appendChild(frame);
  const form = document.createElement("form");
  form.method = "POST";
  form.action = target + "__wsse/send";
  form.enctype = "text/plain";
  form.target = "sink";
  const field = document.createElement("input");
  field.name = "x";
  field.value = "injected";
  form.appendChild(field);
  document.body.appendChild(form);
  await new Promise(resolve => { frame.onload = resolve; form.submit(); });
  outcomes["form POST"] = "submitted";
  return outcomes;
}
"""


class _AttackerPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title><body>another site</body>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def attacker_port() -> Iterator[int]:
    with http_server_thread(_AttackerPage) as port:
        yield port


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int, Path]]:
    """The conformance app and wsse in front of it: their ports, and wsse's log."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    app_port, port = free_port(), free_port()
    log = ARTIFACTS / "wsse.log"
    app = [sys.executable, "-m", "tests.support.conformance_app", "--port", str(app_port)]
    with running(app, app_port, log=ARTIFACTS / "app.log"):
        options = [
            "--target",
            f"http://127.0.0.1:{app_port}",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
        ]
        with running(wsse_command(*options), port, log=log):
            yield app_port, port, log


@pytest.mark.parametrize("host", [OTHER_HOST, "127.0.0.1"], ids=["cross-site", "same-site"])
def test_a_page_of_another_site_cannot_use_the_fallback(
    browser: Browser, servers: tuple[int, int, Path], attacker_port: int, host: str
) -> None:
    app_port, port, log = servers
    context = browser.new_context()
    try:
        victim = context.new_page()
        victim.goto(f"http://127.0.0.1:{port}/plain?wsse=fallback")
        session = victim.evaluate(
            """async (id) => {
              window.got = [];
              const socket = window.victim = new WebSocket(`ws://${location.host}/ws/echo?id=${id}`);
              socket.onmessage = (event) => window.got.push(event.data);
              await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
              return window.__wsse.sessionId();
            }""",
            f"victim-{host}",
        )
        assert session
        # What the page's next POST would be: socket 1's next message, and a new socket.
        frames = _protocol.encode_frames(
            1,
            [
                (_protocol.FRAME_TEXT, 1, b"injected"),
                (
                    _protocol.FRAME_OPEN,
                    9,
                    json.dumps({"url": f"/ws/echo?id=attacker-{host}", "protocols": []}).encode(),
                ),
            ],
        )
        attacker = context.new_page()
        statuses: list[tuple[str, int]] = []
        attacker.on(
            "response",
            lambda r: statuses.append((r.request.method, r.status)) if "__wsse" in r.url else None,
        )
        attacker.goto(f"http://{host}:{attacker_port}/")
        outcomes = attacker.evaluate(
            ATTACK,
            {
                "target": f"http://127.0.0.1:{port}/",
                "session": session,
                "frames": base64.b64encode(frames).decode(),
            },
        )
        (ARTIFACTS / f"outcomes-{host}.json").write_text(
            json.dumps({"page": outcomes, "responses": statuses})
        )
        assert outcomes["CORS POST"].startswith("blocked"), outcomes
        assert statuses and all(status in (403, 405) for _, status in statuses), statuses
        # The victim's socket carries on, and nothing reached it or the app before its own message.
        victim.evaluate("window.victim.send('mine')")
        victim.wait_for_function("window.got.length > 0", timeout=20_000)
        assert victim.evaluate("window.got") == ["mine"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{app_port}/handshakes?id=attacker-{host}"
        ) as answer:
            assert json.loads(answer.read()) == []
        assert "cross-site request" in log.read_text()
    finally:
        context.close()
