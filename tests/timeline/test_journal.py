"""The writer's journal: accepted rows survive the daemon dying before they are committed, and nothing piles up."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import pytest

from chatops.db.pool import JsonText
from chatops.timeline import journal as journal_module
from chatops.timeline.journal import Journal, JournalError
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


class DownStore:
    """Postgres refusing connections: every batch goes to the spool."""

    async def append_rows(self, rows: Sequence[Row], *, timeout: float | None = None) -> int:
        raise ConnectionRefusedError("postgres is down")


class SlowSpool(Spool):
    """A spool whose fsync'd appends take a while (a busy disk)."""

    def _append_blocking(self, data: bytes) -> int:
        time.sleep(0.4)
        return super()._append_blocking(data)


async def test_a_close_that_runs_out_of_time_keeps_the_journal_of_what_it_could_not_spool(
    timeline: TimelineStore, tmp_path: Path
) -> None:
    first = TimelineWriter(
        DownStore(),  # type: ignore[arg-type]
        SlowSpool(tmp_path / "spool"),
        batch_size=10,
        flush_interval=0.01,
        retry_interval=10.0,
    )
    await first.start()
    assert first.offer([ev(i) for i in range(30)])  # three batches, all on their way to the slow spool
    await asyncio.sleep(0.05)
    await first.close(timeout=0.2)  # the deadline cuts the spooling short
    assert first.journal.segments, "rows that reached neither Postgres nor the spool must stay journaled"

    second = writer_for(timeline, tmp_path)
    await second.start()
    assert await second.flush(timeout=5)
    for _ in range(100):
        if second.ready:
            break
        await asyncio.sleep(0.05)
    await second.close()
    keys = {e.dedup_key for e in await timeline.query(INC, limit=100)}
    assert keys == {f"k{i}" for i in range(30)}


def test_a_write_that_fails_half_way_does_not_hide_the_next_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = Journal(tmp_path / "journal")
    journal.append([to_row(ev(1), T0)], 1)
    real_write = os.write

    def half_then_fail(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal_module.os, "write", half_then_fail)
    with pytest.raises(JournalError):
        journal.append([to_row(ev(2), T0)], 2)  # never acknowledged: the producer heard "refused"/an error
    monkeypatch.setattr(journal_module.os, "write", real_write)
    journal.append([to_row(ev(3), T0)], 3)
    assert [r.dedup_key for r in Journal(tmp_path / "journal").recover()] == ["k1", "k3"]
