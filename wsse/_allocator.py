"""
How the wsse process asks glibc's allocator to keep big buffers.

wsse reads and sends in pieces of up to 256 KiB and 1 MiB (L{wsse._socketio}).
By default glibc gives a piece over 128 KiB a mapping of its own, or grows its
heap for it and hands the memory back to the kernel once it is free: either
way the next piece lands on pages new to the process, which the kernel faults
in and zeroes one by one.  Measured on a 1 MiB page at 50 connections: about
50 page faults per page served, and a sixth of wsse's CPU.  Mapping only
pieces over 4 MiB, and keeping up to 16 MiB free in the heap, brought that to
about one fault a page, for 6-8 MiB more resident memory.

The daemon sets this (L{wsse.tap.makeService}); a site that embeds
L{wsse.WSSEResource} owns its process and its allocator, and is left alone.
"""

from __future__ import annotations

import ctypes

from twisted.logger import Logger

from wsse import _logging

_log = Logger(observer=_logging.observer)

# mallopt(3) parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024


def keep_big_buffers() -> bool:
    """Set glibc's thresholds for this process; C{False} where there is no glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        _log.debug("no glibc mallopt here: the allocator keeps its defaults")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt answers 1 when it took the value.
    return (
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
        and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
