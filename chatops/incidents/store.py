"""Incidents, declare-workflow steps and dedup keys in Postgres.

:meth:`IncidentStore.claim_declaration` is the one place an incident is born. It runs in a single transaction
under ``pg_advisory_xact_lock(hashtext('declare:' || service))`` (and a lock on the dedup key), so any number of
processes declaring for the same service at once produce exactly one incident, and a redelivered slash command
(same ``trigger_id``) returns the incident its first delivery created. :meth:`IncidentStore.summary_lock` is the
same kind of lock (``'summary:' || incident id``) for edits of the pinned summary; it also hands out the incident's
count of summary edits (``incidents.summary_edits``), bumped in the lock's transaction by whoever edited it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from chatops.incidents.model import (
    OPEN_STATUSES,
    Incident,
    IncidentNotFoundError,
    IncidentStatus,
    StepOutcome,
    StepStatus,
)

__all__ = ["Claim", "IncidentStore", "PageRecord", "SummaryHold", "Transition"]

log = logging.getLogger(__name__)

_COLUMNS = (
    "id, severity, service, status, ic_user_id, declared_by, channel_id, channel_name, declared_at, resolved_at, "
    "resolved_by, policy_digest, summary_ts, created_at, updated_at"
)
_OPEN = "(" + ", ".join(f"'{s.value}'" for s in sorted(OPEN_STATUSES)) + ")"
_DECLARE_SCOPE = "declare"
_MAX_ID_ATTEMPTS = 20


@dataclass(frozen=True)
class Claim:
    """Result of :meth:`IncidentStore.claim_declaration`.

    ``created``: a new incident (``incident``) was recorded. ``duplicate``: the dedup key was seen before;
    ``incident`` is the one that key created. ``open_exists``: the service already has an open incident
    (``incident``) and nothing was recorded.
    """

    outcome: Literal["created", "duplicate", "open_exists"]
    incident: Incident


@dataclass(frozen=True)
class Transition:
    """Result of a guarded lifecycle update (:meth:`IncidentStore.resolve`, :meth:`IncidentStore.change_severity`).

    ``changed``: this call made the change and ``incident`` is the row after it. Otherwise nothing was written and
    ``incident`` is the row as it is now (already resolved, or changed by someone else meanwhile).
    """

    changed: bool
    incident: Incident


@dataclass(frozen=True)
class PageRecord:
    """A PagerDuty incident an incident's timeline says it created or escalated on (``page`` / ``escalation``)."""

    pd_incident: str
    role: str | None
    """The role paged (``None`` for a responder request to a person, on one of the incident's own pages)."""
    number: int | None = None
    """PagerDuty's incident number (``PD #1234``), when the event recorded it."""


class SummaryHold:
    """What :meth:`IncidentStore.summary_lock` yields: the summary as Postgres records it, inside the lock.

    ``ts``: the pinned summary's Slack ``ts`` (``None``: not posted yet). ``edits``: how many times the message has
    been edited by anything but the declaration's own post and refresh (``/escalate``); 0 means it still holds exactly
    what the declaration wrote. An editor calls :meth:`bump` once its ``chat.update`` went through: the count is
    written in the lock's transaction, so it commits with the lock's release and the next holder sees it.
    """

    __slots__ = ("_conn", "_incident_id", "edits", "ts")

    def __init__(self, conn: asyncpg.Connection, incident_id: str, ts: str | None, edits: int) -> None:
        self._conn = conn
        self._incident_id = incident_id
        self.ts = ts
        self.edits = edits

    async def bump(self) -> None:
        """Count one edit of the message (only while the lock is held)."""
        self.edits = await self._conn.fetchval(
            "UPDATE incidents SET summary_edits = summary_edits + 1 WHERE id = $1 RETURNING summary_edits",
            self._incident_id,
        )


def _incident(row: asyncpg.Record) -> Incident:
    return Incident(
        id=row["id"],
        severity=row["severity"],
        service=row["service"],
        status=IncidentStatus(row["status"]),
        ic_user_id=row["ic_user_id"],
        declared_by=row["declared_by"],
        declared_at=row["declared_at"],
        policy_digest=row["policy_digest"],
        channel_id=row["channel_id"],
        channel_name=row["channel_name"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        summary_ts=row["summary_ts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _updated(status: str) -> int:
    """Row count of an asyncpg command status such as ``'UPDATE 1'``."""
    return int(status.rsplit(" ", 1)[-1])


class IncidentStore:
    """Reads and writes incidents through an asyncpg pool (see :func:`chatops.db.pool.create_pool`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.status_listeners: list[Callable[[Incident], None]] = []
        """Called (in this process) with the incident after each status change this store made, e.g. so the audit
        webhook's view of the open incidents (:class:`~chatops.sources.open_incidents.OpenIncidents`) stops
        attaching events to a resolved incident at once."""

    async def claim_declaration(
        self,
        *,
        dedup_key: str,
        incident_id: str,
        severity: str,
        service: str,
        ic_user_id: str,
        declared_by: str,
        declared_at: dt.datetime,
        policy_digest: str,
        allow_concurrent: bool = False,
    ) -> Claim:
        """Record a declaration exactly once; see :class:`Claim` for the three outcomes.

        If ``incident_id`` is taken (the same minute after a resolve), ``-2``, ``-3``, … is appended and the first
        free id is used; the created incident carries the id actually used.
        """
        if declared_at.tzinfo is None:
            raise ValueError("declared_at must be timezone-aware")
        for name, value in (("dedup_key", dedup_key), ("incident_id", incident_id), ("service", service)):
            if not value:
                raise ValueError(f"{name} must not be empty")
        async with self._pool.acquire() as conn, conn.transaction():
            # Always in this order (key, then service) so that two claims can never deadlock.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dedup:' || $1))", dedup_key)
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('declare:' || $1))", service)
            seen = await conn.fetchrow("SELECT scope, incident_id FROM dedup_keys WHERE key = $1", dedup_key)
            if seen is not None:
                if seen["incident_id"] is None:
                    raise ValueError(f"dedup key {dedup_key!r} is already used in scope {seen['scope']!r}")
                row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM incidents WHERE id = $1", seen["incident_id"])
                return Claim("duplicate", _incident(row))
            if not allow_concurrent:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM incidents WHERE service = $1 AND status IN {_OPEN} "
                    "ORDER BY declared_at DESC, id DESC LIMIT 1",
                    service,
                )
                if row is not None:
                    return Claim("open_exists", _incident(row))
            row = None
            for _ in range(_MAX_ID_ATTEMPTS):
                # Another service may race us for the same base id: ON CONFLICT and look again.
                row = await conn.fetchrow(
                    f"INSERT INTO incidents (id, severity, service, status, ic_user_id, declared_by, declared_at, "
                    f"policy_digest) VALUES ($1, $2, $3, 'declared', $4, $5, $6, $7) "
                    f"ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}",
                    await _free_id(conn, incident_id),
                    severity,
                    service,
                    ic_user_id,
                    declared_by,
                    declared_at,
                    policy_digest,
                )
                if row is not None:
                    break
            if row is None:
                raise RuntimeError(f"could not find a free incident id for {incident_id!r}")
            await conn.execute(
                "INSERT INTO dedup_keys (key, scope, incident_id) VALUES ($1, $2, $3)",
                dedup_key,
                _DECLARE_SCOPE,
                row["id"],
            )
            return Claim("created", _incident(row))

    async def get(self, incident_id: str) -> Incident | None:
        """The incident with this id, or ``None``."""
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM incidents WHERE id = $1", incident_id)
        return None if row is None else _incident(row)

    async def by_channel(self, channel_id: str) -> Incident | None:
        """The incident whose war room is ``channel_id``, or ``None``."""
        row = await self._pool.fetchrow(f"SELECT {_COLUMNS} FROM incidents WHERE channel_id = $1", channel_id)
        return None if row is None else _incident(row)

    async def open_for_service(self, service: str) -> list[Incident]:
        """Open (declared or mitigated) incidents of ``service``, oldest declaration first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM incidents WHERE service = $1 AND status IN {_OPEN} ORDER BY declared_at, id",
            service,
        )
        return [_incident(r) for r in rows]

    async def open_incidents(self) -> list[Incident]:
        """Every open (declared or mitigated) incident, oldest declaration first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS} FROM incidents WHERE status IN {_OPEN} ORDER BY declared_at, id",
        )
        return [_incident(r) for r in rows]

    async def pagerduty_owners(self, pd_incident_id: str) -> list[str]:
        """Open incidents whose timeline names PagerDuty incident ``pd_incident_id``, oldest first.

        The declare workflow's ``page`` events (the pages it created), ``escalation`` events (``/escalate``) and
        ``alert`` events (the page declare acknowledged, PagerDuty webhooks already attached) carry it as
        ``payload.pd_incident``.
        """
        rows = await self._pool.fetch(
            f"SELECT DISTINCT i.id, i.declared_at FROM incidents i JOIN timeline_events t ON t.incident_id = i.id "
            f"WHERE i.status IN {_OPEN} AND t.type IN ('page', 'escalation', 'alert') "
            f"AND t.payload->>'pd_incident' = $1 "
            f"ORDER BY i.declared_at, i.id",
            pd_incident_id,
        )
        return [r["id"] for r in rows]

    async def pagerduty_pages(self, incident_id: str) -> list[PageRecord]:
        """The PagerDuty incidents ``incident_id`` paged: its timeline's ``page`` events (the declaration, a severity
        upgrade) and ``escalation`` events (``/escalate``), distinct, in the order they were recorded.

        Only what reached Postgres: flush the timeline sink first when the events may still be in its buffer.
        """
        rows = await self._pool.fetch(
            "SELECT payload->>'pd_incident' AS pd, payload->>'role' AS role, min(payload->>'number') AS number, "
            "min(id) AS first FROM timeline_events "
            "WHERE incident_id = $1 AND type IN ('page', 'escalation') AND payload ? 'pd_incident' "
            "GROUP BY 1, 2 ORDER BY first",
            incident_id,
        )
        return [
            PageRecord(r["pd"], r["role"], int(r["number"]) if (r["number"] or "").isdigit() else None)
            for r in rows
            if r["pd"]
        ]

    async def resolve(
        self,
        incident_id: str,
        *,
        resolved_by: str,
        resolved_at: dt.datetime,
        steps: Sequence[str] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> Transition:
        """Mark an open incident resolved, exactly once.

        One guarded ``UPDATE … WHERE status IN (open)``: of any number of concurrent calls (in any process) one gets
        ``changed=True``; the others, and any later call, get the row as it is (``resolved_at`` / ``resolved_by`` of
        the resolve that won). The winner's ``steps`` are recorded ``pending`` (with ``detail``) in the same
        transaction, so a resolve that dies before finishing them leaves them visibly unfinished
        (:meth:`steps`). Raises :class:`IncidentNotFoundError`.
        """
        if resolved_at.tzinfo is None:
            raise ValueError("resolved_at must be timezone-aware")
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE incidents SET status = 'resolved', resolved_at = $2, resolved_by = $3 "
                f"WHERE id = $1 AND status IN {_OPEN} RETURNING {_COLUMNS}",
                incident_id,
                resolved_at,
                resolved_by,
            )
            if row is not None and steps:
                await conn.executemany(
                    "INSERT INTO incident_steps AS s (incident_id, step, status, detail, attempts) "
                    "VALUES ($1, $2, 'pending', $3::jsonb, 1) "
                    "ON CONFLICT (incident_id, step) DO UPDATE SET status = 'pending', detail = EXCLUDED.detail, "
                    "attempts = s.attempts + 1, updated_at = now()",
                    [(incident_id, step, dict(detail or {})) for step in steps],
                )
        if row is None:
            return Transition(False, await self._require(incident_id))
        incident = _incident(row)
        for listener in list(self.status_listeners):
            try:
                listener(incident)
            except Exception:  # a listener's bug must not undo or hide the resolve
                log.exception("incident status listener failed", extra={"incident": incident_id})
        return Transition(True, incident)

    async def change_severity(self, incident_id: str, *, from_severity: str, to_severity: str) -> Transition:
        """Set the severity of an open incident whose severity is still ``from_severity`` (compare-and-set).

        ``changed=False`` when the incident is no longer open or someone changed its severity meanwhile; ``incident``
        is then the row as it is. Raises :class:`IncidentNotFoundError`.
        """
        row = await self._pool.fetchrow(
            f"UPDATE incidents SET severity = $3 WHERE id = $1 AND severity = $2 AND status IN {_OPEN} "
            f"RETURNING {_COLUMNS}",
            incident_id,
            from_severity,
            to_severity,
        )
        if row is None:
            return Transition(False, await self._require(incident_id))
        return Transition(True, _incident(row))

    async def _require(self, incident_id: str) -> Incident:
        found = await self.get(incident_id)
        if found is None:
            raise IncidentNotFoundError(incident_id)
        return found

    async def set_channel(self, incident_id: str, channel_id: str, channel_name: str) -> None:
        """Record the war-room channel. Raises :class:`IncidentNotFoundError`; a channel used by another
        incident raises ``asyncpg.UniqueViolationError``."""
        status = await self._pool.execute(
            "UPDATE incidents SET channel_id = $2, channel_name = $3 WHERE id = $1",
            incident_id,
            channel_id,
            channel_name,
        )
        if not _updated(status):
            raise IncidentNotFoundError(incident_id)

    async def set_summary_ts(self, incident_id: str, ts: str) -> None:
        """Record the Slack ``ts`` of the pinned summary message. Raises :class:`IncidentNotFoundError`."""
        status = await self._pool.execute("UPDATE incidents SET summary_ts = $2 WHERE id = $1", incident_id, ts)
        if not _updated(status):
            raise IncidentNotFoundError(incident_id)

    @asynccontextmanager
    async def summary_lock(self, incident_id: str) -> AsyncIterator[SummaryHold]:
        """Hold the incident's summary lock, across processes, for the body of the ``async with``.

        ``pg_advisory_xact_lock(hashtext('summary:' || id))`` in a transaction that lasts as long as the body (it
        holds one pool connection meanwhile). Yields a :class:`SummaryHold`: the summary's ``ts`` and edit count as
        recorded now, and :meth:`SummaryHold.bump` to count this holder's edit. A body that raises rolls its bump
        back. Raises :class:`IncidentNotFoundError`.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('summary:' || $1))", incident_id)
            row = await conn.fetchrow("SELECT summary_ts, summary_edits FROM incidents WHERE id = $1", incident_id)
            if row is None:
                raise IncidentNotFoundError(incident_id)
            yield SummaryHold(conn, incident_id, row["summary_ts"], row["summary_edits"])

    async def record_step(
        self,
        incident_id: str,
        step: str,
        status: str,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Upsert the outcome of a workflow step.

        ``attempts`` counts attempts: every call adds one, except an outcome recorded right after ``pending``
        (that completes the attempt ``pending`` opened). So ``pending, done`` is 1 attempt, ``failed, failed,
        done`` is 3, and ``pending, pending`` (a crash mid-step, then a retry) is 2. ``detail=None`` keeps the
        previous detail; a mapping replaces it.
        """
        step_status = StepStatus(status)
        await self._pool.execute(
            """
            INSERT INTO incident_steps AS s (incident_id, step, status, detail, attempts)
            VALUES ($1, $2, $3, coalesce($4::jsonb, '{}'::jsonb), 1)
            ON CONFLICT (incident_id, step) DO UPDATE SET
                status = EXCLUDED.status,
                detail = coalesce($4::jsonb, s.detail),
                attempts = s.attempts
                    + CASE WHEN s.status = 'pending' AND EXCLUDED.status <> 'pending' THEN 0 ELSE 1 END,
                updated_at = now()
            """,
            incident_id,
            step,
            step_status.value,
            None if detail is None else dict(detail),
        )

    async def steps(self, incident_id: str) -> dict[str, StepOutcome]:
        """Every recorded step of the incident, by step name."""
        rows = await self._pool.fetch(
            "SELECT step, status, detail, attempts, updated_at FROM incident_steps WHERE incident_id = $1 "
            "ORDER BY updated_at, step",
            incident_id,
        )
        return {
            r["step"]: StepOutcome(
                step=r["step"],
                status=StepStatus(r["status"]),
                attempts=r["attempts"],
                updated_at=r["updated_at"],
                detail=r["detail"],
            )
            for r in rows
        }

    async def claim_key(self, key: str, scope: str, incident_id: str | None = None) -> bool:
        """Claim a dedup key (an envelope or event id): True the first time, False for every redelivery."""
        row = await self._pool.fetchrow(
            "INSERT INTO dedup_keys (key, scope, incident_id) VALUES ($1, $2, $3) "
            "ON CONFLICT (key) DO NOTHING RETURNING key",
            key,
            scope,
            incident_id,
        )
        return row is not None


async def _free_id(conn: asyncpg.Connection, base: str) -> str:
    """``base`` if unused, else ``base-N`` for the smallest free N >= 2."""
    rows = await conn.fetch("SELECT id FROM incidents WHERE id = $1 OR starts_with(id, $1 || '-')", base)
    taken = {r["id"] for r in rows}
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"
