"""
Secrets stay out of wsse's log: tokens in queries (the page's, a native
socket's, a carried socket's, a fallback socket's) and fallback session ids.
"""

from __future__ import annotations

from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.support.clients import carried, http, ws_connect
from tests.test_bridge import BridgeTestCase
from wsse._redact import redact_uri

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
        }
        for uri, logged in cases.items():
            self.assertEqual(redact_uri(uri), logged)

    def test_a_carried_socket_s_url_is_shown_decoded_and_redacted(self) -> None:
        self.assertEqual(
            redact_uri(carried("/app/ws?token=abc&room=1", mount="/app/").encode()),
            "/app/__wsse/ws/[/app/ws?token=***&room=1]",
        )
        self.assertEqual(redact_uri(b"/__wsse/ws/!!!"), "/__wsse/ws/***")


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
