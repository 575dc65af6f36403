"""The seam every timeline producer writes to.

Producers (the declare workflow, the dispatcher, Slack events, webhooks, the deploy watch, the link redirector)
never talk to Postgres themselves: they hand events to a :class:`TimelineSink`. The daemon's sink is the batching
:class:`~chatops.timeline.writer.TimelineWriter` (bounded queue, redaction, on-disk spool during outages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from chatops.timeline.events import TimelineEvent

__all__ = ["FlushableSink", "TimelineSink", "flush_sink"]


class TimelineSink(Protocol):
    """Where timeline events go."""

    async def record(self, event: TimelineEvent) -> None:
        """Accept one event; may wait when the sink is saturated (backpressure), never drops it."""
        ...

    def offer(self, events: Sequence[TimelineEvent]) -> bool:
        """Accept a batch without waiting, or return False when it does not fit (the caller answers 429/503)."""
        ...


@runtime_checkable
class FlushableSink(Protocol):
    """A sink that can wait until what it accepted is committed (the writer; test fakes need not be)."""

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is stored; False if ``timeout`` ran out first."""
        ...


async def flush_sink(sink: TimelineSink, timeout: float | None = None) -> bool:
    """Flush ``sink`` if it supports it (readers call this before querying); True when nothing is pending."""
    if isinstance(sink, FlushableSink):
        return await sink.flush(timeout)
    return True
