"""``/incident timeline`` filters and the compact one-line rendering of events.

Filters are ``key=value`` words (any order, each at most once)::

    type=kubectl,alert      only these event types (comma-separated; see EventType)
    since=02:47             occurred at or after; HH:MM[:SS] UTC or ISO 8601 (2026-04-22T02:47Z)
    until=03:11             occurred up to and including that minute (HH:MM), second (HH:MM:SS) or instant (ISO)
    actor=@ravi             one person: @name, a Slack mention <@U123|ravi>, or an exact actor (ravi@example.com)

A bare ``HH:MM`` is a time of day in UTC on the incident's declaration day, rolled over midnight sensibly: ``since``
is the first such time at or after 12 hours before the declaration (declared 23:30, ``since=00:15`` is the next
day's 00:15; declared 00:10, ``since=23:55`` is the evening before), and ``until`` is the first such time after
``since`` (``since=23:50 until=00:20`` spans midnight). Anything longer than a day wants ISO 8601.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from chatops.args import tokenise
from chatops.errors import UserError
from chatops.timeline.events import EventType, TimelineEvent

__all__ = ["VALID_TYPES", "TimelineFilter", "format_line", "format_text_line", "parse_filter", "resolve_time"]

#: The event types a filter may name.
VALID_TYPES: tuple[str, ...] = tuple(sorted(t.value for t in EventType))

_KEYS = {"type": "type", "types": "type", "since": "since", "from": "since", "until": "until", "to": "until"}
_KEYS |= {"actor": "actor", "by": "actor"}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|([^>]+))?>$")
_ROLL_BACK = dt.timedelta(hours=12)
USAGE = "`/incident timeline [type=kubectl,alert] [since=02:47] [until=03:11] [actor=@ravi]` (times in UTC)"


@dataclass(frozen=True)
class ActorFilter:
    """Who ``actor=`` names: the text as typed, a Slack user id when it was a mention, and a name to look up."""

    raw: str
    user_id: str | None
    name: str | None

    def candidates(self) -> set[str]:
        """Stored ``actor`` values that certainly match, before any name lookup."""
        found = {self.raw}
        if self.user_id:
            found.add(self.user_id)
        if self.name:
            found |= {self.name, "@" + self.name, self.name.lower()}
        return found


@dataclass(frozen=True)
class TimelineFilter:
    """A parsed filter. ``since`` is inclusive and ``until`` exclusive (already moved past the named minute)."""

    types: frozenset[str] | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    actor: ActorFilter | None = None
    text: str = ""

    def describe(self) -> str:
        """The filter as the user typed it, normalised (for the header)."""
        return self.text or "all events"


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _bad_types(unknown: list[str]) -> UserError:
    hint = _suggest(unknown[0], VALID_TYPES)
    return UserError(
        f"Unknown event type {', '.join(f'`{t}`' for t in unknown)}{hint}.\n"
        f"Valid types: {', '.join(VALID_TYPES)}.\nUsage: {USAGE}"
    )


def _first_at_or_after(start: dt.datetime, clock: dt.time, strictly: bool = False) -> dt.datetime:
    candidate = dt.datetime.combine(start.date(), clock, tzinfo=dt.UTC)
    while candidate < start or (strictly and candidate == start):
        candidate += dt.timedelta(days=1)
    return candidate


def resolve_time(
    value: str, name: str, declared_at: dt.datetime, after: dt.datetime | None = None
) -> tuple[dt.datetime, dt.timedelta]:
    """``value`` as an aware UTC datetime and its resolution (1 min, 1 s or 1 µs); UserError when unreadable.

    ``HH:MM[:SS]`` is placed as the module docstring says: the first occurrence at or after ``declared_at``
    minus 12 hours, or strictly after ``after`` when given (``until`` after ``since``).
    """
    match = _CLOCK.match(value)
    if match:
        hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise UserError(f"`{name}={value}` is not a time of day (HH:MM, 00:00–23:59, UTC).\nUsage: {USAGE}")
        clock = dt.time(hour, minute, second)
        base = after if after is not None else declared_at.astimezone(dt.UTC) - _ROLL_BACK
        moment = _first_at_or_after(base, clock, strictly=after is not None)
        return moment, dt.timedelta(seconds=1) if match[3] else dt.timedelta(minutes=1)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"`{name}={value}` is neither HH:MM (UTC) nor an ISO 8601 time like 2026-04-22T02:47Z.\nUsage: {USAGE}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    resolution = dt.timedelta(days=1) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else dt.timedelta(microseconds=1)
    return moment.astimezone(dt.UTC), resolution


def _actor(value: str) -> ActorFilter:
    mention = _MENTION.match(value)
    if mention:
        return ActorFilter(value, mention[1], mention[2])
    if value.startswith("@") and len(value) > 1:
        return ActorFilter(value, None, value[1:])
    return ActorFilter(value, None, value if "@" not in value else None)


def parse_filter(text: str, declared_at: dt.datetime) -> TimelineFilter:
    """Parse the words after ``/incident timeline``; raises :class:`~chatops.errors.UserError` naming the problem."""
    seen: dict[str, str] = {}
    for token in tokenise(text):
        key, sep, value = token.partition("=")
        canonical = _KEYS.get(key.lower())
        if not sep or canonical is None:
            raise UserError(
                f"I don't understand `{token}`{_suggest(key.lower(), _KEYS) if sep else ''}: filters are "
                f"type=…, since=…, until=…, actor=….\nUsage: {USAGE}\nValid types: {', '.join(VALID_TYPES)}."
            )
        if not value:
            raise UserError(f"`{token}` needs a value.\nUsage: {USAGE}")
        if canonical in seen:
            raise UserError(f"`{canonical}=` is given twice.\nUsage: {USAGE}")
        seen[canonical] = value
    types = None
    if "type" in seen:
        names = [t.strip().lower() for t in seen["type"].split(",") if t.strip()]
        unknown = [t for t in names if t not in VALID_TYPES]
        if unknown or not names:
            raise _bad_types(unknown or [seen["type"]])
        types = frozenset(names)
    since = until = None
    if "since" in seen:
        since, _ = resolve_time(seen["since"], "since", declared_at)
    if "until" in seen:
        moment, resolution = resolve_time(seen["until"], "until", declared_at, after=since)
        until = moment + resolution
    if since is not None and until is not None and until <= since:
        raise UserError(f"`until` ({until:%Y-%m-%d %H:%M:%S} UTC) is not after `since` ({since:%Y-%m-%d %H:%M:%S}).")
    actor = _actor(seen["actor"]) if "actor" in seen else None
    described = " ".join(f"{k}={seen[k]}" for k in ("type", "since", "until", "actor") if k in seen)
    return TimelineFilter(types=types, since=since, until=until, actor=actor, text=described)


def _mrkdwn_escape(text: str) -> str:
    """Slack's three control characters; this also disarms ``<!channel>`` and mention syntax in summaries."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def format_line(event: TimelineEvent, names: Mapping[str, str], *, with_date: bool = False) -> str:
    """One compact mrkdwn line: ```02:47:13` [kubectl] @ravi — summary`` (UTC; date too when ``with_date``)."""
    stamp = event.occurred_at.strftime("%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    who = ""
    if event.actor:
        who = " " + _mrkdwn_escape(names.get(event.actor, event.actor))
    return f"`{stamp}` *[{event.type}]*{who} — {_mrkdwn_escape(event.summary)}"


def format_text_line(event: TimelineEvent, names: Mapping[str, str]) -> str:
    """One plain-text line for the uploaded file: full UTC date and time."""
    who = f" {names.get(event.actor, event.actor)}" if event.actor else ""
    return f"{event.occurred_at:%Y-%m-%d %H:%M:%S} UTC [{event.type}]{who} — {event.summary}"
