"""``chatops.transport.slack_api.SlackChat`` against the real SlackSandbox over sockets on 127.0.0.1.

Rate limits, Slack's ``ok: false`` answers, the idempotent-error codes and retries, exactly as the daemon meets them:
the real slack-sdk ``AsyncWebClient`` on an aiohttp session, the sandbox's per-method tiers and per-channel bucket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from chatops.retry import Backoff
from chatops.sandbox.slack import SlackSandbox
from chatops.transport.base import ChatError, ChatUnavailable
from chatops.transport.slack_api import SlackChat

FAST = Backoff(attempts=3, base=0.01, cap=0.02)
ChatFactory = Callable[..., SlackChat]


@pytest.fixture
async def sandbox() -> AsyncIterator[SlackSandbox]:
    async with SlackSandbox(emit_message_events=False, ping_interval=None) as sb:
        sb.add_user("U0ADITI01", "aditi", email="aditi@example.com", real_name="Aditi Rao")
        sb.add_user("U0RAVI001", "ravi")
        yield sb


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def make_chat(sandbox: SlackSandbox, session: aiohttp.ClientSession) -> ChatFactory:
    def make(**kwargs: Any) -> SlackChat:
        kwargs.setdefault("backoff", FAST)
        return SlackChat.create(token=sandbox.bot_token, base_url=sandbox.api_url, session=session, **kwargs)

    return make


@pytest.fixture
def chat(make_chat: ChatFactory) -> SlackChat:
    return make_chat()


def statuses(sandbox: SlackSandbox, method: str) -> list[int]:
    return [c.status for c in sandbox.calls_to(method)]


def errors(sandbox: SlackSandbox, method: str) -> list[str | None]:
    return [c.response.get("error") for c in sandbox.calls_to(method)]


# ---------------------------------------------------------------------------------------------- basics


async def test_start_learns_who_the_bot_is(chat: SlackChat, sandbox: SlackSandbox) -> None:
    info = await chat.start()
    assert info["ok"] is True
    assert chat.bot_user_id == sandbox.bot_user_id and chat.team_id == sandbox.team_id
    [call] = sandbox.calls_to("auth.test")
    assert call.token == sandbox.bot_token


async def test_a_war_room_round_trip(chat: SlackChat, sandbox: SlackSandbox) -> None:
    channel = await chat.create_channel("inc-2026-04-22-0247-checkout")
    await chat.set_topic(channel, "SEV2 :: checkout")
    await chat.set_purpose(channel, "Runbook: https://example.com")
    await chat.invite(channel, ["U0ADITI01"])
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*SEV2*"}}]
    posted = await chat.post_message(channel, "summary", blocks)
    await chat.pin(posted.channel, posted.ts)
    await chat.update_message(posted.channel, posted.ts, "summary v2", blocks)
    room = sandbox.channels[channel]
    assert room.name == "inc-2026-04-22-0247-checkout"
    assert (room.topic, room.purpose) == ("SEV2 :: checkout", "Runbook: https://example.com")
    assert "U0ADITI01" in room.members
    assert room.pins == [posted.ts]
    [message] = room.messages
    assert message.text == "summary v2" and message.blocks == blocks
    profile = await chat.user_profile("U0ADITI01")
    assert (profile.name, profile.real_name, profile.email) == ("aditi", "Aditi Rao", "aditi@example.com")


# ------------------------------------------------------------------------------------------------ 429s


async def test_429_with_retry_after_is_retried_after_the_wait(chat: SlackChat, sandbox: SlackSandbox) -> None:
    sandbox.rate_limit("conversations.create", retry_after=1)
    channel = await chat.create_channel("inc-ratelimited")
    assert sandbox.channels[channel].name == "inc-ratelimited"
    first, second = sandbox.calls_to("conversations.create")
    assert (first.status, second.status) == (429, 200)
    # The backoff alone would retry after ~10 ms: the gap shows Retry-After was honoured.
    assert second.at - first.at >= 0.95


async def test_429_on_chat_post_message_is_retried(chat: SlackChat, sandbox: SlackSandbox) -> None:
    channel = sandbox.add_channel("ops")
    sandbox.rate_limit("chat.postMessage", retry_after=1)
    posted = await chat.post_message(channel, "hello")
    assert statuses(sandbox, "chat.postMessage") == [429, 200]
    assert [m.ts for m in sandbox.channels[channel].messages] == [posted.ts]


async def test_persistent_429_gives_up_as_unavailable(make_chat: ChatFactory, sandbox: SlackSandbox) -> None:
    chat = make_chat(backoff=Backoff(attempts=2, base=0.01, max_retry_after=0.05))
    sandbox.rate_limit("users.info", retry_after=1, times=5)
    with pytest.raises(ChatUnavailable) as exc:
        await chat.user_profile("U0ADITI01")
    assert exc.value.code == "ratelimited" and exc.value.attempts == 2
    assert statuses(sandbox, "users.info") == [429, 429]


# ------------------------------------------------------------------------------------------ ok: false


async def test_ok_false_becomes_chat_error_with_slacks_code_and_is_not_retried(
    chat: SlackChat, sandbox: SlackSandbox
) -> None:
    with pytest.raises(ChatError) as exc:
        await chat.set_topic("C0NOPE", "topic")
    assert not isinstance(exc.value, ChatUnavailable)
    assert (exc.value.method, exc.value.code) == ("conversations.setTopic", "channel_not_found")
    assert errors(sandbox, "conversations.setTopic") == ["channel_not_found"]


async def test_name_taken_reaches_the_caller(chat: SlackChat, sandbox: SlackSandbox) -> None:
    sandbox.add_channel("inc-taken")
    with pytest.raises(ChatError) as exc:
        await chat.create_channel("inc-taken")
    assert exc.value.code == "name_taken"
    assert len(sandbox.calls_to("conversations.create")) == 1


async def test_an_injected_error_code_is_passed_through(chat: SlackChat, sandbox: SlackSandbox) -> None:
    sandbox.fail("chat.postEphemeral", "user_not_in_channel")
    channel = sandbox.add_channel("ops", members=["U0ADITI01"])
    with pytest.raises(ChatError) as exc:
        await chat.post_ephemeral(channel, "U0ADITI01", "only you")
    assert exc.value.code == "user_not_in_channel"
    await chat.post_ephemeral(channel, "U0ADITI01", "only you")  # the injection was for one call
    assert [e.text for e in sandbox.ephemerals] == ["only you"]


async def test_already_in_channel_counts_as_done(chat: SlackChat, sandbox: SlackSandbox) -> None:
    channel = sandbox.add_channel("war-room", members=["U0ADITI01"])
    await chat.invite(channel, ["U0ADITI01"])
    assert errors(sandbox, "conversations.invite") == ["already_in_channel"]


async def test_other_invite_errors_are_raised(chat: SlackChat, sandbox: SlackSandbox) -> None:
    channel = sandbox.add_channel("war-room")
    with pytest.raises(ChatError) as exc:
        await chat.invite(channel, ["U0NOBODY1"])
    assert exc.value.code == "user_not_found"


async def test_already_pinned_counts_as_done(chat: SlackChat, sandbox: SlackSandbox) -> None:
    channel = sandbox.add_channel("war-room")
    posted = await chat.post_message(channel, "summary")
    await chat.pin(channel, posted.ts)
    await chat.pin(channel, posted.ts)
    assert errors(sandbox, "pins.add") == [None, "already_pinned"]
    assert sandbox.channels[channel].pins == [posted.ts]


async def test_other_pin_errors_are_raised(chat: SlackChat, sandbox: SlackSandbox) -> None:
    channel = sandbox.add_channel("war-room")
    with pytest.raises(ChatError) as exc:
        await chat.pin(channel, "1700000000.000001")
    assert exc.value.code == "message_not_found"


# ------------------------------------------------------------------------------------------ pacing


async def test_a_burst_to_one_channel_is_paced_below_the_sandboxs_limit(chat: SlackChat, sandbox: SlackSandbox) -> None:
    assert sandbox.channel_burst == 3 and sandbox.channel_rate == 1.0
    channel = sandbox.add_channel("war-room")
    # Three at once (the burst), then one a second: two more than the sandbox would take at once.
    posted = await asyncio.gather(*(chat.post_message(channel, f"update {n}") for n in range(5)))
    assert len({p.ts for p in posted}) == 5
    assert statuses(sandbox, "chat.postMessage") == [200] * 5, "paced, never bounced off a 429"
    assert sorted(m.text for m in sandbox.channels[channel].messages) == [f"update {n}" for n in range(5)]


async def test_pacing_is_per_channel(chat: SlackChat, sandbox: SlackSandbox) -> None:
    rooms = [sandbox.add_channel(f"room-{n}") for n in range(4)]
    await asyncio.gather(*(chat.post_message(room, f"{k}") for room in rooms for k in range(3)))
    # 12 posts, 3 per channel: each channel's burst, so the sandbox saw them all at once and admitted every one.
    assert statuses(sandbox, "chat.postMessage") == [200] * 12


async def test_a_full_tier_window_waits_instead_of_drawing_a_429(
    make_chat: ChatFactory, session: aiohttp.ClientSession
) -> None:
    limits = {2: 2}
    async with SlackSandbox(tier_limits=limits, emit_message_events=False, ping_interval=None) as sandbox:
        channel = sandbox.add_channel("war-room")
        chat = SlackChat.create(
            token=sandbox.bot_token, base_url=sandbox.api_url, session=session, backoff=FAST, tier_limits=limits
        )
        await chat.set_topic(channel, "one")
        await chat.set_topic(channel, "two")
        third = asyncio.create_task(chat.set_topic(channel, "three"))
        try:
            # A call issued after the third one completes: the third had every chance to reach the sandbox.
            await chat.user_profile(sandbox.bot_user_id)
            await asyncio.sleep(0.05)
            assert not third.done(), "the third call waits for the 60 s window"
            assert statuses(sandbox, "conversations.setTopic") == [200, 200], "nothing was sent to be refused"
        finally:
            third.cancel()
            with pytest.raises(asyncio.CancelledError):
                await third
        # The same call from a client that does not pace would have been refused:
        unpaced = SlackChat.create(
            token=sandbox.bot_token, base_url=sandbox.api_url, session=session, backoff=Backoff(attempts=1)
        )
        with pytest.raises(ChatUnavailable, match="ratelimited"):
            await unpaced.set_topic(channel, "three")
        assert statuses(sandbox, "conversations.setTopic") == [200, 200, 429]
        assert sandbox.channels[channel].topic == "two"


# ------------------------------------------------------------------------------------ persistent failures


async def test_transient_error_codes_are_retried_then_succeed(chat: SlackChat, sandbox: SlackSandbox) -> None:
    sandbox.fail("conversations.setPurpose", "internal_error", times=2)
    channel = sandbox.add_channel("war-room")
    await chat.set_purpose(channel, "Runbook: x")
    assert errors(sandbox, "conversations.setPurpose") == ["internal_error", "internal_error", None]
    assert sandbox.channels[channel].purpose == "Runbook: x"


@pytest.mark.parametrize("method", ["conversations.create", "chat.postMessage"])
async def test_creates_are_not_retried_after_an_internal_error(
    chat: SlackChat, sandbox: SlackSandbox, method: str
) -> None:
    # internal_error may mean the create happened: a retry could make a second channel or a double post.
    sandbox.fail(method, "internal_error", times=1)
    channel = sandbox.add_channel("war-room")
    with pytest.raises(ChatError) as exc:
        if method == "conversations.create":
            await chat.create_channel("inc-2026-04-22-0247-checkout")
        else:
            await chat.post_message(channel, "hello")
    assert exc.value.code == "internal_error"
    assert errors(sandbox, method) == ["internal_error"]


async def test_persistent_internal_errors_end_in_chat_unavailable(chat: SlackChat, sandbox: SlackSandbox) -> None:
    sandbox.fail("chat.update", "internal_error", times=10)
    channel = sandbox.add_channel("war-room")
    posted = await chat.post_message(channel, "v1")
    with pytest.raises(ChatUnavailable) as exc:
        await chat.update_message(channel, posted.ts, "v2")
    assert isinstance(exc.value, ChatError)
    assert (exc.value.method, exc.value.code, exc.value.attempts) == ("chat.update", "internal_error", 3)
    assert errors(sandbox, "chat.update") == ["internal_error"] * 3


async def test_a_stalled_slack_times_out_and_ends_in_chat_unavailable(
    make_chat: ChatFactory, sandbox: SlackSandbox
) -> None:
    # The SDK's own timeout is ignored on a shared session (the daemon's set-up): SlackChat bounds each attempt.
    sandbox.set_latency("users.info", 0.5)
    chat = make_chat(request_timeout=0.1, backoff=Backoff(attempts=2, base=0.01, cap=0.02))
    with pytest.raises(ChatUnavailable) as exc:
        await chat.user_profile("U0ADITI01")  # without the bound, the 0.5 s answer would arrive and succeed
    assert (exc.value.method, exc.value.code, exc.value.attempts) == ("users.info", "TimeoutError", 2)


async def test_an_unreachable_slack_ends_in_chat_unavailable(session: aiohttp.ClientSession) -> None:
    async with SlackSandbox(ping_interval=None) as gone:
        url, token = gone.api_url, gone.bot_token
    chat = SlackChat.create(token=token, base_url=url, session=session, backoff=FAST)
    with pytest.raises(ChatUnavailable) as exc:
        await chat.start()
    assert exc.value.method == "auth.test" and exc.value.attempts == 3


async def test_a_bad_token_is_a_chat_error(sandbox: SlackSandbox, session: aiohttp.ClientSession) -> None:
    chat = SlackChat.create(token="xoxb-0-wrong", base_url=sandbox.api_url, session=session, backoff=FAST)
    with pytest.raises(ChatError) as exc:
        await chat.start()
    assert exc.value.code == "invalid_auth" and not isinstance(exc.value, ChatUnavailable)
