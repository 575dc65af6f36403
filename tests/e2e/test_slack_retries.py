"""A declare still completes when Slack rate-limits the war room's creation and its pin (429 + ``Retry-After``)."""

from __future__ import annotations

import json

import asyncpg
import pytest

from chatops.sandbox.world import SandboxWorld

from .conftest import DaemonFactory

pytestmark = pytest.mark.slow


async def test_declare_completes_through_429s_on_create_and_pin(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    world.slack.rate_limit("conversations.create", retry_after=1)
    world.slack.rate_limit("pins.add", retry_after=2)
    daemon = await start_daemon()

    envelope = await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    assert envelope.acked_at is not None
    await daemon.wait_log("incident declared", timeout=60)

    # Each throttled call was retried once, after the wait Slack asked for.
    creates = world.slack.calls_to("conversations.create")
    assert [c.status for c in creates] == [429, 200]
    assert creates[1].params["name"] == creates[0].params["name"], "the same name, not the next suffix"
    assert creates[1].at - creates[0].at >= 0.95
    pins = world.slack.calls_to("pins.add")
    assert [c.status for c in pins] == [429, 200]
    assert pins[1].at - pins[0].at >= 1.95

    # The war room is complete: one channel, named without a suffix, with topic, IC and the pinned summary.
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    assert room.name == creates[0].params["name"] and room.name.endswith("-checkout")
    assert room.topic.startswith("SEV2 :: checkout :: IC: ")
    assert world.ic.slack_id in room.members
    assert len(room.pins) == 1
    [summary] = [m for m in room.messages if m.ts == room.pins[0]]
    text = json.dumps(summary.blocks)
    assert "failed" not in text.lower(), text

    # Every step is recorded done, none failed, and nothing failed on the timeline.
    row = await db.fetchrow("select id from incidents where channel_id = $1", room.id)
    assert row is not None
    steps = {r["step"]: r["status"] for r in await db.fetch("select step, status from incident_steps")}
    assert steps["channel"] == "done" and steps["pin"] == "done" and steps["summary"] == "done"
    assert set(steps.values()) == {"done"}, steps
    assert await db.fetchval("select count(*) from timeline_events where type = 'step_failed'") == 0
    assert [c.status for c in world.slack.calls if c.status == 429] == [429, 429], "no other call was throttled"
    assert not daemon.errors()
