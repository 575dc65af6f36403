"""Timeline events: what happened during an incident, from every source, as one typed shape.

``occurred_at`` is the source's own time (a Slack message ts, an audit event's stage timestamp): queries order by
it, so the timeline shows the causal sequence rather than the order we heard about things. It must be
timezone-aware and is normalised to UTC. ``dedup_key`` is unique per ``source`` (Slack event_id or message ts,
audit ID + stage, PagerDuty webhook id): a redelivered event is stored once. ``summary`` is one line of at most
:data:`SUMMARY_MAX` characters (newlines folded, longer text cut with an ellipsis); details go in ``payload``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["SUMMARY_MAX", "EventType", "TimelineEvent", "one_line"]

#: Longest summary kept, in characters.
SUMMARY_MAX = 300

_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_WHITESPACE = re.compile(r"\s+")


class EventType(StrEnum):
    """The known event types. Other lowercase names (``[a-z][a-z0-9_.]*``) are accepted as plain strings."""

    CHAT = "chat"
    CHAT_EDIT = "chat_edit"
    CHAT_DELETE = "chat_delete"
    REACTION = "reaction"
    COMMAND = "command"
    KUBECTL = "kubectl"
    DEPLOY = "deploy"
    ALERT = "alert"
    DASHBOARD = "dashboard"
    DECLARATION = "declaration"
    SEVERITY_CHANGE = "severity_change"
    STATUS_CHANGE = "status_change"
    ROLE_CHANGE = "role_change"
    PAGE = "page"
    COMMS = "comms"
    ESCALATION = "escalation"
    NOTE = "note"
    STEP_FAILED = "step_failed"


def one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    """``text`` folded to one line (runs of whitespace become one space) and cut to ``limit`` characters."""
    # Fast path: every whitespace character but the ASCII space is non-printable, so a printable text with no
    # double, leading or trailing space is already folded.
    if len(text) <= limit and text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        return text
    flat = _WHITESPACE.sub(" ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    if type(value) is dt.datetime and value.tzinfo is dt.UTC:  # the common case: already UTC
        return value
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (got naive {value.isoformat()}); use UTC")
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class TimelineEvent:
    """One timeline row. ``id`` and ``received_at`` are filled in by the store when read back."""

    incident_id: str
    type: EventType | str
    occurred_at: dt.datetime
    actor: str | None
    source: str
    summary: str
    payload: Mapping[str, Any] = field(default_factory=dict, hash=False)
    dedup_key: str | None = None
    received_at: dt.datetime | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if not self.incident_id:
            raise ValueError("incident_id must not be empty")
        if not self.source:
            raise ValueError("source must not be empty")
        if type(self.type) is not EventType:  # an EventType member is valid as it is
            kind = str(self.type)
            if not _TYPE_NAME.match(kind):
                raise ValueError(f"event type {kind!r} must match {_TYPE_NAME.pattern}")
            try:
                object.__setattr__(self, "type", EventType(kind))
            except ValueError:
                object.__setattr__(self, "type", kind)
        occurred_at = _utc(self.occurred_at, "occurred_at")
        if occurred_at is not self.occurred_at:
            object.__setattr__(self, "occurred_at", occurred_at)
        if self.received_at is not None:
            object.__setattr__(self, "received_at", _utc(self.received_at, "received_at"))
        summary = one_line(self.summary)
        if summary is not self.summary:
            object.__setattr__(self, "summary", summary)
        if type(self.payload) is not dict and not isinstance(self.payload, Mapping):
            raise TypeError(f"payload must be a mapping, got {type(self.payload).__name__}")
        if self.dedup_key == "":
            raise ValueError("dedup_key must be None or non-empty")
