"""Permissions are data: the grants in policy/grants.yaml, checked at one choke point, denials explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatops.testing import Bot

OUTSIDER = "U0OUTSIDE1"
GROUPED = "U0SREONE01"
SRE_GROUP = "S0SREONCALL"


@pytest.fixture
def chatops_policy_dir(chatops_policy_dir: Path) -> Path:
    """The shipped grants plus: the SRE user group may escalate anywhere; /incident declare always asks."""
    grants = chatops_policy_dir / "grants.yaml"
    text = grants.read_text(encoding="utf-8")
    text = text.replace("  # usergroups:\n", f"  usergroups:\n    {SRE_GROUP}: [incident.escalate]\n  # was:\n")
    grants.write_text(text, encoding="utf-8")
    return chatops_policy_dir


async def test_outside_a_war_room_a_denial_explains_what_is_needed(bot: Bot) -> None:
    run = await bot.run("/incident note I was here", user=OUTSIDER)
    assert run.outcome == "denied"
    assert "needs `incident.write`" in run.text
    assert "the incident commander, war-room members" in run.text
    assert "Run it in the incident's war room" in run.text


async def test_war_room_membership_is_checked_live_and_a_denial_is_on_the_timeline(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    channel = bot.channel(room)
    bot.user(OUTSIDER)
    before = await bot.timeline(room)
    refused = await bot.run("/escalate manager", user=OUTSIDER, channel=room, join=False)
    assert OUTSIDER not in channel.members
    assert refused.outcome == "denied"
    denied = [e for e in await bot.timeline(room) if e not in before and e.type == "command"]
    assert denied and denied[-1].payload["outcome"] == "denied" and "incident.escalate" in denied[-1].payload["detail"]

    # Once they join, the same command runs.
    run = await bot.run("/escalate manager", user=OUTSIDER, channel=room)
    assert run.outcome == "ok", run.text


async def test_a_user_group_grant(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    bot.user(GROUPED)
    bot.world.slack.add_usergroup("sre-oncall", [GROUPED], usergroup_id=SRE_GROUP)
    run = await bot.run("/escalate manager", user=GROUPED, channel=room, join=False)
    assert GROUPED not in bot.channel(room).members
    assert run.outcome == "ok"
    assert bot.world.slack.calls_to("usergroups.users.list")


async def test_the_ic_may_run_everything_shipped_in_the_war_room(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    for line in ("/incident note checking", "/runbook", "/escalate manager"):
        run = await bot.run(line, channel=room)
        assert run.outcome == "ok", (line, run.text)


async def test_policy_can_require_confirmation_for_a_typed_command(bot: Bot, chatops_policy_dir: Path) -> None:
    grants = chatops_policy_dir / "grants.yaml"
    grants.write_text(grants.read_text(encoding="utf-8").replace("always: []", 'always: ["/escalate"]'), "utf-8")
    assert await bot.daemon.services.policy.reload("test")  # type: ignore[union-attr]
    room = await bot.declare("sev2 checkout")
    asked = await bot.run("/escalate manager", channel=room)
    assert asked.outcome == "confirmation_requested"
    ran = await bot.click(asked.button("Run it"))
    assert ran.outcome == "ok" and "Escalated to *manager*" in ran.text
    # Read-only commands never ask, whatever policy says.
    assert (await bot.run("/runbook", channel=room)).outcome == "ok"
