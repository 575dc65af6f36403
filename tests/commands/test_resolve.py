"""``/incident resolve``: once, everywhere at once, every failure said, nothing else stopped by it."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from chatops.incidents.model import Incident, IncidentStatus
from chatops.testing import Bot

from .declaring import declaration_before_its_last_step, summary_text


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


def pagerduty_recovers(bot: Bot) -> None:
    """Use up every error injected into the PagerDuty sandbox (it answers normally from now on)."""
    assert bot.world.pagerduty is not None
    for injection in bot.world.pagerduty._faults._injections:
        injection.remaining = 0


async def test_a_resolve_left_unfinished_is_finished_by_the_next(bot: Bot, archive_dir: Path) -> None:
    room = await bot.declare("sev2 checkout")
    assert bot.world.pagerduty is not None and bot.daemon.services is not None
    bot.world.pagerduty.inject(503, times=1000, method="PUT", path_prefix="/incidents")
    first = await bot.run("/incident resolve rolled back", channel=room)
    assert ":warning: PagerDuty: 0 of 3 pages resolved" in first.text
    incident = await incident_of(bot, room)
    steps = await bot.daemon.services.incidents.steps(incident.id)
    assert {n: s.status for n, s in steps.items() if n.startswith("resolve:")} == {
        "resolve:pagerduty": "failed",
        "resolve:topic": "done",
        "resolve:summary": "done",
        "resolve:archive": "done",
    }
    pagerduty_recovers(bot)
    topic_calls = [c for c in bot.world.slack.calls if c.method == "conversations.setTopic"]

    bot.user("U0RAVI001", name="ravi")
    second = await bot.run("/incident resolve", channel=room, user="U0RAVI001")

    assert second.outcome == "ok", second.text
    assert f"already resolved: at {incident.resolved_at:%H:%M} UTC by <@{bot.ic}>" in second.text
    assert "left unfinished: PagerDuty. Finished now: PagerDuty." in second.text
    assert "PagerDuty: 3 of 3 pages resolved" in second.text and ":warning:" not in second.text
    assert {p["status"] for p in pd_pages(bot, incident).values()} == {"resolved"}
    # Only what was left was run: no second topic, and one status_change on the timeline.
    assert [c for c in bot.world.slack.calls if c.method == "conversations.setTopic"] == topic_calls
    assert len([e for e in await bot.timeline(room) if e.type == "status_change"]) == 1
    after = await incident_of(bot, room)
    assert (after.resolved_by, after.resolved_at) == (bot.ic, incident.resolved_at), "the first resolve's"
    steps = await bot.daemon.services.incidents.steps(incident.id)
    assert (steps["resolve:pagerduty"].status, steps["resolve:pagerduty"].attempts) == ("done", 2)
    assert "rolled back" in summary_text(bot, room) and f"<@{bot.ic}>" in summary_text(bot, room)


async def test_a_resolve_after_everything_was_done_says_so(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    first = await bot.run("/incident resolve", channel=room)
    assert first.outcome == "ok", first.text
    assert bot.world.pagerduty is not None
    calls = len(bot.world.pagerduty.calls), len(bot.world.slack.calls)

    second = await bot.run("/incident resolve", channel=room)

    incident = await incident_of(bot, room)
    assert all(r.ephemeral for r in second.replies)
    assert f"already resolved: at {incident.resolved_at:%H:%M} UTC by <@{bot.ic}>; everything was done" in second.text
    assert len(bot.world.pagerduty.calls) == calls[0], "nothing was done again"
    assert not [
        c for c in bot.world.slack.calls[calls[1] :] if c.method in ("conversations.setTopic", "chat.update")
    ], "nothing was done again"


async def test_a_resolve_while_the_declaration_is_finishing_is_refused(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with declaration_before_its_last_step(bot, monkeypatch, "sev2 checkout") as room:
        early = await bot.run("/incident resolve", channel=room)

        assert early.outcome == "user_error", early.text
        assert all(r.ephemeral for r in early.replies)
        assert "the declaration is still finishing" in early.text and "acknowledg" in early.text
        assert "run `/incident resolve` again in a few seconds" in early.text.lower()
        assert (await incident_of(bot, room)).is_open
        assert not [e for e in await bot.timeline(room) if e.type == "status_change"]

    run = await bot.run("/incident resolve", channel=room)

    assert run.outcome == "ok", run.text
    incident = await incident_of(bot, room)
    assert not incident.is_open
    assert "PagerDuty: 3 of 3 pages resolved" in run.text
    assert {p["status"] for p in pd_pages(bot, incident).values()} == {"resolved"}


async def test_the_archive_holds_the_resolve_and_its_outcomes(bot: Bot, archive_dir: Path) -> None:
    room = await bot.declare("sev2 checkout")

    run = await bot.run("/incident resolve fixed", channel=room)

    assert run.outcome == "ok", run.text
    incident = await incident_of(bot, room)
    manifest = json.loads((archive_dir / incident.id / "manifest.json").read_text())
    archived = [
        json.loads(line)
        for line in gzip.decompress((archive_dir / incident.id / "timeline.jsonl.gz").read_bytes()).splitlines()
    ]
    assert manifest["count"] == len(archived)
    types = [e["type"] for e in archived]
    assert types.count("status_change") == 1
    resolved = {
        e["payload"]["pd_incident"]
        for e in archived
        if e["type"] == "alert" and e["payload"].get("status") == "resolved"
    }
    assert resolved == {str(p["id"]) for p in pd_pages(bot, incident).values()}, "the pages the resolve closed"
    stored = await bot.timeline(room)
    assert {e.id for e in stored if e.type in ("status_change", "alert")} <= {e["id"] for e in archived}
