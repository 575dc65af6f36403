"""Any text typed at any command gets a reply and never a crash: the real parser, authorization, Postgres and the
sandbox Slack behind the real Web API client, driven by hypothesis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatops.testing import Bot
from chatops.transport.base import Action, Invocation

OUTCOMES = {"ok", "help", "user_error", "denied", "confirmation_requested", "timeout", "error"}
_PIECES = st.sampled_from(
    [
        '"',
        "'",
        "“",
        "’",
        "\\",
        "=",
        "--",
        "--new",
        "help",
        "sev2",
        "SEV-1",
        "checkout",
        "chekout",
        "secondary",
        "db_sme",
        "<@U0RAVI001|ravi>",
        "@ravi",
        "range=",
        "1h",
        "02:47",
        'up{job="x"}',
        " ",
        "\n",
        "\x00",
        "🔥",
    ]
)
TEXT = st.one_of(st.text(max_size=60), st.lists(st.one_of(_PIECES, st.text(max_size=5)), max_size=10).map(" ".join))
COMMANDS = st.sampled_from(["/incident", "/runbook", "/escalate", "/promql", "/dashboard", "/nope"])


@pytest.fixture
def chatops_world_options() -> dict[str, Any]:
    return {"slack_tier_limits": {1: 10_000, 2: 10_000, 3: 10_000, 4: 10_000}, "zoom": False}


def replies(bot: Bot, user: str) -> int:
    posted = sum(
        1 for c in bot.world.slack.channels.values() for m in c.messages if m.user == bot.world.slack.bot_user_id
    )
    return posted + sum(1 for e in bot.world.slack.ephemerals if e.user == user)


_rooms: dict[int, str] = {}


async def war_room(bot: Bot) -> str:
    """One war room per bot (hypothesis runs every example against the same daemon)."""
    if id(bot) not in _rooms:
        _rooms.clear()
        _rooms[id(bot)] = await bot.declare("sev3 auth")
    return _rooms[id(bot)]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(command=COMMANDS, text=TEXT, in_room=st.booleans(), n=st.uuids())
async def test_any_text_gets_a_reply(bot: Bot, command: str, text: str, in_room: bool, n: object) -> None:
    channel = await war_room(bot) if in_room else bot.ops_channel
    dispatcher = bot.daemon.dispatcher
    assert dispatcher is not None
    before = replies(bot, bot.ic)
    invocation = Invocation(
        command=command,
        text=text,
        user_id=bot.ic,
        user_name="aditi.r",
        channel_id=channel,
        channel_name="",
        trigger_id=f"fuzz-{n}",
        dedup_key=f"fuzz-{n}",
    )
    outcome = await dispatcher.handle(invocation)
    assert outcome in OUTCOMES
    assert outcome != "error", f"{command} {text!r} crashed"
    assert replies(bot, bot.ic) > before, f"{command} {text!r} got no reply"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(action_id=st.sampled_from(["chatops.run.1", "chatops.confirm", "chatops.cancel"]), value=TEXT, n=st.uuids())
async def test_any_button_value_gets_a_reply(bot: Bot, action_id: str, value: str, n: object) -> None:
    dispatcher = bot.daemon.dispatcher
    assert dispatcher is not None
    before = replies(bot, bot.ic)
    action = Action(
        action_id=action_id,
        value=value,
        user_id=bot.ic,
        user_name="aditi.r",
        channel_id=bot.ops_channel,
        trigger_id=f"click-{n}",
        dedup_key=f"click-{n}",
    )
    outcome = await dispatcher.handle_action(action)
    assert outcome in OUTCOMES | {"cancelled"}
    assert outcome != "error", f"{action_id} {value!r} crashed"
    assert replies(bot, bot.ic) > before, f"{action_id} {value!r} got no reply"
