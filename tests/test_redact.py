"""
Secrets stay out of wsse's log: tokens in queries (the page's, a native
socket's, a carried socket's, a fallback socket's) and fallback session ids.
"""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.support.clients import carried, http, ws_connect
from tests.test_bridge import BridgeTestCase
from wsse._redact import REDACTED, redact_uri

SECRET = "s3cr3t-4aa7"


class Uris(SynchronousTestCase):
    def test_values_of_secret_looking_parameters_are_replaced(self) -> None:
        cases = {
            b"/tree?token=abc": "/tree?token=***",
            b"/ws?session_id=1&room=blue": "/ws?session_id=***&room=blue",
            b"/a?X-Amz-Signature=f&X-Amz-Credential=k&page=2": "/a?X-Amz-Signature=***&X-Amz-Credential=***&page=2",
            b"/a?access_token=x&_xsrf=y&apikey=z&password=p&code=c": "/a?access_token=***&_xsrf=***&apikey=***&password=***&code=***",
            b"/plain?room=blue&flag": "/plain?room=blue&flag",
            b"/no-query": "/no-query",
            b"/odd?=&&token": "/odd?=&&token",
            # Names percent-encoded or with '+' are matched as the app decodes them.
            b"/a?%74oken=abc&%54OKEN=d&session+id=e&room=%74oken": "/a?%74oken=***&%54OKEN=***&session+id=***&room=%74oken",
        }
        for uri, logged in cases.items():
            self.assertEqual(redact_uri(uri), logged)

    def test_a_carried_socket_s_url_is_shown_decoded_and_redacted(self) -> None:
        self.assertEqual(
            redact_uri(carried("/app/ws?token=abc&room=1", mount="/app/").encode()),
            "/app/__wsse/ws/[/app/ws?token=***&room=1]",
        )
        self.assertEqual(redact_uri(b"/__wsse/ws/!!!"), "/__wsse/ws/***")


# What makes a query parameter's name look like a secret's: any of these
# words, in any case, anywhere in the name.
SECRET_WORDS = ["token", "key", "secret", "pass", "auth", "session", "sig", "code", "ticket",
                "jwt", "credential", "xsrf", "csrf", "nonce"]  # fmt: skip


def looks_secret(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


def _printable(exclude: str) -> st.SearchStrategy[str]:
    """Text a query may hold as it is: printable ASCII but C{exclude}."""
    return st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=exclude),
        max_size=12,
    )


NAMES = st.tuples(
    _printable("&#="),
    st.sampled_from(SECRET_WORDS).flatmap(
        lambda word: st.tuples(*(st.sampled_from([c, c.upper()]) for c in word))
    ),
    _printable("&#="),
).map(lambda parts: parts[0] + "".join(parts[1]) + parts[2]) | _printable("&#=")
VALUES = _printable("&#") | st.text(max_size=12).map(lambda value: quote(value, safe=""))
QUERIES = st.lists(st.tuples(NAMES, VALUES), min_size=1, max_size=6)


def query_of(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in pairs)


def assert_redacted(pairs: list[tuple[str, str]], logged_query: str) -> None:
    """Each secret-looking value is replaced, and the rest of the query is as it was."""
    logged = logged_query.split("&")
    assert len(logged) == len(pairs), logged
    for (name, value), shown in zip(pairs, logged, strict=True):
        assert shown == f"{name}={REDACTED if looks_secret(name) else value}"


@given(path=_printable("?#").map(lambda rest: "/" + rest), pairs=QUERIES)
def test_no_secret_looking_value_reaches_a_log_line(
    path: str, pairs: list[tuple[str, str]]
) -> None:
    logged_path, _, logged_query = redact_uri(f"{path}?{query_of(pairs)}".encode()).partition("?")
    assert logged_path == path
    assert_redacted(pairs, logged_query)


@given(pairs=QUERIES)
def test_no_secret_looking_value_of_a_carried_url_reaches_a_log_line(
    pairs: list[tuple[str, str]],
) -> None:
    logged = redact_uri(carried(f"/ws/echo?{query_of(pairs)}").encode())
    shown = "/__wsse/ws/[/ws/echo?"
    assert logged.startswith(shown) and logged.endswith("]"), logged
    assert_redacted(pairs, logged[len(shown) : -1])


class Logs(BridgeTestCase):
    def setUp(self) -> object:
        self.lines: list[str] = []

        def observer(event: LogEvent) -> None:
            line = formatEvent(event)
            if not line.startswith('"127.0.0.1" - - ['):  # the tests' app's own access log
                self.lines.append(line)

        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return super().setUp()

    async def test_no_secret_reaches_the_log(self) -> None:
        await http(self.port, b"GET", f"/page?token={SECRET}".encode())
        for path in [f"/ws/echo?token={SECRET}", carried(f"/ws/echo?session_id={SECRET}")]:
            client = await ws_connect(self.port, path)
            client.sendClose(1000)
            await client.closed
        page = await self.page()
        await page.open(1, f"/ws/echo?auth={SECRET}")
        await page.open(2, f"/elsewhere/../ws/echo\\?token={SECRET}")
        await page.close()
        text = "\n".join(self.lines)
        self.assertIn("token=***", text)  # the lines are there, without the secret
        self.assertIn("session_id=***", text)
        self.assertNotIn(SECRET, text)
        self.assertNotIn(page.session or "no session", text)
