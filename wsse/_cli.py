"""
The C{wsse} command and C{python -m wsse}: the twistd service in the foreground.

For users who do not know twistd: the same options as C{twistd wsse}, logging
to standard output at C{--log-level}, stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import io
import sys

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogLevelFilterPredicate,
    globalLogBeginner,
)

from wsse import _logging, tap


def main(argv: list[str] | None = None) -> None:
    options = tap.Options()
    options.parseOptions(sys.argv[1:] if argv is None else argv)
    level = _logging.LEVELS[options["log-level"].lower()]
    # Each line as it is logged, even into a pipe or a file (a journal, "> log").
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                FileLogObserver(sys.stdout, _logging.format_event), [LogLevelFilterPredicate(level)]
            )
        ],
        redirectStandardIO=False,
    )
    from twisted.internet import reactor

    service = tap.makeService(options, reactor)
    failed = []

    def start() -> None:
        # Started from inside the reactor, once its signal handlers are in place,
        # so a SIGTERM that arrives as the port opens still stops wsse cleanly.
        try:
            service.privilegedStartService()
            service.startService()
        except Exception as e:
            failed.append(f"wsse: error: {e}")
            reactor.stop()
        else:
            reactor.addSystemEventTrigger("before", "shutdown", service.stopService)

    reactor.callWhenRunning(start)
    reactor.run()
    if failed:
        raise SystemExit(failed[0])
