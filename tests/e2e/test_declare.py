"""``/incident declare`` end to end: Socket Mode in, Slack / PagerDuty / Zoom / Postgres out, over real sockets."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from chatops.sandbox.slack import Channel
from chatops.sandbox.world import SandboxWorld

from .conftest import DaemonFactory, DaemonProcess, eventually

pytestmark = pytest.mark.slow


async def declare(world: SandboxWorld, daemon: DaemonProcess, text: str, *, done: int = 1) -> None:
    envelope = await world.slack.send_slash_command(
        "/incident", text, user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    assert envelope.acked_at is not None, "the envelope must be acked"
    assert envelope.ack_latency is not None and envelope.ack_latency < 3.0
    await daemon.wait_log("incident declared", count=done, timeout=60)


def war_rooms(world: SandboxWorld) -> list[Channel]:
    return [c for c in world.slack.channels.values() if c.name.startswith("inc-")]


def blocks_text(blocks: list[dict[str, Any]] | None) -> str:
    return json.dumps(blocks or [])


def pages(world: SandboxWorld) -> dict[str, dict[str, Any]]:
    assert world.pagerduty is not None
    return {i["incident_key"].split("/")[-1]: i for i in world.pagerduty.incidents if i.get("incident_key")}


async def test_sev2_checkout_runs_the_whole_playbook(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon()
    before = datetime.now(UTC)
    await declare(world, daemon, "declare sev2 checkout")

    [room] = war_rooms(world)
    stamp_options = {(before + timedelta(minutes=m)).strftime("%Y-%m-%d-%H%M") for m in (0, 1)}
    assert room.name in {f"inc-{s}-checkout" for s in stamp_options}
    stamp = room.name.removeprefix("inc-").removesuffix("-checkout")
    assert room.topic == f"SEV2 :: checkout :: IC: <@{world.ic.slack_id}> :: started {stamp} UTC"
    # The purpose keeps the seed's format, with the same signed /go/ runbook link as the pinned summary.
    runbook = "https://playbooks.example.com/checkout"
    purpose = re.fullmatch(
        r"Incident SEV2 on checkout\. Runbook: (" + re.escape(daemon.http_url) + r"/go/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)",
        room.purpose,
    )
    assert purpose, room.purpose
    async with aiohttp.ClientSession() as client, client.get(purpose[1], allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == runbook
    assert world.ic.slack_id in room.members

    # The summary is posted and pinned, and tells the truth about pages, bridge, comms and post-mortem.
    assert len(room.pins) == 1
    [summary] = [m for m in room.messages if m.ts == room.pins[0]]
    text = blocks_text(summary.blocks)
    paged = pages(world)
    assert set(paged) == {"primary", "secondary", "cs_lead"}
    for role, incident in paged.items():
        assert f"PD #{incident['incident_number']}" in text, role
        assert incident["urgency"] == "high"
        assert incident["incident_key"].startswith(room.name)
    assert world.zoom is not None and len(world.zoom.meetings) == 1
    assert world.zoom.meetings[0]["join_url"] in text
    assert world.zoom.meetings[0]["start_url"] not in text, "the host link must never be posted"
    assert "in_app_banner" in text
    assert "required within 5 business days" in text
    assert "grafana.example.com/d/checkout-overview" in text
    assert f"<{purpose[1]}|{runbook}>" in text, "the purpose and the pinned summary share the runbook link"

    # The IC's own page was acknowledged in PagerDuty.
    assert world.alert is not None and world.pagerduty is not None
    assert world.pagerduty.incident(str(world.alert["id"]))["status"] == "acknowledged"
    assert f"#{world.alert['incident_number']}" in text
    # Every write carried the From header.
    writes = [c for c in world.pagerduty.calls if c.method in ("POST", "PUT")]
    assert writes and all(c.headers.get("from") == world.env()["PAGERDUTY_FROM"] for c in writes)

    # The comms draft was staged for the Comms Lead.
    draft_room = world.slack.channels[world.draft_channel]
    assert any("We are currently investigating an issue affecting checkout" in m.text for m in draft_room.messages)

    # The declarer was told where the war room is, privately.
    assert any(e.user == world.ic.slack_id and room.id in e.text for e in world.slack.ephemerals)

    # Postgres has the incident and its timeline.
    row = await db.fetchrow("select * from incidents where channel_id = $1", room.id)
    assert row is not None and row["severity"] == "sev2" and row["service"] == "checkout"
    assert row["status"] == "declared" and row["ic_user_id"] == world.ic.slack_id

    async def timeline() -> list[asyncpg.Record]:
        events = await db.fetch(
            "select type, payload from timeline_events where incident_id = $1 order by occurred_at", row["id"]
        )
        types = [e["type"] for e in events]
        assert types.count("page") == 3 and "comms" in types and "alert" in types and "declaration" in types
        return events

    events = await eventually(timeline)
    [declaration] = [e for e in events if e["type"] == "declaration"]
    payload = declaration["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    assert payload["channel_id"] == room.id and payload["severity"] == "sev2" and payload["ic"] == world.ic.slack_id
    steps = await db.fetch("select step, status from incident_steps where incident_id = $1", row["id"])
    assert {s["step"] for s in steps} >= {
        "channel",
        "topic",
        "purpose",
        "invite",
        "summary",
        "pin",
        "bridge",
        "acknowledge",
        "page:primary",
        "page:secondary",
        "page:cs_lead",
        "comms_draft",
    }
    assert all(s["status"] == "done" for s in steps), steps
    assert not world.slack.unacked()
    assert not daemon.errors()


async def test_sev1_pages_four_roles_and_reports_the_missing_one(
    world: SandboxWorld, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon()
    await declare(world, daemon, "declare SEV-1 checkout")
    assert set(pages(world)) == {"primary", "secondary", "manager", "vp_eng"}
    [room] = war_rooms(world)
    [summary] = [m for m in room.messages if m.ts == room.pins[0]]
    text = blocks_text(summary.blocks)
    assert "ciso" in text and "not in checkout" in text
    assert "public_status_page" in text and "executive review" in text
    assert room.topic.startswith("SEV1 :: checkout ::")


async def test_sev3_pages_primary_only_and_stages_no_comms(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon()
    await declare(world, daemon, "declare 3 auth")
    assert set(pages(world)) == {"primary"}
    [incident] = pages(world).values()
    assert incident["urgency"] == "low"
    assert world.slack.channels[world.draft_channel].messages == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("declare sev2 chekout", "did you mean checkout?"),
        ("declare sev9 checkout", "sev1"),
        ("declare sevv2 checkout", "did you mean sev2"),
        ("declare", "Usage: `/incident declare <severity> <service>"),
        ("declare sev2 checkout now please", "unexpected"),
    ],
)
async def test_bad_usage_gets_an_ephemeral_error_and_nothing_happens(
    world: SandboxWorld, start_daemon: DaemonFactory, text: str, expected: str
) -> None:
    daemon = await start_daemon()
    await world.slack.send_slash_command("/incident", text, user_id=world.ic.slack_id, channel_id=world.ops_channel)
    await world.slack.wait_for(lambda: bool(world.slack.ephemerals), timeout=15)
    [answer] = world.slack.ephemerals
    assert answer.user == world.ic.slack_id and answer.channel == world.ops_channel
    assert expected in answer.text
    assert war_rooms(world) == []
    assert world.pagerduty is not None and not [c for c in world.pagerduty.calls if c.method == "POST"]
    assert not daemon.errors()


async def test_help_is_generated_from_the_specs(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    await start_daemon()
    await world.slack.send_slash_command("/incident", "help", user_id=world.ic.slack_id, channel_id=world.ops_channel)
    await world.slack.wait_for(lambda: bool(world.slack.ephemerals), timeout=15)
    assert "/incident declare <severity> <service>" in world.slack.ephemerals[0].text


async def test_name_taken_walks_to_the_next_suffix(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    now = datetime.now(UTC)
    for minutes in (0, 1):
        world.slack.add_channel(f"inc-{(now + timedelta(minutes=minutes)):%Y-%m-%d-%H%M}-checkout")
    daemon = await start_daemon()
    await declare(world, daemon, "declare sev2 checkout")
    created = [c for c in world.slack.calls_to("conversations.create")]
    assert [c.response.get("error") for c in created][:1] == ["name_taken"]
    room = world.slack.channels[created[-1].response["channel"]["id"]]
    assert room.name.endswith("-checkout-2")
    assert room.pins, "the rest of the playbook still ran"


async def test_pagerduty_503_then_success_still_pages(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    assert world.pagerduty is not None
    world.pagerduty.inject(503, times=2, method="POST", path_prefix="/incidents")
    daemon = await start_daemon()
    await declare(world, daemon, "declare sev2 checkout")
    assert set(pages(world)) == {"primary", "secondary", "cs_lead"}
    posts = [c for c in world.pagerduty.calls if c.method == "POST" and c.path == "/incidents"]
    assert [c.status for c in posts].count(503) == 2
    [room] = war_rooms(world)
    text = blocks_text([b for m in room.messages if m.ts == room.pins[0] for b in (m.blocks or [])])
    assert "after 4 tries" not in text
    assert all(f"PD #{i['incident_number']}" in text for i in pages(world).values())


async def test_pagerduty_down_is_reported_and_everything_else_still_happens(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    assert world.pagerduty is not None
    world.pagerduty.inject(503, times=1000)
    daemon = await start_daemon()
    await declare(world, daemon, "declare sev2 checkout")
    [room] = war_rooms(world)
    [summary] = [m for m in room.messages if m.ts == room.pins[0]]
    text = blocks_text(summary.blocks)
    assert "PagerDuty: 503 after 4 tries" in text and "page manually" in text
    assert room.topic.startswith("SEV2 :: checkout")
    assert any("investigating" in m.text for m in world.slack.channels[world.draft_channel].messages)

    async def failure_recorded() -> None:
        failed = await db.fetch("select summary from timeline_events where type = 'step_failed'")
        assert any("503 after 4 tries" in r["summary"] for r in failed)

    await eventually(failure_recorded)


@pytest.mark.parametrize("world_options", [{"zoom": False}])
async def test_without_zoom_the_bridge_is_static_or_not_configured(
    world: SandboxWorld, start_daemon: DaemonFactory
) -> None:
    daemon = await start_daemon()
    await declare(world, daemon, "declare sev3 rider-pos")
    await declare(world, daemon, "declare sev3 auth", done=2)
    by_service = {
        c.name.rsplit("-", 1)[-1] if not c.name.endswith("rider-pos") else "rider-pos": c for c in war_rooms(world)
    }
    rider = blocks_text([b for m in by_service["rider-pos"].messages for b in (m.blocks or [])])
    auth = blocks_text([b for m in by_service["auth"].messages for b in (m.blocks or [])])
    assert "https://example.zoom.us/j/95550001234" in rider
    assert "not configured" in auth


async def test_a_redelivered_envelope_never_declares_twice(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon()
    first = await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    again = await world.slack.redeliver(first)
    assert again.envelope_id != first.envelope_id and again.retry_attempt == 1
    assert again.payload["trigger_id"] == first.payload["trigger_id"]
    await daemon.wait_log("incident declared", timeout=60)
    await daemon.wait_log("redelivered declare ignored", timeout=30)
    assert len(war_rooms(world)) == 1
    assert len(pages(world)) == 3
    assert len(world.slack.calls_to("conversations.create")) == 1


async def test_a_second_declare_points_to_the_open_war_room(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    daemon = await start_daemon()
    await declare(world, daemon, "declare sev2 checkout")
    [room] = war_rooms(world)
    world.slack.ephemerals.clear()
    await world.slack.send_slash_command(
        "/incident", "declare sev1 checkout", user_id=world.people[1].slack_id, channel_id=world.ops_channel
    )
    await world.slack.wait_for(lambda: bool(world.slack.ephemerals), timeout=15)
    answer = world.slack.ephemerals[0].text
    assert "already has an open incident" in answer and room.id in answer
    assert "/incident declare sev1 checkout --new" in answer
    assert len(war_rooms(world)) == 1
    await declare(world, daemon, "declare sev1 checkout --new", done=2)
    assert len(war_rooms(world)) == 2
