"""``/incident sev <severity>``: move an open incident to another severity, and do what the new one demands.

::

    Postgres: severity old → new ─► severity_change event ─┬─► topic, pinned summary
      (compare-and-set, open only)                          ├─► upgrade: page the roles the new severity names that
                                                            │   were not paged yet (the declaration's paging path)
                                                            └─► comms draft, when the new severity wants one and none
                                                                was staged (the declaration's step)

A downgrade pages nobody, un-pages nobody and lowers no urgency: pages already out stay open at the urgency they
have, since whoever was woken by them stays paged. Each failure is reported in the reply without stopping the
others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chatops.context import Context
from chatops.errors import IntegrationError, UserError
from chatops.incidents.declare import _pd_manual_link, page_role, stage_comms_draft
from chatops.incidents.model import Incident
from chatops.incidents.naming import topic_text
from chatops.incidents.pinned import SummaryMissing, edit_summary
from chatops.incidents.step_lines import step_line
from chatops.incidents.summary import with_severity
from chatops.policy.models import Service, Severity
from chatops.timeline.events import EventType
from chatops.timeline.sink import flush_sink
from chatops.transport.base import ChatError

if TYPE_CHECKING:
    from chatops.incidents.store import PageRecord
    from chatops.integrations.pagerduty import PagerDutyClient

__all__ = ["change_severity"]

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 10.0
_URGENCY_RANK = {"low": 0, "high": 1}


async def change_severity(ctx: Context, new: Severity) -> None:
    """Change the severity of this war room's incident; reply with what changed and who was paged."""
    incident = ctx.incident
    if incident is None or incident.channel_id != ctx.channel_id:
        raise UserError(
            "`/incident sev` changes an incident's severity, so it runs in the incident's war room (the `#inc-…` "
            "channel `/incident declare` opened): run it there."
        )
    if not incident.is_open:
        raise UserError(f"`{incident.id}` is {incident.status.value}: its severity stays {incident.severity}.")
    if new.name == incident.severity:
        raise UserError(f"This incident is already {new.name}: nothing changed.")
    services = ctx.services
    transition = await services.incidents.change_severity(
        incident.id, from_severity=incident.severity, to_severity=new.name
    )
    current = transition.incident
    if not transition.changed:
        if not current.is_open:
            raise UserError(f"`{current.id}` is {current.status.value}: its severity stays {current.severity}.")
        if current.severity == new.name:
            raise UserError(f"This incident is already {new.name}: nothing changed.")
        raise UserError(
            f"The severity changed meanwhile: it is {current.severity} now. Run `/incident sev {new.name}` again "
            f"if {new.name} is still right."
        )
    old = ctx.policy.severities.get(incident.severity)
    old_label = old.label if old is not None else incident.severity.upper()
    upgrade = old is None or new.rank < old.rank
    notes = [await _event(ctx, incident, new, old_label, upgrade)]
    service = ctx.policy.services.get(current.service)
    steps: list[Awaitable[str]] = [step_line(ctx, "severity change", "topic", _topic(ctx, current, new))]
    steps.append(step_line(ctx, "severity change", "pinned summary", _summary(ctx, current, new)))
    if service is None:
        notes.append(f":warning: `{current.service}` is not in policy/services.yaml any more: page and draft by hand")
    else:
        if upgrade:
            steps.append(
                step_line(ctx, "severity change", "paging", _page_added_roles(ctx, current, new, old_label, service))
            )
        if new.comms.customer_facing:
            steps.append(step_line(ctx, "severity change", "comms draft", _comms_draft(ctx, current, new, service)))
    notes += await asyncio.gather(*steps)
    if not upgrade:
        notes.append("downgrade: nobody paged (pages already sent stay open, at their urgency)")
    arrow = ":arrow_up:" if upgrade else ":arrow_down:"
    head = f"{arrow} Severity {old_label} → *{new.label}* by <@{ctx.user_id}> (comms: {new.comms.summary()})."
    await ctx.reply(head + "".join(f"\n• {n}" for n in notes if n))
    log.info(
        "severity changed", extra={"incident": current.id, "from": incident.severity, "to": new.name, "by": ctx.user_id}
    )


async def _event(ctx: Context, before: Incident, new: Severity, old_label: str, upgrade: bool) -> str:
    try:
        await ctx.record(
            EventType.SEVERITY_CHANGE,
            f"severity {old_label} → {new.label} by <@{ctx.user_id}>",
            {
                "from": before.severity,
                "to": new.name,
                "by": ctx.user_id,
                "direction": "upgrade" if upgrade else "downgrade",
            },
        )
    except Exception:
        log.exception("could not record the severity change on the timeline", extra={"incident": before.id})
        return ":warning: timeline: the change could not be recorded — add it with `/incident note`"
    return ""


async def _topic(ctx: Context, incident: Incident, new: Severity) -> str:
    assert incident.channel_id is not None
    topic = topic_text(new.label, incident.service, incident.ic_user_id, incident.declared_at)
    try:
        await ctx.services.chat.set_topic(incident.channel_id, topic)
    except ChatError as exc:
        return f":warning: topic: Slack refused ({exc.code}) — it still shows the old severity"
    return ""


async def _summary(ctx: Context, incident: Incident, new: Severity) -> str:
    try:
        await edit_summary(ctx.services, incident, lambda blocks: with_severity(blocks, new))
    except SummaryMissing as exc:
        return f":warning: pinned summary: not updated ({exc})"
    except ChatError as exc:
        return f":warning: pinned summary: Slack refused the update ({exc.code}) — it still shows the old severity"
    return ""


async def _page_added_roles(ctx: Context, incident: Incident, new: Severity, old_label: str, service: Service) -> str:
    """Page, with the new severity's urgency, each role it names that no page or escalation has paged yet, and
    raise the pages already out to that urgency when theirs is lower.

    Only an upgrade comes here: a downgrade never lowers an urgency (people already woken stay paged).
    """
    services = ctx.services
    roles, missing = ctx.policy.roles_for(new, service)
    await flush_sink(services.sink, _FLUSH_TIMEOUT_S)  # the page/escalation events say who was paged
    records = await services.incidents.pagerduty_pages(incident.id)
    paged = {r.role for r in records if r.role}
    todo = [(role, pd_id) for role, pd_id in roles if role not in paged]
    parts, raised = await asyncio.gather(
        _page_roles(ctx, incident, new, old_label, service, todo), _raise_urgency(ctx, new, records)
    )
    already = [role for role, _ in roles if role in paged]
    if already:
        parts.append(f"already paged: {', '.join(already)}")
    parts += raised
    if missing:
        parts.append(
            f":warning: not in {service.name}'s routing: {', '.join(missing)} — add to services.yaml or page by hand"
        )
    return "; ".join(parts) if parts else "nobody new to page"


async def _page_roles(
    ctx: Context, incident: Incident, new: Severity, old_label: str, service: Service, todo: list[tuple[str, str]]
) -> list[str]:
    """Page each of ``todo`` (role, PagerDuty service) at ``new``'s urgency; the reply's parts."""
    services = ctx.services
    parts: list[str] = []
    if not todo:
        return parts
    pd = services.pagerduty
    if pd is None:
        parts.append(f":warning: PagerDuty not configured — page {', '.join(r for r, _ in todo)} by hand")
    else:
        name = ctx.invocation.user_name
        results = await asyncio.gather(
            *(
                page_role(
                    services,
                    pd,
                    incident,
                    new,
                    role,
                    pd_id,
                    title=f"{new.label} {service.name} — upgraded from {old_label} by {name}",
                    details=f"Incident {incident.id} upgraded {old_label} → {new.label} by {name}. "
                    f"Join Slack #{incident.channel_name or incident.id}.",
                )
                for role, pd_id in todo
            ),
            return_exceptions=True,
        )
        done = []
        for (role, pd_id), result in zip(todo, results, strict=True):
            if isinstance(result, IntegrationError):
                parts.append(f":warning: could not page {role}: {result} — {_pd_manual_link(pd_id)}")
            elif isinstance(result, BaseException):
                log.error("paging crashed", exc_info=result, extra={"incident": incident.id, "role": role})
                parts.append(f":warning: could not page {role} ({type(result).__name__}) — {_pd_manual_link(pd_id)}")
            else:
                page, created = result
                done.append(f"{role} <{page.html_url}|PD #{page.number}>" + ("" if created else " (already)"))
        if done:
            parts.insert(0, f"paged {', '.join(done)}")
    return parts


async def _raise_urgency(ctx: Context, new: Severity, records: list[PageRecord]) -> list[str]:
    """Raise each PagerDuty incident this incident paged (or escalated on) whose urgency is below ``new``'s.

    PagerDuty is asked for each one's urgency and status (it may have been changed there); resolved ones are left
    alone. Each raise goes on the timeline as a ``page`` event for its role (``raised_from``: the old urgency).
    Returns the reply's parts: what was raised, then one warning per failure.
    """
    target = new.urgency
    by_pd: dict[str, PageRecord] = {}
    for record in records:
        if record.pd_incident not in by_pd or (by_pd[record.pd_incident].role is None and record.role):
            by_pd[record.pd_incident] = record
    if not by_pd or _URGENCY_RANK.get(target, 0) == 0:
        return []
    pd = ctx.services.pagerduty
    if pd is None:
        return [f":warning: PagerDuty not configured — raise the pages already out to {target} urgency by hand"]
    results = await asyncio.gather(
        *(_raise_one(ctx, pd, new, record) for record in by_pd.values()), return_exceptions=True
    )
    raised: list[str] = []
    warnings: list[str] = []
    for record, result in zip(by_pd.values(), results, strict=True):
        label = record.role or "responder request"
        number = f"PD #{record.number}" if record.number is not None else f"PD {record.pd_incident}"
        if isinstance(result, IntegrationError):
            warnings.append(
                f":warning: could not raise {label} {number} to {target} urgency: {result} — raise it in PagerDuty"
            )
        elif isinstance(result, BaseException):
            log.error("urgency raise crashed", exc_info=result, extra={"pd": record.pd_incident})
            warnings.append(
                f":warning: could not raise {label} {number} to {target} urgency ({type(result).__name__}) — "
                f"raise it in PagerDuty"
            )
        elif result:
            raised.append(f"{label} {result}")
    return ([f"raised to {target} urgency: {', '.join(raised)}"] if raised else []) + warnings


async def _raise_one(ctx: Context, pd: PagerDutyClient, new: Severity, record: PageRecord) -> str:
    """Raise one PagerDuty incident to ``new``'s urgency; its Slack link when raised, "" when nothing to do."""
    current = await pd.get_incident(record.pd_incident)
    if current.status == "resolved" or _URGENCY_RANK.get(current.urgency, 0) >= _URGENCY_RANK[new.urgency]:
        return ""
    if await pd.set_urgency(current.id, new.urgency) == "already_resolved":
        return ""
    link = f"<{current.html_url}|PD #{current.number}>"
    try:
        await ctx.record(
            EventType.PAGE,
            f"raised {record.role or 'a responder request'}'s page to {new.urgency} urgency: PD #{current.number}",
            {
                "role": record.role,
                "pd_service": current.service_id,
                "pd_incident": current.id,
                "number": current.number,
                "created": False,
                "urgency": new.urgency,
                "raised_from": current.urgency,
            },
            key=f"urgency:{current.id}",
        )
    except Exception:
        log.exception("could not record the urgency raise on the timeline", extra={"pd": current.id})
    return link


async def _comms_draft(ctx: Context, incident: Incident, new: Severity, service: Service) -> str:
    services = ctx.services
    steps = await services.incidents.steps(incident.id)
    staged = steps.get("comms_draft")
    if staged is not None and staged.finished:
        return ""
    try:
        await stage_comms_draft(services, ctx.policy, incident, new, service)
    except ChatError as exc:
        draft = ctx.policy.draft_channel
        return f":warning: could not post the comms draft to #{draft} ({exc.code}) — draft it by hand"
    try:
        await services.incidents.record_step(incident.id, "comms_draft", "done", {"by": "severity_change"})
    except Exception:
        log.exception("could not record the comms draft step", extra={"incident": incident.id})
    return f"comms draft staged in #{ctx.policy.draft_channel} for the Comms Lead"
