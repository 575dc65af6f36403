"""``/incident resolve``: close the incident everywhere at once.

::

    Postgres: status → resolved ─► status_change event ─┬─► PagerDuty: resolve the pages it made
      (guarded: one resolve wins)                        ├─► topic: RESOLVED :: …
                                                         ├─► pinned summary: Resolved …
                                                         └─► archive the timeline (ARCHIVE_URL)

The Postgres update is the gate: a second resolve (or one that lost a race) changes nothing and is told who won.
The four steps after it are independent and run at once; each failure is reported in the reply without stopping
the others. The audit webhook's open-incident view drops the incident as the row changes
(:attr:`IncidentStore.status_listeners`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from chatops.context import Context
from chatops.errors import IntegrationError, UserError
from chatops.incidents.model import Incident
from chatops.incidents.naming import elapsed_text, resolved_topic_text
from chatops.incidents.pinned import SummaryMissing, edit_summary
from chatops.incidents.summary import with_resolution
from chatops.timeline.archive import ARCHIVE_OBJECT, archive_incident, target_for
from chatops.timeline.events import EventType
from chatops.timeline.sink import flush_sink
from chatops.transport.base import ChatError

__all__ = ["resolve_incident"]

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 10.0


def _hhmm(incident: Incident) -> str:
    return incident.resolved_at.strftime("%H:%M UTC") if incident.resolved_at else "an unknown time"


def _not_open(incident: Incident) -> str:
    if incident.is_open:  # not expected: the guarded update only refuses incidents that are not open
        return f"`{incident.id}` could not be resolved just now: try again."
    who = f"<@{incident.resolved_by}>" if incident.resolved_by else "someone"
    return (
        f"`{incident.id}` is already resolved: at {_hhmm(incident)} by {who}. Nothing was done again "
        f"(its pages, topic, summary and archive were handled by that resolve)."
    )


async def resolve_incident(ctx: Context, text: str) -> None:
    """Resolve the incident of this war room; reply with what was done (and what needs a human)."""
    incident = ctx.incident
    if incident is None or incident.channel_id != ctx.channel_id:
        raise UserError(
            "`/incident resolve` closes an incident, so it runs in the incident's war room (the `#inc-…` channel "
            "`/incident declare` opened): run it there."
        )
    services = ctx.services
    transition = await services.incidents.resolve(incident.id, resolved_by=ctx.user_id, resolved_at=services.clock())
    if not transition.changed:
        raise UserError(_not_open(transition.incident))
    resolved = transition.incident
    assert resolved.resolved_at is not None
    took = elapsed_text(resolved.resolved_at - resolved.declared_at)
    notes = [await _status_event(ctx, incident, resolved, text, took)]
    notes += await asyncio.gather(
        _guard(ctx, "PagerDuty", _resolve_pages(ctx, resolved)),
        _guard(ctx, "topic", _topic(ctx, resolved)),
        _guard(ctx, "pinned summary", _summary(ctx, resolved, text, took)),
        _guard(ctx, "archive", _archive(ctx, resolved)),
    )
    severity = ctx.policy.severities.get(resolved.severity)
    label = severity.label if severity is not None else resolved.severity.upper()
    head = (
        f":white_check_mark: *Resolved* by <@{ctx.user_id}> after *{took}* — {label} on `{resolved.service}`, "
        f"declared {resolved.declared_at.strftime('%H:%M UTC')}, resolved {_hhmm(resolved)}."
    )
    body = "\n".join(f"• {n}" for n in notes if n)
    await ctx.reply(head + (f"\n>{text}" if text else "") + ("\n" + body if body else ""))
    log.info("incident resolved", extra={"incident": resolved.id, "by": ctx.user_id})


async def _guard(ctx: Context, what: str, work: Awaitable[str]) -> str:
    """A step's line for the reply; an unexpected failure becomes a line too (logged with the correlation id)."""
    try:
        return await work
    except Exception as exc:
        log.exception(
            "resolve step crashed", extra={"step": what, "correlation_id": ctx.correlation_id, "error": repr(exc)}
        )
        return (
            f":warning: {what}: failed unexpectedly ({type(exc).__name__}, ref `{ctx.correlation_id}`) — do it by hand"
        )


async def _status_event(ctx: Context, before: Incident, after: Incident, text: str, took: str) -> str:
    assert after.resolved_at is not None
    try:
        await ctx.record(
            EventType.STATUS_CHANGE,
            f"resolved by <@{ctx.user_id}> after {took}" + (f": {text}" if text else ""),
            {
                "from": before.status.value,
                "to": after.status.value,
                "by": ctx.user_id,
                "summary": text,
                "declared_at": after.declared_at.isoformat(),
                "resolved_at": after.resolved_at.isoformat(),
                "duration_s": int((after.resolved_at - after.declared_at).total_seconds()),
            },
        )
    except Exception:
        log.exception("could not record the resolve on the timeline", extra={"incident": after.id})
        return ":warning: timeline: the resolve could not be recorded — add it with `/incident note`"
    return ""


async def _resolve_pages(ctx: Context, incident: Incident) -> str:
    services = ctx.services
    pd = services.pagerduty
    if pd is None:
        return "PagerDuty: not configured — resolve this incident's pages there by hand"
    await flush_sink(services.sink, _FLUSH_TIMEOUT_S)  # the page/escalation events name the PagerDuty incidents
    records = await services.incidents.pagerduty_pages(incident.id)
    pages: dict[str, int | None] = {}
    for record in records:
        pages[record.pd_incident] = pages.get(record.pd_incident) or record.number
    if not pages:
        return "PagerDuty: this incident paged nothing, so there is nothing to resolve"
    outcomes = await asyncio.gather(*(pd.resolve(page) for page in pages), return_exceptions=True)
    done = already = 0
    failures = []
    for (page, number), outcome in zip(pages.items(), outcomes, strict=True):
        name = f"PD #{number}" if number is not None else f"PD {page}"
        if outcome == "resolved":
            done += 1
        elif outcome == "already_resolved":
            already += 1
        elif isinstance(outcome, IntegrationError):
            failures.append(f"{name} ({outcome})")
        else:
            log.error("resolving a PagerDuty page crashed", exc_info=outcome, extra={"incident": incident.id})
            failures.append(f"{name} ({type(outcome).__name__})")
    line = f"PagerDuty: {done} of {len(pages)} page{'s' if len(pages) != 1 else ''} resolved"
    if already:
        line += f", {already} already resolved"
    if failures:
        line = f":warning: {line}; could not resolve {', '.join(failures)} — resolve them in PagerDuty by hand"
    return line


async def _topic(ctx: Context, incident: Incident) -> str:
    assert incident.channel_id is not None and incident.resolved_at is not None
    severity = ctx.policy.severities.get(incident.severity)
    label = severity.label if severity is not None else incident.severity.upper()
    topic = resolved_topic_text(
        label, incident.service, incident.ic_user_id, incident.declared_at, incident.resolved_at
    )
    try:
        await ctx.services.chat.set_topic(incident.channel_id, topic)
    except ChatError as exc:
        return f":warning: topic: Slack refused ({exc.code}) — set it to start with RESOLVED by hand"
    return ""


async def _summary(ctx: Context, incident: Incident, text: str, took: str) -> str:
    line = f"{_hhmm(incident)} by <@{ctx.user_id}> after {took}" + (f": {text}" if text else "")
    try:
        await edit_summary(ctx.services, incident, lambda blocks: with_resolution(blocks, line))
    except SummaryMissing as exc:
        return f":warning: pinned summary: not updated ({exc})"
    except ChatError as exc:
        return f":warning: pinned summary: Slack refused the update ({exc.code}) — it still shows the incident open"
    return ""


async def _archive(ctx: Context, incident: Incident) -> str:
    services = ctx.services
    where = f"{target_for(services.settings.archive_url).url.rstrip('/')}/{incident.id}/{ARCHIVE_OBJECT}"
    try:
        manifest = await archive_incident(services, incident.id)
    except Exception as exc:
        log.exception("could not archive the timeline", extra={"incident": incident.id})
        return (
            f":warning: archive: could not write {where} ({type(exc).__name__}) — the timeline is safe in Postgres; "
            f"export it with `chatops timeline export {incident.id}`"
        )
    return f"timeline: {manifest.count} events archived to `{where}`"
