"""The log file that follows logrotate (wsse.logfile)."""

from __future__ import annotations

import os
from pathlib import Path

from wsse.logfile import ReopeningFile


def test_a_moved_file_is_followed_by_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "wsse.log"
    log = ReopeningFile(str(path))
    log.write("one\n")
    log.flush()
    path.rename(tmp_path / "wsse.log.1")
    log.write("two\n")
    log.flush()
    assert (tmp_path / "wsse.log.1").read_text() == "one\n"
    assert path.read_text() == "two\n"


def test_a_truncated_file_is_appended_to_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "wsse.log"
    log = ReopeningFile(str(path))
    log.write("x" * 1000 + "\n")
    log.flush()
    os.truncate(path, 0)  # logrotate's copytruncate
    log.write("after\n")
    log.flush()
    assert path.read_bytes() == b"after\n"


def test_an_unwritable_path_keeps_the_old_file_until_it_is_usable(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    path = directory / "wsse.log"
    log = ReopeningFile(str(path))
    log.write("one\n")
    moved = tmp_path / "moved"
    directory.rename(moved)  # the path cannot be opened now
    log.write("two\n")
    log.flush()
    assert (moved / "wsse.log").read_text() == "one\ntwo\n"
    directory.mkdir()
    path.touch()  # logrotate's "create"
    log.write("three\n")
    log.flush()
    assert path.read_text() == "three\n"
