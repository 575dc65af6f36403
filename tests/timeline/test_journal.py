"""The writer's journal: accepted rows survive the daemon dying before they are committed, and nothing piles up."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from chatops.db.pool import JsonText
from chatops.timeline.journal import Journal
from chatops.timeline.rows import Row, to_row
from chatops.timeline.spool import Spool
from chatops.timeline.store import TimelineStore
from chatops.timeline.writer import TimelineWriter

from .conftest import INC, T0, ev


class GatedStore:
    """Passes writes to the real store once ``gate`` is set; until then they wait (Postgres slow or locked)."""

    def __init__(self, store: TimelineStore) -> None:
        self.store = store
        self.gate = asyncio.Event()

    async def append_rows(self, rows: Sequence[Row], *, timeout: float | None = None) -> int:
        await self.gate.wait()
        return await self.store.append_rows(rows, timeout=timeout)


def writer_for(store: object, base: Path, **kwargs: float) -> TimelineWriter:
    options: dict[str, float] = {"retry_interval": 0.05, "flush_interval": 0.02, "batch_size": 10} | kwargs
    return TimelineWriter(store, Spool(base / "spool"), **options)  # type: ignore[arg-type]


async def crash(writer: TimelineWriter) -> None:
    """What SIGKILL leaves: the task gone, nothing drained, spooled or cleaned up."""
    assert writer._task is not None
    writer._task.cancel()
    for task in [writer._task, *writer._in_flight]:
        task.cancel()
    await asyncio.gather(writer._task, *writer._in_flight, return_exceptions=True)


async def test_rows_accepted_before_a_crash_are_stored_after_the_restart(
    timeline: TimelineStore, db_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    gated = GatedStore(timeline)
    first = writer_for(gated, tmp_path)
    await first.start()
    gated.gate.set()
    assert first.offer([ev(i) for i in range(25)])
    assert await first.flush(timeout=5)  # these 25 are committed before the crash
    gated.gate.clear()
    assert first.offer([ev(i) for i in range(25, 60)])  # accepted (the webhook said 200), stuck on the way
    await asyncio.sleep(0.1)
    assert first.journal.segments, "accepted rows must be on disk"
    await crash(first)
    assert await db_pool.fetchval("SELECT count(*) FROM timeline_events") == 25

    second = writer_for(timeline, tmp_path)
    await second.start()
    assert second.stats.recovered >= 35  # what was not known committed (maybe more: replay dedups)
    assert await second.flush(timeout=5)
    for _ in range(100):
        if second.ready:
            break
        await asyncio.sleep(0.05)
    assert second.ready, "the recovered rows went through the spool and it is replayed"
    keys = [e.dedup_key for e in await timeline.query(INC, limit=100)]
    assert sorted(keys, key=lambda k: int(k[1:])) == [f"k{i}" for i in range(60)]  # all there, none twice
    assert not second.journal.segments
    await second.close()
    assert not list(second.journal.directory.glob("journal-*"))


async def test_segments_are_dropped_once_their_rows_are_committed(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = TimelineWriter(timeline, Spool(tmp_path / "spool"), batch_size=50, flush_interval=0.02)
    writer.journal = Journal(tmp_path / "spool" / "journal", segment_bytes=4096)  # a segment every few rows
    await writer.start()
    for n in range(10):
        assert writer.offer([ev(n * 40 + i) for i in range(40)])
        await asyncio.sleep(0)
    assert await writer.flush(timeout=5)
    await asyncio.sleep(0)
    sizes = [p.stat().st_size for p in writer.journal.segments]
    assert sum(sizes) == 0, f"committed rows must leave the journal: {sizes}"
    await writer.close()
    assert not writer.journal.segments


async def test_a_torn_last_line_is_skipped_and_the_rest_recovered(timeline: TimelineStore, tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal")
    rows = [to_row(ev(i), T0) for i in range(3)]
    journal.append(rows, 1)
    [segment] = journal.segments
    with segment.open("ab") as handle:
        handle.write(b'0badc0de [["inc-2026", "half a batch')  # the crash hit mid-write: never acknowledged
    recovered = Journal(tmp_path / "journal").recover()
    assert recovered == rows  # the same rows: values, payload JSON and types
    assert all(type(r.payload) is JsonText for r in recovered)
