"""``/runbook`` buttons and ``/escalate`` end to end: the daemon as a subprocess, Socket Mode, real Postgres."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from chatops.sandbox.slack import Channel
from chatops.sandbox.world import SandboxWorld

from .conftest import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.slow


async def open_war_room(world: SandboxWorld, daemon: DaemonProcess) -> Channel:
    await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.wait_log("incident declared", timeout=60)
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    return room


async def rows(db: asyncpg.Connection, sql: str, count: int, timeout: float = 20.0) -> list[asyncpg.Record]:
    """Poll until the timeline writer (which batches) has committed at least ``count`` rows."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await db.fetch(sql)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return list(found)
        await asyncio.sleep(0.05)


def buttons(blocks: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    found = [b["accessory"] for b in blocks or [] if isinstance(b.get("accessory"), dict)]
    found += [e for b in blocks or [] if b.get("type") == "actions" for e in b["elements"]]
    return [f for f in found if f.get("type") == "button"]


async def test_runbook_buttons_run_through_the_dispatcher(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon()
    room = await open_war_room(world, daemon)
    ic = world.ic.slack_id
    posted = len(room.messages)
    await world.slack.send_slash_command("/runbook", "restart-consumer", user_id=ic, channel_id=room.id)
    await world.slack.wait_for(lambda: len(room.messages) > posted, 20, what="the runbook")
    runbook = room.messages[-1]
    assert "Restart the checkout order consumer" in json.dumps(runbook.blocks)
    by_value = {b["value"].split()[0] + " " + b["value"].split()[1]: b for b in buttons(runbook.blocks)}

    # A step without side effects runs at once.
    note = by_value["/incident note"]
    await world.slack.click_button(
        user_id=ic, channel_id=room.id, action_id=note["action_id"], value=note["value"], message_ts=runbook.ts
    )
    await world.slack.wait_for(lambda: any("Noted by" in m.text for m in room.messages), 20, what="the note")

    # A step with side effects asks first; the answer runs it.
    escalate = by_value["/escalate secondary"]
    shown = len(world.slack.ephemerals)
    await world.slack.click_button(
        user_id=ic, channel_id=room.id, action_id=escalate["action_id"], value=escalate["value"], message_ts=runbook.ts
    )
    await world.slack.wait_for(lambda: len(world.slack.ephemerals) > shown, 20, what="the confirmation")
    question = world.slack.ephemerals[-1]
    [run_it] = [b for b in buttons(question.blocks) if b["action_id"] == "chatops.confirm"]
    await world.slack.click_button(
        user_id=ic, channel_id=room.id, action_id="chatops.confirm", value=run_it["value"], is_ephemeral=True
    )
    await world.slack.wait_for(
        lambda: any("already paged" in e.text for e in world.slack.ephemerals), 20, what="the escalation's answer"
    )
    outcomes = await rows(
        db,
        "SELECT payload->>'outcome' AS outcome, payload->>'origin' AS origin FROM timeline_events "
        "WHERE type = 'command' AND payload->>'command' <> '/incident declare' ORDER BY occurred_at",
        4,
    )
    assert [(r["outcome"], r["origin"]) for r in outcomes] == [
        ("ok", "slash"),
        ("ok", "button"),
        ("confirmation_requested", "button"),
        ("ok", "confirmed"),
    ]
    assert not daemon.errors()


async def test_escalate_pages_records_and_updates_the_summary(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon()
    room = await open_war_room(world, daemon)
    await world.slack.send_slash_command(
        "/escalate", "manager lag keeps growing", user_id=world.ic.slack_id, channel_id=room.id
    )
    assert world.pagerduty is not None
    await world.slack.wait_for(
        lambda: any(m.text.startswith(":rotating_light: Escalated") for m in room.messages), 30, what="escalation"
    )
    [page] = [i for i in world.pagerduty.incidents if str(i.get("incident_key", "")).endswith("/manager")]
    assert page["incident_key"] == f"{room.name}/manager"
    [pinned] = [m for m in room.messages if m.ts == room.pins[0]]
    assert "*Escalated*" in json.dumps(pinned.blocks) and f"PD #{page['incident_number']}" in json.dumps(pinned.blocks)
    [row] = await rows(db, "SELECT actor, payload FROM timeline_events WHERE type = 'escalation'", 1)
    assert row["actor"] == world.ic.slack_id
    assert json.loads(row["payload"])["reason"] == "lag keeps growing"

    # Outside a war room: an error that says where to run it.
    shown = len(world.slack.ephemerals)
    await world.slack.send_slash_command(
        "/escalate", "manager", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await world.slack.wait_for(lambda: len(world.slack.ephemerals) > shown, 20, what="the refusal")
    assert "war room" in world.slack.ephemerals[-1].text
    assert not daemon.errors()
