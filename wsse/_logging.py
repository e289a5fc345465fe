"""
Log levels for wsse's own events.

twistd starts logging after the plugin's C{makeService} and gives it no hook on
its observer, so C{--log-level} filters at the source: every wsse module logs
through L{observer}.  The C{wsse} command, which owns its logging, filters
everything (L{wsse._cli}).
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
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
    predicate.defaultLogLevel = LEVELS[name.lower()]
