"""Client-side pacing so chatops stays inside Slack's published limits instead of bouncing off 429s.

Two mechanisms, both cooperative (they ``await``; nothing sleeps the loop):

* :class:`SlidingWindow` — at most ``limit`` calls per ``window`` seconds (Slack's per-method tiers).
* :class:`ChannelPacer` — chat.postMessage at about one message per second per channel, with a small burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

__all__ = ["METHOD_TIERS", "TIER_LIMITS", "ChannelPacer", "SlidingWindow"]

# Per-method tier (PROTOCOLS.md §2); methods not listed are treated as tier 3.
METHOD_TIERS: dict[str, int] = {
    "conversations.create": 2,
    "conversations.setTopic": 2,
    "conversations.setPurpose": 2,
    "conversations.archive": 2,
    "pins.add": 2,
    "usergroups.users.list": 2,
    "conversations.invite": 3,
    "conversations.info": 3,
    "conversations.members": 3,
    "conversations.history": 3,
    "chat.update": 3,
    "reactions.add": 3,
    "users.lookupByEmail": 3,
    "chat.postEphemeral": 4,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "views.open": 4,
    "users.info": 4,
    "auth.test": 4,
}
TIER_LIMITS: dict[int, int] = {1: 1, 2: 20, 3: 50, 4: 100}


class SlidingWindow:
    """Admit at most ``limit`` acquisitions in any ``window``-second interval."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait until a call is allowed, then count it."""
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return
                await asyncio.sleep(self.window - (now - self._stamps[0]))


class ChannelPacer:
    """A token bucket per channel: ``burst`` messages at once, then ``rate`` per second."""

    def __init__(self, rate: float = 1.0, burst: int = 3) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def acquire(self, channel: str) -> None:
        """Wait for this channel's turn."""
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            while True:
                now = time.monotonic()
                tokens, last = self._buckets.get(channel, (float(self.burst), now))
                tokens = min(float(self.burst), tokens + (now - last) * self.rate)
                if tokens >= 1.0:
                    self._buckets[channel] = (tokens - 1.0, now)
                    return
                self._buckets[channel] = (tokens, now)
                await asyncio.sleep((1.0 - tokens) / self.rate)
