"""``/incident timeline`` end to end: the daemon subprocess, the sandbox Slack over Socket Mode, real Postgres."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import asyncpg
import pytest

from chatops.sandbox.slack import Channel
from chatops.sandbox.world import SandboxWorld

from .conftest import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.slow


async def _declare(world: SandboxWorld, daemon: DaemonProcess) -> Channel:
    await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.wait_log("incident declared", timeout=60)
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    return room


async def _timeline(world: SandboxWorld, room: Channel, text: str) -> None:
    envelope = await world.slack.send_slash_command(
        "/incident", f"timeline {text}".strip(), user_id=world.ic.slack_id, channel_id=room.id
    )
    assert envelope.acked_at is not None


async def test_timeline_type_page_posts_the_pages_as_a_thread(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon()
    room = await _declare(world, daemon)
    before = len(room.messages)
    await _timeline(world, room, "type=page")

    def header() -> list[str]:
        return [m.ts for m in room.messages[before:] if m.thread_ts is None and "Timeline of" in m.text]

    await world.slack.wait_for(lambda: bool(header()), timeout=15, what="the timeline header")
    [header_ts] = header()
    await world.slack.wait_for(
        lambda: any(m.thread_ts == header_ts for m in room.messages), timeout=15, what="the thread reply"
    )
    [head] = [m for m in room.messages if m.ts == header_ts]
    [reply] = [m for m in room.messages if m.thread_ts == header_ts]
    assert "3 events" in head.text and "type=page" in head.text
    lines = reply.text.splitlines()
    assert len(lines) == 3 and all("*[page]*" in line for line in lines), reply.text
    stamps = [re.match(r"^`(\d\d:\d\d:\d\d)`", line) for line in lines]
    assert all(stamps) and [s[1] for s in stamps if s] == sorted(s[1] for s in stamps if s)
    rows = await db.fetch("SELECT summary FROM timeline_events WHERE type = 'page' ORDER BY occurred_at, id")
    assert [r["summary"] for r in rows] and all(r["summary"].split(" ")[0] in reply.text for r in rows)

    # the invocation itself lands on the timeline as a command event
    async def recorded() -> bool:
        n = await db.fetchval("SELECT count(*) FROM timeline_events WHERE type = 'command'")
        return bool(n)

    for _ in range(50):
        if await recorded():
            break
        await asyncio.sleep(0.1)
    assert await recorded()
    assert not world.slack.unacked()
    assert not daemon.errors()


async def test_bad_filter_gets_an_ephemeral_error_with_the_valid_types(
    world: SandboxWorld, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon()
    room = await _declare(world, daemon)
    await _timeline(world, room, "type=kubctl")
    await world.slack.wait_for(
        lambda: any("Unknown event type" in e.text for e in world.slack.ephemerals), timeout=15, what="the error"
    )
    [error] = [e for e in world.slack.ephemerals if "Unknown event type" in e.text]
    assert error.user == world.ic.slack_id and "kubectl" in error.text and "Valid types:" in error.text


async def test_outside_a_war_room_says_where_to_run_it(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    await start_daemon()
    await world.slack.send_slash_command(
        "/incident", "timeline", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await world.slack.wait_for(
        lambda: any("war room" in e.text for e in world.slack.ephemerals), timeout=15, what="the error"
    )


async def test_long_timelines_are_uploaded_as_a_file(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon()
    room = await _declare(world, daemon)
    incident_id = await db.fetchval("SELECT id FROM incidents WHERE channel_id = $1", room.id)
    base = dt.datetime.now(dt.UTC)
    await db.executemany(
        "INSERT INTO timeline_events (incident_id, type, occurred_at, actor, source, summary, dedup_key) "
        "VALUES ($1, 'kubectl', $2, 'ravi@example.com', 'test', $3, $4)",
        [(incident_id, base + dt.timedelta(seconds=i), f"kubectl get pods #{i}", f"t{i}") for i in range(60)],
    )
    await _timeline(world, room, "type=kubectl actor=ravi@example.com")
    await world.slack.wait_for(
        lambda: any(f["completed"] for f in world.slack.files.values()), timeout=15, what="the uploaded file"
    )
    [record] = list(world.slack.files.values())
    assert room.id in record["channels"]
    text = bytes(record["content"]).decode()
    assert text.count("[kubectl]") == 60 and "kubectl get pods #59" in text
    assert not daemon.errors()
