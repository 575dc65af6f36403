"""``/incident timeline``: the incident's events, filtered, in causal order, as a thread (or a file when long)."""

from __future__ import annotations

import asyncio
import logging
import re

from chatops import Arg, Context, UserError, command
from chatops.timeline.events import TimelineEvent
from chatops.timeline.query import ActorFilter, TimelineFilter, format_line, format_text_line, parse_filter
from chatops.timeline.sink import flush_sink
from chatops.transport.base import ChatError, UserProfile

log = logging.getLogger(__name__)

#: More lines than this go into an uploaded file instead of a thread reply.
THREAD_LINES = 40
#: At most this many events are shown (the earliest); the header says when there were more.
MAX_EVENTS = 20_000
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{6,}$")
_MAX_LOOKUPS = 50


async def _profiles(ctx: Context, user_ids: set[str]) -> dict[str, UserProfile]:
    chat = ctx.services.chat
    wanted = sorted(user_ids)[:_MAX_LOOKUPS]

    async def one(uid: str) -> UserProfile | None:
        try:
            return await chat.user_profile(uid)
        except ChatError:
            return None

    found = await asyncio.gather(*(one(u) for u in wanted))
    return {p.id: p for p in found if p is not None}


async def _actor_values(ctx: Context, actor: ActorFilter) -> set[str]:
    """Stored actor values matching ``actor=``: the text itself, and war-room members whose name matches."""
    values = actor.candidates()
    if actor.name and not actor.user_id and ctx.incident is not None and ctx.incident.channel_id:
        wanted = actor.name.lower()
        try:
            members = await ctx.services.chat.channel_members(ctx.incident.channel_id)
        except ChatError:
            members = []
        for profile in (await _profiles(ctx, set(members))).values():
            names = {profile.name.lower(), (profile.real_name or "").lower(), (profile.real_name or "").split(" ")[0]}
            local = (profile.email or "").split("@")[0].lower()
            if wanted in {n.lower() for n in names} or wanted == local:
                values.add(profile.id)
                if profile.email:
                    values.add(profile.email)
    return values


async def _query(ctx: Context, flt: TimelineFilter) -> list[TimelineEvent]:
    assert ctx.incident is not None
    actors = None if flt.actor is None else await _actor_values(ctx, flt.actor)
    return await ctx.services.timeline.query(
        ctx.incident.id,
        types=flt.types,
        since=flt.since,
        until=flt.until,
        actors=actors,
        limit=MAX_EVENTS + 1,
        with_payload=False,  # one line per event: the payload is not shown
    )


@command(
    "/incident timeline",
    summary="Show this incident's timeline (filter by type, time window, actor), in causal order",
    args=[
        Arg(
            "filters",
            kind="rest",
            required=False,
            help="type=kubectl,alert since=02:47 until=03:11 actor=@ravi (times in UTC; ISO 8601 works too)",
        )
    ],
    requires="incident.read",
    examples=[
        "/incident timeline",
        "/incident timeline type=kubectl,alert since=02:47 until=03:11",
        "/incident timeline actor=@ravi",
    ],
    timeout=60.0,
)
async def incident_timeline(ctx: Context) -> None:
    """Post the matching events as a thread under a short header, or as an uploaded file when long."""
    incident = ctx.incident
    if incident is None:
        raise UserError("`/incident timeline` works in an incident's war room (the `#inc-…` channel): run it there.")
    flt = parse_filter(str(ctx.args.get("filters") or ""), incident.declared_at)
    await flush_sink(ctx.services.sink, timeout=2.0)  # include what was recorded a moment ago
    events = await _query(ctx, flt)
    if not events:
        await ctx.ephemeral(f"No timeline events of `{incident.id}` match {flt.describe()}.")
        return
    truncated = len(events) > MAX_EVENTS
    events = events[:MAX_EVENTS]
    slack_ids = {e.actor for e in events if e.actor and _SLACK_ID.match(e.actor)}
    names = {uid: "@" + p.name for uid, p in (await _profiles(ctx, slack_ids)).items()}
    with_date = events[0].occurred_at.date() != events[-1].occurred_at.date()
    count = f"{len(events)}{'+' if truncated else ''} event{'s' if len(events) != 1 else ''}"
    header = await ctx.reply(f":spiral_note_pad: Timeline of `{incident.id}` — {count}, {flt.describe()} (UTC)")
    if len(events) <= THREAD_LINES:
        text = "\n".join(format_line(e, names, with_date=with_date) for e in events)
        await ctx.services.chat.post_message(header.channel, text, thread_ts=header.ts)
        return
    body = "\n".join(format_text_line(e, names) for e in events) + "\n"
    note = f" (the first {MAX_EVENTS}; narrow the filter or use `chatops timeline export`)" if truncated else ""
    await ctx.services.chat.upload_file(
        header.channel,
        f"timeline-{incident.id}.txt",
        body.encode(),
        title=f"Timeline of {incident.id} — {flt.describe()}",
        initial_comment=f"{count} — too many for a thread, so here is the file{note}.",
        thread_ts=header.ts,
    )
