"""``/incident sev``: the new severity's policy, applied — pages for what it adds, nothing for a downgrade."""

from __future__ import annotations

import pytest

from chatops.incidents.model import Incident
from chatops.testing import Bot

from .declaring import declaration_before_its_last_step, summary_text


def pd_pages(bot: Bot, incident: Incident) -> dict[str, dict[str, object]]:
    assert bot.world.pagerduty is not None
    return {
        str(i["incident_key"]).rsplit("/", 1)[1]: i
        for i in bot.world.pagerduty.incidents
        if str(i.get("incident_key") or "").startswith(f"{incident.id}/")
    }


def drafts(bot: Bot, incident: Incident) -> list[str]:
    channel = bot.channel("status-pages-draft")
    return [m.text for m in channel.messages if incident.id in m.text]


async def incident_of(bot: Bot, room: str) -> Incident:
    assert bot.daemon.services is not None
    incident = await bot.daemon.services.incidents.by_channel(room)
    assert incident is not None
    return incident


async def test_an_upgrade_pages_exactly_the_roles_it_adds(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    incident = await incident_of(bot, room)
    before = pd_pages(bot, incident)
    assert sorted(before) == ["cs_lead", "primary", "secondary"]

    run = await bot.run("/incident sev sev1", channel=room)

    assert run.outcome == "ok", run.text
    assert (await incident_of(bot, room)).severity == "sev1"
    after = pd_pages(bot, incident)
    # sev1 pages primary, secondary, manager, vp_eng, ciso; checkout routes no ciso.
    assert sorted(set(after) - set(before)) == ["manager", "vp_eng"]
    assert {after[r]["urgency"] for r in ("manager", "vp_eng")} == {"high"}
    assert all(after[r] == before[r] for r in before), "pages already out are left alone"
    [event] = [e for e in run.events if e.type == "severity_change"]
    assert event.actor == bot.ic
    assert event.payload == {"from": "sev2", "to": "sev1", "by": bot.ic, "direction": "upgrade"}
    pages = sorted(e.payload["role"] for e in run.events if e.type == "page")
    assert pages == ["manager", "vp_eng"]
    assert "Severity SEV2 → *SEV1*" in run.text
    assert "paged manager" in run.text and "vp_eng" in run.text and "already paged: primary, secondary" in run.text
    assert "not in checkout's routing: ciso" in run.text
    assert bot.channel(room).topic.startswith("SEV1 :: checkout :: IC: <@")
    text = summary_text(bot, room)
    assert "SEV1 · checkout" in text and "*Severity*\\nSEV1" in text and "public_status_page" in text
    assert "*Paged*" in text
    assert len(drafts(bot, incident)) == 1, "the declaration staged the draft already"


async def test_a_downgrade_pages_nobody(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    incident = await incident_of(bot, room)
    assert bot.world.pagerduty is not None
    creates = len([c for c in bot.world.pagerduty.calls if c.method == "POST"])

    run = await bot.run("/incident sev 3", channel=room)

    assert run.outcome == "ok", run.text
    assert (await incident_of(bot, room)).severity == "sev3"
    assert len([c for c in bot.world.pagerduty.calls if c.method == "POST"]) == creates
    assert not [e for e in run.events if e.type == "page"]
    [event] = [e for e in run.events if e.type == "severity_change"]
    assert event.payload["from"] == "sev2" and event.payload["to"] == "sev3"
    assert event.payload["direction"] == "downgrade"
    assert "downgrade: nobody paged" in run.text
    assert bot.channel(room).topic.startswith("SEV3 :: checkout")
    assert "*Severity*\\nSEV3" in summary_text(bot, room)
    assert sorted(pd_pages(bot, incident)) == ["cs_lead", "primary", "secondary"]


async def test_an_upgrade_to_a_customer_facing_severity_stages_the_comms_draft(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    incident = await incident_of(bot, room)
    assert drafts(bot, incident) == []

    run = await bot.run("/incident sev sev2", channel=room)

    assert run.outcome == "ok", run.text
    assert sorted(pd_pages(bot, incident)) == ["cs_lead", "primary", "secondary"]
    assert len(drafts(bot, incident)) == 1
    assert "comms draft staged in #status-pages-draft" in run.text
    assert [e.type for e in run.events if e.type == "comms"] == ["comms"]


async def test_the_same_severity_is_refused(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")

    run = await bot.run("/incident sev SEV-2", channel=room)

    assert "already sev2" in run.text
    assert all(r.ephemeral for r in run.replies)
    assert not [e for e in run.events if e.type == "severity_change"]


async def test_a_resolved_incident_keeps_its_severity(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    await bot.run("/incident resolve", channel=room)

    run = await bot.run("/incident sev sev1", channel=room)

    assert "is resolved: its severity stays sev3" in run.text
    assert (await incident_of(bot, room)).severity == "sev3"


async def test_outside_a_war_room_it_says_where_to_run_it(bot: Bot) -> None:
    run = await bot.run("/incident sev sev1")

    assert run.outcome == "denied"
    assert "Run it in the incident's war room" in run.text


async def test_a_change_while_the_declaration_finishes_survives_its_final_refresh(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the declaration's last step until /incident sev has edited the pinned summary: its final re-render
    # from its own state (sev2) must keep the new severity.
    async with declaration_before_its_last_step(bot, monkeypatch) as room:
        run = await bot.run("/incident sev sev1", channel=room)
        assert run.outcome == "ok", run.text
    text = summary_text(bot, room)
    assert "Acknowledged your page" in text, "the final refresh ran"
    assert "*Severity*\\nSEV1" in text and "SEV1 · checkout" in text, text


async def test_an_upgrade_raises_the_urgency_of_the_pages_already_out(bot: Bot) -> None:
    room = await bot.declare("sev3 checkout")
    incident = await incident_of(bot, room)
    before = pd_pages(bot, incident)
    assert sorted(before) == ["primary"] and before["primary"]["urgency"] == "low"

    run = await bot.run("/incident sev sev1", channel=room)

    assert run.outcome == "ok", run.text
    after = pd_pages(bot, incident)
    assert after["primary"]["urgency"] == "high", "the primary's page now phones"
    assert after["primary"]["id"] == before["primary"]["id"], "raised in place, not paged again"
    assert sorted(after) == ["manager", "primary", "secondary", "vp_eng"]
    assert {after[r]["urgency"] for r in ("manager", "secondary", "vp_eng")} == {"high"}
    number = after["primary"]["incident_number"]
    assert f"raised to high urgency: primary <{after['primary']['html_url']}|PD #{number}>" in run.text
    assert "already paged: primary" in run.text and "paged secondary" in run.text
    [raise_event] = [e for e in run.events if e.type == "page" and e.payload.get("raised_from")]
    assert raise_event.payload["role"] == "primary"
    assert raise_event.payload["pd_incident"] == after["primary"]["id"]
    assert raise_event.payload["urgency"] == "high" and raise_event.payload["raised_from"] == "low"
    assert raise_event.payload["created"] is False
    pages = sorted(e.payload["role"] for e in run.events if e.type == "page" and not e.payload.get("raised_from"))
    assert pages == ["manager", "secondary", "vp_eng"]


async def test_a_downgrade_lowers_no_urgency(bot: Bot) -> None:
    room = await bot.declare("sev3 checkout")
    incident = await incident_of(bot, room)
    assert (await bot.run("/incident sev sev2", channel=room)).outcome == "ok"
    assert {p["urgency"] for p in pd_pages(bot, incident).values()} == {"high"}
    assert bot.world.pagerduty is not None
    calls = len(bot.world.pagerduty.calls)

    run = await bot.run("/incident sev sev3", channel=room)

    assert run.outcome == "ok", run.text
    assert {p["urgency"] for p in pd_pages(bot, incident).values()} == {"high"}, "people already woken stay paged"
    assert not [c for c in bot.world.pagerduty.calls[calls:] if c.method in ("PUT", "POST")]
    assert not [e for e in run.events if e.type == "page"]
    assert "urgency" not in run.text.split("downgrade:", 1)[0]


async def test_a_failed_urgency_raise_is_reported_and_the_rest_completes(bot: Bot) -> None:
    room = await bot.declare("sev3 checkout")
    incident = await incident_of(bot, room)
    assert bot.world.pagerduty is not None
    bot.world.pagerduty.inject(503, times=1000, method="PUT", path_prefix="/incidents/")

    run = await bot.run("/incident sev sev1", channel=room)

    assert run.outcome == "ok", run.text
    after = pd_pages(bot, incident)
    assert after["primary"]["urgency"] == "low"
    number = after["primary"]["incident_number"]
    assert f":warning: could not raise primary PD #{number} to high urgency: " in run.text
    assert "503" in run.text
    assert sorted(after) == ["manager", "primary", "secondary", "vp_eng"], "the new roles are paged all the same"
    assert "paged secondary" in run.text
    assert (await incident_of(bot, room)).severity == "sev1"
    assert bot.channel(room).topic.startswith("SEV1 :: checkout")
    assert "*Severity*\\nSEV1" in summary_text(bot, room)
    assert not [e for e in run.events if e.type == "page" and e.payload.get("raised_from")]
