"""One :class:`asyncio.Lock` per key, for read-modify-write sequences on one thing (one incident's pinned summary).

The daemon is a single process (one long-lived asyncio loop, see ``docs/architecture.md``), so an in-process lock
serialises every writer there is. Locks exist only while someone holds or waits for them: the map does not grow
with the number of keys ever used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager

__all__ = ["KeyedLock"]


class KeyedLock:
    """``async with locks.hold(key):`` — at most one holder per key; different keys never wait for each other."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: dict[Hashable, int] = {}

    def __len__(self) -> int:
        """Keys currently held or waited for."""
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the body of the ``async with`` (waiting, in arrival order, for earlier holders)."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
