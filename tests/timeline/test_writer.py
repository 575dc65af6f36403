"""TimelineWriter: batching, flush on time, backpressure, dedup, rejects, spooling and replay order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from chatops.timeline.rows import Row
from chatops.timeline.spool import Spool
from chatops.timeline.store import TimelineStore
from chatops.timeline.writer import LatencyHistogram, TimelineWriter, WriterClosed

from .conftest import INC, ev


class FlakyStore:
    """A TimelineStore stand-in that fails with a connection error while ``down``; records what it stored."""

    def __init__(self) -> None:
        self.down = False
        self.rows: list[Row] = []
        self.keys: set[tuple[str, str]] = set()
        self.calls: list[int] = []

    async def append_rows(self, rows: Sequence[Row], *, timeout: float | None = None) -> int:
        self.calls.append(len(rows))
        if self.down:
            raise ConnectionRefusedError("postgres is down")
        new = 0
        for row in rows:
            if (row.source, row.dedup_key) not in self.keys:
                self.keys.add((row.source, row.dedup_key))
                self.rows.append(row)
                new += 1
        return new


def writer_for(store: object, tmp_path: Path, **kwargs: float) -> TimelineWriter:
    options: dict[str, float] = {"retry_interval": 0.05, "flush_interval": 0.05} | kwargs
    return TimelineWriter(store, Spool(tmp_path / "spool"), **options)  # type: ignore[arg-type]


async def test_batches_by_size(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path, batch_size=100, capacity=1000, flush_interval=10.0)
    await writer.start()
    assert writer.offer([ev(i) for i in range(250)])
    # two full batches go out at once; the last 50 wait for the (long) flush interval
    for _ in range(100):
        if writer.stats.committed >= 200:
            break
        await asyncio.sleep(0.01)
    assert writer.stats.committed == 200 and writer.stats.batches == 2 and writer.queued == 50
    await writer.close()
    assert writer.stats.committed == 250
    assert len(await timeline.query(INC, limit=1000)) == 250


async def test_flushes_on_time(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path, batch_size=1000, capacity=1000, flush_interval=0.2)
    await writer.start()
    started = time.monotonic()
    await writer.record(ev(1))
    for _ in range(500):
        if writer.stats.committed:
            break
        await asyncio.sleep(0.01)
    waited = time.monotonic() - started
    assert 0.15 <= waited < 1.0, waited
    assert [e.summary for e in await timeline.query(INC)] == ["event 1"]
    assert writer.ready
    await writer.close()


async def test_offer_refuses_when_full_and_record_waits(tmp_path: Path) -> None:
    store = FlakyStore()
    gate = asyncio.Event()
    original = store.append_rows

    async def slow(rows: Sequence[Row], *, timeout: float | None = None) -> int:
        await gate.wait()
        return await original(rows, timeout=timeout)

    store.append_rows = slow  # type: ignore[method-assign]
    writer = writer_for(store, tmp_path, batch_size=10, capacity=20, flush_interval=0.01, max_in_flight=1)
    await writer.start()
    assert writer.offer([ev(i) for i in range(10)])
    await asyncio.sleep(0.05)  # the writer takes that batch and blocks on the gate
    assert writer.offer([ev(i) for i in range(10, 30)])  # fills the queue exactly
    assert not writer.offer([ev(99)])  # all or nothing: refused
    assert writer.stats.refused == 1 and writer.queued == 20
    blocked = asyncio.create_task(writer.record(ev(100)))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "record must wait while the queue is full"
    gate.set()
    await asyncio.wait_for(blocked, 5)
    await writer.close()
    assert sorted(int(r.dedup_key[1:]) for r in store.rows) == [*range(30), 100]


async def test_flush_sends_a_partial_batch_at_once(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path, batch_size=1000, capacity=1000, flush_interval=30.0)
    await writer.start()
    await writer.record(ev(1))
    started = time.monotonic()
    assert await writer.flush(timeout=5)
    assert time.monotonic() - started < 2.0
    await writer.close()


async def test_offer_refuses_while_the_queue_is_older_than_max_delay(tmp_path: Path) -> None:
    store = FlakyStore()
    gate = asyncio.Event()
    original = store.append_rows

    async def slow(rows: Sequence[Row], *, timeout: float | None = None) -> int:
        await gate.wait()
        return await original(rows, timeout=timeout)

    store.append_rows = slow  # type: ignore[method-assign]
    writer = writer_for(
        store, tmp_path, batch_size=10, capacity=100, flush_interval=0.01, max_delay=0.1, max_in_flight=2
    )
    await writer.start()
    assert writer.offer([ev(i) for i in range(30)])  # 20 in flight (2 batches), 10 queued behind the gate
    await asyncio.sleep(0.2)
    assert not writer.offer([ev(99)]), "the writer is behind: refuse rather than queue for seconds"
    gate.set()
    assert await writer.flush(timeout=5)
    assert writer.offer([ev(100)])
    await writer.close()


async def test_duplicates_are_stored_once(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path)
    await writer.start()
    assert writer.offer([ev(1), ev(1), ev(2)])
    await writer.flush(5)
    assert writer.offer([ev(2, summary="redelivered")])
    await writer.close()
    assert [e.summary for e in await timeline.query(INC)] == ["event 1", "event 2"]
    assert writer.stats.duplicates == 2


async def test_keyless_events_get_a_unique_key(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path)
    await writer.start()
    await writer.record(ev(1, key=None))
    await writer.record(ev(1, key=None))
    await writer.close()
    events = await timeline.query(INC)
    assert len(events) == 2 and all(e.dedup_key and e.dedup_key.startswith("auto:") for e in events)


async def test_rows_postgres_refuses_are_set_aside(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path)
    await writer.start()
    assert writer.offer([ev(1), ev(2, incident_id="inc-does-not-exist"), ev(3)])
    await writer.close()
    assert [e.summary for e in await timeline.query(INC)] == ["event 1", "event 3"]
    assert writer.stats.rejected == 1
    assert "inc-does-not-exist" in writer.rejected_path.read_text()


async def test_spools_while_down_and_replays_in_order(tmp_path: Path) -> None:
    store = FlakyStore()
    writer = writer_for(store, tmp_path, batch_size=5, capacity=100)
    await writer.start()
    assert writer.offer([ev(i) for i in range(5)])
    await writer.flush(5)
    store.down = True
    for i in range(5, 40):
        await writer.record(ev(i))
        if i % 7 == 0:
            await asyncio.sleep(0.02)
    assert not await writer.flush(timeout=0.3)
    assert writer.spooling and not writer.ready
    assert writer.stats.spooled >= 30
    store.down = False
    assert await writer.flush(timeout=5)
    assert writer.ready and not writer.spooling
    await writer.close()
    assert [r.dedup_key for r in store.rows] == [f"k{i}" for i in range(40)], "order and exactly once"
    assert writer.stats.replayed >= writer.stats.spooled


async def test_close_while_down_leaves_the_rest_in_the_spool_for_the_next_run(tmp_path: Path) -> None:
    store = FlakyStore()
    store.down = True
    first = writer_for(store, tmp_path)
    await first.start()
    assert first.offer([ev(i) for i in range(10)])
    await first.close()
    assert first.spool.pending and not store.rows
    with pytest.raises(WriterClosed):
        first.offer([ev(11)])

    store.down = False
    second = writer_for(store, tmp_path)
    await second.start()
    await second.record(ev(10))
    assert await second.flush(timeout=5)
    await second.close()
    assert [r.dedup_key for r in store.rows] == [f"k{i}" for i in range(11)]


async def test_replay_of_rows_already_committed_stores_nothing_twice(tmp_path: Path) -> None:
    """A commit whose outcome was unknown (timeout after commit) is spooled too: the dedup key absorbs it."""
    store = FlakyStore()
    writer = writer_for(store, tmp_path)
    rows_seen: list[int] = []
    original = store.append_rows

    async def commit_then_fail(rows: Sequence[Row], *, timeout: float | None = None) -> int:
        rows_seen.append(len(rows))
        if len(rows_seen) == 1:
            await original(rows)
            raise TimeoutError("commit outcome unknown")
        return await original(rows)

    store.append_rows = commit_then_fail  # type: ignore[method-assign]
    await writer.start()
    assert writer.offer([ev(i) for i in range(5)])
    assert await writer.flush(timeout=5)
    await writer.close()
    assert [r.dedup_key for r in store.rows] == [f"k{i}" for i in range(5)]
    assert writer.stats.spooled == 5 and writer.stats.replayed == 5


async def test_events_are_redacted_before_they_are_queued(timeline: TimelineStore, tmp_path: Path) -> None:
    writer = writer_for(timeline, tmp_path)
    await writer.start()
    await writer.record(
        ev(1, summary="token xoxb-123-456-abc", payload={"cmd": "curl -H 'Authorization: Bearer s3cr3t'"})
    )
    await writer.close()
    [event] = await timeline.query(INC)
    assert "xoxb-123" not in event.summary and "s3cr3t" not in str(event.payload)


def test_latency_histogram_quantiles() -> None:
    hist = LatencyHistogram()
    for ms in (1, 2, 3, 500):
        hist.add(ms / 1000)
    assert hist.total == 4 and 0.4 < hist.quantile(0.99) <= 0.5 and hist.quantile(0.5) <= 0.0026
