"""Fixtures shared by several test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.tls import Certificate, make_certificate


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, in this test's directory."""
    return make_certificate(tmp_path)
