"""TimelineEvent validation and TimelineStore: dedup per source, batches, filters, causal order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import asyncpg
import pytest

from chatops.incidents.store import IncidentStore
from chatops.timeline.events import SUMMARY_MAX, EventType, TimelineEvent
from chatops.timeline.rows import Row, to_row
from chatops.timeline.store import TimelineStore

T0 = dt.datetime(2026, 4, 22, 2, 47, tzinfo=dt.UTC)
INC = "inc-2026-04-22-0247-checkout"


def ev(
    minute: int,
    type: str = "chat",
    *,
    actor: str | None = "U1",
    source: str = "slack",
    key: str | None = None,
    summary: str = "something happened",
    payload: Mapping[str, object] | None = None,
    incident_id: str = INC,
) -> TimelineEvent:
    return TimelineEvent(
        incident_id=incident_id,
        type=type,
        occurred_at=T0 + dt.timedelta(minutes=minute),
        actor=actor,
        source=source,
        summary=summary,
        payload=payload or {},
        dedup_key=key,
    )


@pytest.fixture
async def timeline(db_pool: asyncpg.Pool) -> TimelineStore:
    await IncidentStore(db_pool).claim_declaration(
        dedup_key="t1",
        incident_id=INC,
        severity="sev2",
        service="checkout",
        ic_user_id="U_IC",
        declared_by="U1",
        declared_at=T0,
        policy_digest="d",
    )
    return TimelineStore(db_pool)


# -- the event value ---------------------------------------------------------------------------------------------


def test_naive_occurred_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="occurred_at must be timezone-aware"):
        TimelineEvent(INC, "chat", dt.datetime(2026, 4, 22, 2, 47), "U1", "slack", "hi")
    with pytest.raises(ValueError, match="received_at must be timezone-aware"):
        TimelineEvent(INC, "chat", T0, "U1", "slack", "hi", received_at=dt.datetime(2026, 4, 22))


def test_occurred_at_is_normalised_to_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    e = TimelineEvent(INC, "chat", dt.datetime(2026, 4, 22, 4, 47, tzinfo=paris), "U1", "slack", "hi")
    assert e.occurred_at == T0 and e.occurred_at.tzinfo is dt.UTC


def test_summary_is_one_line_and_bounded() -> None:
    e = TimelineEvent(INC, "chat", T0, "U1", "slack", "line one\n  line two\ttabbed ")
    assert e.summary == "line one line two tabbed"
    long = TimelineEvent(INC, "chat", T0, "U1", "slack", "x" * 1000)
    assert len(long.summary) == SUMMARY_MAX and long.summary.endswith("…")
    exact = TimelineEvent(INC, "chat", T0, "U1", "slack", "y" * SUMMARY_MAX)
    assert exact.summary == "y" * SUMMARY_MAX


def test_known_types_become_enum_members_and_others_stay_strings() -> None:
    assert TimelineEvent(INC, "deploy", T0, None, "k8s", "d").type is EventType.DEPLOY
    assert TimelineEvent(INC, EventType.PAGE, T0, None, "pd", "p").type is EventType.PAGE
    assert TimelineEvent(INC, "zoom.joined", T0, None, "zoom", "j").type == "zoom.joined"
    with pytest.raises(ValueError, match="event type 'Not A Type'"):
        TimelineEvent(INC, "Not A Type", T0, None, "x", "y")


# -- the store ---------------------------------------------------------------------------------------------------


async def test_append_stores_and_reads_back(timeline: TimelineStore) -> None:
    payload = {"text": "rolling back", "ts": "1776826020.000100", "nested": {"n": [1, 2]}}
    assert await timeline.append(ev(1, key="Ev1", payload=payload))
    [got] = await timeline.query(INC)
    assert got.id is not None and got.received_at is not None and got.received_at.tzinfo is not None
    assert (got.type, got.occurred_at, got.actor, got.source, got.dedup_key) == (
        EventType.CHAT,
        T0 + dt.timedelta(minutes=1),
        "U1",
        "slack",
        "Ev1",
    )
    assert got.payload == payload


async def test_append_dedups_per_source(timeline: TimelineStore) -> None:
    assert await timeline.append(ev(1, key="Ev1"))
    assert not await timeline.append(ev(1, key="Ev1", summary="redelivered"))
    assert await timeline.append(ev(1, key="Ev1", source="pagerduty"))  # same key, other source
    assert await timeline.append(ev(2))  # no dedup key: never a duplicate
    assert await timeline.append(ev(2))
    events = await timeline.query(INC)
    assert len(events) == 4
    assert [e.summary for e in events if e.dedup_key == "Ev1" and e.source == "slack"] == ["something happened"]


async def test_append_keeps_given_received_at(timeline: TimelineStore) -> None:
    received = T0 + dt.timedelta(hours=1)
    e = TimelineEvent(INC, "alert", T0, None, "pd", "fired", received_at=received)
    assert await timeline.append(e)
    [got] = await timeline.query(INC)
    assert got.received_at == received


async def test_append_many_counts_new_rows(timeline: TimelineStore) -> None:
    assert await timeline.append_many([]) == 0
    await timeline.append(ev(0, key="old"))
    batch = [
        ev(1, key="a"),
        ev(2, key="b"),
        ev(3, key="a"),  # duplicate within the batch
        ev(4, key="old"),  # duplicate of a stored row
        ev(5),  # no key
        ev(6, key="a", source="k8s"),  # same key, other source
    ]
    assert await timeline.append_many(batch) == 4
    assert await timeline.append_many(batch) == 1  # only the keyless one is new again
    events = await timeline.query(INC)
    assert len(events) == 6
    # The first of two in-batch duplicates wins.
    assert [e.occurred_at for e in events if e.dedup_key == "a" and e.source == "slack"] == [
        T0 + dt.timedelta(minutes=1)
    ]


async def test_append_many_is_atomic(timeline: TimelineStore) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await timeline.append_many([ev(1, key="a"), ev(2, key="b", incident_id="inc-unknown")])
    assert await timeline.query(INC) == []


async def test_append_many_large_batch(timeline: TimelineStore) -> None:
    batch = [ev(i % 60, key=f"k{i}", payload={"i": i}) for i in range(2000)]
    assert await timeline.append_many(batch) == 2000
    events = await timeline.query(INC, limit=5000)
    assert len(events) == 2000
    assert sorted(e.payload["i"] for e in events) == list(range(2000))


async def test_query_orders_by_occurred_at_not_arrival(timeline: TimelineStore) -> None:
    # Heard about in the order 3, 1, 2 (a late webhook); the timeline shows 1, 2, 3.
    await timeline.append(ev(3, summary="third"))
    await timeline.append(ev(1, summary="first"))
    await timeline.append_many([ev(2, summary="second"), ev(2, summary="second, later id")])
    assert [e.summary for e in await timeline.query(INC)] == ["first", "second", "second, later id", "third"]


async def test_query_filters(timeline: TimelineStore) -> None:
    await timeline.append_many(
        [
            ev(1, "chat", actor="U1"),
            ev(2, "deploy", actor=None, source="k8s"),
            ev(3, "kubectl", actor="U2", source="k8s-audit"),
            ev(4, "chat", actor="U2"),
            ev(5, "alert", actor=None, source="pagerduty"),
            ev(6, "chat", actor="U1"),
        ]
    )

    async def minutes(**kw: object) -> list[int]:
        events = await timeline.query(INC, **kw)  # type: ignore[arg-type]
        return [int((e.occurred_at - T0).total_seconds() // 60) for e in events]

    assert await minutes() == [1, 2, 3, 4, 5, 6]
    assert await minutes(types={"chat"}) == [1, 4, 6]
    assert await minutes(types=[EventType.DEPLOY, "kubectl"]) == [2, 3]
    assert await minutes(types=[]) == []
    window = {"since": T0 + dt.timedelta(minutes=2), "until": T0 + dt.timedelta(minutes=5)}
    assert await minutes(**window) == [2, 3, 4]  # since inclusive, until exclusive
    assert await minutes(actor="U2") == [3, 4]
    assert await minutes(types={"chat"}, actor="U1", since=T0 + dt.timedelta(minutes=2)) == [6]
    assert await minutes(limit=2) == [1, 2]
    assert await timeline.query("inc-other") == []
    with pytest.raises(ValueError, match="since must be timezone-aware"):
        await timeline.query(INC, since=dt.datetime(2026, 4, 22))
    with pytest.raises(ValueError, match="limit"):
        await timeline.query(INC, limit=0)


# -- append_rows: the writer's path (optimistic COPY, deduplicating fallback) -----------------------------------


def rows_of(*events: TimelineEvent) -> list[Row]:
    return [to_row(e, T0) for e in events]


async def test_append_rows_copies_a_new_batch_in_order_with_payload_as_json(
    timeline: TimelineStore, db_pool: asyncpg.Pool
) -> None:
    batch = rows_of(*(ev(i % 7, key=f"k{i}", payload={"i": i, "nested": {"ok": True}}) for i in range(500)))
    assert await timeline.append_rows(batch) == 500
    stored = await db_pool.fetch(
        "SELECT dedup_key, jsonb_typeof(payload) AS kind, payload->'nested'->>'ok' AS ok "
        "FROM timeline_events ORDER BY id"
    )
    assert [r["dedup_key"] for r in stored] == [f"k{i}" for i in range(500)]  # ids follow the batch order
    assert {(r["kind"], r["ok"]) for r in stored} == {("object", "true")}  # an object, not a JSON string
    [got] = await timeline.query(INC, types=["chat"], limit=1)
    assert got.payload["nested"] == {"ok": True}


async def test_append_rows_with_stored_or_repeated_rows_dedups_and_counts_only_new(timeline: TimelineStore) -> None:
    assert await timeline.append_rows(rows_of(ev(0, key="old"), ev(1, key="older"))) == 2
    batch = rows_of(ev(2, key="a"), ev(3, key="old"), ev(4, key="b"), ev(5, key="a"), ev(6, key="older"))
    assert await timeline.append_rows(batch) == 2  # the COPY fails on "old" as a whole; the fallback dedups
    assert timeline.dedup_fallbacks == 1
    assert await timeline.append_rows(batch) == 0
    events = await timeline.query(INC)
    assert [e.dedup_key for e in events] == ["old", "older", "a", "b"]
    assert next(e for e in events if e.dedup_key == "a").occurred_at == T0 + dt.timedelta(minutes=2)  # first wins


async def test_append_rows_refuses_an_unknown_incident_atomically(timeline: TimelineStore) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await timeline.append_rows(rows_of(ev(1, key="a"), ev(2, key="b", incident_id="inc-unknown")))
    assert await timeline.query(INC) == []
