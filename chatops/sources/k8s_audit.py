"""``POST /webhooks/k8s-audit``: the kube-apiserver audit webhook backend, onto incident timelines.

Answers (the apiserver only looks at the status; it retries errors with backoff, then drops the batch):

* 200 ``{"received": n, "recorded": m}`` — accepted: the kept events are in the timeline writer's queue, which
  commits them to Postgres (or its spool) on its own; this handler never waits for a commit.
* 400 — the body is not an ``audit.k8s.io/v1`` EventList; the body names the problem (bad JSON, wrong kind or
  apiVersion, ``items`` not a list, ``items[3]: missing auditID``, …).
* 401 — no or wrong ``Authorization: Bearer <K8S_AUDIT_TOKEN>`` (compared in constant time).
* 413 — body over the limit (16 MiB decoded by default).
* 429 + ``Retry-After`` — the writer's queue is full: nothing of this batch was taken, send it again. When the
  writer is already refusing everything (its ``saturated()``), the batch is refused before it is parsed.
* 503 — ``K8S_AUDIT_TOKEN`` is not set (every request is refused), the writer is shutting down, or the open
  incidents cannot be read. Never "accept, then drop".

Which events are kept is policy (``audit.yaml``, :mod:`chatops.sources.audit_filter`); each kept event goes to
every open incident of the service whose ``namespaces`` hold ``objectRef.namespace`` (``services.yaml``), typed
``kubectl``, with dedup key ``<auditID>/<stage>/<incident>`` so a retried batch is stored once.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from aiohttp import web

from chatops.policy.models import Policy
from chatops.policy.store import PolicyStore
from chatops.sources.audit_events import AuditBatchError, AuditRecord, parse_event_list
from chatops.sources.audit_filter import AuditFilter
from chatops.sources.body import BodyError, read_body
from chatops.sources.open_incidents import IncidentsUnavailable, OpenIncidents, Snapshot
from chatops.timeline.events import EventType, TimelineEvent
from chatops.timeline.sink import TimelineSink

__all__ = ["MAX_BODY", "PATH", "SOURCE", "AuditWebhook"]

log = logging.getLogger(__name__)

PATH = "/webhooks/k8s-audit"
SOURCE = "k8s-audit"
MAX_BODY = 16 * 1024 * 1024
_REFUSED_KEPT = 16  # parses of refused batches kept for their retry (at most this many, this many bytes of body)
_REFUSED_BYTES = 32 * 1024 * 1024


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


class AuditWebhook:
    """The handler; register :meth:`routes` on the HTTP server."""

    def __init__(
        self,
        *,
        token: str | None,
        policy: PolicyStore,
        incidents: OpenIncidents,
        sink: TimelineSink,
        max_body: int = MAX_BODY,
        retry_after: int = 1,
    ) -> None:
        self._token = token.encode() if token else None
        self.policy = policy
        self.incidents = incidents
        self.sink = sink
        self.max_body = max_body
        self.retry_after = retry_after
        self._namespaces: tuple[str, Mapping[str, str]] = ("", {})
        self._refused: list[tuple[bytes, AuditFilter, tuple[int, list[AuditRecord]]]] = []

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes this webhook serves."""
        return [web.post(PATH, self.handle)]

    def _authorized(self, request: web.Request) -> bool:
        assert self._token is not None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self._token)

    async def handle(self, request: web.Request) -> web.Response:
        """One EventList."""
        if self._token is None:
            return _error(503, "K8S_AUDIT_TOKEN is not set on the chatops daemon: the audit webhook refuses everything")
        if not self._authorized(request):
            return _error(401, "missing or wrong bearer token", {"WWW-Authenticate": 'Bearer realm="chatops"'})
        try:
            body = await read_body(request, self.max_body)
        except BodyError as exc:
            return _error(exc.status, exc.message)
        saturated = getattr(self.sink, "saturated", None)
        if saturated is not None and saturated():  # would refuse any event: do not parse a batch to refuse it
            return self._full()
        policy = self.policy.current
        parsed = self._take_refused(body, policy)
        if parsed is None:
            try:
                parsed = parse_event_list(body, policy.audit)
            except AuditBatchError as exc:
                return _error(400, str(exc))
        received, records = parsed
        try:
            events = await self._attach(policy, records)
        except IncidentsUnavailable as exc:
            log.warning("audit batch refused: open incidents unknown", extra={"error": str(exc)})
            return _error(503, "cannot read the open incidents right now; retry", {"Retry-After": "5"})
        if events:
            try:
                accepted = self.sink.offer(events)
            except RuntimeError:  # the writer is closing (WriterClosed)
                return _error(503, "shutting down; send this batch to another replica or retry")
            if not accepted:
                self._keep_refused(body, policy, parsed)
                return self._full()
        return web.json_response({"received": received, "recorded": len(events)})

    def _take_refused(self, body: bytes, policy: Policy) -> tuple[int, list[AuditRecord]] | None:
        """The parse of this very body if it was refused (429) a moment ago: the apiserver sends it again as is."""
        for i, (kept_body, audit, parsed) in enumerate(self._refused):
            if audit is policy.audit and kept_body == body:
                del self._refused[i]
                return parsed
        return None

    def _keep_refused(self, body: bytes, policy: Policy, parsed: tuple[int, list[AuditRecord]]) -> None:
        # Parsing is a pure function of the body and the audit filter, so a retry can reuse it. Bounded: a few
        # batches per sender.
        self._refused.append((body, policy.audit, parsed))
        while len(self._refused) > _REFUSED_KEPT or sum(len(b) for b, _, _ in self._refused) > _REFUSED_BYTES:
            del self._refused[0]

    def _full(self) -> web.Response:
        headers = {"Retry-After": str(self.retry_after)}
        return _error(429, "timeline buffer full: nothing was taken, retry this batch", headers)

    def _owners(self, policy: Policy) -> Mapping[str, str]:
        """Namespace → owning service for this policy snapshot (rebuilt when the policy changes)."""
        digest, owners = self._namespaces
        if digest != policy.digest:
            owners = {ns: name for name, service in policy.services.items() for ns in service.namespaces}
            self._namespaces = (policy.digest, owners)
        return owners

    async def _attach(self, policy: Policy, records: list[AuditRecord]) -> list[TimelineEvent]:
        owners = self._owners(policy)
        owned = [(r, owners[r.namespace]) for r in records if r.namespace is not None and r.namespace in owners]
        if not owned:
            return []
        snap = await self.incidents.covering(max(record.occurred_at for record, _ in owned))
        return _events(owned, snap)


def _events(owned: list[tuple[AuditRecord, str]], snap: Snapshot) -> list[TimelineEvent]:
    incidents = {service: snap.incidents_of(service) for service in {service for _, service in owned}}
    return [
        TimelineEvent(
            incident_id=incident,
            type=EventType.KUBECTL,
            occurred_at=record.occurred_at,
            actor=record.actor,
            source=SOURCE,
            summary=record.summary,
            payload=record.payload,
            dedup_key=f"{record.audit_id}/{record.stage}/{incident}",
        )
        for record, service in owned
        for incident in incidents[service]
    ]
