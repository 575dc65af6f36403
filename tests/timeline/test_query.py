"""``/incident timeline`` filters: parsing, time placement around midnight, errors; and the store query they drive."""

from __future__ import annotations

import datetime as dt

import pytest

from chatops.errors import UserError
from chatops.timeline.events import TimelineEvent
from chatops.timeline.query import VALID_TYPES, format_line, format_text_line, parse_filter
from chatops.timeline.store import TimelineStore

from .conftest import INC, T0, ev


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


DECLARED = utc(2026, 4, 22, 2, 50)


def test_empty_filter_means_everything() -> None:
    flt = parse_filter("", DECLARED)
    assert (flt.types, flt.since, flt.until, flt.actor) == (None, None, None, None)
    assert flt.describe() == "all events"


def test_the_issue_example() -> None:
    flt = parse_filter("type=kubectl,alert since=02:47 until=03:11 actor=@ravi", DECLARED)
    assert flt.types == {"kubectl", "alert"}
    assert flt.since == utc(2026, 4, 22, 2, 47)
    assert flt.until == utc(2026, 4, 22, 3, 12), "until names a minute and includes it"
    assert flt.actor is not None and flt.actor.candidates() >= {"@ravi", "ravi"}
    assert flt.describe() == "type=kubectl,alert since=02:47 until=03:11 actor=@ravi"


def test_seconds_and_iso_8601() -> None:
    flt = parse_filter("since=02:47:30 until=2026-04-22T03:11:00Z", DECLARED)
    assert flt.since == utc(2026, 4, 22, 2, 47, 30)
    assert flt.until == utc(2026, 4, 22, 3, 11) + dt.timedelta(microseconds=1)
    offset = parse_filter("since=2026-04-22T04:47+02:00", DECLARED)
    assert offset.since == utc(2026, 4, 22, 2, 47)
    day = parse_filter("until=2026-04-22", DECLARED)
    assert day.until == utc(2026, 4, 23)


@pytest.mark.parametrize(
    ("declared", "text", "since", "until"),
    [
        # declared late evening: an early-morning time is the next day
        (utc(2026, 4, 22, 23, 30), "since=00:15", utc(2026, 4, 23, 0, 15), None),
        # declared just after midnight: a late-evening time is the evening before (the alerts that led up to it)
        (utc(2026, 4, 22, 0, 10), "since=23:55", utc(2026, 4, 21, 23, 55), None),
        # a window across midnight
        (utc(2026, 4, 22, 23, 40), "since=23:50 until=00:20", utc(2026, 4, 22, 23, 50), utc(2026, 4, 23, 0, 21)),
        # until alone follows the same rule as since
        (utc(2026, 4, 22, 2, 50), "until=03:11", None, utc(2026, 4, 22, 3, 12)),
    ],
)
def test_hh_mm_rolls_over_midnight_sensibly(
    declared: dt.datetime, text: str, since: dt.datetime | None, until: dt.datetime | None
) -> None:
    flt = parse_filter(text, declared)
    assert (flt.since, flt.until) == (since, until)


def test_types_are_case_insensitive_and_aliases_work() -> None:
    flt = parse_filter("types=Kubectl from=02:00 to=03:00 by=<@U0RAVI|ravi>", DECLARED)
    assert flt.types == {"kubectl"}
    assert flt.actor is not None and flt.actor.user_id == "U0RAVI" and "U0RAVI" in flt.actor.candidates()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("type=kubctl", "Unknown event type `kubctl` (did you mean `kubectl`?)"),
        ("type=", "needs a value"),
        ("since=25:00", "not a time of day"),
        ("since=yesterday", "neither HH:MM"),
        ("sinse=02:47", "did you mean `since`?"),
        ("kubectl", "I don't understand `kubectl`"),
        ("since=03:00 since=04:00", "given twice"),
        ("since=2026-04-22T03:00Z until=2026-04-22T02:00Z", "is not after"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        parse_filter(text, DECLARED)
    assert message in str(info.value)


def test_unknown_type_lists_every_valid_type() -> None:
    with pytest.raises(UserError) as info:
        parse_filter("type=page,nope", DECLARED)
    assert all(t in str(info.value) for t in VALID_TYPES)


def test_compact_lines_escape_mrkdwn_and_map_names() -> None:
    event = TimelineEvent(INC, "chat", utc(2026, 4, 22, 2, 47, 13), "U0RAVI", "slack", "ping <!channel> & <@U1>")
    line = format_line(event, {"U0RAVI": "@ravi"})
    assert line == "`02:47:13` *[chat]* @ravi — ping &lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert format_line(event, {}, with_date=True).startswith("`04-22 02:47:13` *[chat]* U0RAVI")
    assert format_text_line(event, {}) == "2026-04-22 02:47:13 UTC [chat] U0RAVI — ping <!channel> & <@U1>"


async def test_store_query_by_type_window_and_actors(timeline: TimelineStore) -> None:
    events = [
        ev(1, "alert", actor="pagerduty"),
        ev(2, "kubectl", actor="ravi@example.com"),
        ev(3, "chat", actor="U0RAVI"),
        ev(4, "kubectl", actor="aditi@example.com"),
        ev(600, "kubectl", actor="ravi@example.com"),
    ]
    await timeline.append_many(events)
    flt = parse_filter("type=kubectl,alert since=02:47 until=02:48", T0)
    got = await timeline.query(INC, types=flt.types, since=flt.since, until=flt.until)
    assert [e.summary for e in got] == ["event 1", "event 2", "event 4"]
    mine = await timeline.query(INC, actors=["ravi@example.com", "U0RAVI"])
    assert [e.summary for e in mine] == ["event 2", "event 3", "event 600"]
