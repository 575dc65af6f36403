"""``/incident resolve``: once, everywhere at once, every failure said, nothing else stopped by it."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from chatops.incidents.model import Incident, IncidentStatus
from chatops.testing import Bot

from .declaring import summary_text


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def chatops_env(archive_dir: Path) -> dict[str, str]:
    return {"ARCHIVE_URL": f"file://{archive_dir}"}


def pd_pages(bot: Bot, incident: Incident) -> dict[str, dict[str, object]]:
    assert bot.world.pagerduty is not None
    return {
        str(i["incident_key"]): i
        for i in bot.world.pagerduty.incidents
        if str(i.get("incident_key") or "").startswith(f"{incident.id}/")
    }


async def incident_of(bot: Bot, room: str) -> Incident:
    assert bot.daemon.services is not None
    incident = await bot.daemon.services.incidents.by_channel(room)
    assert incident is not None
    return incident


async def test_resolve_closes_the_incident_everywhere(bot: Bot, archive_dir: Path) -> None:
    room = await bot.declare("sev2 checkout")
    await bot.run("/escalate manager error rate still climbing", channel=room)
    bot.advance(dt.timedelta(minutes=44))

    run = await bot.run("/incident resolve rolled checkout back to v142", channel=room)

    assert run.outcome == "ok", run.text
    incident = await incident_of(bot, room)
    assert incident.status == IncidentStatus.RESOLVED and incident.resolved_by == bot.ic
    assert incident.resolved_at is not None
    assert dt.timedelta(minutes=44) <= incident.resolved_at - incident.declared_at < dt.timedelta(minutes=45)
    # Timeline: one status_change with who, what and how long.
    [event] = [e for e in run.events if e.type == "status_change"]
    assert event.actor == bot.ic
    assert event.payload["from"] == "declared" and event.payload["to"] == "resolved"
    assert event.payload["summary"] == "rolled checkout back to v142"
    assert 44 * 60 <= event.payload["duration_s"] < 45 * 60
    # PagerDuty: every page the incident made (primary, secondary, cs_lead, the escalated manager) is resolved.
    pages = pd_pages(bot, incident)
    assert sorted(k.rsplit("/", 1)[1] for k in pages) == ["cs_lead", "manager", "primary", "secondary"]
    assert {p["status"] for p in pages.values()} == {"resolved"}
    # Topic, pinned summary, reply.
    topic = bot.channel(room).topic
    assert topic.startswith("RESOLVED :: SEV2 :: checkout :: IC: <@") and "(44m)" in topic and len(topic) <= 250
    text = summary_text(bot, room)
    assert "RESOLVED · SEV2" in text and "*Resolved*" in text and "44m" in text and "rolled checkout back" in text
    assert "*Paged*" in text and "*Escalated*" in text, "what the declaration and /escalate wrote stays"
    assert "Resolved* by <@" in run.text and "after *44m*" in run.text
    assert "PagerDuty: 4 of 4 pages resolved" in run.text
    assert "post-mortem" not in run.text.lower()
    # Archive: the manifest counts every event up to and including the resolve.
    manifest = json.loads((archive_dir / incident.id / "manifest.json").read_text())
    stored = await bot.timeline(room)
    assert 0 < manifest["count"] <= len(stored)
    assert any(e.type == "status_change" for e in stored)
    assert f"timeline: {manifest['count']} events archived to `file://{archive_dir}/{incident.id}/" in run.text


async def test_a_second_resolve_is_refused_and_says_who_resolved_it(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    first = await bot.run("/incident resolve", channel=room)
    assert first.outcome == "ok", first.text
    calls = len(bot.world.pagerduty.calls) if bot.world.pagerduty else 0

    bot.user("U0RAVI001", name="ravi")
    second = await bot.run("/incident resolve again", channel=room, user="U0RAVI001")

    incident = await incident_of(bot, room)
    assert incident.resolved_at is not None
    assert all(r.ephemeral for r in second.replies), "the refusal is for the one who typed it"
    assert f"already resolved: at {incident.resolved_at:%H:%M} UTC by <@{bot.ic}>" in second.text
    assert not [e for e in second.events if e.type == "status_change"]
    assert bot.world.pagerduty is not None and len(bot.world.pagerduty.calls) == calls, "nothing was done again"


async def test_concurrent_resolves_resolve_once(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    bot.user("U0RAVI001", name="ravi")

    runs = await asyncio.gather(
        bot.run("/incident resolve", channel=room),
        bot.run("/incident resolve", channel=room, user="U0RAVI001"),
    )

    won = [r for r in runs if "*Resolved* by" in r.text]
    lost = [r for r in runs if "already resolved" in r.text]
    assert len(won) == 1 and len(lost) == 1, [r.text for r in runs]
    events = [e for e in await bot.timeline(room) if e.type == "status_change"]
    assert len(events) == 1


async def test_outside_a_war_room_it_says_where_to_run_it(bot: Bot) -> None:
    await bot.declare("sev3 auth")

    run = await bot.run("/incident resolve")

    assert run.outcome == "denied"
    assert "Run it in the incident's war room" in run.text
    assert all(r.ephemeral for r in run.replies)


async def test_pagerduty_down_is_reported_and_the_rest_still_happens(bot: Bot, archive_dir: Path) -> None:
    room = await bot.declare("sev2 checkout")
    assert bot.world.pagerduty is not None
    bot.world.pagerduty.inject(503, times=1000, method="PUT", path_prefix="/incidents")

    run = await bot.run("/incident resolve", channel=room)

    assert run.outcome == "ok", run.text
    incident = await incident_of(bot, room)
    assert incident.status == IncidentStatus.RESOLVED
    assert ":warning: PagerDuty: 0 of 3 pages resolved; could not resolve PD #" in run.text
    assert "resolve them in PagerDuty by hand" in run.text
    assert {p["status"] for p in pd_pages(bot, incident).values()} != {"resolved"}
    assert bot.channel(room).topic.startswith("RESOLVED :: ")
    assert "*Resolved*" in summary_text(bot, room)
    assert (archive_dir / incident.id / "manifest.json").exists()


async def test_a_page_already_resolved_in_pagerduty_is_fine(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    incident = await incident_of(bot, room)
    services = bot.daemon.services
    assert services is not None and services.pagerduty is not None
    [page] = pd_pages(bot, incident).values()
    assert await services.pagerduty.resolve(str(page["id"])) == "resolved"

    run = await bot.run("/incident resolve", channel=room)

    assert run.outcome == "ok", run.text
    assert "PagerDuty: 0 of 1 page resolved, 1 already resolved" in run.text
    assert ":warning:" not in run.text


async def test_the_audit_view_forgets_a_resolved_incident_at_once(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    incident = await incident_of(bot, room)
    assert bot.daemon.sources is not None
    view = bot.daemon.sources.open_incidents
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert incident.id in (await view.covering(now)).incidents_of("auth")

    await bot.run("/incident resolve", channel=room)

    assert incident.id not in (await view.covering(now)).incidents_of("auth")
