"""
How the wsse process asks glibc's allocator to keep big buffers.

wsse reads and sends in pieces of up to 256 KiB and 1 MiB (L{wsse._socketio}).
By default glibc gives a piece over 128 KiB a mapping of its own, or grows its
heap for it and hands the memory back to the kernel once it is free: either
way the next piece lands on pages new to the process, which the kernel faults
in and zeroes one by one.  Measured on a 1 MiB page at 50 connections: about
50 page faults per page served, and a sixth of wsse's CPU.  Mapping only
pieces over 4 MiB, and keeping up to 16 MiB free in the heap, brought that to
about one fault a page, for more resident memory: 6-8 MiB after a run of big
pages, 13 MiB after the benchmark's whole HTTP run.

The daemon sets this (L{wsse.tap.makeService}); a site that embeds
L{wsse.WSSEResource} owns its process and its allocator, and is left alone,
as is an allocator the operator tuned (glibc's C{MALLOC_*_} variables or
C{GLIBC_TUNABLES}).
"""

from __future__ import annotations

import ctypes
import os

from twisted.logger import Logger

from wsse import _logging

_log = Logger(observer=_logging.observer)

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# What an operator sets to tune the same thresholds.
_OPERATOR_SETTINGS = frozenset(
    {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"}
)

MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024


def keep_big_buffers() -> bool:
    """Set glibc's thresholds for this process; C{False} where they stay as they were."""
    tuned = sorted(_OPERATOR_SETTINGS.intersection(os.environ))
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        tuned.append("GLIBC_TUNABLES")
    if tuned:
        _log.debug("allocator left as {names} set it", names=", ".join(tuned))
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        _log.debug("no glibc mallopt here: the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 when it took the value.
    if mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ):
        return True
    _log.debug("glibc's mallopt refused wsse's thresholds")
    return False
