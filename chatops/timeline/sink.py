"""The seam every timeline producer writes to.

Producers (the declare workflow, the dispatcher, Slack events, webhooks, the deploy watch, the link redirector)
never talk to Postgres themselves: they hand events to a :class:`TimelineSink`. The batching writer (issue 3)
implements it with a bounded queue, redaction and an on-disk spool; :class:`DirectSink` is the plain
write-through implementation used until then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatops.timeline.events import TimelineEvent
from chatops.timeline.store import TimelineStore

__all__ = ["DirectSink", "TimelineSink"]


class TimelineSink(Protocol):
    """Where timeline events go."""

    async def record(self, event: TimelineEvent) -> None:
        """Accept one event; may wait when the sink is saturated (backpressure), never drops it."""
        ...

    def offer(self, events: Sequence[TimelineEvent]) -> bool:
        """Accept a batch without waiting, or return False when it does not fit (the caller answers 429/503)."""
        ...


class DirectSink:
    """Write-through sink: each event is inserted before ``record`` returns."""

    def __init__(self, store: TimelineStore) -> None:
        self.store = store

    async def record(self, event: TimelineEvent) -> None:
        """Insert now (duplicates by source + dedup key are ignored by the store)."""
        await self.store.append(event)

    def offer(self, events: Sequence[TimelineEvent]) -> bool:
        """Not supported without a buffer: callers that need non-blocking acceptance need the batching writer."""
        return False
