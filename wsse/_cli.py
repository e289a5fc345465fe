"""
The C{wsse} command and C{python -m wsse}: the twistd service in the foreground.

For users who do not know twistd: the same options as C{twistd wsse}, logging
to standard output at C{--log-level}, stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import sys

from twisted.logger import (
    FilteringLogObserver,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from wsse import _logging, tap


def main(argv: list[str] | None = None) -> None:
    options = tap.Options()
    options.parseOptions(sys.argv[1:] if argv is None else argv)
    level = _logging.LEVELS[options["log-level"].lower()]
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stdout), [LogLevelFilterPredicate(level)])],
        redirectStandardIO=False,
    )
    from twisted.internet import reactor

    service = tap.makeService(options, reactor)
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()  # type: ignore[attr-defined]
