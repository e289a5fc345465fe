"""
The C{wsse} command and C{python -m wsse}: the twistd service in the foreground.

For users who do not know twistd: the same options as C{twistd wsse}, logging
to standard output at C{--log-level}, stopped by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import io
import math
import sys
from functools import lru_cache

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    LogEvent,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    formatTime,
    globalLogBeginner,
)

from wsse import _logging, tap


def format_time(when: float | None) -> str:
    """
    Twisted's C{formatTime}, worked out once a second: the access log writes a
    line per request, and building the time zone and date for each showed in
    profiles.
    """
    if when is None:
        return formatTime(when)
    # The second that datetime.fromtimestamp shows: it rounds to the microsecond.
    fraction, second = math.modf(when)
    micro = round(fraction * 1e6)
    return _format_second(int(second) + (micro >= 1_000_000) - (micro < 0))


@lru_cache(maxsize=1)
def _format_second(second: int) -> str:
    return formatTime(second)


def _format_event(event: LogEvent) -> str | None:
    return formatEventAsClassicLogText(event, formatTime=format_time)


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
                FileLogObserver(sys.stdout, _format_event), [LogLevelFilterPredicate(level)]
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
