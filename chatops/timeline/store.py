"""The timeline table: append (deduplicated per source) and query in causal order.

This is the storage seam under the batching writer: :meth:`TimelineStore.append_many` takes a batch and reports
how many rows were new, duplicates (same ``source`` + ``dedup_key``, within the batch or already stored) are
skipped by ``ON CONFLICT DO NOTHING``. :meth:`TimelineStore.append_many` sends a batch as one ``INSERT … SELECT
FROM unnest(…)`` statement.

The writer's :meth:`TimelineStore.append_rows` is optimistic: a batch is binary-``COPY``d straight into
``timeline_events`` (one statement, its own transaction: atomic), which is the cheapest write Postgres has. A batch
holding a row that is already stored (a retried webhook, a redelivery, a spool replay after an uncertain commit)
fails that ``COPY`` on the unique key as a whole, and only then goes the deduplicating way: ``COPY`` into a
session temp table (``ON COMMIT DELETE ROWS``: no catalog churn per flush), then one ``INSERT … SELECT … ON
CONFLICT DO NOTHING`` in the same transaction. (Binary ``COPY`` is also much cheaper to encode on our side than
nine arrays: asyncpg inspects every array element.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import asyncpg

from chatops.db.pool import json_dumps
from chatops.timeline.events import TimelineEvent
from chatops.timeline.rows import Row

__all__ = ["TimelineStore"]

_COLUMNS = "id, incident_id, type, occurred_at, received_at, actor, source, summary, payload, dedup_key"

_INSERT_ONE = """
INSERT INTO timeline_events (incident_id, type, occurred_at, received_at, actor, source, summary, payload, dedup_key)
VALUES ($1, $2, $3, coalesce($4, now()), $5, $6, $7, $8, $9)
ON CONFLICT (source, dedup_key) DO NOTHING
RETURNING id
"""

_INSERT_MANY = """
INSERT INTO timeline_events (incident_id, type, occurred_at, received_at, actor, source, summary, payload, dedup_key)
SELECT incident_id, type, occurred_at, coalesce(received_at, now()), actor, source, summary, payload::jsonb, dedup_key
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::text[])
     WITH ORDINALITY AS b(incident_id, type, occurred_at, received_at, actor, source, summary, payload, dedup_key, n)
ORDER BY n
ON CONFLICT (source, dedup_key) DO NOTHING
"""

# Writer rows go through a per-session staging table: binary COPY encodes each value with its codec directly
# (asyncpg's array encoding inspects every element), then one INSERT … SELECT in the same transaction.
_TABLE = "timeline_events"
_STAGE = "timeline_rows_stage"
_STAGE_COLUMNS = (
    "incident_id",
    "type",
    "occurred_at",
    "received_at",
    "actor",
    "source",
    "summary",
    "payload",
    "dedup_key",
)
_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (
    incident_id text, type text, occurred_at timestamptz, received_at timestamptz, actor text, source text,
    summary text, payload jsonb, dedup_key text, n bigint GENERATED ALWAYS AS IDENTITY
) ON COMMIT DELETE ROWS
"""
_INSERT_STAGED = f"""
INSERT INTO timeline_events (incident_id, type, occurred_at, received_at, actor, source, summary, payload, dedup_key)
SELECT incident_id, type, occurred_at, coalesce(received_at, now()), actor, source, summary, payload, dedup_key
FROM {_STAGE}
ORDER BY n
ON CONFLICT (source, dedup_key) DO NOTHING
"""


def _event(row: asyncpg.Record) -> TimelineEvent:
    return TimelineEvent(
        id=row["id"],
        incident_id=row["incident_id"],
        type=row["type"],
        occurred_at=row["occurred_at"],
        received_at=row["received_at"],
        actor=row["actor"],
        source=row["source"],
        summary=row["summary"],
        payload=row["payload"],
        dedup_key=row["dedup_key"],
    )


def _aware(value: dt.datetime | None, name: str) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value


class TimelineStore:
    """Appends to and reads ``timeline_events`` through an asyncpg pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.dedup_fallbacks = 0
        """Batches :meth:`append_rows` had to deduplicate (the optimistic ``COPY`` met a stored row)."""

    async def append(self, event: TimelineEvent) -> bool:
        """Store one event; False when an event with the same ``(source, dedup_key)`` is already stored."""
        row = await self._pool.fetchrow(
            _INSERT_ONE,
            event.incident_id,
            str(event.type),
            event.occurred_at,
            event.received_at,
            event.actor,
            event.source,
            event.summary,
            dict(event.payload),
            event.dedup_key,
        )
        return row is not None

    async def append_many(self, events: Sequence[TimelineEvent]) -> int:
        """Store a batch atomically in one statement; return how many events were new (duplicates skipped)."""
        if not events:
            return 0
        columns: list[list[Any]] = [[] for _ in range(9)]
        for e in events:
            values = (
                e.incident_id,
                str(e.type),
                e.occurred_at,
                e.received_at,
                e.actor,
                e.source,
                e.summary,
                json_dumps(dict(e.payload)),
                e.dedup_key,
            )
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        status: str = await self._pool.execute(_INSERT_MANY, *columns)
        return int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <n>"

    async def append_rows(self, rows: Sequence[Row], *, timeout: float | None = None) -> int:
        """Store writer rows (already redacted, payload as JSON text) atomically; return how many were new."""
        if not rows:
            return 0
        async with self._pool.acquire(timeout=timeout) as conn:
            try:
                await conn.copy_records_to_table(_TABLE, records=rows, columns=_STAGE_COLUMNS, timeout=timeout)
                return len(rows)
            except asyncpg.UniqueViolationError:  # some are stored already: nothing of the COPY was kept
                self.dedup_fallbacks += 1
            async with conn.transaction():
                await conn.execute(_CREATE_STAGE, timeout=timeout)
                await conn.copy_records_to_table(_STAGE, records=rows, columns=_STAGE_COLUMNS, timeout=timeout)
                status: str = await conn.execute(_INSERT_STAGED, timeout=timeout)
        return int(status.rsplit(" ", 1)[-1])

    async def iter_events(
        self, incident_id: str, *, types: Collection[str] | None = None, page: int = 5000
    ) -> AsyncIterator[list[TimelineEvent]]:
        """Every event of an incident in causal order, in pages (keyset pagination: constant cost per page)."""
        after: tuple[dt.datetime, int] | None = None
        type_filter = "" if types is None else " AND type = ANY($2::text[])"
        type_arg: list[Any] = [] if types is None else [[str(t) for t in types]]
        n = len(type_arg) + 2
        first = f"SELECT {_COLUMNS} FROM timeline_events WHERE incident_id = $1{type_filter} ORDER BY occurred_at, id"
        then = (
            f"SELECT {_COLUMNS} FROM timeline_events WHERE incident_id = $1{type_filter} "
            f"AND (occurred_at, id) > (${n}, ${n + 1}) ORDER BY occurred_at, id"
        )
        while True:
            if after is None:
                rows = await self._pool.fetch(f"{first} LIMIT ${n}", incident_id, *type_arg, page)
            else:
                rows = await self._pool.fetch(f"{then} LIMIT ${n + 2}", incident_id, *type_arg, *after, page)
            if rows:
                yield [_event(r) for r in rows]
            if len(rows) < page:
                return
            after = (rows[-1]["occurred_at"], rows[-1]["id"])

    async def query(
        self,
        incident_id: str,
        *,
        types: Collection[str] | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        actor: str | None = None,
        actors: Collection[str] | None = None,
        limit: int = 1000,
        with_payload: bool = True,
    ) -> list[TimelineEvent]:
        """Events of an incident in causal order (``occurred_at``, then ``id``).

        ``types`` keeps only those types; ``since`` (inclusive) and ``until`` (exclusive) bound ``occurred_at``
        and must be timezone-aware; ``actor`` keeps one actor's events, ``actors`` any of several; at most ``limit``
        rows (the earliest). ``with_payload=False`` leaves ``payload`` empty (for one-line listings: less to send
        and decode).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        where = ["incident_id = $1"]
        args: list[Any] = [incident_id]

        def bind(condition: str, value: Any) -> None:
            args.append(value)
            where.append(condition.format(f"${len(args)}"))

        if types is not None:
            bind("type = ANY({}::text[])", [str(t) for t in types])
        if since is not None:
            bind("occurred_at >= {}", _aware(since, "since"))
        if until is not None:
            bind("occurred_at < {}", _aware(until, "until"))
        if actor is not None:
            bind("actor = {}", actor)
        if actors is not None:
            bind("actor = ANY({}::text[])", list(actors))
        args.append(limit)
        columns = _COLUMNS if with_payload else _COLUMNS.replace("payload", "'{}'::jsonb AS payload")
        sql = (
            f"SELECT {columns} FROM timeline_events WHERE {' AND '.join(where)} "
            f"ORDER BY occurred_at, id LIMIT ${len(args)}"
        )
        return [_event(r) for r in await self._pool.fetch(sql, *args)]
