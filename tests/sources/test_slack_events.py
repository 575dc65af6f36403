"""War-room Slack events → typed timeline drafts (pure translation) and the recorder's war-room filter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest

from chatops.incidents.model import Incident, IncidentStatus
from chatops.sources.slack_events import SlackEventRecorder, occurred_at, translate
from chatops.timeline.events import TimelineEvent

BOT = "U0BOT"
ROOM = "C0WARROOM"
TS = "1776826020.000100"  # 2026-04-22T02:47:00.0001Z


def body(event: dict[str, Any], event_id: str = "Ev001") -> dict[str, Any]:
    return {"type": "event_callback", "event_id": event_id, "event_time": 1776826020, "event": event}


def message(**fields: Any) -> dict[str, Any]:
    return {"type": "message", "channel": ROOM, "user": "U0RAVI001", "text": "checking", "ts": TS} | fields


def test_ts_encodes_the_time_in_utc() -> None:
    when = occurred_at(TS)
    assert when == dt.datetime(2026, 4, 22, 2, 47, 0, 100, tzinfo=dt.UTC)
    assert occurred_at("nonsense") is None
    assert occurred_at(None) is None


def test_a_message_is_chat_keyed_by_channel_and_ts() -> None:
    draft = translate(body(message(text="rolling back now")), bot_user_id=BOT)
    assert draft is not None
    assert (draft.type, draft.channel, draft.actor) == ("chat", ROOM, "U0RAVI001")
    assert draft.dedup_key == f"msg:{ROOM}:{TS}"
    assert draft.occurred_at == occurred_at(TS)
    assert draft.payload["text"] == "rolling back now"
    assert draft.payload["bot"] is False and draft.payload["own"] is False
    assert draft.payload["event_id"] == "Ev001"
    assert "rolling back now" in draft.summary and "<@U0RAVI001>" in draft.summary


def test_a_thread_reply_keeps_its_thread_ts() -> None:
    draft = translate(body(message(ts="1776826030.000200", thread_ts=TS)))
    assert draft is not None and draft.payload["thread_ts"] == TS
    assert "(in thread)" in draft.summary


def test_a_file_share_records_file_id_and_name() -> None:
    files = [{"id": "F0001", "name": "heap.png", "title": "Heap", "mimetype": "image/png", "url_private": "x"}]
    draft = translate(body(message(subtype="file_share", text="look", files=files)))
    assert draft is not None and draft.type == "chat"
    assert draft.payload["files"] == [{"id": "F0001", "name": "heap.png", "title": "Heap", "mimetype": "image/png"}]
    assert draft.payload["subtype"] == "file_share"
    assert "heap.png" in draft.summary


def test_an_edit_is_chat_edit_with_before_and_after() -> None:
    edited_ts = "1776826090.000300"
    event = {
        "type": "message",
        "subtype": "message_changed",
        "channel": ROOM,
        "ts": edited_ts,
        "message": {
            "type": "message",
            "user": "U0RAVI001",
            "text": "new",
            "ts": TS,
            "edited": {"user": "U0RAVI001", "ts": edited_ts},
        },
        "previous_message": {"type": "message", "user": "U0RAVI001", "text": "old", "ts": TS},
    }
    draft = translate(body(event))
    assert draft is not None and draft.type == "chat_edit"
    assert (draft.payload["before"], draft.payload["after"]) == ("old", "new")
    assert draft.dedup_key == f"edit:{ROOM}:{TS}:{edited_ts}"
    assert draft.occurred_at == occurred_at(edited_ts)


def test_an_unfurl_is_not_an_edit() -> None:
    same = {"type": "message", "user": "U0RAVI001", "text": "see https://x", "ts": TS}
    event = {
        "type": "message",
        "subtype": "message_changed",
        "channel": ROOM,
        "message": same | {"attachments": [{}]},
        "previous_message": same,
    }
    assert translate(body(event)) is None


def test_a_delete_is_chat_delete_keyed_by_deleted_ts() -> None:
    event = {
        "type": "message",
        "subtype": "message_deleted",
        "channel": ROOM,
        "ts": "1776826100.000400",
        "deleted_ts": TS,
        "previous_message": {"type": "message", "user": "U0RAVI001", "text": "oops", "ts": TS},
    }
    draft = translate(body(event))
    assert draft is not None and draft.type == "chat_delete"
    assert draft.dedup_key == f"del:{ROOM}:{TS}"
    assert draft.payload["text"] == "oops" and draft.payload["author"] == "U0RAVI001"
    assert draft.occurred_at == occurred_at("1776826100.000400")


def test_the_bots_own_post_is_marked_and_other_bots_too() -> None:
    own = translate(body(message(user=BOT, bot_id="B0BOT", text="summary")), bot_user_id=BOT)
    assert own is not None and own.actor == BOT
    assert own.payload["bot"] is True and own.payload["own"] is True and own.payload["bot_id"] == "B0BOT"
    other = translate(
        body({"type": "message", "subtype": "bot_message", "bot_id": "B0PD", "channel": ROOM, "text": "PD", "ts": TS}),
        bot_user_id=BOT,
    )
    assert other is not None and other.actor == "bot:B0PD"
    assert other.payload["bot"] is True and other.payload["own"] is False


def test_joins_from_both_event_kinds_share_one_key_and_leaves_are_typed() -> None:
    as_message = translate(
        body(
            message(
                subtype="channel_join",
                text="<@U0KARAN01> has joined",
                user="U0KARAN01",
                ts="1776826020.000200",
                inviter="U0ADITI01",
            )
        )
    )
    as_member = translate(
        body(
            {"type": "member_joined_channel", "user": "U0KARAN01", "channel": ROOM, "event_ts": "1776826020.000100"},
            "Ev002",
        )
    )
    assert as_message is not None and as_member is not None
    assert as_message.type == as_member.type == "member_join"
    assert as_message.dedup_key == as_member.dedup_key == f"join:{ROOM}:U0KARAN01:1776826020"
    assert as_message.payload["inviter"] == "U0ADITI01"
    leave = translate(body(message(subtype="channel_leave", user="U0KARAN01")))
    assert leave is not None and leave.type == "member_leave" and leave.dedup_key.startswith("leave:")
    left = translate(body({"type": "member_left_channel", "user": "U0KARAN01", "channel": ROOM, "event_ts": TS}))
    assert left is not None and left.type == "member_leave"


def test_reactions() -> None:
    event = {
        "type": "reaction_added",
        "user": "U0RAVI001",
        "reaction": "eyes",
        "item": {"type": "message", "channel": ROOM, "ts": TS},
        "event_ts": "1776826200.000100",
    }
    draft = translate(body(event))
    assert draft is not None and draft.type == "reaction" and draft.channel == ROOM
    assert draft.payload["reaction"] == "eyes" and draft.payload["added"] is True


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message", "subtype": "message_replied", "channel": ROOM, "ts": TS, "message": {}},
        {"type": "app_mention", "channel": ROOM, "ts": TS},
        {"type": "message", "channel": ROOM},  # no ts
        {"type": "message", "subtype": "message_deleted", "channel": ROOM},  # no deleted_ts
        {"type": "member_joined_channel", "channel": ROOM},  # no user
    ],
)
def test_what_is_not_recorded(event: dict[str, Any]) -> None:
    assert translate(body(event)) is None


def test_a_draft_without_time_uses_now() -> None:
    draft = translate({"event": {"type": "member_joined_channel", "user": "U1", "channel": ROOM}, "event_id": "Ev9"})
    assert draft is not None and draft.dedup_key == "event:Ev9"
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert draft.event("inc-1", now=now).occurred_at == now


class FakeIncidents:
    def __init__(self, rooms: dict[str, str]) -> None:
        self.rooms = rooms
        self.lookups: list[str] = []

    async def by_channel(self, channel_id: str) -> Incident | None:
        self.lookups.append(channel_id)
        incident_id = self.rooms.get(channel_id)
        if incident_id is None:
            return None
        now = dt.datetime.now(dt.UTC)
        return Incident(incident_id, "sev2", "checkout", IncidentStatus.DECLARED, "U1", "U1", now, "d", channel_id)


class ListSink:
    def __init__(self) -> None:
        self.events: list[TimelineEvent] = []

    async def record(self, event: TimelineEvent) -> None:
        self.events.append(event)

    def offer(self, events: Sequence[TimelineEvent]) -> bool:
        self.events.extend(events)
        return True


async def test_the_recorder_keeps_only_war_rooms_and_caches_them() -> None:
    incidents, sink = FakeIncidents({ROOM: "inc-1"}), ListSink()
    recorder = SlackEventRecorder(
        incidents=incidents, sink=sink, clock=lambda: dt.datetime.now(dt.UTC), bot_user_id=BOT
    )
    assert await recorder.handle(body(message()))
    assert await recorder.handle(body(message(ts="1776826021.000100")))
    assert not await recorder.handle(body(message(channel="C0OPS")))
    assert not await recorder.handle(body({"type": "team_join"}))
    assert [e.incident_id for e in sink.events] == ["inc-1", "inc-1"]
    assert all(e.source == "slack" for e in sink.events)
    assert incidents.lookups == [ROOM, "C0OPS"]
