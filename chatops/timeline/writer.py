"""The timeline writer: one batching task between every producer and the ``timeline_events`` table.

Producers hand events to :meth:`TimelineWriter.record` (waits while the queue is full: backpressure) or
:meth:`TimelineWriter.offer` (all-or-nothing, never waits: ``False`` means "full, answer 429/503"). Either way the
event is redacted and turned into a :class:`~chatops.timeline.rows.Row` at once, so nothing unredacted is ever
queued, spooled or stored. One task drains the queue in batches of up to ``batch_size`` rows, flushing when a
batch is full or when its oldest row has waited ``flush_interval`` (~200 ms), one transaction per batch (a binary
``COPY`` into the table, deduplicating through a staging table only when the batch holds a row already stored: see
:meth:`~chatops.timeline.store.TimelineStore.append_rows`), with up to ``max_in_flight`` (3) batches in flight on
separate connections so that our encoding, the server's work (which runs on another core) and the commit's WAL
flush of different batches overlap.

Outage handling. When Postgres cannot be reached (connection refused or lost, timeouts, server shutting down, disk
full) the batch goes to the :class:`~chatops.timeline.spool.Spool` (fsync'd) and so does every later batch while
the spool is not empty, which keeps the order. The spool is replayed, oldest first, in time slices between new
batches (which keep landing in the spool until it is drained), as soon as Postgres answers again; probes run every
``retry_interval`` seconds. Every row carries a dedup key, so a replay of rows whose commit was uncertain stores
nothing twice. :attr:`TimelineWriter.ready` is false while anything is spooled (``/readyz`` then answers 503:
the daemon keeps accepting events, but the timeline in Postgres is behind).

Rows Postgres refuses for what they are (e.g. an unknown incident) are isolated by bisecting the batch and
appended to ``rejected.jsonl`` next to the spool with the error, never dropped silently.

Crash safety. Producers are told "accepted" before anything is committed (the audit webhook answers 200 at once),
so every accepted row is first written to the :class:`~chatops.timeline.journal.Journal` (page cache, no fsync)
and its segments are dropped once their rows are committed or spooled. A run that dies without stopping (SIGKILL,
OOM) leaves segments behind; :meth:`TimelineWriter.start` moves their rows into the spool, whose replay
deduplicates, before accepting anything new.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import asyncpg

from chatops.timeline.events import TimelineEvent
from chatops.timeline.journal import Journal, JournalError
from chatops.timeline.rows import Row, to_row
from chatops.timeline.spool import Spool, SpoolError, encode_line
from chatops.timeline.store import TimelineStore

__all__ = ["LatencyHistogram", "TimelineWriter", "WriterClosed", "WriterStats"]

log = logging.getLogger(__name__)

# SQLSTATE classes meaning "the server, not the row": connection, insufficient resources, operator intervention,
# system error, transaction rollback (serialization failure / deadlock).
_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40")

# States of a batch on its way (see TimelineWriter._batches).
_IN_FLIGHT, _SPOOLED, _DONE = 0, 1, 2


class WriterClosed(RuntimeError):
    """The writer was closed; no more events are accepted."""


class _Item(NamedTuple):
    seq: int
    row: Row
    accepted: float  # time.monotonic() when accepted


class LatencyHistogram:
    """Log-bucketed latencies (10 buckets per decade from 0.1 ms): cheap to record, quantiles within ~12 %."""

    _PER_DECADE = 10
    _FLOOR = 1e-4

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.maximum = 0.0

    def add(self, seconds: float, count: int = 1) -> None:
        """Record ``count`` observations of ``seconds``."""
        bucket = math.ceil(math.log10(max(seconds, self._FLOOR) / self._FLOOR) * self._PER_DECADE)
        self.counts[bucket] = self.counts.get(bucket, 0) + count
        self.total += count
        self.maximum = max(self.maximum, seconds)

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding quantile ``q`` (0 < q ≤ 1), in seconds; 0 when empty."""
        if not self.total:
            return 0.0
        rank = q * self.total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(self._FLOOR * 10 ** (bucket / self._PER_DECADE), self.maximum)
        return self.maximum


@dataclass
class WriterStats:
    """Counters since start. ``latency``: accepted → committed, for rows written straight to Postgres."""

    accepted: int = 0
    refused: int = 0
    committed: int = 0
    duplicates: int = 0
    spooled: int = 0
    replayed: int = 0
    rejected: int = 0
    batches: int = 0
    recovered: int = 0
    unjournaled: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, OSError | TimeoutError | asyncpg.InterfaceError | asyncpg.PostgresConnectionError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_TRANSIENT_CLASSES)
    return False


class TimelineWriter:
    """Batching, spooling implementation of :class:`~chatops.timeline.sink.TimelineSink`. ``start()``, ``close()``.

    ``capacity`` bounds the queue (rows accepted, not yet written); ``offer`` also refuses rows that would wait
    more than ``max_delay`` (0.4 s) at the pace Postgres has recently kept, or while the oldest queued row has.
    Together they keep the time from receipt to commit of what was accepted under a second whatever the drain
    rate: when the writer is behind, producers get backpressure (``record`` waits, ``offer`` refuses) instead of
    a growing queue.
    """

    def __init__(
        self,
        store: TimelineStore,
        spool: Spool,
        *,
        capacity: int = 20_000,
        batch_size: int = 2_000,
        flush_interval: float = 0.2,
        write_timeout: float = 10.0,
        retry_interval: float = 1.0,
        replay_slice: float = 0.5,
        max_in_flight: int = 3,
        max_delay: float = 0.4,
        clock: Callable[[], dt.datetime] = _utcnow,
        journal: Journal | None = None,
    ) -> None:
        if capacity < batch_size or batch_size < 1:
            raise ValueError("need capacity >= batch_size >= 1")
        self.store = store
        self.spool = spool
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.write_timeout = write_timeout
        self.retry_interval = retry_interval
        self.replay_slice = replay_slice
        self.max_delay = max_delay
        self.clock = clock
        self.stats = WriterStats()
        self.rejected_path = spool.path.parent / "rejected.jsonl"
        self.journal = journal if journal is not None else Journal(spool.path.parent / "journal")
        self._journal_failing = False
        self._buffer: deque[_Item] = deque()
        self._seq = 0
        self._committed_seq = 0  # every row with seq <= this is in Postgres
        self._batches: deque[list[int]] = deque()  # [last seq, state] of batches not yet known committed, in order
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        self._drain_rate: float | None = None  # rows/s Postgres has been taking (moving average), once measured
        self._down = False
        self._next_probe = 0.0
        self._replay_offset = 0
        self._closing = False
        self._flushing = 0
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    # -- the sink API -----------------------------------------------------------------------------------------

    async def record(self, event: TimelineEvent) -> None:
        """Accept one event, waiting while the queue is full (backpressure). Raises :class:`WriterClosed`."""
        row = to_row(event, self.clock())
        while len(self._buffer) >= self.capacity and not self._closing:
            self._space.clear()
            await self._space.wait()
        self._push([row])

    def offer(self, events: Sequence[TimelineEvent]) -> bool:
        """Accept all of ``events`` now, or none (``False``) when the writer is behind: they do not fit in
        ``capacity``, or in what Postgres has recently been committing per ``max_delay``, or the oldest queued row
        has already waited ``max_delay``. Refusing (the sender retries) keeps receipt → commit of what is
        accepted under a second."""
        if self._closing:
            raise WriterClosed("the timeline writer is closed")
        if not self._admits(len(events)):
            self.stats.refused += len(events)
            return False
        now = self.clock()
        self._push([to_row(e, now) for e in events])
        return True

    def _admits(self, count: int) -> bool:
        limit = self.capacity
        if self._drain_rate is not None:  # what the writer can commit within max_delay, at its recent pace
            limit = min(limit, max(self.batch_size, int(self._drain_rate * self.max_delay)))
        return len(self._buffer) + count <= limit and not (
            self._buffer and time.monotonic() - self._buffer[0].accepted > self.max_delay
        )

    def saturated(self) -> bool:
        """True when :meth:`offer` would refuse even a single event right now (not when closed: offer raises).

        Producers with expensive batches (the audit webhook parses up to thousands of events) ask first, so a
        batch that is going to be refused costs nothing to refuse."""
        return not self._closing and not self._admits(1)

    def _push(self, rows: list[Row]) -> None:
        if self._closing:
            raise WriterClosed("the timeline writer is closed")
        self._journal_rows(rows, self._seq + 1)
        accepted = time.monotonic()
        was_empty = not self._buffer
        for row in rows:
            self._seq += 1
            self._buffer.append(_Item(self._seq, row, accepted))
        self.stats.accepted += len(rows)
        if was_empty or len(self._buffer) >= self.batch_size:
            self._wakeup.set()

    def _journal_rows(self, rows: list[Row], first_seq: int) -> None:
        try:
            self.journal.append(rows, first_seq)
        except JournalError as exc:  # keep accepting: Postgres and the spool still work; only crash safety is lost
            self.stats.unjournaled += len(rows)
            if not self._journal_failing:
                log.error(
                    "cannot write the timeline journal; a crash now would lose queued events", extra={"error": str(exc)}
                )
            self._journal_failing = True
        else:
            if self._journal_failing:
                log.warning("timeline journal writable again")
            self._journal_failing = False

    def _durable_seq(self) -> int:
        """Every row up to this seq is committed or in the (fsync'd) spool."""
        durable = self._committed_seq
        for last, state in self._batches:
            if state == _IN_FLIGHT:
                break
            durable = last
        return durable

    def _release_journal(self) -> None:
        """Drop journal segments whose rows are all committed or in the (fsync'd) spool."""
        try:
            self.journal.release(self._durable_seq())
        except OSError as exc:
            log.warning("cannot trim the timeline journal", extra={"error": str(exc)})

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """False while Postgres is unreachable or the spool still holds rows (the timeline is behind)."""
        return self._task is not None and not self._task.done() and not self._down and not self.spool.pending

    @property
    def queued(self) -> int:
        """Rows accepted but not yet written anywhere."""
        return len(self._buffer)

    @property
    def spooling(self) -> bool:
        """True while rows wait in the spool for Postgres."""
        return self.spool.pending

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the writer task (a spool left by an earlier run is replayed first)."""
        if self._task is None:
            await self._recover_journal()
            if self.spool.pending:
                log.warning(
                    "timeline spool from an earlier run found; replaying", extra={"spool": str(self.spool.path)}
                )
            self._task = asyncio.create_task(self._run(), name="timeline writer")

    async def _recover_journal(self) -> None:
        """Rows a crashed run had accepted but not made safe: into the spool (replay skips those committed)."""
        rows = await asyncio.to_thread(self.journal.recover)
        if rows:
            log.warning(
                "timeline journal of a run that did not stop cleanly found; its events go through the spool",
                extra={"rows": len(rows), "journal": str(self.journal.directory)},
            )
            await self.spool.append(rows)
            self.stats.recovered += len(rows)
        await asyncio.to_thread(self.journal.discard_recovered)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything accepted so far is committed to Postgres; False if ``timeout`` ran out first."""
        target = self._seq
        self._flushing += 1  # batches go out now, without waiting for flush_interval
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout), self._progress:
                await self._progress.wait_for(lambda: self._committed_seq >= target)
        except TimeoutError:
            return False
        finally:
            self._flushing -= 1
        return True

    async def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, write out the queue (to Postgres, or to the spool), then stop. Loses nothing."""
        if self._closing:
            return
        self._closing = True
        self._wakeup.set()
        self._space.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.warning("timeline writer did not drain in time; spooling the rest", extra={"queued": self.queued})
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        safe_after = self._seq  # rows up to here must be committed or spooled before the journal can go
        if self._buffer:
            batch = list(self._buffer)
            safe_after = batch[0].seq - 1
            self._buffer.clear()
            await self.spool.append([i.row for i in batch])
            self.stats.spooled += len(batch)
        if self._durable_seq() >= safe_after:
            self.journal.close()  # everything accepted is committed or spooled
        else:  # a batch cut short by the deadline may not be anywhere else: the next start recovers it
            self.journal.detach()
            log.warning("timeline writer stopped with rows only in its journal; the next start stores them")
        log.info(
            "timeline writer stopped",
            extra={
                "accepted": self.stats.accepted,
                "committed": self.stats.committed,
                "spooled": self.stats.spooled,
                "replayed": self.stats.replayed,
                "rejected": self.stats.rejected,
                "dedup_fallbacks": getattr(self.store, "dedup_fallbacks", 0),
                "left_in_spool": self.spool.size,
            },
        )

    # -- the task ---------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                await self._slots.acquire()  # before taking rows: the queue bound stays the bound
                try:
                    batch = await self._next_batch()
                except BaseException:
                    self._slots.release()
                    raise
                if batch and not self._down and not self.spool.pending:
                    task = asyncio.create_task(self._direct(batch))  # releases the slot when done
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                else:
                    self._slots.release()
                    if batch:
                        entry = self._track(batch)  # tracked (not yet safe) while it waits for the drain
                        await self._drain()  # keep the spool's order: nothing in flight while spooling
                        await self._to_spool(batch, entry)
                if self.spool.pending and (not self._down or time.monotonic() >= self._next_probe):
                    await self._drain()
                    await self._replay()
                if self._closing and not self._buffer:
                    await self._drain()
                    if self._down or not self.spool.pending:
                        return
        finally:
            for task in list(self._in_flight):
                task.cancel()
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _next_batch(self) -> list[_Item]:
        while True:
            timeout: float | None = None
            if self._buffer:
                waited = time.monotonic() - self._buffer[0].accepted
                due = self._closing or self._flushing or waited >= self.flush_interval
                if len(self._buffer) >= self.batch_size or due:
                    break
                timeout = self.flush_interval - waited
            elif self._closing:
                return []
            elif self.spool.pending:
                timeout = self._next_probe - time.monotonic() if self._down else 0.0
                if timeout <= 0:
                    return []
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
        count = min(self.batch_size, len(self._buffer))
        batch = [self._buffer.popleft() for _ in range(count)]
        if len(self._buffer) < self.capacity:
            self._space.set()
        return batch

    async def _drain(self) -> None:
        """Wait for the batches in flight."""
        if self._in_flight:
            await asyncio.gather(*list(self._in_flight), return_exceptions=True)

    async def _direct(self, batch: list[_Item]) -> None:
        """Insert one batch (up to ``max_in_flight`` run at once); on any failure it goes to the spool instead."""
        entry = self._track(batch)
        try:
            started = time.monotonic()
            try:
                await self._insert([i.row for i in batch])
            except asyncio.CancelledError:  # closing ran out of time: the outcome is unknown, so spool it
                await asyncio.shield(self._to_spool(batch, entry))
                raise
            except Exception as exc:  # the rows are safe in the spool whatever went wrong; replay retries
                self._went_down(exc)
                await asyncio.shield(self._to_spool(batch, entry))  # not given up half-way by a closing deadline
                return
            now = time.monotonic()
            accepted, count = batch[0].accepted, 0
            for item in batch:  # rows offered together share their acceptance time: one histogram entry each
                if item.accepted != accepted:
                    self.stats.latency.add(now - accepted, count)
                    accepted, count = item.accepted, 0
                count += 1
            self.stats.latency.add(now - accepted, count)
            pace = len(batch) / max(now - started, 1e-3) * self._max_in_flight
            self._drain_rate = pace if self._drain_rate is None else 0.7 * self._drain_rate + 0.3 * pace
            entry[1] = _DONE
            await self._advance()
        finally:
            self._slots.release()

    async def _to_spool(self, batch: list[_Item], entry: list[int] | None = None) -> None:
        entry = entry if entry is not None else self._track(batch)
        while True:
            try:
                await self.spool.append([i.row for i in batch])
                break
            except SpoolError as exc:  # keep the rows in memory and try again: never drop
                log.error("cannot write the timeline spool; retrying", extra={"error": str(exc)})
                await asyncio.sleep(self.retry_interval)
        self.stats.spooled += len(batch)
        entry[1] = _SPOOLED
        batches = self._batches
        if len(batches) >= 2 and batches[-1] is entry and batches[-2][1] == _SPOOLED:
            batches[-2][0] = entry[0]  # one entry for a run of spooled batches: an outage does not grow the list
            batches.pop()
        self._release_journal()
        self._wakeup.set()  # the run loop must now probe and replay

    def _track(self, batch: list[_Item]) -> list[int]:
        entry = [batch[-1].seq, _IN_FLIGHT]
        self._batches.append(entry)
        return entry

    async def _advance(self) -> None:
        """Move the committed mark over every leading batch that is in Postgres."""
        seq = self._committed_seq
        while self._batches and self._batches[0][1] == _DONE:
            seq = self._batches.popleft()[0]
        if seq > self._committed_seq:
            async with self._progress:
                self._committed_seq = seq
                self._progress.notify_all()
            self._release_journal()

    async def _insert(self, rows: list[Row]) -> None:
        """Insert a batch; rows Postgres refuses for their content are bisected out and set aside."""
        try:
            async with asyncio.timeout(self.write_timeout):
                new = await self.store.append_rows(rows)
        except asyncpg.PostgresError as exc:
            if _transient(exc):
                raise
            if len(rows) == 1:
                await self._reject(rows[0], exc)
                return
            middle = len(rows) // 2
            await self._insert(rows[:middle])
            await self._insert(rows[middle:])
            return
        self.stats.batches += 1
        self.stats.committed += new
        self.stats.duplicates += len(rows) - new

    async def _replay(self) -> None:
        """Replay spooled rows in order for up to ``replay_slice`` seconds; clear the spool once all are in."""
        deadline = time.monotonic() + self.replay_slice
        was_down = self._down
        while True:
            if time.monotonic() >= deadline and not self._closing:
                return  # more next time, after the next batch
            rows, offset = await self.spool.read_chunk(self._replay_offset, self.batch_size)
            if not rows and offset == self._replay_offset:
                break  # end of the spool
            try:
                await self._insert(rows)
            except Exception as exc:
                self._went_down(exc)
                return
            if was_down:
                log.warning("Postgres is reachable again; replaying the timeline spool")
                was_down = self._down = False
            self._replay_offset = offset
            self.stats.replayed += len(rows)
        await self.spool.clear()
        self._replay_offset = 0
        self._down = False
        log.info("timeline spool replayed", extra={"replayed": self.stats.replayed})
        for entry in self._batches:
            if entry[1] == _SPOOLED:
                entry[1] = _DONE
        await self._advance()

    def _went_down(self, exc: BaseException) -> None:
        if not self._down:
            log.error(
                "Postgres unreachable; spooling timeline events to disk",
                extra={"error": f"{type(exc).__name__}: {exc}", "spool": str(self.spool.path)},
                exc_info=None if _transient(exc) else exc,
            )
        self._down = True
        self._next_probe = time.monotonic() + self.retry_interval

    async def _reject(self, row: Row, exc: BaseException) -> None:
        self.stats.rejected += 1
        log.error(
            "Postgres refused a timeline event; kept in rejected.jsonl",
            extra={"incident": row.incident_id, "type": row.type, "error": f"{type(exc).__name__}: {exc}"},
        )
        line = json.dumps({"error": f"{type(exc).__name__}: {exc}", "line": encode_line(row).decode()}) + "\n"
        await asyncio.to_thread(_append_text, self.rejected_path, line)


def _append_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
