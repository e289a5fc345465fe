"""
A log file that logrotate can rotate under a running daemon.

twistd's own C{--logfile} keeps writing to a renamed file and, if truncated,
goes on at its old offset; this observer appends, and reopens its path when the
file there is no longer the one it has open.  Use it with
C{twistd --logger=wsse.logfile.observer}, naming the file in C{WSSE_LOGFILE}
(the init script does both).
"""

from __future__ import annotations

import os
from typing import IO, Any, cast

from twisted.logger import FileLogObserver, ILogObserver

from wsse._logging import format_event


class ReopeningFile:
    """A text file opened for appending, reopened when its path moves on."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: IO[str] = open(path, "a", encoding="utf-8")

    def write(self, text: str) -> None:
        try:
            moved = os.stat(self._path).st_ino != os.fstat(self._file.fileno()).st_ino
        except OSError:
            moved = True
        if moved:
            try:
                replacement = open(self._path, "a", encoding="utf-8")
            except OSError:
                pass  # keep the old file until the path can be written again
            else:
                self._file.close()
                self._file = replacement
        self._file.write(text)

    def flush(self) -> None:
        self._file.flush()


def observer() -> ILogObserver:
    """The factory for twistd's C{--logger}: text lines appended to C{$WSSE_LOGFILE}."""
    path = os.environ.get("WSSE_LOGFILE", "wsse.log")
    return FileLogObserver(cast(IO[Any], ReopeningFile(path)), format_event)
