"""Which services have open incidents, as the audit webhook needs it: cheap, shared, and never stale for new events.

The audit webhook attaches each event to the open incidents of the service owning its namespace. :class:`OpenIncidents`
holds a snapshot of :meth:`IncidentStore.open_incidents` and :meth:`OpenIncidents.covering` hands it out only when
it is younger than ``ttl`` *and* was taken after the newest event of the batch (less ``skew``, for clock drift
between the apiserver and us) — an incident declared a moment ago is never missed, while a replay of old events
is served from memory. Refreshes are single-flight (concurrent batches share one query, an indexed read of the
few open incidents) and bounded by ``timeout``; when one fails, the last snapshot keeps serving (up to
``max_stale``), and with no usable snapshot :class:`IncidentsUnavailable` is raised so the caller answers 503 and
is retried rather than dropping events. Nothing here waits on a write.

A resolve in this process calls :meth:`OpenIncidents.invalidate` (the composition root hooks it to
:attr:`IncidentStore.status_listeners`): the resolved incident leaves the snapshot at once — also the one kept as a
fallback — and the next batch refreshes from Postgres instead of joining a query sent before the resolve. A resolve
by another replica is seen at the next refresh, which any batch of new events triggers (the ``newest`` rule above).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from chatops.incidents.store import IncidentStore

__all__ = ["IncidentsUnavailable", "OpenIncidents", "Snapshot"]

log = logging.getLogger(__name__)


class IncidentsUnavailable(RuntimeError):
    """No trustworthy view of the open incidents (Postgres unreachable and no recent snapshot)."""


@dataclass(frozen=True)
class Snapshot:
    """Open incident ids by service, as of ``taken_at`` (wall clock, UTC, when the query was sent)."""

    by_service: Mapping[str, tuple[str, ...]]
    taken_at: dt.datetime
    monotonic: float
    epoch: int = 0
    """:meth:`OpenIncidents.invalidate` calls before the query was sent: a snapshot from an older epoch is refreshed."""

    def without(self, incident_id: str) -> Snapshot:
        """This snapshot less one incident (same times and epoch)."""
        by_service = {s: tuple(i for i in ids if i != incident_id) for s, ids in self.by_service.items()}
        kept = MappingProxyType({s: ids for s, ids in by_service.items() if ids})
        return Snapshot(kept, self.taken_at, self.monotonic, self.epoch)

    def incidents_of(self, service: str) -> tuple[str, ...]:
        """Open incident ids of ``service`` (oldest first), possibly none."""
        return self.by_service.get(service, ())


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _retrieve(task: asyncio.Task[Snapshot]) -> None:
    """Mark a refresh's failure as seen (a caller that timed out waiting reported it already)."""
    if not task.cancelled():
        task.exception()


class OpenIncidents:
    """A refreshed-on-demand snapshot of :meth:`IncidentStore.open_incidents`."""

    def __init__(
        self,
        store: IncidentStore,
        *,
        ttl: float = 1.0,
        timeout: float = 0.5,
        max_stale: float = 300.0,
        skew: dt.timedelta = dt.timedelta(seconds=5),
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.timeout = timeout
        self.max_stale = max_stale
        self.skew = skew
        self.clock = clock
        self._snapshot: Snapshot | None = None
        self._refreshing: asyncio.Task[Snapshot] | None = None
        self._epoch = 0
        self._refreshing_epoch = 0

    def invalidate(self, closed: str | None = None) -> None:
        """The open incidents changed (``closed``: this one is no longer open): refresh before serving again.

        The last snapshot stays as the fallback for a failing refresh, minus ``closed``.
        """
        self._epoch += 1
        if closed is not None and self._snapshot is not None:
            self._snapshot = self._snapshot.without(closed)

    async def covering(self, newest: dt.datetime) -> Snapshot:
        """A snapshot that cannot miss an incident owning an event that happened at ``newest`` (or earlier)."""
        snap = self._snapshot
        fresh = snap is not None and snap.epoch == self._epoch and time.monotonic() - snap.monotonic < self.ttl
        if snap is not None and fresh and newest + self.skew <= snap.taken_at:
            return snap
        return await self.refresh()

    async def refresh(self) -> Snapshot:
        """Query Postgres now (sharing a query already in flight); on failure fall back to a recent snapshot."""
        task = self._refreshing
        if task is None or task.done() or self._refreshing_epoch != self._epoch:
            # (a query sent before an invalidate may still list what was closed: send a new one)
            self._refreshing_epoch = self._epoch
            task = self._refreshing = asyncio.create_task(self._load(self._epoch), name="open incidents refresh")
            task.add_done_callback(_retrieve)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.timeout)
        except Exception as exc:
            snap = self._snapshot
            if snap is not None and time.monotonic() - snap.monotonic < self.max_stale:
                log.warning(
                    "open incidents: refresh failed, using the last snapshot",
                    extra={"error": f"{type(exc).__name__}: {exc}", "age_s": round(time.monotonic() - snap.monotonic)},
                )
                return snap
            raise IncidentsUnavailable(f"cannot read the open incidents ({type(exc).__name__})") from exc

    async def _load(self, epoch: int) -> Snapshot:
        taken_at, started = self.clock(), time.monotonic()
        incidents = await self.store.open_incidents()
        grouped: dict[str, list[str]] = {}
        for incident in incidents:
            grouped.setdefault(incident.service, []).append(incident.id)
        snap = Snapshot(MappingProxyType({k: tuple(v) for k, v in grouped.items()}), taken_at, started, epoch)
        if epoch == self._epoch or self._snapshot is None:  # a query sent before an invalidate is no fallback
            self._snapshot = snap
        return snap

    async def close(self) -> None:
        """Cancel a refresh still in flight."""
        task = self._refreshing
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
