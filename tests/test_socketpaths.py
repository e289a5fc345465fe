"""
--ws-path: sockets reach only the listed paths on the app, whichever way
they come (native, carried, fallback); plain HTTP is not affected.
"""

from __future__ import annotations

import pytest

from tests.support.clients import carried, http, ws_connect
from tests.test_bridge import TEXT, BridgeTestCase
from wsse._socketpaths import allowed, normalise_prefix


def test_prefixes_match_whole_segments_and_nothing_ambiguous() -> None:
    prefixes = [b"/ws", b"/api/kernels"]
    for path in [b"/ws", b"/ws/", b"/ws/echo?x=/../y", b"/api/kernels/1/channels?session=2"]:
        assert allowed(prefixes, path), path
    for path in [
        b"/wsx", b"/", b"/api", b"/api/kernelsx", b"/ws/../admin", b"/ws/./x", b"/ws/%2e%2e/admin",
        b"/ws%2Fadmin", b"/ws/%2F", b"/ws\\..\\admin", b"/ws/%5c", b"/ws/..",
    ]:  # fmt: skip
        assert not allowed(prefixes, path), path
    assert allowed([], b"/anything/../at/all")
    assert allowed([b"/"], b"/x")


def test_prefixes_are_written_as_plain_paths() -> None:
    assert normalise_prefix("ws/") == b"/ws"
    assert normalise_prefix("/api/kernels") == b"/api/kernels"
    assert normalise_prefix("/") == b"/"
    for bad in ["/ws?x", "/a/../b", "/%2e", "/caf\u00e9", "/a\\b"]:
        with pytest.raises(ValueError):
            normalise_prefix(bad)


class Listed(BridgeTestCase):
    overrides = {"heartbeat": 0.2, "socket_paths": (b"/ws",)}

    async def test_sockets_reach_only_the_listed_paths(self) -> None:
        client = await ws_connect(self.port, "/ws/echo?room=1")
        client.sendClose(1000)
        await client.closed
        client = await ws_connect(self.port, carried("/ws/echo?room=2"))
        client.sendClose(1000)
        await client.closed
        reached = len(self.ws.handshakes)
        for path in ["/admin", "/wsx", "/ws/%2e%2e/admin", carried("/admin?x=1")]:
            with self.assertRaises(ConnectionError) as raised:
                await ws_connect(self.port, path)
            self.assertIn("[403]", str(raised.exception))
        page = await self.page()
        self.assertEqual((await page.open(1, "/ws/echo")).name, "open")
        refused = await page.open(2, "/admin")
        self.assertEqual((refused.name, refused.data["code"]), ("close", 1006))
        await page.post([(TEXT, 1, b"still served")])
        self.assertEqual((await page.next_for(1)).data["d"], "still served")
        self.assertEqual(len(self.ws.handshakes), reached + 1)  # only the fallback's /ws/echo
        # Plain HTTP anywhere is the app's business.
        self.assertEqual((await http(self.port, b"GET", b"/admin")).status, 200)
