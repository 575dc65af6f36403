"""War-room Slack events on the timeline: messages, edits, deletes, file shares, joins, leaves and reactions.

:class:`SlackEventRecorder` is the transport's ``on_event`` sink: it gets each Events API ``event_callback`` body
(already acked), keeps only events in a war room (a channel some incident has as ``channel_id``), and records one
typed :class:`~chatops.timeline.events.TimelineEvent` per event with ``source="slack"``. :func:`translate` is the
pure part: body in, :class:`Draft` (or ``None`` for what is not recorded) out.

========================================== ================ =================================================
Slack event                                 type             dedup key (unique per source in Postgres)
========================================== ================ =================================================
``message`` (plain, ``thread_broadcast``,   ``chat``         ``msg:<channel>:<ts>``
``file_share``, ``bot_message``, ``me_…``,
topic/purpose/pin notices …)
``message`` / ``message_changed``           ``chat_edit``    ``edit:<channel>:<ts>:<edited ts>``
``message`` / ``message_deleted``           ``chat_delete``  ``del:<channel>:<deleted_ts>``
``channel_join``, ``member_joined_channel`` ``member_join``  ``join:<channel>:<user>:<whole second>``
``channel_leave``, ``member_left_channel``  ``member_leave`` ``leave:<channel>:<user>:<whole second>``
``reaction_added`` / ``reaction_removed``   ``reaction``     ``react:<channel>:<ts>:<user>:<name>:<event_ts>``
========================================== ================ =================================================

Keys come from the message identity (channel + ``ts``, unique per channel), so a redelivered envelope — a new
envelope id, the same ``event_id`` — and the same message reaching us twice are stored once, across restarts and
replicas. Slack sends both ``member_joined_channel`` and a ``channel_join`` message for one join, microseconds
apart: keying joins by the whole second of their time folds the pair into one row. Events without a usable time
or identity fall back to ``event:<event_id>``. ``occurred_at`` is the Slack ``ts`` of the thing that happened
(the edit's ``edited.ts``, the delete event's ``ts``), UTC.

The bot's own posts are ``chat`` like any other, with ``actor`` the bot's user id and ``payload.bot = true``,
``payload.own = true``; other apps' posts (``bot_message`` / ``bot_id``) have ``payload.bot = true``,
``payload.own = false`` and ``actor`` the posting user or ``bot:<bot_id>``. Unfurls and other ``message_changed``
events that change neither text nor files are not edits and are skipped, as are ``message_replied`` notices.
Slash commands are not message events; the dispatcher records them as ``command``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chatops.incidents.model import Incident
from chatops.timeline.events import EventType, TimelineEvent
from chatops.timeline.sink import TimelineSink

__all__ = ["Draft", "SlackEventRecorder", "occurred_at", "translate"]

log = logging.getLogger(__name__)

SOURCE = "slack"
MEMBER_JOIN = "member_join"
MEMBER_LEAVE = "member_leave"
_SKIPPED_SUBTYPES = frozenset({"message_replied"})
_JOIN_SUBTYPES = {"channel_join": MEMBER_JOIN, "group_join": MEMBER_JOIN}
_LEAVE_SUBTYPES = {"channel_leave": MEMBER_LEAVE, "group_leave": MEMBER_LEAVE}
_MEMBER_EVENTS = {"member_joined_channel": MEMBER_JOIN, "member_left_channel": MEMBER_LEAVE}
_QUOTE = 120


class ChannelIncidents(Protocol):
    """The part of :class:`~chatops.incidents.store.IncidentStore` the recorder reads."""

    async def by_channel(self, channel_id: str) -> Incident | None:
        """The incident whose war room is ``channel_id``."""
        ...


@dataclass(frozen=True)
class Draft:
    """A timeline event still missing its incident: what :func:`translate` makes of one Slack event."""

    channel: str
    type: str
    occurred_at: dt.datetime | None
    actor: str | None
    summary: str
    dedup_key: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def event(self, incident_id: str, *, now: dt.datetime) -> TimelineEvent:
        """The timeline row, on ``incident_id`` (``now`` when the event carried no time)."""
        return TimelineEvent(
            incident_id=incident_id,
            type=self.type,
            occurred_at=self.occurred_at or now,
            actor=self.actor,
            source=SOURCE,
            summary=self.summary,
            payload=self.payload,
            dedup_key=self.dedup_key,
        )


def occurred_at(ts: Any) -> dt.datetime | None:
    """The time a Slack ``ts`` (``"1355517523.000005"``: Unix seconds . microseconds) encodes, in UTC."""
    if not isinstance(ts, str | int | float) or isinstance(ts, bool):
        return None
    try:
        seconds = float(ts)
    except ValueError:
        return None
    if seconds <= 0:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _second(ts: Any) -> str | None:
    when = occurred_at(ts)
    return None if when is None else str(int(when.timestamp()))


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _QUOTE else flat[: _QUOTE - 1] + "…"


def _files(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    files = message.get("files")
    return [
        {k: f[k] for k in ("id", "name", "title", "mimetype", "filetype", "size") if k in f}
        for f in (files if isinstance(files, list) else [])
        if isinstance(f, Mapping) and f.get("id")
    ]


class _Translator:
    """One event body → :class:`Draft`; ``bot_user_id`` tells the daemon's own posts apart."""

    def __init__(self, body: Mapping[str, Any], bot_user_id: str | None) -> None:
        event = body.get("event")
        self.event: Mapping[str, Any] = event if isinstance(event, Mapping) else {}
        self.event_id = str(body.get("event_id") or "")
        self.event_time = body.get("event_time")
        self.bot_user_id = bot_user_id

    def draft(self) -> Draft | None:
        kind = self.event.get("type")
        if kind == "message":
            return self.message()
        if kind in _MEMBER_EVENTS:
            return self.membership(_MEMBER_EVENTS[str(kind)], self.event, self.event.get("event_ts"))
        if kind in ("reaction_added", "reaction_removed"):
            return self.reaction(str(kind))
        return None

    # ------------------------------------------------------------------ helpers

    def _fallback_key(self) -> str | None:
        return f"event:{self.event_id}" if self.event_id else None

    def _author(self, message: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """(actor, bot markers) of a message."""
        user = message.get("user")
        bot_id = message.get("bot_id")
        own = bool(self.bot_user_id) and user == self.bot_user_id
        is_bot = own or bool(bot_id) or message.get("subtype") == "bot_message"
        actor = str(user) if user else (f"bot:{bot_id}" if bot_id else None)
        markers: dict[str, Any] = {"bot": is_bot, "own": own}
        if bot_id:
            markers["bot_id"] = str(bot_id)
        return actor, markers

    @staticmethod
    def _who(actor: str | None) -> str:
        if actor is None:
            return "someone"
        return actor if actor.startswith("bot:") else f"<@{actor}>"

    # ------------------------------------------------------------------ message events

    def message(self) -> Draft | None:
        subtype = self.event.get("subtype")
        if subtype in _SKIPPED_SUBTYPES:
            return None
        if subtype == "message_changed":
            return self.edit()
        if subtype == "message_deleted":
            return self.delete()
        if subtype in _JOIN_SUBTYPES:
            return self.membership(_JOIN_SUBTYPES[str(subtype)], self.event, self.event.get("ts"))
        if subtype in _LEAVE_SUBTYPES:
            return self.membership(_LEAVE_SUBTYPES[str(subtype)], self.event, self.event.get("ts"))
        return self.chat()

    def chat(self) -> Draft | None:
        e = self.event
        channel, ts = str(e.get("channel") or ""), e.get("ts")
        if not channel or not isinstance(ts, str):
            return None
        actor, markers = self._author(e)
        text = str(e.get("text") or "")
        files = _files(e)
        thread_ts = e.get("thread_ts") if isinstance(e.get("thread_ts"), str) else None
        payload: dict[str, Any] = {
            "channel": channel,
            "ts": ts,
            "text": text,
            "event_id": self.event_id,
            **markers,
        }
        if e.get("subtype"):
            payload["subtype"] = str(e["subtype"])
        if thread_ts and thread_ts != ts:
            payload["thread_ts"] = thread_ts
        if files:
            payload["files"] = files
        who = self._who(actor)
        if files:
            names = ", ".join(str(f.get("name") or f["id"]) for f in files)
            summary = f"{who} shared {names}" + (f": {_quote(text)}" if text else "")
        else:
            summary = f"{who}{' (in thread)' if 'thread_ts' in payload else ''}: {_quote(text)}"
        return Draft(channel, EventType.CHAT, occurred_at(ts), actor, summary, f"msg:{channel}:{ts}", payload)

    def edit(self) -> Draft | None:
        e = self.event
        channel = str(e.get("channel") or "")
        new, old = e.get("message"), e.get("previous_message")
        if not channel or not isinstance(new, Mapping):
            return None
        old = _map(old)
        ts = new.get("ts")
        edited = _map(new.get("edited"))
        before, after = str(old.get("text") or ""), str(new.get("text") or "")
        if not isinstance(ts, str) or (before == after and _files(old) == _files(new)):
            return None  # an unfurl or attachment refresh, not an edit
        edited_ts = edited.get("ts") or e.get("ts") or e.get("event_ts")
        actor, markers = self._author(new)
        if edited.get("user"):
            actor = str(edited["user"])
        payload: dict[str, Any] = {
            "channel": channel,
            "ts": ts,
            "edited_ts": edited_ts,
            "before": before,
            "after": after,
            "event_id": self.event_id,
            **markers,
        }
        if isinstance(new.get("thread_ts"), str) and new["thread_ts"] != ts:
            payload["thread_ts"] = new["thread_ts"]
        summary = f"{self._who(actor)} edited: “{_quote(before)}” → “{_quote(after)}”"
        key = f"edit:{channel}:{ts}:{edited_ts}"
        return Draft(channel, EventType.CHAT_EDIT, occurred_at(edited_ts), actor, summary, key, payload)

    def delete(self) -> Draft | None:
        e = self.event
        channel, deleted_ts = str(e.get("channel") or ""), e.get("deleted_ts")
        if not channel or not isinstance(deleted_ts, str):
            return None
        old = _map(e.get("previous_message"))
        author, markers = self._author(old)
        text = str(old.get("text") or "")
        payload: dict[str, Any] = {
            "channel": channel,
            "deleted_ts": deleted_ts,
            "text": text,
            "author": author,
            "event_id": self.event_id,
            **markers,
        }
        if isinstance(old.get("thread_ts"), str) and old["thread_ts"] != deleted_ts:
            payload["thread_ts"] = old["thread_ts"]
        when = occurred_at(e.get("ts") or e.get("event_ts"))
        summary = f"message by {self._who(author)} deleted: “{_quote(text)}”"
        return Draft(channel, EventType.CHAT_DELETE, when, author, summary, f"del:{channel}:{deleted_ts}", payload)

    # ------------------------------------------------------------------ membership and reactions

    def membership(self, kind: str, e: Mapping[str, Any], ts: Any) -> Draft | None:
        channel, user = str(e.get("channel") or ""), e.get("user")
        if not channel or not isinstance(user, str):
            return None
        second = _second(ts)
        key = f"{'join' if kind == MEMBER_JOIN else 'leave'}:{channel}:{user}:{second}" if second else None
        key = key or self._fallback_key()
        if key is None:
            return None
        payload: dict[str, Any] = {"channel": channel, "user": user, "event_id": self.event_id}
        if e.get("inviter"):
            payload["inviter"] = str(e["inviter"])
        own = bool(self.bot_user_id) and user == self.bot_user_id
        payload["own"] = own
        verb = "joined" if kind == MEMBER_JOIN else "left"
        summary = f"<@{user}> {verb}" + (f" (invited by <@{payload['inviter']}>)" if "inviter" in payload else "")
        return Draft(channel, kind, occurred_at(ts) or occurred_at(self.event_time), user, summary, key, payload)

    def reaction(self, kind: str) -> Draft | None:
        e = self.event
        item = _map(e.get("item"))
        channel, ts, user, name = str(item.get("channel") or ""), item.get("ts"), e.get("user"), e.get("reaction")
        if not channel or not isinstance(ts, str) or not isinstance(user, str) or not isinstance(name, str):
            return None
        added = kind == "reaction_added"
        payload = {"channel": channel, "ts": ts, "reaction": name, "added": added, "event_id": self.event_id}
        if e.get("item_user"):
            payload["item_user"] = str(e["item_user"])
        summary = f"<@{user}> {'reacted' if added else 'removed'} :{name}:"
        event_ts = e.get("event_ts")
        key = f"react:{channel}:{ts}:{user}:{name}:{event_ts}" if event_ts else self._fallback_key()
        if key is None:
            return None
        return Draft(channel, EventType.REACTION, occurred_at(event_ts), user, summary, key, payload)


def translate(body: Mapping[str, Any], *, bot_user_id: str | None = None) -> Draft | None:
    """What one ``event_callback`` body records, or ``None`` (other event types, malformed events)."""
    return _Translator(body, bot_user_id).draft()


class SlackEventRecorder:
    """``on_event`` for :class:`~chatops.transport.slack.SlackTransport`: war-room events → the timeline sink."""

    def __init__(
        self,
        *,
        incidents: ChannelIncidents,
        sink: TimelineSink,
        clock: Callable[[], dt.datetime],
        bot_user_id: Callable[[], str | None] | str | None = None,
        cache_size: int = 256,
    ) -> None:
        self._incidents = incidents
        self._sink = sink
        self._clock = clock
        self._bot_user_id = bot_user_id
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._cache_size = cache_size

    def _bot(self) -> str | None:
        return self._bot_user_id() if callable(self._bot_user_id) else self._bot_user_id

    async def handle(self, body: Mapping[str, Any]) -> bool:
        """Record ``body`` if it is a war-room event; True when something was handed to the sink."""
        draft = translate(body, bot_user_id=self._bot())
        if draft is None:
            return False
        incident_id = await self._war_room(draft.channel)
        if incident_id is None:
            return False
        await self._sink.record(draft.event(incident_id, now=self._clock()))
        log.debug("slack event recorded", extra={"incident": incident_id, "type": draft.type, "key": draft.dedup_key})
        return True

    async def _war_room(self, channel: str) -> str | None:
        """The incident whose war room ``channel`` is (war rooms never change incident, so hits are cached)."""
        cached = self._cache.get(channel)
        if cached is not None:
            self._cache.move_to_end(channel)
            return cached
        incident = await self._incidents.by_channel(channel)
        if incident is None:
            return None
        self._cache[channel] = incident.id
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return incident.id
