"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.support.chromium import chromium
from tests.support.tls import Certificate, make_certificate


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, in this test's directory."""
    return make_certificate(tmp_path)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, one per test module that drives a browser."""
    with chromium() as launched:
        yield launched


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The end-to-end matrix's table, when the run included it (tests/test_matrix.py)."""
    from tests.support.matrix import ARTIFACTS, RESULTS, table

    if not RESULTS:
        return
    text = table(RESULTS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "table.md").write_text(text)
    terminalreporter.write_sep("=", "end-to-end matrix (app x gateway)")
    terminalreporter.write(text)
