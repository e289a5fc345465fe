"""
Debian's Chromium, driven by Playwright, as every browser test launches it.

C{playwright install} cannot download a browser here, so the tests use
/usr/bin/chromium; the flags keep it from reaching out to the network it does
not have, and let it run as root in a container.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# A name that is not localhost (so a page from it is not a secure context).
OTHER_HOST = "wsse-test.example"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--host-resolver-rules=MAP {OTHER_HOST} 127.0.0.1",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
