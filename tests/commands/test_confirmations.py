"""Confirmations: per user and channel, with expiry, in Postgres, answered exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from chatops.confirm import ConfirmationStore
from chatops.testing import Bot

NOW = datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
TTL = timedelta(minutes=2)


@pytest.fixture
def store(db_pool: asyncpg.Pool) -> ConfirmationStore:
    return ConfirmationStore(db_pool)


async def ask(store: ConfirmationStore) -> str:
    question = await store.ask(
        user_id="U1", channel_id="C1", command="/escalate", args_text="secondary", now=NOW, ttl=TTL
    )
    assert question.command_line == "/escalate secondary" and question.expires_at == NOW + TTL
    return question.token


async def test_confirmed_once(store: ConfirmationStore) -> None:
    token = await ask(store)
    answer = await store.answer(token, user_id="U1", channel_id="C1", confirm=True, now=NOW + timedelta(seconds=5))
    assert answer.outcome == "confirmed" and answer.question is not None
    again = await store.answer(token, user_id="U1", channel_id="C1", confirm=True, now=NOW + timedelta(seconds=6))
    assert again.outcome == "answered"


async def test_concurrent_answers_count_once(store: ConfirmationStore) -> None:
    token = await ask(store)
    answers = await asyncio.gather(
        *(store.answer(token, user_id="U1", channel_id="C1", confirm=True, now=NOW) for _ in range(8))
    )
    assert sorted(a.outcome for a in answers) == ["answered"] * 7 + ["confirmed"]


async def test_only_the_asker_in_that_channel(store: ConfirmationStore) -> None:
    token = await ask(store)
    assert (await store.answer(token, user_id="U2", channel_id="C1", confirm=True, now=NOW)).outcome == "not_yours"
    assert (await store.answer(token, user_id="U1", channel_id="C2", confirm=True, now=NOW)).outcome == "not_yours"
    assert (await store.answer(token, user_id="U1", channel_id="C1", confirm=True, now=NOW)).outcome == "confirmed"


async def test_expiry(store: ConfirmationStore) -> None:
    token = await ask(store)
    late = NOW + TTL
    assert (await store.answer(token, user_id="U1", channel_id="C1", confirm=True, now=late)).outcome == "expired"


async def test_cancel_and_unknown(store: ConfirmationStore) -> None:
    token = await ask(store)
    assert (await store.answer(token, user_id="U1", channel_id="C1", confirm=False, now=NOW)).outcome == "cancelled"
    assert (await store.answer("nope", user_id="U1", channel_id="C1", confirm=True, now=NOW)).outcome == "unknown"


async def test_old_questions_are_swept(store: ConfirmationStore, db_pool: asyncpg.Pool) -> None:
    await ask(store)
    await store.ask(user_id="U1", channel_id="C1", command="/x", args_text="", now=NOW + timedelta(days=8), ttl=TTL)
    assert await db_pool.fetchval("SELECT count(*) FROM confirmations") == 1


async def test_bad_arguments(store: ConfirmationStore) -> None:
    with pytest.raises(ValueError, match="timezone"):
        await store.ask(user_id="U", channel_id="C", command="/x", args_text="", now=NOW.replace(tzinfo=None), ttl=TTL)
    with pytest.raises(ValueError, match="positive"):
        await store.ask(user_id="U", channel_id="C", command="/x", args_text="", now=NOW, ttl=timedelta(0))


# ------------------------------------------------------------------ through the daemon


async def test_a_runbook_step_with_side_effects_asks_and_the_question_expires(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    shown = await bot.run("/runbook restart-consumer", channel=room)
    step = shown.button("/escalate secondary")
    asked = await bot.click(step)
    assert asked.outcome == "confirmation_requested"
    assert "Run `/escalate secondary checkout-orders lag not draining after a restart`?" in asked.text
    assert "expires in 2 min" in asked.text

    bot.advance(timedelta(minutes=2, seconds=1))
    late = await bot.click(asked.button("Run it"))
    assert late.outcome == "user_error"
    assert "was not run: the confirmation expired" in late.text
    assert not [e for e in late.events if e.type == "escalation"]


async def test_a_read_only_step_runs_at_once_and_a_typed_side_effect_too(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    shown = await bot.run("/runbook auth-login-errors", channel=room)
    note = await bot.click(shown.button("/incident note"))
    assert note.outcome == "ok" and "Noted by" in note.text
    typed = await bot.run("/escalate secondary login errors", channel=room)
    assert typed.outcome == "ok" and "Escalated to *secondary*" in typed.text


async def test_someone_else_cannot_confirm_and_cancel_works(bot: Bot) -> None:
    room = await bot.declare("sev3 auth")
    shown = await bot.run("/runbook auth-login-errors", channel=room)
    asked = await bot.click(shown.button("/escalate"))
    ravi = bot.world.people[1].slack_id
    stolen = await bot.click(asked.button("Run it"), user=ravi)
    assert stolen.outcome == "user_error" and "belongs to someone else" in stolen.text
    cancelled = await bot.click(asked.button("Cancel"))
    assert cancelled.outcome == "cancelled" and "did not run" in cancelled.text
    again = await bot.click(asked.button("Run it"))
    assert "already confirmed or cancelled" in again.text
    outcomes = [e.payload["outcome"] for e in await bot.timeline(room) if e.type == "command"]
    assert "confirmation_requested" in outcomes
