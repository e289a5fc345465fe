"""
What is open right now (connections, sockets), so that a stopping wsse can close
each one properly and wait until every one is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred, succeed

T = TypeVar("T")


class OpenSet(Generic[T]):
    """A set of open things, and Deferreds that fire once it is empty."""

    def __init__(self) -> None:
        self._items: set[T] = set()
        self._waiters: list[Deferred[None]] = []

    def add(self, item: T) -> None:
        self._items.add(item)

    def discard(self, item: T) -> None:
        self._items.discard(item)
        if not self._items:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def __iter__(self) -> Iterator[T]:
        """A copy: closing an item may remove it meanwhile."""
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def empty(self) -> Deferred[None]:
        """Fires once nothing is open (at once if nothing is)."""
        if not self._items:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter
