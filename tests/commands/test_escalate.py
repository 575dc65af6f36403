"""``/escalate``: roles through the service routing, people through responder requests, all on the record."""

from __future__ import annotations

import asyncio
import json

import pytest

from chatops.testing import Bot

from .declaring import declaration_before_its_last_step, summary_text


def pd_pages(bot: Bot) -> dict[str, dict[str, object]]:
    assert bot.world.pagerduty is not None
    return {str(i["incident_key"]): i for i in bot.world.pagerduty.incidents if i.get("incident_key")}


async def test_escalating_a_role_pages_it_records_it_and_adds_it_to_the_summary(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    incident = await bot.daemon.services.incidents.by_channel(room)  # type: ignore[union-attr]
    assert incident is not None

    run = await bot.run("/escalate manager error rate still climbing", channel=room)

    assert run.outcome == "ok", run.text
    page = pd_pages(bot)[f"{incident.id}/manager"]
    assert page["urgency"] == "high"
    assert f"PD #{page['incident_number']}" in run.text
    [event] = [e for e in run.events if e.type == "escalation"]
    assert event.actor == bot.ic
    assert event.payload["role"] == "manager" and event.payload["reason"] == "error rate still climbing"
    text = summary_text(bot, room)
    assert "*Escalated*" in text and f"PD #{page['incident_number']}" in text and "error rate still climbing" in text
    assert "*Paged*" in text, "what the declaration wrote stays"


async def test_two_escalations_at_once_both_land_in_the_summary(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    incident = await bot.daemon.services.incidents.by_channel(room)  # type: ignore[union-attr]
    assert incident is not None
    # Hold chat.update until both edits are in flight: each escalation read the summary before the other wrote it,
    # so unserialised edits lose one line every time. Serialised ones wait the hold's timeout once, then pass.
    bot.world.slack.hold("chat.update", until=2, timeout=2.0)

    manager, vp = await asyncio.gather(
        bot.run("/escalate manager error rate still climbing", channel=room),
        bot.run("/escalate vp_eng customers are noticing", channel=room),
    )

    assert manager.outcome == "ok" and vp.outcome == "ok", (manager.text, vp.text)
    pages = pd_pages(bot)
    text = summary_text(bot, room)
    for role, reason in (("manager", "error rate still climbing"), ("vp_eng", "customers are noticing")):
        assert f"PD #{pages[f'{incident.id}/{role}']['incident_number']}" in text and reason in text, text
    assert text.count("*Escalated*") == 1 and "*Paged*" in text
    assert len(bot.daemon.services.summary_locks) == 0, "no lock is left behind"  # type: ignore[union-attr]


async def test_an_escalation_while_the_declaration_finishes_survives_its_final_refresh(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The declaration re-renders the pinned summary from its own state once its last step is done. Hold that step
    # until an /escalate has edited the posted summary: a refresh that rewrote the message from its state alone would
    # drop the escalation line.
    async with declaration_before_its_last_step(bot, monkeypatch) as room:
        assert "Acknowledged your page" not in summary_text(bot, room), "the declaration is still finishing"
        run = await bot.run("/escalate manager error rate still climbing", channel=room)
        assert run.outcome == "ok", run.text

    incident = await bot.daemon.services.incidents.by_channel(room)  # type: ignore[union-attr]
    assert incident is not None
    text = summary_text(bot, room)
    page = pd_pages(bot)[f"{incident.id}/manager"]
    assert f"PD #{page['incident_number']}" in text and "error rate still climbing" in text, text
    assert "Acknowledged your page" in text, text
    assert text.count("*Escalated*") == 1 and "*Paged*" in text
    assert len(bot.daemon.services.summary_locks) == 0, "no lock is left behind"  # type: ignore[union-attr]


async def test_a_declaration_nobody_escalated_refreshes_its_summary_without_reading_it_back(
    bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hold the acknowledgement until the summary is pinned, so the final refresh has something to write. No edit was
    # counted since the post, so it writes its render without a conversations.history read of the message.
    pd = bot.daemon.services.pagerduty  # type: ignore[union-attr]
    assert pd is not None
    acknowledge, slack = pd.acknowledge, bot.world.slack

    async def acknowledge_once_pinned(incident_id: str) -> str:
        await slack.wait_for(
            lambda: any(c.name.startswith("inc-") and c.pins for c in slack.channels.values()),
            timeout=bot.timeout,
            what="the pinned summary",
        )
        return await acknowledge(incident_id)

    monkeypatch.setattr(pd, "acknowledge", acknowledge_once_pinned)
    room = await bot.declare("sev2 checkout")

    [ts] = bot.channel(room).pins
    assert "Acknowledged your page" in summary_text(bot, room), "the final refresh ran"
    assert [c.params.get("ts") for c in slack.calls_to("chat.update") if c.params.get("channel") == room] == [ts]
    assert not [c for c in slack.calls_to("conversations.history") if c.params.get("channel") == room]
    assert len(bot.daemon.services.summary_locks) == 0, "no lock is left behind"  # type: ignore[union-attr]


async def test_a_role_already_paged_is_said_so_and_not_paged_again(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    before = len(pd_pages(bot))
    run = await bot.run("/escalate secondary", channel=room)
    assert run.outcome == "ok"
    assert "secondary is already paged for this incident" in run.text
    assert len(pd_pages(bot)) == before
    assert not [e for e in run.events if e.type == "escalation"]


async def test_escalating_twice_pages_once(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    first = await bot.run("/escalate secondary", channel=room)
    second = await bot.run("/escalate secondary", channel=room)
    assert "Escalated to *secondary*" in first.text
    assert "already paged" in second.text
    assert len([k for k in pd_pages(bot) if k.endswith("/secondary")]) == 1


async def test_unknown_and_unrouted_roles(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    typo = await bot.run("/escalate secondry", channel=room)
    assert typo.outcome == "user_error" and "did you mean secondary?" in typo.text
    unrouted = await bot.run("/escalate db_sme", channel=room)
    assert unrouted.outcome == "user_error"
    assert "`auth` has no PagerDuty routing for db_sme" in unrouted.text


async def test_escalating_a_person_sends_a_responder_request(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    ravi = bot.world.people[1]
    run = await bot.run(f"/escalate <@{ravi.slack_id}|ravi> need eyes on the consumer", channel=room)
    assert run.outcome == "ok", run.text
    assert bot.world.pagerduty is not None
    [request] = bot.world.pagerduty.responder_requests
    assert request["responder_request_targets"][0]["responder_request_target"]["id"] == ravi.pd_id
    assert "need eyes on the consumer" in json.dumps(request)
    [event] = [e for e in run.events if e.type == "escalation"]
    assert event.payload["user"] == ravi.slack_id
    assert f"<@{ravi.slack_id}>" in summary_text(bot, room)


async def test_a_402_is_explained(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    assert bot.world.pagerduty is not None
    bot.world.pagerduty.responder_requests_enabled = False
    run = await bot.run(f"/escalate <@{bot.world.people[2].slack_id}>", channel=room)
    assert run.outcome == "user_error"
    assert "plan does not include responder requests (402)" in run.text
    assert "/escalate secondary" in run.text


async def test_outside_a_war_room_it_says_where_to_run_it(bot: Bot) -> None:
    run = await bot.run("/escalate secondary")
    assert run.outcome == "denied"
    assert "Run it in the incident's war room" in run.text
