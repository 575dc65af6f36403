"""``/incident resolve``: close the incident everywhere at once.

::

    declaration still running? ─► refuse (run it again in a few seconds)
    Postgres: status → resolved ─► status_change event ─┬─► PagerDuty: resolve the pages it made ─┐
      (guarded: one resolve wins; its four steps         ├─► topic: RESOLVED :: …                   ├─► archive the
       recorded pending in the same transaction)         └─► pinned summary: Resolved …            ┘   timeline

The Postgres update is the gate: only the resolve that wins it records the ``status_change`` event. Each of the four
steps records its outcome in ``incident_steps`` (``resolve:pagerduty``, ``resolve:topic``, ``resolve:summary``,
``resolve:archive``: ``pending`` with the update, then ``done`` or ``failed``). A later ``/incident resolve`` of the
resolved incident re-runs the steps not recorded done — a failure, a timeout or a crash midway is finished by
running the command again (every step is idempotent) — and says so; when everything was done it says that.
PagerDuty, topic and summary run at once; the archive runs after them, so it holds the resolve's own events. Each
failure is reported in the reply without stopping the others. The audit webhook's open-incident view drops the
incident as the row changes (:attr:`IncidentStore.status_listeners`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chatops.context import Context
from chatops.errors import IntegrationError, UserError
from chatops.incidents.declare import DECLARE_STEP
from chatops.incidents.model import Incident, StepOutcome, StepStatus
from chatops.incidents.naming import elapsed_text, resolved_topic_text
from chatops.incidents.pinned import SummaryMissing, edit_summary
from chatops.incidents.step_lines import step_line
from chatops.incidents.summary import with_resolution
from chatops.timeline.archive import ARCHIVE_OBJECT, archive_incident, target_for
from chatops.timeline.events import EventType
from chatops.timeline.sink import flush_sink
from chatops.transport.base import ChatError

__all__ = ["RESOLVE_STEPS", "resolve_incident"]

log = logging.getLogger(__name__)

_FLUSH_TIMEOUT_S = 10.0
_PAGERDUTY, _TOPIC, _SUMMARY, _ARCHIVE = "resolve:pagerduty", "resolve:topic", "resolve:summary", "resolve:archive"
RESOLVE_STEPS = (_PAGERDUTY, _TOPIC, _SUMMARY, _ARCHIVE)
"""The ``incident_steps`` names of a resolve's steps, in the order the reply lists them."""
_WHAT = {_PAGERDUTY: "PagerDuty", _TOPIC: "topic", _SUMMARY: "pinned summary", _ARCHIVE: "archive"}
_IN_PROGRESS = dt.timedelta(seconds=100)
"""A step recorded ``pending`` more recently than this is taken to be running in another resolve (the command's
timeout is 90 s); an older one was left by a resolve that timed out or crashed, and is run again."""
_DECLARE_GRACE = dt.timedelta(minutes=5)
"""A declaration still ``pending`` this long after it was declared is taken to have died (a crash): no refusal."""


def _hhmm(incident: Incident) -> str:
    return incident.resolved_at.strftime("%H:%M UTC") if incident.resolved_at else "an unknown time"


def _by(incident: Incident) -> str:
    return f"<@{incident.resolved_by}>" if incident.resolved_by else "someone"


def _declaration_pending(ctx: Context, incident: Incident, steps: Mapping[str, StepOutcome]) -> bool:
    declared = steps.get(DECLARE_STEP)
    if declared is None or declared.status != StepStatus.PENDING:
        return False
    return ctx.services.clock() - incident.declared_at < _DECLARE_GRACE


async def resolve_incident(ctx: Context, text: str) -> None:
    """Resolve the incident of this war room; reply with what was done (and what needs a human).

    On an incident already resolved, finish the steps that resolve left unfinished."""
    incident = ctx.incident
    if incident is None or incident.channel_id != ctx.channel_id:
        raise UserError(
            "`/incident resolve` closes an incident, so it runs in the incident's war room (the `#inc-…` channel "
            "`/incident declare` opened): run it there."
        )
    services = ctx.services
    steps = await services.incidents.steps(incident.id)
    if incident.is_open and _declaration_pending(ctx, incident, steps):
        unfinished = ", ".join(_declare_steps_left(steps)) or "its last steps"
        raise UserError(
            f"`{incident.id}` cannot be resolved yet: the declaration is still finishing ({unfinished}), and "
            f"resolving now could leave the pages it is making open. Run `/incident resolve` again in a few seconds."
        )
    transition = await services.incidents.resolve(
        incident.id,
        resolved_by=ctx.user_id,
        resolved_at=services.clock(),
        steps=RESOLVE_STEPS,
        detail={"summary": text},
    )
    resolved = transition.incident
    if not transition.changed:
        await _finish(ctx, resolved)
        return
    assert resolved.resolved_at is not None
    took = elapsed_text(resolved.resolved_at - resolved.declared_at)
    notes = [await _status_event(ctx, incident, resolved, text, took)]
    notes += await _run_steps(ctx, resolved, RESOLVE_STEPS, text)
    severity = ctx.policy.severities.get(resolved.severity)
    label = severity.label if severity is not None else resolved.severity.upper()
    head = (
        f":white_check_mark: *Resolved* by <@{ctx.user_id}> after *{took}* — {label} on `{resolved.service}`, "
        f"declared {resolved.declared_at.strftime('%H:%M UTC')}, resolved {_hhmm(resolved)}."
    )
    body = "\n".join(f"• {n}" for n in notes if n)
    await ctx.reply(head + (f"\n>{text}" if text else "") + ("\n" + body if body else ""))
    log.info("incident resolved", extra={"incident": resolved.id, "by": ctx.user_id})


def _declare_steps_left(steps: Mapping[str, StepOutcome]) -> list[str]:
    """What a declaration in progress is known to still be doing (its PagerDuty work, when that is not recorded)."""
    left = [s.step for s in steps.values() if s.status == StepStatus.PENDING and s.step != DECLARE_STEP]
    if "acknowledge" not in steps:
        left.append("acknowledging the declarer's page")
    if not any(name.startswith("page:") for name in steps):
        left.append("paging")
    return left


async def _finish(ctx: Context, resolved: Incident) -> None:
    """A resolve of an incident already resolved: re-run the steps not recorded done, or say all were done."""
    if resolved.is_open:  # not expected: the guarded update only refuses incidents that are not open
        raise UserError(f"`{resolved.id}` could not be resolved just now: try again.")
    steps = await ctx.services.incidents.steps(resolved.id)
    todo = tuple(name for name in RESOLVE_STEPS if name not in steps or not steps[name].finished)
    already = f"`{resolved.id}` is already resolved: at {_hhmm(resolved)} by {_by(resolved)}"
    if not todo:
        raise UserError(
            f"{already}; everything was done (its pages, topic, summary and archive). Nothing was done again."
        )
    now = dt.datetime.now(dt.UTC)  # ``updated_at`` is Postgres' time, not the (testable) service clock
    running = [
        _WHAT[name]
        for name in todo
        if name in steps and steps[name].status == StepStatus.PENDING and now - steps[name].updated_at < _IN_PROGRESS
    ]
    if running:
        raise UserError(
            f"{already}, and that resolve is still finishing ({', '.join(running)}). Nothing was done again: if it "
            f"has not finished in {int(_IN_PROGRESS.total_seconds())}s, run `/incident resolve` again to finish it."
        )
    recorded = next((steps[n].detail.get("summary") for n in RESOLVE_STEPS if n in steps), None)
    text = recorded if isinstance(recorded, str) else ""
    notes = await _run_steps(ctx, resolved, todo, text)
    failed = [_WHAT[name] for name, note in zip(todo, notes, strict=True) if note.startswith(":warning:")]
    finished = [_WHAT[name] for name in todo if _WHAT[name] not in failed]
    if any(name in steps for name in RESOLVE_STEPS):
        head = f"{already}. It had left unfinished: {', '.join(_WHAT[n] for n in todo)}."
    else:  # resolved before resolves recorded their steps: nothing says what was done, so all of it ran again
        head = f"{already}, but its steps were not recorded, so all of them were run again."
    if finished:
        head += f" Finished now: {', '.join(finished)}."
    if failed:
        head += f" Still not done: {', '.join(failed)} — see below, or run `/incident resolve` again."
    body = "\n".join(f"• {n}" for n in notes if n)
    await ctx.reply(head + ("\n" + body if body else ""))
    log.info("resolve finished", extra={"incident": resolved.id, "by": ctx.user_id, "steps": list(todo)})


async def _run_steps(ctx: Context, resolved: Incident, todo: tuple[str, ...], text: str) -> list[str]:
    """Run the steps ``todo`` (PagerDuty, topic and summary at once, then the archive), recording each outcome.

    Returns the reply lines, one per step in ``todo`` and in its order (``""`` when there is nothing to say)."""
    assert resolved.resolved_at is not None
    took = elapsed_text(resolved.resolved_at - resolved.declared_at)
    work: dict[str, Callable[[], Awaitable[str]]] = {
        _PAGERDUTY: lambda: _resolve_pages(ctx, resolved),
        _TOPIC: lambda: _topic(ctx, resolved),
        _SUMMARY: lambda: _summary(ctx, resolved, text, took),
        _ARCHIVE: lambda: _archive(ctx, resolved),
    }
    first = [name for name in todo if name != _ARCHIVE]
    notes = list(await asyncio.gather(*(_step(ctx, resolved, name, work[name](), text) for name in first)))
    if _ARCHIVE in todo:
        notes.append(await _step(ctx, resolved, _ARCHIVE, work[_ARCHIVE](), text))
    return notes


async def _step(ctx: Context, incident: Incident, name: str, work: Awaitable[str], text: str) -> str:
    """Run one step (:func:`step_line`), then record it: ``failed`` when its line is a warning, else ``done``."""
    line = await step_line(ctx, "resolve", _WHAT[name], work)
    failed = line.startswith(":warning:")
    detail: dict[str, Any] = {"summary": text, "line": line, "by": ctx.user_id}
    try:
        await ctx.services.incidents.record_step(incident.id, name, "failed" if failed else "done", detail)
    except Exception:
        log.exception("could not record a resolve step", extra={"incident": incident.id, "step": name})
    if failed:
        try:
            await ctx.record(
                EventType.STEP_FAILED,
                f"{name} failed: {line.removeprefix(':warning:').strip()}",
                {"step": name, "advice": line},
                key=name,
            )
        except Exception:
            log.exception("could not record a failed resolve step", extra={"incident": incident.id})
    return line


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
            await _page_resolved(ctx, incident, page, number)
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


async def _page_resolved(ctx: Context, incident: Incident, page: str, number: int | None) -> None:
    """Put a page this resolve closed on the timeline (before the archive, which then holds it)."""
    name = f"PD #{number}" if number is not None else f"PD {page}"
    try:
        await ctx.record(
            EventType.ALERT,
            f"{name} resolved with the incident",
            {"pd_incident": page, "number": number, "status": "resolved", "result": "resolved"},
            key=f"pd:{page}",
        )
    except Exception:
        log.exception("could not record a resolved page", extra={"incident": incident.id})


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
    line = f"{_hhmm(incident)} by {_by(incident)} after {took}" + (f": {text}" if text else "")
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
