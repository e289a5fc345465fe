"""
Log levels for wsse's own events, and its log lines.

twistd starts logging after the plugin's C{makeService} and gives it no hook on
its observer, so C{--log-level} filters at the source: every wsse module logs
through L{observer}.  The C{wsse} command, which owns its logging, filters
everything (L{wsse._cli}).
"""

from __future__ import annotations

import math
from functools import lru_cache

from twisted.logger import (
    FilteringLogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEventAsClassicLogText,
    formatTime,
    globalLogPublisher,
)

# ws-sse-proxy (uvicorn) spellings, plus "warn".
LEVELS = {
    "critical": LogLevel.critical,
    "error": LogLevel.error,
    "warning": LogLevel.warn,
    "warn": LogLevel.warn,
    "info": LogLevel.info,
    "debug": LogLevel.debug,
    "trace": LogLevel.debug,
}

predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
observer = FilteringLogObserver(globalLogPublisher, [predicate])


def set_level(name: str) -> None:
    # The predicate reads the level it was made with from its table, not
    # from defaultLogLevel (which clearLogLevels would go back to).
    level = LEVELS[name.lower()]
    predicate.defaultLogLevel = level
    predicate.setLogLevelForNamespace("", level)


def enabled(level: LogLevel, namespace: str) -> bool:
    """Whether an event of C{level} in C{namespace} passes C{--log-level}."""
    return level >= predicate.logLevelForNamespace(namespace)


# The attribute of a request that names its access line's level.
_ACCESS_LEVEL = "wsse_access_level"


def routine(request: object) -> None:
    """
    Log C{request}'s access line at debug, not info.

    A page on the fallback sends a request per batch of messages (and, on
    long-polls, per batch of events): logged at info they would drown the
    app's own requests, where a native WebSocket logs one line for all its
    messages.  Each line also cost a tenth of the CPU of a round trip.
    """
    setattr(request, _ACCESS_LEVEL, LogLevel.debug)


def access_level(request: object) -> LogLevel:
    """The level of C{request}'s access line: info unless L{routine} and answered 2xx."""
    if getattr(request, "code", 200) >= 300:
        return LogLevel.info  # a routine request that failed is worth a line
    level: LogLevel = getattr(request, _ACCESS_LEVEL, LogLevel.info)
    return level


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


def format_event(event: LogEvent) -> str | None:
    """
    The line twistd writes for C{event} (C{formatEventAsClassicLogText}),
    with its fields filled in by C{str.format_map}.

    Twisted fills them in through C{string.Formatter}, in Python, so that a
    field may call what it names (C{"{f()}"}); the access log's line per
    request made that 8% of the CPU wsse spent on a small request.  An event
    whose format may call, or reads a private attribute (which Twisted reads
    from its own wrapper of the field), carries a traceback, or fails to
    format here goes to Twisted's own formatter, which says what went wrong
    (a field whose formatting fails is then formatted twice).
    """
    form = event.get("log_format")
    if (
        type(form) is not str
        or "()" in form
        or "._" in form
        or "log_failure" in event
        or "log_flattened" in event
    ):
        return formatEventAsClassicLogText(event, formatTime=format_time)
    try:
        text = form.format_map(event)
        if not text:
            return None
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
        else:
            system = str(system)
        line = f"{format_time(event.get('log_time'))} [{system}] {text}"
    except BaseException:  # as Twisted's formatter catches
        return formatEventAsClassicLogText(event, formatTime=format_time)
    return line.replace("\n", "\n\t") + "\n"
