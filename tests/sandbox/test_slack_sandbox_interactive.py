"""Sandbox additions for permissions and buttons: usergroups.users.list, paged members, block_actions clicks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp

from chatops.sandbox.slack import SlackSandbox
from chatops.transport.base import ChatError
from chatops.transport.slack import actions_from_payload
from chatops.transport.slack_api import SlackChat


@pytest.fixture
async def sandbox() -> AsyncIterator[SlackSandbox]:
    async with SlackSandbox(emit_message_events=False, ping_interval=None) as s:
        s.add_user("U0AAA0001", "aaa")
        s.add_user("U0BBB0001", "bbb")
        yield s


@pytest.fixture
async def chat(sandbox: SlackSandbox) -> AsyncIterator[SlackChat]:
    async with aiohttp.ClientSession() as session:
        chat = SlackChat.create(token=sandbox.bot_token, base_url=sandbox.api_url, session=session)
        await chat.start()
        yield chat


async def test_usergroups_users_list(sandbox: SlackSandbox, chat: SlackChat) -> None:
    group = sandbox.add_usergroup("sre-oncall", ["U0AAA0001"])
    assert group.startswith("S")
    assert await chat.usergroup_members(group) == ["U0AAA0001"]
    with pytest.raises(ChatError) as caught:
        await chat.usergroup_members("S0NOPE")
    assert caught.value.code == "no_such_subteam"
    [call, _] = sandbox.calls_to("usergroups.users.list")
    assert call.params == {"usergroup": group}
    with pytest.raises(ValueError, match="taken"):
        sandbox.add_usergroup("@sre-oncall")
    with pytest.raises(ValueError, match="unknown users"):
        sandbox.add_usergroup("other", ["U0NOBODY1"])


async def test_channel_members_reads_every_page(sandbox: SlackSandbox, chat: SlackChat) -> None:
    people = [f"U0P{i:06d}" for i in range(250)]
    for person in people:
        sandbox.add_user(person, person.lower())
    channel = sandbox.add_channel("big", members=people)
    members = await chat.channel_members(channel)
    assert sorted(members) == sorted([*people, sandbox.bot_user_id])
    assert len(sandbox.calls_to("conversations.members")) == 2


async def test_fetch_message(sandbox: SlackSandbox, chat: SlackChat) -> None:
    channel = sandbox.add_channel("room")
    first = await chat.post_message(channel, "first", [{"type": "section", "text": {"type": "mrkdwn", "text": "a"}}])
    await chat.post_message(channel, "second")
    stored = await chat.fetch_message(channel, first.ts)
    assert stored is not None and stored.text == "first" and stored.blocks is not None
    assert stored.blocks[0]["text"]["text"] == "a"
    assert await chat.fetch_message(channel, "1.000001") is None


async def test_click_button_delivers_block_actions_that_bolt_routes(sandbox: SlackSandbox) -> None:
    channel = sandbox.add_channel("room", members=["U0AAA0001"])
    seen: list[dict[str, object]] = []
    app = AsyncApp(token=sandbox.bot_token, request_verification_enabled=False, url_verification_enabled=False)

    @app.action("chatops.run.1")
    async def on_click(ack, body) -> None:  # type: ignore[no-untyped-def]
        await ack()
        seen.append(body)

    app.client.base_url = sandbox.api_url
    handler = AsyncSocketModeHandler(app, app_token=sandbox.app_token, web_client=app.client)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    try:
        await sandbox.wait_connected()
        envelope = await sandbox.click_button(
            user_id="U0AAA0001", channel_id=channel, action_id="chatops.run.1", value="/runbook", is_ephemeral=True
        )
        assert envelope.acked_at is not None and envelope.type == "interactive"
        await sandbox.wait_for(lambda: bool(seen))
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
    [body] = seen
    [action] = actions_from_payload(body)
    assert action.action_id == "chatops.run.1" and action.value == "/runbook"
    assert action.user_id == "U0AAA0001" and action.channel_id == channel and action.user_name == "aaa"
    assert action.trigger_id and action.dedup_key == f"{action.trigger_id}:0"
    assert action.response_url and action.response_url.startswith(sandbox.url)


def test_actions_from_payload_ignores_other_apps_buttons() -> None:
    body = {
        "user": {"id": "U1", "username": "u"},
        "container": {"channel_id": "C1", "message_ts": "1.2"},
        "trigger_id": "t",
        "actions": [{"action_id": "someone.else", "value": "x"}, {"action_id": "chatops.confirm", "value": "tok"}],
    }
    [action] = actions_from_payload(body)
    assert (action.action_id, action.value, action.channel_id, action.message_ts) == (
        "chatops.confirm",
        "tok",
        "C1",
        "1.2",
    )
    assert action.dedup_key == "t:1"
