"""``/escalate <role|@user> [reason]``: page more people into the incident of this war room.

A role is paged through the incident service's PagerDuty routing (``policy/services.yaml``) with the deterministic
``incident_key`` ``<incident id>/<role>``, so paging a role twice — or a role the declaration already paged — sends
nothing new and says so. A person gets a PagerDuty responder request on the incident's own page. Either way the
escalation is an ``escalation`` event on the timeline and a line under *Escalated* in the pinned summary.
"""

from __future__ import annotations

import logging

from chatops import Arg, Context, UserError, command
from chatops.args import parse_user
from chatops.errors import IntegrationError
from chatops.incidents.model import Incident
from chatops.incidents.pinned import SummaryMissing, edit_summary
from chatops.incidents.summary import add_escalation
from chatops.integrations.pagerduty import PagerDutyClient, PDIncident
from chatops.policy.names import closest
from chatops.timeline.events import EventType
from chatops.transport.base import ChatError

log = logging.getLogger(__name__)


@command(
    "/escalate",
    summary="Page a role (through the service's routing) or a person into this incident",
    args=[
        Arg("target", help="a role from policy (secondary, manager, db_sme, …) or a person (@name)"),
        Arg("reason", kind="rest", required=False, help="why: goes into the page and onto the timeline"),
    ],
    requires="incident.escalate",
    side_effects=True,
    examples=[
        "/escalate secondary",
        "/escalate manager checkout error rate still climbing after the rollback",
        "/escalate <@U0RAVI001|ravi> need a second pair of eyes on the consumer",
    ],
    timeout=60.0,
)
async def escalate(ctx: Context) -> None:
    """Page the role or the person; record it; add it to the pinned summary."""
    incident = ctx.incident
    if incident is None or incident.channel_id != ctx.channel_id:
        raise UserError(
            "`/escalate` pages people into an incident, so it runs in the incident's war room "
            "(the `#inc-…` channel `/incident declare` opened): run it there."
        )
    pd = ctx.services.pagerduty
    if pd is None:
        raise UserError("PagerDuty is not configured here: page them by hand (and say so in this channel).")
    target = str(ctx.args["target"])
    reason = str(ctx.args.get("reason") or "").strip()
    try:
        user_id = parse_user(target)
    except ValueError:
        await _page_role(ctx, pd, incident, target.strip().lower(), reason)
    else:
        await _request_responder(ctx, pd, incident, user_id, reason)


async def _page_role(ctx: Context, pd: PagerDutyClient, incident: Incident, role: str, reason: str) -> None:
    policy = ctx.policy
    if role not in policy.roles:
        suggestion = closest(role, policy.roles)
        hint = f" — did you mean {suggestion}?" if suggestion else "."
        raise UserError(
            f"unknown role {role!r}{hint} Roles: {', '.join(policy.roles)}. To page a person, mention them: "
            f"`/escalate @name`."
        )
    service = policy.services.get(incident.service)
    routed = dict(service.pagerduty) if service is not None else {}
    if role not in routed:
        raise UserError(
            f"`{incident.service}` has no PagerDuty routing for {role} (it routes {', '.join(routed) or 'nothing'}). "
            f"Add it to policy/services.yaml, or page a person: `/escalate @name`."
        )
    severity = policy.severities.get(incident.severity)
    label = severity.label if severity is not None else incident.severity.upper()
    try:
        page, created = await pd.create_incident(
            service_id=routed[role],
            title=f"{label} {incident.service} — {role} needed ({incident.id})",
            urgency=severity.urgency if severity is not None else "high",
            incident_key=f"{incident.id}/{role}",
            details=f"Escalated by {ctx.invocation.user_name} in #{incident.channel_name or incident.id}. "
            f"{reason or 'No reason given.'}",
        )
    except IntegrationError as exc:
        link = f"<https://app.pagerduty.com/service-directory/{routed[role]}|page {role} manually in PagerDuty>"
        raise UserError(f"Could not page {role}: {exc} — {link}.") from exc
    where = f"<{page.html_url}|PD #{page.number}>"
    if not created:
        await ctx.ephemeral(
            f"{role} is already paged for this incident: {where} ({page.status}). Nothing new was sent."
        )
        return
    line = f"{role} via PagerDuty {where} by <@{ctx.user_id}>" + (f": {reason}" if reason else "")
    await ctx.record(
        EventType.ESCALATION,
        f"escalated to {role} via PagerDuty: PD #{page.number}" + (f" — {reason}" if reason else ""),
        {"target": "role", "role": role, "pd_incident": page.id, "number": page.number, "reason": reason},
    )
    await _add_to_summary(ctx, incident, line)
    await ctx.reply(f":rotating_light: Escalated to *{role}* — {line}")


async def _request_responder(ctx: Context, pd: PagerDutyClient, incident: Incident, user_id: str, reason: str) -> None:
    chat = ctx.services.chat
    try:
        profile = await chat.user_profile(user_id)
    except ChatError as exc:
        raise UserError(f"Slack does not know <@{user_id}> ({exc.code}): mention them with @ and pick them.") from exc
    if not profile.email:
        raise UserError(f"<@{user_id}> has no email on their Slack profile, so PagerDuty cannot find them: call them.")
    try:
        responder = await pd.find_user_id(profile.email)
        if responder is None:
            raise UserError(f"No PagerDuty user has the email {profile.email}: reach <@{user_id}> directly.")
        requester = await _requester(ctx, pd)
        page = await _incident_page(ctx, pd, incident)
        if page is None:
            raise UserError(
                "This war room has no open PagerDuty incident to add a responder to (its pages failed or were "
                "resolved). Page a role instead, e.g. `/escalate primary`."
            )
        message = f"{incident.id}: <@{ctx.user_id}> asks for your help" + (f" — {reason}" if reason else "")
        await pd.add_responders(page.id, requester_id=requester, message=message, user_ids=[responder])
    except IntegrationError as exc:
        if exc.status == 402:
            raise UserError(
                f"PagerDuty refused the responder request: this account's plan does not include responder requests "
                f"(402). Page a role instead (`/escalate secondary`), or call <@{user_id}> directly."
            ) from exc
        raise UserError(f"Could not ask <@{user_id}> to respond: {exc}. Reach them directly.") from exc
    line = f"<@{user_id}> (responder request on PD #{page.number}) by <@{ctx.user_id}>" + (
        f": {reason}" if reason else ""
    )
    await ctx.record(
        EventType.ESCALATION,
        f"asked {profile.name} to respond via PagerDuty (PD #{page.number})" + (f" — {reason}" if reason else ""),
        {"target": "user", "user": user_id, "pd_user": responder, "pd_incident": page.id, "reason": reason},
    )
    await _add_to_summary(ctx, incident, line)
    await ctx.reply(f":rotating_light: Escalated to <@{user_id}> — {line}")


async def _requester(ctx: Context, pd: PagerDutyClient) -> str:
    """The PagerDuty user making the request: whoever typed the command, else the bot's own ``From`` user."""
    try:
        profile = await ctx.services.chat.user_profile(ctx.user_id)
    except ChatError:
        profile = None
    if profile is not None and profile.email:
        found = await pd.find_user_id(profile.email)
        if found is not None:
            return found
    bot = ctx.services.settings.pagerduty_from
    found = await pd.find_user_id(bot) if bot else None
    if found is None:
        raise UserError("Neither you nor PAGERDUTY_FROM is a PagerDuty user, so PagerDuty cannot send the request.")
    return found


async def _incident_page(ctx: Context, pd: PagerDutyClient, incident: Incident) -> PDIncident | None:
    """The open PagerDuty incident this war room's declaration created (the primary's first)."""
    service = ctx.policy.services.get(incident.service)
    service_ids = sorted(set(service.pagerduty.values())) if service is not None else []
    pages = await pd.open_incidents(service_ids=service_ids, statuses=("triggered", "acknowledged"))
    ours = [p for p in pages if (p.incident_key or "").startswith(f"{incident.id}/")]
    ours.sort(key=lambda p: (p.incident_key != f"{incident.id}/primary", p.number))
    return ours[0] if ours else None


async def _add_to_summary(ctx: Context, incident: Incident, line: str) -> None:
    """Append to the pinned summary; a failure is logged, the escalation itself stands.

    Through :func:`~chatops.incidents.pinned.edit_summary` (the summary locks, a read of the message as Slack holds
    it, then the update): two escalations at once, or one during the declaration's final refresh, never drop each
    other's line.
    """
    try:
        await edit_summary(ctx.services, incident, lambda blocks: add_escalation(blocks, line))
    except SummaryMissing:
        return
    except Exception:  # Slack or Postgres: the page went out and is on the timeline, so the reply must follow
        log.exception("could not add the escalation to the summary", extra={"incident": incident.id})
