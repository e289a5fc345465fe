"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tls import Certificate, make_certificate


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, in this test's directory."""
    return make_certificate(tmp_path)


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
