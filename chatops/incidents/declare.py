"""``/incident declare``: the workflow that runs the first ten minutes' procedure in parallel.

Steps and their only dependencies::

    claim (Postgres: dedup key + incident row) ─┬─► channel ─┬─► topic, purpose, invite IC, tell the declarer
                                                │            └─► summary (also needs the bridge) ─► pin
                                                ├─► voice bridge ──────┘
                                                ├─► acknowledge the IC's page (PagerDuty)      ┐
                                                ├─► page each role the severity names           ├─► update summary
                                                └─► comms draft (unless internal_only)          ┘

The final update is an edit of the pinned summary like ``/escalate``'s, and may come after one: it holds the same
locks (:meth:`Services.summary_edit`) and, when an edit was counted since the post, keeps the *Escalated* lines the
message already has.

A failed step never stops the others: its outcome is stored (``incident_steps``), put on the timeline as a
``step_failed`` event, and written into the pinned summary with what a human should do instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from chatops.context import Context, Services, send_ephemeral
from chatops.errors import IntegrationError, UserError
from chatops.incidents.model import Incident
from chatops.incidents.naming import channel_candidates, incident_id_for, purpose_text, topic_text
from chatops.incidents.summary import (
    PageLine,
    SummaryState,
    add_escalation,
    escalations_of,
    render_summary,
    resolution_of,
    with_resolution,
    with_severity,
)
from chatops.policy.models import Policy, Service, Severity
from chatops.timeline.events import EventType, TimelineEvent
from chatops.transport.base import ChatError, Invocation, PostedMessage

if TYPE_CHECKING:
    from chatops.integrations.pagerduty import PagerDutyClient, PDIncident

__all__ = ["DECLARE_STEP", "DeclareWorkflow", "declare", "page_role", "stage_comms_draft"]

log = logging.getLogger(__name__)
T = TypeVar("T")

DECLARE_STEP = "declare"
"""The ``incident_steps`` row of the declaration as a whole: ``pending`` while its steps run, then ``done``."""


class StepFailed(Exception):
    """A step could not complete; ``advice`` is what the summary tells humans to do."""

    def __init__(self, advice: str) -> None:
        super().__init__(advice)
        self.advice = advice


def _pd_manual_link(service_id: str) -> str:
    return f"<https://app.pagerduty.com/service-directory/{service_id}|page manually in PagerDuty>"


async def declare(ctx: Context, severity: Severity, service: Service, *, separate: bool = False) -> Incident | None:
    """Claim the declaration (once, across redeliveries and replicas), then run the workflow.

    Returns the incident, or None when this invocation was a redelivery of one already handled.
    """
    services, inv = ctx.services, ctx.invocation
    declared_at = services.clock()
    claim = await services.incidents.claim_declaration(
        dedup_key=f"declare:{inv.dedup_key}",
        incident_id=incident_id_for(declared_at, service.name),
        severity=severity.name,
        service=service.name,
        ic_user_id=inv.user_id,
        declared_by=inv.user_id,
        declared_at=declared_at,
        policy_digest=ctx.policy.digest,
        allow_concurrent=separate,
    )
    if claim.outcome == "duplicate":
        log.info("redelivered declare ignored", extra={"incident": claim.incident.id, "key": inv.dedup_key})
        return None
    if claim.outcome == "open_exists":
        raise UserError(_already_open_message(ctx, claim.incident, severity, service))
    workflow = DeclareWorkflow(services, ctx.policy, claim.incident, severity, service, inv)
    await workflow.run()
    return claim.incident


def _already_open_message(ctx: Context, open_incident: Incident, severity: Severity, service: Service) -> str:
    where = ctx.services.chat.channel_link(open_incident.channel_id) if open_incident.channel_id else "(no channel)"
    since = open_incident.declared_at.strftime("%H:%M UTC")
    return (
        f"`{service.name}` already has an open incident: {open_incident.severity.upper()} {where}, "
        f"IC <@{open_incident.ic_user_id}>, declared {since}. Join it there — that is where the timeline is.\n"
        f"If this is a *separate* problem, declare it with "
        f"`/incident declare {severity.name} {service.name} --new`."
    )


class DeclareWorkflow:
    """One declaration's steps. Build with the claimed incident, then ``await run()``."""

    def __init__(
        self,
        services: Services,
        policy: Policy,
        incident: Incident,
        severity: Severity,
        service: Service,
        invocation: Invocation,
    ) -> None:
        self.services = services
        self.policy = policy
        self.incident = incident
        self.severity = severity
        self.service = service
        self.invocation = invocation
        self.state = SummaryState(
            incident_id=incident.id,
            severity=severity,
            service=service,
            ic_user_id=incident.ic_user_id,
            declared_at=incident.declared_at,
        )
        links = services.links
        if links is not None:
            self.state.link_for = lambda url: links.mint(incident.id, service.name, url)
        self.channel_id: str | None = None
        self.channel_name: str | None = None
        self.summary: PostedMessage | None = None
        self._posted_blocks: list[dict[str, Any]] | None = None

    # -- plumbing -------------------------------------------------------------------------------------------

    async def _step(self, name: str, work: Awaitable[T]) -> T | None:
        """Run one step; record its outcome; on failure note it on the timeline and in the summary."""
        try:
            result = await work
        except StepFailed as exc:
            await self._failed(name, exc.advice)
            return None
        except Exception as exc:
            log.exception("declare step crashed", extra={"incident": self.incident.id, "step": name})
            await self._failed(name, f"{name} failed unexpectedly ({type(exc).__name__}) — do it by hand")
            return None
        await self._record_step(name, "done", {})
        return result

    async def _failed(self, step: str, advice: str) -> None:
        self.state.failures.append(advice)
        await self._record_step(step, "failed", {"advice": advice})
        await self._event(
            EventType.STEP_FAILED,
            f"{step} failed: {advice}",
            {"step": step, "advice": advice},
            dedup=f"{self.incident.id}:step_failed:{step}",
        )

    async def _record_step(self, step: str, status: str, detail: dict[str, Any]) -> None:
        try:
            await self.services.incidents.record_step(self.incident.id, step, status, detail)
        except Exception:
            log.exception("could not record a declare step", extra={"incident": self.incident.id, "step": step})

    async def _event(
        self,
        type_: EventType,
        summary: str,
        payload: dict[str, Any],
        *,
        dedup: str,
        actor: str | None = "chatops",
        occurred_at: datetime | None = None,
    ) -> None:
        event = TimelineEvent(
            incident_id=self.incident.id,
            type=type_,
            occurred_at=occurred_at or self.services.clock(),
            actor=actor,
            source="chatops",
            summary=summary,
            payload=payload,
            dedup_key=dedup,
        )
        try:
            await self.services.sink.record(event)
        except Exception:
            log.exception("could not write a timeline event", extra={"incident": self.incident.id})

    # -- the workflow ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every step; returns when all are done (or failed).

        The whole run is the step ``declare``: ``pending`` before the first step starts, ``done`` once the last one
        finished, so ``/incident resolve`` can tell a declaration still in progress (see
        :data:`DECLARE_STEP`)."""
        await self._record_step(DECLARE_STEP, "pending", {})
        roles, missing = self.policy.roles_for(self.severity, self.service)
        for role in missing:
            self.state.pages[role] = PageLine(
                role, "missing", f"not in {self.service.name}'s routing — add it to services.yaml or page by hand"
            )
        for role, _ in roles:
            self.state.pages[role] = PageLine(role, "pending", "paging…")
        bridge = asyncio.create_task(self._step("bridge", self.open_bridge()))
        channel_chain = asyncio.create_task(self.channel_chain(bridge))
        followers = [asyncio.create_task(self._step("acknowledge", self.acknowledge_page()))]
        followers += [asyncio.create_task(self._step(f"page:{role}", self.page(role, pd_id))) for role, pd_id in roles]
        comms = None
        if self.severity.comms.customer_facing:
            comms = asyncio.create_task(self._step("comms_draft", self.comms_draft()))
        await asyncio.gather(*followers)
        await channel_chain
        await self.refresh_summary()
        if comms is not None:
            await comms
        await self._record_step(DECLARE_STEP, "done", {"failures": len(self.state.failures)})
        log.info(
            "incident declared",
            extra={"incident": self.incident.id, "channel": self.channel_name, "failures": len(self.state.failures)},
        )

    async def channel_chain(self, bridge: asyncio.Task[Any]) -> None:
        """channel → (topic, purpose, invite, confirmation, summary → pin)."""
        created = await self._step("channel", self.create_channel())
        await self._declaration_event()
        if not created:
            await bridge
            await self._tell_declarer_without_channel()
            return
        await asyncio.gather(
            self._step("topic", self.set_topic()),
            self._step("purpose", self.set_purpose()),
            self._step("invite", self.invite_ic()),
            self._step("confirm", self.tell_declarer()),
            self._summary_then_pin(bridge),
        )

    async def _summary_then_pin(self, bridge: asyncio.Task[Any]) -> None:
        await bridge
        posted = await self._step("summary", self.post_summary())
        if posted:
            await self._step("pin", self.pin_summary())

    # -- steps ----------------------------------------------------------------------------------------------

    async def create_channel(self) -> bool:
        """conversations.create, walking ``-2``, ``-3``, … past ``name_taken``."""
        chat = self.services.chat
        for name in channel_candidates(self.incident.id):
            try:
                channel_id = await chat.create_channel(name)
            except ChatError as exc:
                if exc.code == "name_taken":
                    continue
                raise StepFailed(
                    f"Slack: could not create the war room ({exc.code}) — create #{self.incident.id} by hand"
                ) from exc
            self.channel_id, self.channel_name = channel_id, name
            await self.services.incidents.set_channel(self.incident.id, channel_id, name)
            return True
        raise StepFailed(f"Slack: every name from #{self.incident.id} to -20 is taken — create a channel by hand")

    async def _declaration_event(self) -> None:
        inc = self.incident
        await self._event(
            EventType.DECLARATION,
            f"{self.severity.label} declared on {self.service.name} by <@{inc.declared_by}>; IC <@{inc.ic_user_id}>",
            {
                "severity": self.severity.name,
                "service": self.service.name,
                "ic": inc.ic_user_id,
                "declared_by": inc.declared_by,
                "channel_id": self.channel_id,
                "channel_name": self.channel_name,
                "declared_at": inc.declared_at.isoformat(),
                "policy_digest": self.policy.digest,
            },
            dedup=f"{inc.id}:declaration",
            actor=inc.declared_by,
            occurred_at=inc.declared_at,
        )

    async def _chat_step(self, what: str, work: Awaitable[Any]) -> None:
        try:
            await work
        except ChatError as exc:
            raise StepFailed(f"Slack: could not {what} ({exc.code})") from exc

    async def set_topic(self) -> None:
        """The at-a-glance status line."""
        assert self.channel_id is not None
        topic = topic_text(self.severity.label, self.service.name, self.incident.ic_user_id, self.incident.declared_at)
        await self._chat_step("set the topic", self.services.chat.set_topic(self.channel_id, topic))

    async def set_purpose(self) -> None:
        """Purpose carries the runbook link: the same ``/go/`` link as the pinned summary's, when it fits."""
        assert self.channel_id is not None
        runbook = self.service.runbook_url
        link = self.state.link_for(runbook) if runbook else None
        purpose = purpose_text(self.severity.label, self.service.name, runbook, link=link)
        await self._chat_step("set the purpose", self.services.chat.set_purpose(self.channel_id, purpose))

    async def invite_ic(self) -> None:
        """The IC (and the declarer, when someone declared on their behalf) join the war room."""
        assert self.channel_id is not None
        users = sorted({self.incident.ic_user_id, self.incident.declared_by} - {self.services.chat.bot_user_id})
        await self._chat_step(
            "invite the IC — join the channel yourself", self.services.chat.invite(self.channel_id, users)
        )

    async def tell_declarer(self) -> None:
        """Ephemeral confirmation where the command was typed."""
        assert self.channel_id is not None
        link = self.services.chat.channel_link(self.channel_id)
        text = f"{self.severity.label} declared on `{self.service.name}`: war room {link}. You are the IC."
        await self._chat_step("confirm to you", self._ephemeral(text))

    async def _tell_declarer_without_channel(self) -> None:
        text = (
            f"{self.severity.label} declared on `{self.service.name}` as `{self.incident.id}`, but the war room "
            f"could not be created: " + "; ".join(self.state.failures)
        )
        try:
            await self._ephemeral(text)
        except ChatError:
            log.exception("could not tell the declarer", extra={"incident": self.incident.id})

    async def _ephemeral(self, text: str) -> None:
        await send_ephemeral(self.services.chat, self.invocation, text)

    async def open_bridge(self) -> None:
        """Zoom meeting (join link only), else the service's static bridge, else say it is not configured."""
        zoom = self.services.zoom
        if zoom is None:
            self.state.bridge = (
                f"<{self.service.bridge_url}|{self.service.bridge_url}>"
                if self.service.bridge_url
                else "not configured"
            )
            return
        try:
            meeting = await zoom.create_meeting(f"{self.severity.label} {self.service.name} — {self.incident.id}")
        except IntegrationError as exc:
            fallback = f" — use {self.service.bridge_url}" if self.service.bridge_url else " — start a call by hand"
            self.state.bridge = f"Zoom failed{fallback}"
            raise StepFailed(f"{exc}{fallback}") from exc
        self.state.bridge = f"<{meeting.join_url}|Join Zoom>"

    async def post_summary(self) -> bool:
        """Post the Block Kit summary into the war room.

        No lock: nothing can edit the message before its ``ts`` is recorded, and the refresh comes after this step.
        """
        assert self.channel_id is not None
        # What was posted, not a re-render after the await: a step finishing meanwhile must still be updated.
        blocks = render_summary(self.state)
        try:
            text = self.state.fallback_text()
            self.summary = await self.services.chat.post_message(self.channel_id, text, blocks)
        except ChatError as exc:
            raise StepFailed(f"Slack: could not post the summary ({exc.code})") from exc
        self._posted_blocks = blocks
        await self.services.incidents.set_summary_ts(self.incident.id, self.summary.ts)
        return True

    async def pin_summary(self) -> None:
        """Pin the summary so it stays at hand."""
        assert self.summary is not None
        await self._chat_step("pin the summary", self.services.chat.pin(self.summary.channel, self.summary.ts))

    async def refresh_summary(self) -> None:
        """Re-render the summary with the final state; update it only when something changed since the post.

        An ``/escalate`` since the post may have added lines under *Escalated*, which the state knows nothing of.
        Like every edit of the summary, this one holds the incident's summary locks, so it does not matter which of
        the two edits comes first. Each escalation counts its edit in Postgres under those locks: only when the count
        is above 0 does this read the message as Slack holds it and carry those lines over (and what ``/incident sev``
        and ``/incident resolve`` wrote: the severity in Postgres, the *Resolved* section); otherwise the message is
        still exactly what the post wrote and the render replaces it as is (no ``conversations.history`` read on the
        declaration's critical path). A failure is logged: the message keeps what the post (and any escalation) wrote.
        """
        if self.summary is None:
            return
        blocks = render_summary(self.state)
        if blocks == self._posted_blocks:
            return
        channel, ts = self.summary.channel, self.summary.ts
        try:
            async with self.services.summary_edit(self.incident.id) as held:
                edited = blocks
                if held.edits:
                    current = await self.services.chat.fetch_message(channel, ts)
                    if current is None:
                        log.warning("the summary is gone: not updated", extra={"incident": self.incident.id})
                        return
                    for line in escalations_of(current.blocks):
                        edited = add_escalation(edited, line)
                    edited = await self._carry_lifecycle(edited, current.blocks)
                await self.services.chat.update_message(channel, ts, self.state.fallback_text(), edited)
            self._posted_blocks = blocks
        except Exception:  # Slack or Postgres: the steps are done and recorded; only the summary is behind
            log.exception("could not update the summary", extra={"incident": self.incident.id})

    async def _carry_lifecycle(
        self, blocks: list[dict[str, Any]], current: list[dict[str, Any]] | None
    ) -> list[dict[str, Any]]:
        """What ``/incident sev`` and ``/incident resolve`` may have written meanwhile, kept over the re-render."""
        row = await self.services.incidents.get(self.incident.id)
        if row is not None and row.severity != self.severity.name and row.severity in self.policy.severities:
            blocks = with_severity(blocks, self.policy.severities[row.severity])
        resolved = resolution_of(current)
        return with_resolution(blocks, resolved) if resolved is not None else blocks

    async def acknowledge_page(self) -> None:
        """Acknowledge the triggered PagerDuty incident(s) on this service assigned to the declaring user."""
        pd = self.services.pagerduty
        if pd is None:
            self.state.acknowledged = "Your page: PagerDuty not configured — acknowledge it by hand"
            return
        # Who you are in PagerDuty and which pages are open on the service are independent lookups: run both at once
        # and match on the assignee afterwards (this chain is the declare's critical path).
        open_pages = asyncio.create_task(
            pd.open_incidents(service_ids=list(dict.fromkeys(self.service.pagerduty.values())))
        )
        try:
            try:
                profile = await self.services.chat.user_profile(self.incident.declared_by)
            except ChatError as exc:
                raise StepFailed(f"Slack: could not look you up ({exc.code}) — acknowledge your page by hand") from exc
            if not profile.email:
                self.state.acknowledged = "Your page: no email on your Slack profile — acknowledge it by hand"
                return
            try:
                user_id = await pd.find_user_id(profile.email)
                if user_id is None:
                    self.state.acknowledged = f"Your page: no PagerDuty user for {profile.email}"
                    return
                # Our own fresh pages are never "the page that woke you up".
                yours = [
                    p
                    for p in await open_pages
                    if user_id in p.assignee_ids and not (p.incident_key or "").startswith(self.incident.id + "/")
                ]
                outcomes = await asyncio.gather(*(pd.acknowledge(p.id) for p in yours))
                results = list(zip(yours, outcomes, strict=True))
            except IntegrationError as exc:
                self.state.acknowledged = "Your page: acknowledge it by hand"
                raise StepFailed(f"{exc} — acknowledge your page by hand") from exc
        finally:
            if not open_pages.done():
                open_pages.cancel()
            elif not open_pages.cancelled():
                open_pages.exception()  # retrieved, so an unused failure is not reported as "never retrieved"
        if not results:
            self.state.acknowledged = "Your page: none open on this service"
            return
        numbers = ", ".join(f"<{p.html_url}|#{p.number}>" for p, _ in results)
        self.state.acknowledged = f"Acknowledged your page {numbers}"
        for page, result in results:
            await self._event(
                EventType.ALERT,
                f"PD #{page.number} acknowledged for <@{self.incident.declared_by}>",
                {"pd_incident": page.id, "number": page.number, "result": result, "status": "acknowledged"},
                dedup=f"{self.incident.id}:ack:{page.id}",
            )

    async def page(self, role: str, pd_service_id: str) -> None:
        """Create the PagerDuty incident for one role, with a deterministic key so no retry pages twice."""
        pd = self.services.pagerduty
        line = self.state.pages[role]
        if pd is None:
            line.state, line.text = "off", "PagerDuty not configured — page by hand"
            raise StepFailed(f"PagerDuty not configured — page {role} by hand")
        link = f" — war room #{self.channel_name}" if self.channel_name else ""
        try:
            pd_incident, created = await page_role(
                self.services,
                pd,
                self.incident,
                self.severity,
                role,
                pd_service_id,
                title=f"{self.severity.label} {self.service.name} — IC {self.invocation.user_name}",
                details=f"Incident {self.incident.id} ({self.severity.label} on {self.service.name}){link}. "
                f"Join Slack #{self.incident.id}.",
            )
        except IntegrationError as exc:
            line.state, line.text = "failed", f"{exc} — {_pd_manual_link(pd_service_id)}"
            raise StepFailed(f"{exc} — page {role} manually: {_pd_manual_link(pd_service_id)}") from exc
        line.state = "paged" if created else "already"
        line.text = f"<{pd_incident.html_url}|PD #{pd_incident.number}>" + ("" if created else " (already paged)")

    async def comms_draft(self) -> None:
        """Pre-stage the customer comms draft for the Comms Lead."""
        try:
            await stage_comms_draft(self.services, self.policy, self.incident, self.severity, self.service)
        except ChatError as exc:
            raise StepFailed(
                f"Slack: could not post the comms draft to #{self.policy.draft_channel} ({exc.code}) — draft it by hand"
            ) from exc


async def _record(services: Services, event: TimelineEvent) -> None:
    try:
        await services.sink.record(event)
    except Exception:
        log.exception("could not write a timeline event", extra={"incident": event.incident_id})


async def page_role(
    services: Services,
    pd: PagerDutyClient,
    incident: Incident,
    severity: Severity,
    role: str,
    pd_service_id: str,
    *,
    title: str,
    details: str,
) -> tuple[PDIncident, bool]:
    """Page ``role`` for ``incident`` at ``severity``: the one paging path (declaration and severity upgrade).

    The PagerDuty incident gets the severity's urgency and the deterministic ``incident_key``
    ``<incident id>/<role>`` (so a retry, or a role paged before, sends nothing new: ``created`` is False), and goes
    on the timeline as a ``page`` event (once per role). Raises :class:`IntegrationError`.
    """
    pd_incident, created = await pd.create_incident(
        service_id=pd_service_id,
        title=title,
        urgency=severity.urgency,
        incident_key=f"{incident.id}/{role}",
        details=details,
    )
    await _record(
        services,
        TimelineEvent(
            incident_id=incident.id,
            type=EventType.PAGE,
            occurred_at=services.clock(),
            actor="chatops",
            source="chatops",
            summary=f"paged {role} via PagerDuty: PD #{pd_incident.number}",
            payload={
                "role": role,
                "pd_service": pd_service_id,
                "pd_incident": pd_incident.id,
                "number": pd_incident.number,
                "created": created,
                "urgency": severity.urgency,
            },
            dedup_key=f"{incident.id}:page:{role}",
        ),
    )
    return pd_incident, created


async def stage_comms_draft(
    services: Services, policy: Policy, incident: Incident, severity: Severity, service: Service
) -> PostedMessage:
    """Post the customer comms draft to the policy's draft channel and put it on the timeline (``comms``).

    The declaration's step, and a severity change's when the new severity wants a draft none was staged for.
    Raises :class:`ChatError`.
    """
    started = incident.declared_at.strftime("%Y-%m-%d %H:%M UTC")
    body = severity.comms.draft(
        service=service.name, severity=severity.label, channel=f"#{incident.id}", started_at=started
    ) or (
        f"We are currently investigating an issue affecting {service.name}. We will share an update within 30 minutes."
    )
    text = (
        f":memo: *Draft for {incident.id}* ({severity.label}, comms: "
        f"{severity.comms.policy})\n>{body}\nComms Lead, please refine and publish."
    )
    posted = await services.chat.post_message(policy.draft_channel, text)
    await _record(
        services,
        TimelineEvent(
            incident_id=incident.id,
            type=EventType.COMMS,
            occurred_at=services.clock(),
            actor="chatops",
            source="chatops",
            summary=f"comms draft staged in #{policy.draft_channel}",
            payload={"channel": policy.draft_channel, "ts": posted.ts, "text": body, "policy": severity.comms.policy},
            dedup_key=f"{incident.id}:comms_draft",
        ),
    )
    return posted
