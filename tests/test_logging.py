"""
wsse's log lines: the same text as twistd's classic format, written faster.

Every case is checked against Twisted's own C{formatEventAsClassicLogText}
(with the same time formatter), so a difference in any field, the system,
line breaks or an event Twisted cannot format shows as a failure.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import (
    Logger,
    LogLevel,
    formatEventAsClassicLogText,
    formatTime,
    globalLogPublisher,
)
from twisted.python.failure import Failure

from wsse import _logging
from wsse._logging import format_event, format_time

_WHEN = 1_790_000_000.25


def _event(log_format: object, **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "log_format": log_format,
        "log_level": LogLevel.info,
        "log_namespace": "wsse._site",
        "log_time": _WHEN,
    }
    event.update(fields)
    return event


def _twisted(event: dict[str, object]) -> str | None:
    return formatEventAsClassicLogText(event, formatTime=format_time)


class _Named:
    name = "inner"

    def __repr__(self) -> str:
        return "<Named>"

    def __format__(self, spec: str) -> str:
        return f"named:{spec}"

    def shout(self) -> str:
        return "LOUD"


def _failure() -> Failure:
    try:
        raise ValueError("boom")
    except ValueError:
        return Failure()


class _Interrupting:
    def __format__(self, spec: str) -> str:
        raise KeyboardInterrupt

    def __repr__(self) -> str:
        return "<Interrupting>"


class _System:
    def __str__(self) -> str:
        return "str-form"

    def __format__(self, spec: str) -> str:
        return "format-form"


def _raising_system() -> object:
    class Bad:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    return Bad()


EVENTS = [
    # The access log's own line.
    _event(
        '{client} "{method} {uri} {protocol}" {code} {length}',
        client="127.0.0.1",
        method="GET",
        uri="/a?b=c",
        protocol="HTTP/1.1",
        code=200,
        length=88,
    ),
    _event("{why!r} and {n:>6} and {x:.2f} and {{braces}}", why="it's", n=7, x=1.23456),
    _event("{obj.name} {obj!r} {obj:spec}", obj=_Named()),
    _event("{items[1]} {mapping[key]}", items=[1, 2], mapping={"key": "v"}),
    _event("{obj.shout()}", obj=_Named()),  # a call: Twisted's own syntax
    # Private attributes: Twisted reads them from its wrapper of the field.
    _event("{obj.__class__.__name__}", obj=_Named()),
    _event("{obj._wrapped}", obj=_Named()),
    _event("two\nlines {x}", x="and\nthree"),
    _event("{missing}"),  # Twisted says it cannot format it
    _event("{x:d}", x="not a number"),
    _event("", x=1),  # nothing to write
    _event(None),
    _event(b"bytes {x}", x=1),
    _event("failed: {why}", why="it broke", log_failure=_failure()),
    _event("{x}", x=1, log_system="custom-system"),
    _event("{x}", x=1, log_system=_raising_system()),
    _event("{x}", x=1, log_system=_System()),
    _event("{x}", x=1, log_level=None),
    _event("{x}", x=1, log_namespace=None),
    _event("{x}", x=1, log_time=None),
    {"log_format": "{x}", "x": 1},  # no level, namespace or time
    _event("{x}", x=1, log_flattened={"x!:": "flat"}),
]


@pytest.mark.parametrize("event", EVENTS, ids=range(len(EVENTS)))
def test_each_event_is_written_as_twistd_writes_it(event: dict[str, object]) -> None:
    assert format_event(dict(event)) == _twisted(dict(event))


def test_a_field_that_raises_even_an_interrupt_is_reported_as_twisted_reports_it() -> None:
    event = _event("{x}", x=_Interrupting())
    try:
        line = format_event(dict(event))
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped; Twisted's formatter catches it")
    assert line == _twisted(dict(event))


@settings(deadline=None)
@given(
    st.text(alphabet=st.sampled_from(list("ab{}!:.[]()0xrs_\n "))),
    st.dictionaries(st.sampled_from(["a", "b", "x"]), st.integers() | st.text(max_size=5)),
)
def test_any_format_and_fields_give_twisted_s_text(form: str, fields: dict[str, object]) -> None:
    event = _event(form, **fields)
    assert format_event(dict(event)) == _twisted(dict(event))


def test_log_times_are_twisted_s_though_worked_out_once_a_second() -> None:
    """The cached formatter prints what formatTime prints, rounding into the next second too."""
    now = int(time.time())
    instants: list[float | None] = [None, 0.0, -1.5, -1.9999999, -0.0000001]
    for second in (now, now + 1, now - 86_400 * 180, 2_000_000_000):
        for fraction in (0.0, 0.0000004, 0.5, 0.9999994, 0.9999995, 0.99999951, 0.9999999):
            instants.append(second + fraction)
    for when in [*instants, *reversed(instants)]:
        assert format_time(when) == formatTime(when), when


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("warning", ["warn", "error"]),
        ("info", ["info", "warn", "error"]),
        ("debug", ["debug", "info", "warn", "error"]),
        ("error", ["error"]),
    ],
)
def test_log_level_filters_wsse_s_events_at_their_source(level: str, shown: list[str]) -> None:
    """What twistd relies on: it gives the plugin no hook on its own observer."""
    seen: list[str] = []

    def observe(event: dict[str, object]) -> None:
        if event.get("log_namespace") == "wsse.test":
            seen.append(event["log_level"].name)  # type: ignore[attr-defined]

    globalLogPublisher.addObserver(observe)
    before = _logging.predicate.logLevelForNamespace("")
    try:
        _logging.set_level(level)
        log = Logger(namespace="wsse.test", observer=_logging.observer)
        for name in ("debug", "info", "warn", "error"):
            getattr(log, name)("an event")
        assert seen == shown
        assert [
            name for name in ("debug", "info", "warn", "error")
            if _logging.enabled(LogLevel.lookupByName(name), "wsse.test")
        ] == shown  # fmt: skip
    finally:
        _logging.set_level(before.name)
        globalLogPublisher.removeObserver(observe)
