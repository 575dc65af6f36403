"""``POST /webhooks/pagerduty``: PagerDuty webhooks v3 onto incident timelines, mirrored into the war rooms.

The half of the PagerDuty sync that flows back: when someone acknowledges, escalates or resolves a page, the war
room hears it as one short line ("PD #1234 acknowledged by Ravi Menon") and the timeline gets an ``alert`` event.

Answers: 202 once the signature is verified, the body parsed and the ``X-Webhook-Id`` claimed in Postgres (the
work then runs in the background: PagerDuty wants 2xx within 5 s); 202 ``{"duplicate": true}`` for a webhook id
seen before (at-least-once delivery, retried up to 48 h); 401 for a missing or wrong ``X-PagerDuty-Signature``;
400 for a body that is not a v3 event; 413 over 1 MiB; 503 when ``PAGERDUTY_WEBHOOK_SECRETS`` is not set, while
shutting down, or when the claim cannot be written (PagerDuty retries later).

The signature header holds one or more ``v1=<hex>`` (several while a secret is rotated); each is HMAC-SHA256 of the
raw body with a signing secret. Every configured secret is tried and compared in constant time.

Which chatops incident owns a PagerDuty incident, first match wins: (1) its ``incident_key`` is one of ours
(``<incident id>/<role>``, set by the declare workflow's pages); (2) an open incident's timeline names it
(``payload.pd_incident`` on ``page``, ``escalation`` and ``alert`` events: our pages, the page declare acknowledged);
(3) its PagerDuty service is routed by exactly one service in ``services.yaml`` and that service has open
incidents. PagerDuty incidents matching none of these are not ours and are ignored. Webhooks about one PagerDuty
incident are processed in arrival order (PagerDuty sends them in order per incident).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from chatops.incidents.store import IncidentStore
from chatops.policy.store import PolicyStore
from chatops.sources.body import BodyError, read_body
from chatops.tasks import TaskTracker, TrackerClosed
from chatops.timeline.events import EventType, TimelineEvent
from chatops.timeline.sink import TimelineSink, flush_sink
from chatops.transport.base import Chat, ChatError

__all__ = ["PATH", "SOURCE", "PagerDutyEvent", "PagerDutyWebhook", "mirror_line", "sign", "signature_valid"]

log = logging.getLogger(__name__)

PATH = "/webhooks/pagerduty"
SOURCE = "pagerduty"
MAX_BODY = 1024 * 1024
_DEDUP_SCOPE = "pagerduty_webhook"


def sign(body: bytes, secret: str) -> str:
    """The ``v1=<hex>`` signature PagerDuty sends for ``body`` signed with ``secret``."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, header: str | None, secrets: Sequence[str]) -> bool:
    """True when any ``v1=`` signature in ``header`` matches ``body`` under any of ``secrets`` (constant time)."""
    if not header or not secrets:
        return False
    given = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    expected = [sign(body, secret)[3:] for secret in secrets]
    ok = False
    for candidate in given:
        for wanted in expected:
            ok |= hmac.compare_digest(candidate.lower().encode(), wanted.encode())
    return ok


@dataclass(frozen=True)
class PagerDutyEvent:
    """The parts of a v3 webhook event chatops uses."""

    webhook_id: str
    event_id: str
    event_type: str
    occurred_at: datetime
    agent: str | None
    incident: Mapping[str, Any]
    data: Mapping[str, Any]

    @property
    def pd_incident(self) -> str:
        """PagerDuty's incident id."""
        return str(self.incident.get("id") or "")

    @property
    def number(self) -> str:
        """``#1234``-style number (falls back to the id when the reference carries no number)."""
        number = self.incident.get("number")
        return f"#{number}" if isinstance(number, int) else self.pd_incident


def _names(items: object) -> str:
    people = [i.get("summary") for i in items if isinstance(i, dict)] if isinstance(items, list) else []
    return ", ".join(p for p in people if isinstance(p, str)) or "nobody"


def mirror_line(event: PagerDutyEvent) -> str:
    """The one short line for the war room and the timeline summary (``PD #1234 acknowledged by Ravi Menon``)."""
    by = f" by {event.agent}" if event.agent else ""
    what = event.event_type.removeprefix("incident.")
    head = f"PD {event.number}"
    if what == "triggered":
        return f"{head} triggered: {event.incident.get('title') or 'untitled'}"
    if what in ("escalated", "reassigned"):
        return f"{head} {what} to {_names(event.incident.get('assignees'))}{by}"
    if what == "annotated":
        return f"{head} note{by}: {event.data.get('content') or ''}".rstrip(": ")
    if what == "priority_updated":
        priority = event.incident.get("priority")
        label = priority.get("summary") if isinstance(priority, dict) else None
        return f"{head} priority set to {label or 'none'}{by}"
    if what == "responder.added":
        return f"{head} responder added: {_names([event.data.get('user')])}{by}"
    return f"{head} {what.replace('.', ' ').replace('_', ' ')}{by}"


class _BadEvent(ValueError):
    pass


def _parse(body: bytes, webhook_id: str | None, now: datetime) -> PagerDutyEvent:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _BadEvent(f"body is not JSON: {exc}") from exc
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict):
        raise _BadEvent('expected a webhooks v3 body {"event": {...}}')
    event_type, data = event.get("event_type"), event.get("data")
    if not isinstance(event_type, str) or not event_type:
        raise _BadEvent("event.event_type is missing")
    if not isinstance(data, dict):
        raise _BadEvent("event.data must be an object")
    event_id = event.get("id") if isinstance(event.get("id"), str) else None
    key = webhook_id or event_id
    if not key:
        raise _BadEvent("no X-Webhook-Id header and no event.id: cannot de-duplicate")
    try:
        occurred_at = datetime.fromisoformat(str(event.get("occurred_at")))
    except ValueError:
        occurred_at = now
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    agent = event.get("agent")
    incident = data if data.get("type") == "incident" else data.get("incident")
    return PagerDutyEvent(
        webhook_id=key,
        event_id=event_id or key,
        event_type=event_type,
        occurred_at=occurred_at,
        agent=agent.get("summary") if isinstance(agent, dict) and isinstance(agent.get("summary"), str) else None,
        incident=incident if isinstance(incident, dict) else {},
        data=data,
    )


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class PagerDutyWebhook:
    """The handler and its background processing; register :meth:`routes` on the HTTP server."""

    def __init__(
        self,
        *,
        secrets: Sequence[str],
        incidents: IncidentStore,
        policy: PolicyStore,
        sink: TimelineSink,
        chat: Chat,
        tasks: TaskTracker,
        clock: Callable[[], datetime],
    ) -> None:
        self.secrets = tuple(secrets)
        self.incidents = incidents
        self.policy = policy
        self.sink = sink
        self.chat = chat
        self.tasks = tasks
        self.clock = clock
        self._tails: dict[str, asyncio.Future[None]] = {}

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes this webhook serves."""
        return [web.post(PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        """Verify, parse, claim, hand off, 202."""
        if not self.secrets:
            return _error(503, "PAGERDUTY_WEBHOOK_SECRETS is not set on the chatops daemon: webhooks are refused")
        try:
            body = await read_body(request, MAX_BODY)
        except BodyError as exc:
            return _error(exc.status, exc.message)
        if not signature_valid(body, request.headers.get("X-PagerDuty-Signature"), self.secrets):
            return _error(401, "X-PagerDuty-Signature is missing or matches no configured signing secret")
        try:
            event = _parse(body, request.headers.get("X-Webhook-Id"), self.clock())
        except _BadEvent as exc:
            return _error(400, str(exc))
        if self.tasks.closing:
            return _error(503, "shutting down; PagerDuty will retry")
        try:
            fresh = await self.incidents.claim_key(f"pagerduty:{event.webhook_id}", _DEDUP_SCOPE)
        except Exception:
            log.exception("could not claim a PagerDuty webhook id", extra={"webhook_id": event.webhook_id})
            return _error(503, "cannot record the webhook right now; PagerDuty will retry")
        if not fresh:
            return web.json_response({"duplicate": True}, status=202)
        if event.event_type.startswith("incident.") and event.pd_incident:
            self._spawn(event)
        return web.json_response({"accepted": True}, status=202)

    def _spawn(self, event: PagerDutyEvent) -> None:
        """Process in the background, after any earlier webhook about the same PagerDuty incident."""
        key = event.pd_incident
        previous = self._tails.get(key)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = done

        async def run() -> None:
            try:
                if previous is not None:
                    await asyncio.wait([previous])
                await self.process(event)
            finally:
                done.set_result(None)
                if self._tails.get(key) is done:
                    del self._tails[key]

        try:
            self.tasks.spawn(run(), name=f"pagerduty webhook {event.webhook_id}")
        except TrackerClosed:
            done.set_result(None)
            log.warning("shutting down: PagerDuty webhook not processed", extra={"webhook_id": event.webhook_id})

    async def process(self, event: PagerDutyEvent) -> None:
        """Record an ``alert`` event on every owning incident and mirror the line into its war room."""
        owners = await self.owners(event)
        if not owners:
            log.info("PagerDuty incident not ours", extra={"pd_incident": event.pd_incident, "type": event.event_type})
            return
        line = mirror_line(event)
        for incident_id in owners:
            await self.sink.record(self._timeline_event(event, incident_id, line))
            incident = await self.incidents.get(incident_id)
            if incident is None or incident.channel_id is None:
                continue
            url = event.incident.get("html_url")
            text = line.replace(f"PD {event.number}", f"<{url}|PD {event.number}>", 1) if url else line
            try:
                await self.chat.post_message(incident.channel_id, text)
            except ChatError as exc:
                log.warning("could not mirror a PagerDuty event", extra={"incident": incident_id, "error": exc.code})

    def _timeline_event(self, event: PagerDutyEvent, incident_id: str, line: str) -> TimelineEvent:
        inc = event.incident
        service = inc.get("service")
        return TimelineEvent(
            incident_id=incident_id,
            type=EventType.ALERT,
            occurred_at=event.occurred_at,
            actor=event.agent,
            source=SOURCE,
            summary=line,
            payload={
                "pd_incident": event.pd_incident,
                "number": inc.get("number"),
                "event_type": event.event_type,
                "event_id": event.event_id,
                "webhook_id": event.webhook_id,
                "status": inc.get("status"),
                "title": inc.get("title"),
                "urgency": inc.get("urgency"),
                "incident_key": inc.get("incident_key"),
                "pd_service": service.get("id") if isinstance(service, dict) else None,
                "html_url": inc.get("html_url"),
                "agent": event.agent,
            },
            dedup_key=f"{event.webhook_id}/{incident_id}",
        )

    async def owners(self, event: PagerDutyEvent) -> list[str]:
        """The chatops incidents this PagerDuty incident belongs to (see the module docstring)."""
        key = event.incident.get("incident_key")
        if isinstance(key, str) and "/" in key:
            ours = await self.incidents.get(key.rpartition("/")[0])
            if ours is not None:
                return [ours.id]
        await flush_sink(self.sink, timeout=2.0)  # a page recorded a moment ago must be visible to the query
        found = await self.incidents.pagerduty_owners(event.pd_incident)
        if found:
            return found
        service = event.incident.get("service")
        pd_service = service.get("id") if isinstance(service, dict) else None
        policy = self.policy.current
        routed = [name for name, s in policy.services.items() if pd_service in s.pagerduty.values()]
        if len(routed) != 1:
            return []
        return [i.id for i in await self.incidents.open_for_service(routed[0])]
