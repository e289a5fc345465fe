"""
What the bridge keeps for each page session, behind a small interface.

A page session is one page's fallback: its event log (what the server sent,
kept until the page acknowledges it, so a dropped stream can resume without a
gap), the sequence number of the next frame the page will send (so a retried
POST is not applied twice) and its socket table (the page's socket numbers in
use), and its key.  All of it is plain data: L{MemoryPageStore} keeps it in this process,
and a store shared between processes (Redis) can implement the same two
protocols; the live connections to the app stay with the process that holds
them (L{wsse._bridge.Page}).
"""

from __future__ import annotations

import secrets
from collections import deque
from typing import Protocol

from wsse import _protocol


def new_secret() -> str:
    """A session id or a browser's key: 128 bits from the operating system's CSPRNG, not guessable."""
    return secrets.token_urlsafe(16)


class FrameOutOfOrder(Exception):
    """A frame arrived with a sequence number past the next one expected."""


class PageState(Protocol):
    id: str
    #: The session's key, which its requests carry as a cookie (L{_protocol.KEY_COOKIE_PREFIX}).
    key: str
    sockets: set[int]

    def append(self, name: bytes, data: bytes) -> bytes:
        """Log an event (its data as L{_protocol.json_data} makes it) under the next id; the encoded event, ready to send."""
        ...

    def events_after(self, last_id: int) -> list[bytes] | None:
        """The logged events after C{last_id}; C{None} if some were already dropped."""
        ...

    def acknowledge(self, last_id: int) -> None:
        """The page holds every event up to C{last_id}: they need not be kept."""
        ...

    @property
    def unacknowledged(self) -> int:
        """Bytes of logged events the page has not acknowledged."""
        ...

    @property
    def acknowledged(self) -> int:
        """The id of the last event the page has acknowledged (0 for none)."""
        ...

    @property
    def expected_seq(self) -> int:
        """The sequence number of the next frame to apply."""
        ...

    def accept(self, seq: int) -> bool:
        """C{True} for the next frame in order, C{False} for one already applied."""
        ...


class PageStore(Protocol):
    def create(self, key: str) -> PageState: ...

    def get(self, session_id: str) -> PageState | None: ...

    def remove(self, session_id: str) -> None: ...


class MemoryPageState:
    def __init__(self, session_id: str, key: str) -> None:
        self.id = session_id
        self.key = key
        self.sockets: set[int] = set()
        self._log: deque[tuple[int, bytes]] = deque()
        self._last_id = 0
        self._acknowledged = 0  # every event up to here has been dropped
        self._size = 0
        self._next_seq = 0

    def append(self, name: bytes, data: bytes) -> bytes:
        self._last_id += 1
        encoded = _protocol.event(self._last_id, name, data)
        self._log.append((self._last_id, encoded))
        self._size += len(encoded)
        return encoded

    def events_after(self, last_id: int) -> list[bytes] | None:
        if last_id < self._acknowledged or last_id > self._last_id:
            return None
        return [encoded for event_id, encoded in self._log if event_id > last_id]

    def acknowledge(self, last_id: int) -> None:
        log = self._log
        while log and log[0][0] <= last_id:
            self._size -= len(log.popleft()[1])
        self._acknowledged = max(self._acknowledged, min(last_id, self._last_id))

    @property
    def unacknowledged(self) -> int:
        return self._size

    @property
    def acknowledged(self) -> int:
        return self._acknowledged

    @property
    def expected_seq(self) -> int:
        return self._next_seq

    def accept(self, seq: int) -> bool:
        if seq < self._next_seq:
            return False
        if seq > self._next_seq:
            raise FrameOutOfOrder(f"frame {seq} arrived before frame {self._next_seq}")
        self._next_seq += 1
        return True


class MemoryPageStore:
    """Page sessions of this process, by their server-minted ids."""

    def __init__(self) -> None:
        self._pages: dict[str, MemoryPageState] = {}

    def create(self, key: str) -> MemoryPageState:
        page = MemoryPageState(new_secret(), key)
        self._pages[page.id] = page
        return page

    def get(self, session_id: str) -> MemoryPageState | None:
        return self._pages.get(session_id)

    def remove(self, session_id: str) -> None:
        self._pages.pop(session_id, None)
