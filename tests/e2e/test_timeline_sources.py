"""Timeline sources end to end: war-room Slack events (Socket Mode) and the deploy watch (Kubernetes stand-in),
through the daemon subprocess into Postgres, over real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from chatops.sandbox.kubernetes import KubernetesSandbox
from chatops.sandbox.slack import Channel, Envelope
from chatops.sandbox.world import SandboxWorld

from .conftest import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.slow

NS = "checkout"


async def declare_checkout(world: SandboxWorld, daemon: DaemonProcess) -> Channel:
    await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.wait_log("incident declared", timeout=60)
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    return room


async def rows_until(
    db: asyncpg.Connection,
    source: str,
    done: Callable[[list[asyncpg.Record]], bool],
    *,
    timeout: float = 20.0,
) -> list[asyncpg.Record]:
    """Poll the timeline (source's rows, causal order) until ``done`` says so."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows: list[asyncpg.Record] = await db.fetch(
            "SELECT incident_id, type, occurred_at, actor, summary, payload, dedup_key FROM timeline_events "
            "WHERE source = $1 ORDER BY occurred_at, id",
            source,
        )
        if done(rows):
            return rows
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timeline rows never got there: {[(r['type'], r['summary']) for r in rows]}")
        await asyncio.sleep(0.1)


def payload(row: asyncpg.Record) -> dict[str, Any]:
    value = row["payload"]
    return dict(json.loads(value) if isinstance(value, str) else value)


def event_of(world: SandboxWorld, predicate: Callable[[dict[str, Any]], bool]) -> Envelope:
    return next(e for e in world.slack.envelopes if e.type == "events_api" and predicate(e.payload["event"]))


def ts_time(ts: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(ts), dt.UTC)


@pytest.mark.parametrize("world_options", [{"emit_message_events": True}])
async def test_war_room_events_become_typed_rows_once(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    slack, ic, ravi = world.slack, world.ic.slack_id, world.people[1].slack_id
    daemon = await start_daemon()
    await daemon.wait_log("deploy watch: not configured")
    room = await declare_checkout(world, daemon)
    incident_id = await db.fetchval("SELECT id FROM incidents WHERE channel_id = $1", room.id)

    first = await slack.post_user_message(room.id, ic, "checking the error-rate dashboard", wait_ack=True)
    await slack.join_channel(room.id, ravi, wait_ack=True)
    reply = await slack.post_user_message(room.id, ravi, "p99 is 4s", thread_ts=first.ts, wait_ack=True)
    await slack.edit_user_message(room.id, first.ts, "checking the latency dashboard", wait_ack=True)
    doomed = await slack.post_user_message(room.id, ic, "wrong channel, sorry", wait_ack=True)
    await slack.delete_message(room.id, doomed.ts, wait_ack=True)
    share_ts = slack.workspace.next_ts()
    file = {"id": "F0HEAPDUMP", "name": "heap.png", "title": "Heap", "mimetype": "image/png"}
    await slack.send_event(
        {"type": "message", "subtype": "file_share", "channel": room.id, "user": ic, "text": "heap", "ts": share_ts}
        | {"files": [file], "channel_type": "channel"}
    )
    join = event_of(world, lambda e: e.get("subtype") == "channel_join" and e.get("user") == ravi)
    same_second = f"{join.payload['event']['ts'].split('.')[0]}.999999"
    await slack.send_event({"type": "member_joined_channel", "user": ravi, "channel": room.id, "event_ts": same_second})
    leave_ts = slack.workspace.next_ts()
    await slack.send_event(
        {"type": "message", "subtype": "channel_leave", "channel": room.id, "user": ravi, "ts": leave_ts}
    )
    # A redelivery (new envelope, same event_id), and chatter outside war rooms.
    again = await slack.redeliver(event_of(world, lambda e: e.get("ts") == first.ts and "subtype" not in e))
    assert again.retry_attempt == 1 and again.acked_at is not None
    await slack.post_user_message(world.ops_channel, ic, "not a war room", wait_ack=True)

    rows = await rows_until(db, "slack", lambda rs: any(r["type"] == "member_leave" for r in rs))
    await asyncio.sleep(0.5)  # anything late (a duplicate) would land now
    rows = await rows_until(db, "slack", lambda rs: True)
    assert {r["incident_id"] for r in rows} == {incident_id}
    by_key = {r["dedup_key"]: r for r in rows}
    assert len(by_key) == len(rows)
    assert not [r for r in rows if "not a war room" in r["summary"]]

    chat = by_key[f"msg:{room.id}:{first.ts}"]
    assert chat["type"] == "chat" and chat["actor"] == ic
    assert chat["occurred_at"] == ts_time(first.ts) and chat["occurred_at"].utcoffset() == dt.timedelta(0)
    assert payload(chat)["text"] == "checking the error-rate dashboard"
    threaded = by_key[f"msg:{room.id}:{reply.ts}"]
    assert payload(threaded)["thread_ts"] == first.ts and threaded["actor"] == ravi
    [edit] = [r for r in rows if r["type"] == "chat_edit"]
    assert (payload(edit)["before"], payload(edit)["after"]) == (
        "checking the error-rate dashboard",
        "checking the latency dashboard",
    )
    assert edit["dedup_key"] == f"edit:{room.id}:{first.ts}:{first.edited_ts}"
    [deleted] = [r for r in rows if r["type"] == "chat_delete"]
    assert deleted["dedup_key"] == f"del:{room.id}:{doomed.ts}" and payload(deleted)["text"] == "wrong channel, sorry"
    shared = by_key[f"msg:{room.id}:{share_ts}"]
    assert payload(shared)["files"] == [file] and "heap.png" in shared["summary"]
    joins = [r for r in rows if r["type"] == "member_join" and r["actor"] == ravi]
    assert len(joins) == 1, "channel_join and member_joined_channel of one join are one row"
    assert [r["actor"] for r in rows if r["type"] == "member_leave"] == [ravi]
    own = [r for r in rows if r["type"] == "chat" and payload(r)["own"]]
    assert own and all(r["actor"] == slack.bot_user_id and payload(r)["bot"] for r in own)
    assert any(payload(r)["ts"] == room.pins[0] for r in own), "the pinned summary the bot posted is on the timeline"
    assert not daemon.errors()


@pytest.mark.parametrize("world_options", [{"kubernetes": True}])
async def test_deploys_are_recorded_through_expiry_disconnects_and_errors(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    kube = world.kubernetes
    assert isinstance(kube, KubernetesSandbox)
    kube.create_deployment(NS, "api", image="checkout:1.4.1")
    daemon = await start_daemon()
    await daemon.wait_log("deploy watch started")
    assert kube.open_watches() == 0, "no open incident, nothing watched"
    await declare_checkout(world, daemon)
    incident_id = await db.fetchval("SELECT id FROM incidents WHERE service = 'checkout'")
    await kube.wait_watching(NS, timeout=20)

    def phases(rows: list[asyncpg.Record]) -> list[tuple[str, str]]:
        return [(payload(r)["phase"], payload(r)["images"]["app"]) for r in rows]

    # A whole rollout.
    kube.rollout(NS, "api", "checkout:1.4.2")
    rows = await rows_until(db, "kubernetes", lambda rs: ("complete", "checkout:1.4.2") in phases(rs))
    assert [p for p, _ in phases(rows)] == ["started", "progressing", "progressing", "progressing", "complete"]
    started = rows[0]
    assert started["type"] == "deploy" and started["incident_id"] == incident_id and started["actor"] == "kubectl-set"
    assert "checkout:1.4.1 → checkout:1.4.2" in started["summary"]
    assert payload(rows[-1])["old_images"] == {"app": "checkout:1.4.1"}

    # A failed one.
    kube.set_image(NS, "api", "checkout:1.4.3-bad")
    kube.observe(NS, "api")
    kube.fail_rollout(NS, "api")
    rows = await rows_until(db, "kubernetes", lambda rs: ("failed", "checkout:1.4.3-bad") in phases(rs))
    assert "ProgressDeadlineExceeded" in rows[-1]["summary"]

    # 410 Gone: the watch breaks, the rollback happens meanwhile, the history is compacted → relist, no gap.
    kube.drop_watches()
    kube.rollout(NS, "api", "checkout:1.4.2")
    kube.compact()
    rows = await rows_until(db, "kubernetes", lambda rs: phases(rs)[-1] == ("complete", "checkout:1.4.2"))
    await daemon.wait_log("deployment watch expired; relisting")
    assert phases(rows)[-2:] == [("started", "checkout:1.4.2"), ("complete", "checkout:1.4.2")]
    assert payload(rows[-1])["old_images"] == {"app": "checkout:1.4.3-bad"}

    # 5xx (and a disconnect): backoff, then recovery, resuming without a relist.
    lists = len(kube.list_requests(NS))
    kube.fail(503, times=2)
    kube.drop_watches()
    kube.scale(NS, "api", 6)
    rows = await rows_until(db, "kubernetes", lambda rs: phases(rs)[-1][0] == "scaled")
    retries = await daemon.wait_log("deployment watch failed; retrying", count=3)
    assert any("503" in str(r.get("error")) for r in retries)
    assert len(kube.list_requests(NS)) == lists

    await asyncio.sleep(0.5)
    rows = await rows_until(db, "kubernetes", lambda rs: True)
    assert len({r["dedup_key"] for r in rows}) == len(rows) == 5 + 3 + 2 + 1
    assert not daemon.errors()
