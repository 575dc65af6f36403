"""Conformance tests of the Slack sandbox against the real slack-sdk / slack-bolt clients (PROTOCOLS §1, §2)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from chatops.sandbox.slack import Envelope, SlackSandbox

SandboxFactory = Callable[..., Awaitable[SlackSandbox]]


# ---------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
async def make_sandbox() -> AsyncIterator[SandboxFactory]:
    started: list[SlackSandbox] = []

    async def make(**kwargs: Any) -> SlackSandbox:
        sandbox = SlackSandbox(**kwargs)
        sandbox.add_user("U1", "alice", email="Alice@Example.com", real_name="Alice Adams", tz="Europe/Paris")
        sandbox.add_user("U2", "bob", email="bob@example.com")
        sandbox.add_user("U3", "carol")
        await sandbox.start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        await sandbox.stop()
        assert sandbox.errors == []


@pytest.fixture
async def sandbox(make_sandbox: SandboxFactory) -> SlackSandbox:
    return await make_sandbox(ack_timeout=0.3)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(sandbox: SlackSandbox, http: aiohttp.ClientSession) -> AsyncWebClient:
    return AsyncWebClient(token=sandbox.bot_token, base_url=sandbox.api_url, session=http)


def web_for(sandbox: SlackSandbox, http: aiohttp.ClientSession, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(token=token or sandbox.bot_token, base_url=sandbox.api_url, session=http)


async def api_error(call: Awaitable[Any]) -> str:
    """Run a call that must fail and return its error code."""
    with pytest.raises(SlackApiError) as info:
        await call
    return str(info.value.response["error"])


class SocketApp:
    """A real slack-sdk SocketModeClient that records what it receives and (optionally) acks."""

    def __init__(self, sandbox: SlackSandbox, http: aiohttp.ClientSession, *, ack: bool = True) -> None:
        self.ack = ack
        self.ack_body: dict[str, Any] | None = None
        self.requests: list[SocketModeRequest] = []
        self.frames: list[dict[str, Any]] = []
        self.client = SocketModeClient(
            app_token=sandbox.app_token,
            web_client=web_for(sandbox, http),
            ping_interval=0.2,
            auto_reconnect_enabled=True,
        )
        self.client.socket_mode_request_listeners.append(self._on_request)
        self.client.message_listeners.append(self._on_message)

    async def _on_message(self, client: AsyncBaseSocketModeClient, message: dict[str, Any], raw: str | None) -> None:
        self.frames.append(message)

    async def _on_request(self, client: AsyncBaseSocketModeClient, request: SocketModeRequest) -> None:
        self.requests.append(request)
        if self.ack:
            await client.send_socket_mode_response(
                SocketModeResponse(envelope_id=request.envelope_id, payload=self.ack_body)
            )

    def events(self) -> list[dict[str, Any]]:
        return [r.payload["event"] for r in self.requests if r.type == "events_api"]


@pytest.fixture
async def socket_app_factory(
    http: aiohttp.ClientSession,
) -> AsyncIterator[Callable[..., Awaitable[SocketApp]]]:
    apps: list[SocketApp] = []

    async def connect(sandbox: SlackSandbox, *, ack: bool = True) -> SocketApp:
        app = SocketApp(sandbox, http, ack=ack)
        apps.append(app)
        await asyncio.wait_for(app.client.connect(), 5)  # type: ignore[no-untyped-call]
        await sandbox.wait_connected(timeout=5, count=len([a for a in apps if not a.client.closed]))
        return app

    yield connect
    for app in apps:
        await app.client.close()  # type: ignore[no-untyped-call]


class RawSocket:
    """A bare aiohttp websocket: sees every frame (and pings), acks when asked to."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, ack: bool) -> None:
        self.ws = ws
        self.ack = ack
        self.frames: list[dict[str, Any]] = []
        self.pings = 0
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                frame = json.loads(message.data)
                self.frames.append(frame)
                if self.ack and "envelope_id" in frame:
                    await self.ws.send_json({"envelope_id": frame["envelope_id"]})
            elif message.type == aiohttp.WSMsgType.PING:
                self.pings += 1
                await self.ws.pong(message.data)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]


@pytest.fixture
async def raw_sockets(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[RawSocket]]]:
    sockets: list[RawSocket] = []

    async def open_socket(sandbox: SlackSandbox, *, ack: bool = True, url: str | None = None) -> RawSocket:
        if url is None:
            url = (await web_for(sandbox, http, sandbox.app_token).apps_connections_open(app_token=sandbox.app_token))[
                "url"
            ]
        ws = await http.ws_connect(url, autoping=False)
        sock = RawSocket(ws, ack=ack)
        sockets.append(sock)
        return sock

    yield open_socket
    for sock in sockets:
        await sock.ws.close()
        await sock.task


# ---------------------------------------------------------------------------------------------------- Web API: auth


async def test_auth_test_identifies_the_bot(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    response = await client.auth_test()
    assert (response["user_id"], response["team_id"], response["bot_id"]) == ("U0BOT", "T0SANDBOX", "B0BOT")
    assert sandbox.api_url.startswith("http://127.0.0.1:") and sandbox.api_url.endswith("/api/")
    [call] = sandbox.calls_to("auth.test")
    assert call.token == sandbox.bot_token and call.status == 200 and call.response["ok"] is True


async def test_token_rules(sandbox: SlackSandbox, http: aiohttp.ClientSession) -> None:
    no_token = AsyncWebClient(base_url=sandbox.api_url, session=http)
    assert await api_error(no_token.auth_test()) == "not_authed"
    assert await api_error(web_for(sandbox, http, "xoxb-forged").auth_test()) == "invalid_auth"
    assert await api_error(web_for(sandbox, http, sandbox.app_token).auth_test()) == "not_allowed_token_type"
    bot = web_for(sandbox, http)
    assert await api_error(bot.apps_connections_open(app_token=sandbox.bot_token)) == "not_allowed_token_type"
    assert await api_error(bot.apps_connections_open(app_token="xapp-forged")) == "invalid_auth"
    # some clients send the token as a form field instead of the header
    async with http.post(f"{sandbox.api_url}auth.test", data={"token": sandbox.bot_token}) as resp:
        assert resp.status == 200
        assert (await resp.json())["user_id"] == "U0BOT"
    assert all(c.status == 200 for c in sandbox.calls)
    assert sandbox.calls[-1].token == sandbox.bot_token and "token" not in sandbox.calls[-1].params


async def test_unknown_method(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    assert await api_error(client.api_call("conversations.explode")) == "unknown_method"
    assert sandbox.calls_to("conversations.explode")[0].response == {"ok": False, "error": "unknown_method"}


# ---------------------------------------------------------------------------------------------------- Web API: channels


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "invalid_name_required"),
        ("a" * 81, "invalid_name_maxlength"),
        ("Incident-42", "invalid_name_specials"),
        ("inc 42", "invalid_name_specials"),
        ("inc.42", "invalid_name_specials"),
        ("inc#42", "invalid_name_specials"),
        ("---", "invalid_name_punctuation"),
        ("_-_", "invalid_name_punctuation"),
    ],
)
async def test_channel_name_rules(sandbox: SlackSandbox, client: AsyncWebClient, name: str, error: str) -> None:
    assert await api_error(client.conversations_create(name=name)) == error
    assert sandbox.channels == {}  # validated, never fixed


async def test_create_channel_accepts_valid_names_and_refuses_taken_ones(
    sandbox: SlackSandbox, client: AsyncWebClient
) -> None:
    created = await client.conversations_create(name="inc-2024_07-db")
    channel = created["channel"]
    assert re.fullmatch(r"C[0-9A-Z]{6,}", channel["id"])
    assert channel["creator"] == "U0BOT" and channel["is_member"] is True
    assert sandbox.channels[channel["id"]].members == {"U0BOT"}
    assert (await client.conversations_create(name="a" * 80))["ok"] is True
    assert await api_error(client.conversations_create(name="inc-2024_07-db")) == "name_taken"
    await client.conversations_archive(channel=channel["id"])
    assert await api_error(client.conversations_create(name="inc-2024_07-db")) == "name_taken"


async def test_topic_and_purpose_rules(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-1")
    outside = sandbox.add_channel("elsewhere", bot_member=False)
    await client.conversations_setTopic(channel=cid, topic="t" * 250)
    await client.conversations_setPurpose(channel=cid, purpose="Coordinate the DB outage")
    assert sandbox.channels[cid].topic == "t" * 250
    assert sandbox.channels[cid].purpose == "Coordinate the DB outage"
    assert await api_error(client.conversations_setTopic(channel=cid, topic="t" * 251)) == "too_long"
    assert await api_error(client.conversations_setPurpose(channel=cid, purpose="p" * 251)) == "too_long"
    assert await api_error(client.conversations_setTopic(channel=outside, topic="x")) == "not_in_channel"
    assert await api_error(client.conversations_setTopic(channel="C404", topic="x")) == "channel_not_found"
    await client.conversations_archive(channel=cid)
    assert await api_error(client.conversations_setTopic(channel=cid, topic="x")) == "is_archived"
    assert sandbox.channels[cid].topic == "t" * 250


async def test_invite_rules(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-2", members=["U1"])
    outside = sandbox.add_channel("other", bot_member=False)
    assert await api_error(client.conversations_invite(channel=cid, users="U1")) == "already_in_channel"
    assert await api_error(client.conversations_invite(channel=cid, users="U0BOT")) == "cant_invite_self"
    assert await api_error(client.conversations_invite(channel=cid, users="U2,U999")) == "user_not_found"
    assert await api_error(client.conversations_invite(channel=outside, users="U2")) == "not_in_channel"
    too_many = ",".join(f"U{n}" for n in range(101))
    assert await api_error(client.conversations_invite(channel=cid, users=too_many)) == "too_many_users"
    assert sandbox.channels[cid].members == {"U0BOT", "U1"}  # nothing half-done
    await client.conversations_invite(channel=cid, users=["U1", "U2", "U3"])  # some already in: the rest join
    assert sandbox.channels[cid].members == {"U0BOT", "U1", "U2", "U3"}
    members = await client.conversations_members(channel=cid)
    assert sorted(members["members"]) == ["U0BOT", "U1", "U2", "U3"]


async def test_info_archive_join_and_private_visibility(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    public = sandbox.add_channel("status", bot_member=False)
    secret = sandbox.add_channel("secret", bot_member=False, is_private=True)
    info = await client.conversations_info(channel=public)
    assert info["channel"]["name"] == "status" and info["channel"]["is_member"] is False
    assert await api_error(client.conversations_info(channel=secret)) == "channel_not_found"
    assert await api_error(client.conversations_join(channel=secret)) == "channel_not_found"
    await client.conversations_join(channel=public)
    again = await client.conversations_join(channel=public)
    assert again["warning"] == "already_in_channel"
    assert "U0BOT" in sandbox.channels[public].members
    await client.conversations_archive(channel=public)
    assert await api_error(client.conversations_archive(channel=public)) == "already_archived"
    assert (await client.conversations_info(channel=public))["channel"]["is_archived"] is True
    assert await api_error(client.chat_postMessage(channel=public, text="late")) == "is_archived"


# ---------------------------------------------------------------------------------------------------- Web API: messages


async def test_post_message_by_id_and_by_name(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("status-pages-draft")
    first = await client.chat_postMessage(channel=cid, text="one")
    second = await client.chat_postMessage(channel="#status-pages-draft", text="two")
    third = await client.chat_postMessage(channel="status-pages-draft", text="three", thread_ts=first["ts"])
    assert {first["channel"], second["channel"], third["channel"]} == {cid}
    stamps = [first["ts"], second["ts"], third["ts"]]
    assert all(re.fullmatch(r"\d{10}\.\d{6}", ts) for ts in stamps)
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 3
    assert abs(float(first["ts"]) - time.time()) < 5
    messages = sandbox.channels[cid].messages
    assert [m.text for m in messages] == ["one", "two", "three"]
    assert all(m.bot_id == "B0BOT" and m.user == "U0BOT" for m in messages)
    assert messages[2].thread_ts == first["ts"]
    assert first["message"]["bot_id"] == "B0BOT" and first["message"]["text"] == "one"
    history = await client.conversations_history(channel=cid)
    assert [m["text"] for m in history["messages"]] == ["two", "one"]  # newest first, replies left out
    replies = await client.conversations_replies(channel=cid, ts=first["ts"])
    assert [m["text"] for m in replies["messages"]] == ["one", "three"]


async def test_history_pagination_and_bad_arguments(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-log", members=["U1"])
    said = [await sandbox.post_user_message(cid, "U1", f"m{n}") for n in range(5)]
    first = await client.conversations_history(channel=cid, limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"] and first["has_more"] is True
    cursor = first["response_metadata"]["next_cursor"]
    rest = await client.conversations_history(channel=cid, limit=10, cursor=cursor)
    assert [m["text"] for m in rest["messages"]] == ["m2", "m1", "m0"] and rest["has_more"] is False
    window = await client.conversations_history(channel=cid, oldest=said[1].ts, latest=said[3].ts)
    assert [m["text"] for m in window["messages"]] == ["m2"]
    assert await api_error(client.conversations_history(channel=cid, cursor="garbage")) == "invalid_cursor"
    assert await api_error(client.conversations_history(channel=cid, oldest="yesterday")) == "invalid_ts_oldest"
    assert (await client.api_test())["ok"] is True  # api.test needs no token
    assert all(c.status == 200 for c in sandbox.calls)


async def test_post_message_errors(make_sandbox: SandboxFactory, http: aiohttp.ClientSession) -> None:
    sandbox = await make_sandbox(channel_burst=20)  # refused posts count against the channel's bucket too
    client = web_for(sandbox, http)
    cid = sandbox.add_channel("inc-3")
    outside = sandbox.add_channel("not-mine", bot_member=False)
    assert await api_error(client.chat_postMessage(channel="C404", text="x")) == "channel_not_found"
    assert await api_error(client.chat_postMessage(channel="#nope", text="x")) == "channel_not_found"
    assert await api_error(client.chat_postMessage(channel=outside, text="x")) == "not_in_channel"
    assert await api_error(client.chat_postMessage(channel=cid, text="x" * 40_001)) == "msg_too_long"
    bad_blocks: list[Any] = [{"text": "no type"}]
    assert await api_error(client.chat_postMessage(channel=cid, text="x", blocks=bad_blocks)) == "invalid_blocks"
    not_dicts: list[Any] = ["section"]
    assert await api_error(client.chat_postMessage(channel=cid, text="x", blocks=not_dicts)) == "invalid_blocks"
    assert await api_error(client.api_call("chat.postMessage", json={"channel": cid})) == "no_text"
    assert await api_error(client.chat_postMessage(channel=cid, text="x", thread_ts="1.000001")) == "thread_not_found"
    assert sandbox.channels[cid].messages == []
    ok = await client.chat_postMessage(channel=cid, text="x" * 40_000)
    assert ok["ok"] is True


async def test_params_are_parsed_from_form_json_and_query(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-4")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    await client.api_call("chat.postMessage", data={"channel": cid, "text": "form", "blocks": json.dumps(blocks)})
    await client.api_call("chat.postMessage", json={"channel": cid, "text": "json", "blocks": blocks})
    await client.api_call("users.info", params={"user": "U1"})
    form_call, json_call = sandbox.calls_to("chat.postMessage")
    assert form_call.params == {"channel": cid, "text": "form", "blocks": blocks}
    assert json_call.params == {"channel": cid, "text": "json", "blocks": blocks}
    assert sandbox.calls_to("users.info")[0].params == {"user": "U1"}
    assert [m.blocks for m in sandbox.channels[cid].messages] == [blocks, blocks]


async def test_ephemeral_update_delete(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-5", members=["U1"])
    await client.chat_postEphemeral(channel=cid, user="U1", text="only you")
    assert await api_error(client.chat_postEphemeral(channel=cid, user="U2", text="x")) == "user_not_in_channel"
    assert [(e.user, e.text, e.source) for e in sandbox.ephemerals] == [("U1", "only you", "api")]
    posted = await client.chat_postMessage(channel=cid, text="draft")
    updated = await client.chat_update(channel=cid, ts=posted["ts"], text="final")
    assert updated["ts"] == posted["ts"] and sandbox.channels[cid].messages[0].text == "final"
    assert await api_error(client.chat_update(channel=cid, ts="1.000001", text="x")) == "message_not_found"
    user_message = await sandbox.post_user_message(cid, "U1", "mine")
    assert await api_error(client.chat_update(channel=cid, ts=user_message.ts, text="x")) == "cant_update_message"
    await client.chat_delete(channel=cid, ts=posted["ts"])
    assert [m.text for m in sandbox.channels[cid].messages] == ["mine"]


async def test_pins_and_reactions(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-6", members=["U1"])
    posted = await client.chat_postMessage(channel=cid, text="summary")
    await client.pins_add(channel=cid, timestamp=posted["ts"])
    assert sandbox.channels[cid].pins == [posted["ts"]]
    assert await api_error(client.pins_add(channel=cid, timestamp=posted["ts"])) == "already_pinned"
    assert await api_error(client.pins_add(channel=cid, timestamp="1.000001")) == "message_not_found"
    seeded = [await sandbox.post_user_message(cid, "U1", f"m{n}") for n in range(100)]
    sandbox.channels[cid].pins = [m.ts for m in seeded[:100]]
    assert await api_error(client.pins_add(channel=cid, timestamp=posted["ts"])) == "too_many_pins"
    await client.reactions_add(channel=cid, timestamp=posted["ts"], name="white_check_mark")
    assert await api_error(client.reactions_add(channel=cid, timestamp=posted["ts"], name="white_check_mark")) == (
        "already_reacted"
    )
    assert sandbox.channels[cid].messages[0].reactions == {"white_check_mark": ["U0BOT"]}


async def test_users_info_and_lookup(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    user = (await client.users_info(user="U1"))["user"]
    assert user["name"] == "alice" and user["tz"] == "Europe/Paris" and user["tz_offset"] in (3600, 7200)
    assert user["profile"]["email"] == "Alice@Example.com"
    assert user["profile"]["real_name"] == "Alice Adams" and user["profile"]["display_name"] == "alice"
    assert (await client.users_lookupByEmail(email="alice@example.com"))["user"]["id"] == "U1"
    assert await api_error(client.users_info(user="U404")) == "user_not_found"
    assert await api_error(client.users_lookupByEmail(email="nobody@example.com")) == "users_not_found"


# ---------------------------------------------------------------------------------------------------- Web API: limits


async def test_tier_limit_answers_429_with_retry_after(
    make_sandbox: SandboxFactory, http: aiohttp.ClientSession
) -> None:
    sandbox = await make_sandbox(tier_limits={2: 2})
    client = web_for(sandbox, http)
    await client.conversations_create(name="a1")
    await client.conversations_create(name="a2")
    with pytest.raises(SlackApiError) as info:
        await client.conversations_create(name="a3")
    assert info.value.response.status_code == 429
    assert info.value.response["error"] == "ratelimited"
    assert 1 <= int(info.value.response.headers["Retry-After"]) <= 60
    assert sandbox.channel_by_name("a3") is None
    assert [c.status for c in sandbox.calls_to("conversations.create")] == [200, 200, 429]
    # limits are per method: another tier-2 method still has its own budget
    a1 = sandbox.channel_by_name("a1")
    assert a1 is not None and (await client.conversations_setTopic(channel=a1.id, topic="t"))["ok"]


async def test_post_message_per_channel_burst(make_sandbox: SandboxFactory, http: aiohttp.ClientSession) -> None:
    sandbox = await make_sandbox(channel_burst=3, channel_rate=10.0)
    client = web_for(sandbox, http)
    busy = sandbox.add_channel("busy")
    calm = sandbox.add_channel("calm")
    for n in range(3):
        await client.chat_postMessage(channel=busy, text=f"{n}")
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel="#busy", text="too fast")  # same bucket by name
    assert info.value.response.status_code == 429 and info.value.response.headers["Retry-After"] == "1"
    assert (await client.chat_postMessage(channel=calm, text="other channel"))["ok"]
    await asyncio.sleep(0.15)  # 10 tokens/s: one is back
    assert (await client.chat_postMessage(channel=busy, text="refilled"))["ok"]
    assert [m.text for m in sandbox.channels[busy].messages] == ["0", "1", "2", "refilled"]


async def test_forced_rate_limit_and_failures(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    cid = sandbox.add_channel("inc-7")
    sandbox.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as info:
        await client.chat_postMessage(channel=cid, text="x")
    assert info.value.response.status_code == 429 and info.value.response.headers["Retry-After"] == "7"
    assert (await client.chat_postMessage(channel=cid, text="x"))["ok"]
    sandbox.fail("conversations.create", "internal_error", times=2)
    assert await api_error(client.conversations_create(name="x1")) == "internal_error"
    assert await api_error(client.conversations_create(name="x1")) == "internal_error"
    assert (await client.conversations_create(name="x1"))["ok"]
    assert [c.status for c in sandbox.calls_to("conversations.create")] == [200, 200, 200]


async def test_latency_injection(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    sandbox.set_latency("users.info", 0.25)
    started = time.monotonic()
    await client.users_info(user="U1")
    slow = time.monotonic() - started
    started = time.monotonic()
    await client.auth_test()
    fast = time.monotonic() - started
    assert slow >= 0.25 and fast < 0.2
    sandbox.set_latency("users.info", 0)
    sandbox.set_latency("*", 0.1)
    started = time.monotonic()
    await client.auth_test()
    assert time.monotonic() - started >= 0.1


async def test_hold_lets_calls_overlap_then_goes_away(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    sandbox.hold("users.info", until=2, timeout=5.0)
    first = asyncio.create_task(client.users_info(user="U1"))
    await asyncio.sleep(0.2)
    assert not first.done(), "the first call waits for a second one"
    started = time.monotonic()
    await asyncio.gather(first, client.users_info(user="U1"))
    assert time.monotonic() - started < 1.0, "the second call released both"
    started = time.monotonic()
    await client.users_info(user="U1")
    assert time.monotonic() - started < 1.0, "the hold was used up"


async def test_a_hold_nobody_joins_ends_at_its_timeout(sandbox: SlackSandbox, client: AsyncWebClient) -> None:
    sandbox.hold("users.info", until=2, timeout=0.3)
    started = time.monotonic()
    assert (await client.users_info(user="U1"))["ok"]
    assert 0.3 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    await client.users_info(user="U1")
    assert time.monotonic() - started < 0.3


# ---------------------------------------------------------------------------------------------------- Web API: files


async def test_file_upload_three_steps(
    sandbox: SlackSandbox, client: AsyncWebClient, http: aiohttp.ClientSession
) -> None:
    cid = sandbox.add_channel("inc-8")
    content = b"timeline\n" * 100
    result = await client.files_upload_v2(
        channel=cid, content=content, filename="timeline.txt", title="Timeline", initial_comment="attached"
    )
    file_id = result["file"]["id"]
    record = sandbox.files[file_id]
    assert record["content"] == content and record["length"] == len(content)
    assert record["completed"] is True and record["channels"] == [cid] and record["title"] == "Timeline"
    [message] = sandbox.channels[cid].messages
    assert message.files == [file_id] and message.text == "attached" and message.bot_id == "B0BOT"
    assert [c.method for c in sandbox.calls] == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    assert sandbox.calls[0].params["length"] == str(len(content))
    url_private = result["file"]["url_private"]
    async with http.get(url_private, headers={"Authorization": f"Bearer {sandbox.bot_token}"}) as resp:
        assert await resp.read() == content
    async with http.get(url_private) as resp:
        assert resp.status == 403


async def test_file_upload_rules(sandbox: SlackSandbox, client: AsyncWebClient, http: aiohttp.ClientSession) -> None:
    cid = sandbox.add_channel("inc-9")
    ticket = await client.files_getUploadURLExternal(filename="a.txt", length=5)
    assert ticket["upload_url"] == f"{sandbox.url}/upload/{ticket['file_id']}"
    files = [{"id": ticket["file_id"], "title": "A"}]
    not_yet = client.files_completeUploadExternal(files=files, channel_id=cid)
    assert await api_error(not_yet) == "file_not_found"
    async with http.post(ticket["upload_url"], data=b"1234") as resp:
        assert resp.status == 400  # length must match what was announced
    async with http.post(ticket["upload_url"], data=b"12345") as resp:
        assert resp.status == 200
    done = await client.files_completeUploadExternal(files=files, channel_id=cid, thread_ts=None)
    assert done["files"][0]["title"] == "A" and sandbox.files[ticket["file_id"]]["completed"] is True
    retired = client.api_call("files.upload", data={"channels": cid, "content": "x", "filename": "x.txt"})
    assert await api_error(retired) == "method_deprecated"


# ---------------------------------------------------------------------------------------------------- Socket Mode


async def test_hello_and_connection(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    app = await socket_app_factory(sandbox)
    await sandbox.wait_for(lambda: bool(app.frames))
    hello = app.frames[0]
    assert hello["type"] == "hello" and hello["num_connections"] == 1
    assert hello["connection_info"]["app_id"] == "A0SANDBOX"
    assert hello["debug_info"]["approximate_connection_time"] > 0
    assert sandbox.connection_count == 1
    [open_call] = sandbox.calls_to("apps.connections.open")
    assert open_call.token == sandbox.app_token
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/socket/\S+", open_call.response["url"])


async def test_slash_command_delivered_and_acked(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    cid = sandbox.add_channel("inc-10", members=["U1"])
    app = await socket_app_factory(sandbox)
    envelope = await sandbox.send_slash_command("/incident", "declare db is down", user_id="U1", channel_id=cid)
    assert envelope.acked_at is not None and envelope.ack_latency is not None and 0 <= envelope.ack_latency < 1
    [request] = app.requests
    assert request.type == "slash_commands" and request.envelope_id == envelope.envelope_id
    assert request.accepts_response_payload is True
    payload = request.payload
    assert payload["command"] == "/incident" and payload["text"] == "declare db is down"
    assert (payload["user_id"], payload["user_name"], payload["channel_id"], payload["channel_name"]) == (
        "U1",
        "alice",
        cid,
        "inc-10",
    )
    assert (payload["team_id"], payload["team_domain"], payload["api_app_id"]) == ("T0SANDBOX", "sandbox", "A0SANDBOX")
    assert payload["trigger_id"] and payload["response_url"].startswith(sandbox.url)
    second = await sandbox.send_slash_command("/incident", "", user_id="U1", channel_id=cid)
    assert second.payload["trigger_id"] != payload["trigger_id"]
    assert sandbox.unacked() == []


async def test_ack_body_response_url_and_trigger(
    sandbox: SlackSandbox,
    socket_app_factory: Callable[..., Awaitable[SocketApp]],
    client: AsyncWebClient,
    http: aiohttp.ClientSession,
) -> None:
    cid = sandbox.add_channel("inc-11", members=["U1"])
    app = await socket_app_factory(sandbox)
    app.ack_body = {"text": "Declaring…"}
    envelope = await sandbox.send_slash_command("/incident", "declare", user_id="U1", channel_id=cid)
    assert envelope.ack_payload == {"text": "Declaring…"}
    assert [(e.user, e.text, e.source) for e in sandbox.ephemerals] == [("U1", "Declaring…", "ack")]
    async with http.post(envelope.payload["response_url"], json={"response_type": "in_channel", "text": "Declared"}):
        pass
    assert [m.text for m in sandbox.channels[cid].messages] == ["Declared"]
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Declare"}, "blocks": []}
    opened = await client.views_open(trigger_id=envelope.payload["trigger_id"], view=view)
    assert opened["view"]["id"].startswith("V")
    reused = client.views_open(trigger_id=envelope.payload["trigger_id"], view=view)
    assert await api_error(reused) == "exchanged_trigger_id"
    assert await api_error(client.views_open(trigger_id="1.2.3", view=view)) == "invalid_trigger_id"


async def test_unacked_envelope_is_redelivered_as_a_new_envelope(
    make_sandbox: SandboxFactory, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    sandbox = await make_sandbox(ack_timeout=0.2, max_redeliveries=1)
    cid = sandbox.add_channel("inc-12", members=["U1"])
    app = await socket_app_factory(sandbox, ack=False)
    first = await sandbox.send_slash_command("/incident", "x", user_id="U1", channel_id=cid, wait_ack=False)
    await sandbox.wait_for(lambda: len(app.requests) == 2, timeout=2)
    original, retry = app.requests
    assert original.envelope_id == first.envelope_id and retry.envelope_id != first.envelope_id
    assert retry.retry_attempt == 1 and retry.retry_reason == "timeout"
    assert retry.payload["trigger_id"] == original.payload["trigger_id"]
    await asyncio.sleep(0.35)  # max_redeliveries=1: nothing more comes
    assert len(sandbox.envelopes) == 2 and len(sandbox.unacked()) == 2
    assert sandbox.envelopes[1].delivery_id == first.delivery_id


async def test_redelivery_stops_once_acked_and_manual_redeliver(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    app = await socket_app_factory(sandbox, ack=False)
    event = {"type": "app_mention", "user": "U1", "text": "<@U0BOT> status", "channel": "C1"}
    original = await sandbox.send_event(event, wait_ack=False)
    await sandbox.wait_for(lambda: len(app.requests) == 2, timeout=2)
    app.ack = True
    await app.client.send_socket_mode_response(SocketModeResponse(envelope_id=app.requests[1].envelope_id))
    acked = await sandbox.hub.wait_acked(original, timeout=2)
    assert acked.retry_attempt == 1 and acked.envelope_id != original.envelope_id
    await asyncio.sleep(0.4)
    assert len(sandbox.envelopes) == 2  # the delivery was acked: no third attempt
    again = await sandbox.redeliver(acked)
    assert again.retry_attempt == 2 and again.acked_at is not None
    assert again.payload["event_id"] == original.payload["event_id"]
    assert app.requests[-1].retry_attempt == 2 and app.requests[-1].retry_reason == "timeout"


async def test_events_api_envelope_shape(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    app = await socket_app_factory(sandbox)
    envelope = await sandbox.send_event({"type": "app_mention", "user": "U1", "text": "hi", "channel": "C1"})
    frame = next(f for f in app.frames if f.get("envelope_id") == envelope.envelope_id)
    assert frame["type"] == "events_api" and frame["retry_attempt"] == 0 and frame["retry_reason"] == ""
    payload = frame["payload"]
    assert payload["type"] == "event_callback" and payload["event_id"].startswith("Ev")
    assert abs(payload["event_time"] - time.time()) < 5
    assert (payload["team_id"], payload["api_app_id"]) == ("T0SANDBOX", "A0SANDBOX")
    assert payload["event"]["type"] == "app_mention" and payload["event"]["event_ts"]
    assert envelope.acked_at is not None


async def test_envelopes_wait_for_a_socket(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    envelope = await sandbox.send_event({"type": "app_mention", "text": "early"}, wait_ack=False)
    assert sandbox.connection_count == 0 and envelope.acked_at is None
    app = await socket_app_factory(sandbox)
    acked = await sandbox.hub.wait_acked(envelope, timeout=2)
    assert acked is envelope and app.events()[0]["text"] == "early"


async def test_disconnect_refresh_requested_reconnects_with_a_new_url(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]]
) -> None:
    cid = sandbox.add_channel("inc-13", members=["U1"])
    app = await socket_app_factory(sandbox)
    await sandbox.disconnect("refresh_requested")
    # slack-sdk reconnects on the frame and again on the close, whichever it sees first, so 2 or 3 URLs
    await sandbox.wait_for(
        lambda: len(sandbox.calls_to("apps.connections.open")) >= 2 and sandbox.connection_count == 1, timeout=5
    )
    urls = [c.response["url"] for c in sandbox.calls_to("apps.connections.open")]
    assert len(set(urls)) == len(urls)  # a fresh URL each time
    assert sandbox.hub.connections_opened >= 2 and app.client.current_session is not None
    envelope = await sandbox.send_slash_command("/incident", "after", user_id="U1", channel_id=cid)
    assert envelope.acked_at is not None


async def test_link_disabled_turns_socket_mode_off(
    sandbox: SlackSandbox, raw_sockets: Callable[..., Awaitable[RawSocket]], http: aiohttp.ClientSession
) -> None:
    sock = await raw_sockets(sandbox)
    await sandbox.wait_connected()
    await sandbox.disconnect("link_disabled")
    await sandbox.wait_for(lambda: sock.ws.closed)
    assert sock.of_type("disconnect")[0]["reason"] == "link_disabled"
    app_client = web_for(sandbox, http, sandbox.app_token)
    assert await api_error(app_client.apps_connections_open(app_token=sandbox.app_token)) == "socket_mode_not_enabled"
    sandbox.socket_mode_enabled = True
    assert (await app_client.apps_connections_open(app_token=sandbox.app_token))["ok"]


async def test_ticket_is_single_use(
    sandbox: SlackSandbox, raw_sockets: Callable[..., Awaitable[RawSocket]], http: aiohttp.ClientSession
) -> None:
    opened = await web_for(sandbox, http, sandbox.app_token).apps_connections_open(app_token=sandbox.app_token)
    sock = await raw_sockets(sandbox, url=opened["url"])
    await sandbox.wait_for(lambda: bool(sock.of_type("hello")))
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(opened["url"])
    assert 400 <= info.value.status < 500
    assert sandbox.connection_count == 1


async def test_more_than_ten_sockets_are_refused(
    sandbox: SlackSandbox, raw_sockets: Callable[..., Awaitable[RawSocket]]
) -> None:
    accepted = [await raw_sockets(sandbox) for _ in range(10)]
    await sandbox.wait_connected(count=10)
    extra = await raw_sockets(sandbox)
    await sandbox.wait_for(lambda: extra.ws.closed)
    assert [f["type"] for f in extra.frames] == ["disconnect"]
    assert extra.frames[0]["reason"] == "too_many_websockets"
    assert sandbox.connection_count == 10 and sandbox.hub.connections_refused == 1
    assert [s.of_type("hello")[0]["num_connections"] for s in accepted] == list(range(1, 11))
    await accepted[0].ws.close()
    await sandbox.wait_for(lambda: sandbox.connection_count == 9)
    replacement = await raw_sockets(sandbox)
    await sandbox.wait_for(lambda: bool(replacement.of_type("hello")))
    assert sandbox.connection_count == 10


async def test_each_payload_goes_to_one_socket_round_robin(
    sandbox: SlackSandbox, raw_sockets: Callable[..., Awaitable[RawSocket]]
) -> None:
    socks = [await raw_sockets(sandbox), await raw_sockets(sandbox)]
    await sandbox.wait_connected(count=2)
    envelopes = [await sandbox.send_event({"type": "app_mention", "text": str(n)}) for n in range(4)]
    received = [f["envelope_id"] for s in socks for f in s.of_type("events_api")]
    assert sorted(received) == sorted(e.envelope_id for e in envelopes)  # each exactly once
    assert [len(s.of_type("events_api")) for s in socks] == [2, 2]
    assert len({e.connection_id for e in envelopes}) == 2


async def test_server_pings(make_sandbox: SandboxFactory, raw_sockets: Callable[..., Awaitable[RawSocket]]) -> None:
    sandbox = await make_sandbox(ping_interval=0.05)
    sock = await raw_sockets(sandbox)
    await sandbox.wait_for(lambda: sock.pings >= 2, timeout=2)
    assert sandbox.connection_count == 1  # pongs keep it alive


# ---------------------------------------------------------------------------------------------------- message events


async def test_message_events_only_for_member_channels(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]], client: AsyncWebClient
) -> None:
    member = sandbox.add_channel("inc-14", members=["U1"])
    stranger = sandbox.add_channel("random", members=["U1"], bot_member=False)
    app = await socket_app_factory(sandbox)
    await sandbox.post_user_message(stranger, "U1", "not for the bot", wait_ack=True)
    said = await sandbox.post_user_message(member, "U1", "db is slow", wait_ack=True)
    reply = await sandbox.post_user_message(member, "U1", "still slow", thread_ts=said.ts, wait_ack=True)
    posted = await client.chat_postMessage(channel=member, text="ack from bot")
    await sandbox.wait_for(lambda: len(app.events()) == 3)
    user_event, reply_event, bot_event = app.events()
    assert (user_event["type"], user_event["user"], user_event["text"]) == ("message", "U1", "db is slow")
    assert user_event["channel"] == member and user_event["channel_type"] == "channel" and user_event["ts"] == said.ts
    assert "bot_id" not in user_event and "thread_ts" not in user_event
    assert reply_event["thread_ts"] == said.ts and reply_event["ts"] == reply.ts
    assert bot_event["bot_id"] == "B0BOT" and bot_event["ts"] == posted["ts"]
    assert all(e["channel"] != stranger for e in app.events())


async def test_edit_delete_join_and_reaction_events(
    sandbox: SlackSandbox, socket_app_factory: Callable[..., Awaitable[SocketApp]], client: AsyncWebClient
) -> None:
    cid = sandbox.add_channel("inc-15", members=["U1"])
    app = await socket_app_factory(sandbox)
    said = await sandbox.post_user_message(cid, "U1", "typo", wait_ack=True)
    await sandbox.edit_user_message(cid, said.ts, "fixed", wait_ack=True)
    await sandbox.add_reaction(cid, said.ts, "U1", "eyes", wait_ack=True)
    await sandbox.delete_message(cid, said.ts, wait_ack=True)
    await client.conversations_invite(channel=cid, users="U2")
    await sandbox.wait_for(lambda: len(app.events()) == 5)
    _, changed, reaction, deleted, joined = app.events()
    assert changed["subtype"] == "message_changed" and changed["message"]["ts"] == said.ts
    assert changed["message"]["text"] == "fixed" and changed["previous_message"]["text"] == "typo"
    assert changed["message"]["edited"]["user"] == "U1"
    assert reaction["type"] == "reaction_added" and reaction["reaction"] == "eyes"
    assert reaction["item"] == {"type": "message", "channel": cid, "ts": said.ts}
    assert deleted["subtype"] == "message_deleted" and deleted["deleted_ts"] == said.ts
    assert joined["subtype"] == "channel_join" and joined["user"] == "U2" and joined["inviter"] == "U0BOT"


async def test_bot_post_events_can_be_turned_off(
    make_sandbox: SandboxFactory,
    socket_app_factory: Callable[..., Awaitable[SocketApp]],
    http: aiohttp.ClientSession,
) -> None:
    sandbox = await make_sandbox(emit_message_events=False)
    cid = sandbox.add_channel("inc-16", members=["U1"])
    app = await socket_app_factory(sandbox)
    await web_for(sandbox, http).chat_postMessage(channel=cid, text="quiet")
    await sandbox.post_user_message(cid, "U1", "loud", wait_ack=True)
    assert [e["text"] for e in app.events()] == ["loud"]
    assert len(sandbox.envelopes) == 1


# ---------------------------------------------------------------------------------------------------- slack-bolt


async def test_bolt_socket_mode_handler_end_to_end(sandbox: SlackSandbox, http: aiohttp.ClientSession) -> None:
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
    from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncSay

    cid = sandbox.add_channel("inc-17", members=["U1"])
    app = AsyncApp(client=web_for(sandbox, http))

    @app.command("/incident")
    async def incident(ack: AsyncAck, say: AsyncSay, command: dict[str, Any]) -> None:
        await ack(f"working on {command['text']}")
        await say(f"Incident declared by <@{command['user_id']}>")

    handler = AsyncSocketModeHandler(app, sandbox.app_token, ping_interval=0.2)
    await asyncio.wait_for(handler.connect_async(), 5)  # type: ignore[no-untyped-call]
    try:
        await sandbox.wait_connected()
        envelope: Envelope = await sandbox.send_slash_command("/incident", "db down", user_id="U1", channel_id=cid)
        assert envelope.ack_payload is not None and envelope.ack_payload["text"] == "working on db down"
        await sandbox.wait_for(lambda: len(sandbox.channels[cid].messages) == 1)
        assert sandbox.channels[cid].messages[0].text == "Incident declared by <@U1>"
        assert [e.text for e in sandbox.ephemerals] == ["working on db down"]
        # the bot's own message comes back as an event, which Bolt ignores but acks
        await sandbox.wait_for(lambda: len(sandbox.envelopes) == 2 and not sandbox.unacked())
        assert sandbox.envelopes[1].payload["event"]["bot_id"] == "B0BOT"
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]
