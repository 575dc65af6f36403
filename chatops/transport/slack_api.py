"""Slack Web API behind the :class:`~chatops.transport.base.Chat` seam.

One rate-aware client for the whole process: per-method tier windows, a per-channel pacer for chat.postMessage,
429 + ``Retry-After`` and 5xx / network errors retried with :func:`chatops.retry.retry_async`. Slack's ``ok: false``
answers become :class:`ChatError` carrying Slack's error code, so callers branch on codes, never on SDK types.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from chatops.retry import Backoff, Retryable, parse_retry_after, retry_async
from chatops.transport.base import Blocks, ChatError, ChatUnavailable, PostedMessage, StoredMessage, UserProfile
from chatops.transport.ratelimit import METHOD_TIERS, TIER_LIMITS, ChannelPacer, SlidingWindow

__all__ = ["SlackChat"]

log = logging.getLogger(__name__)

_JSON_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})
_GET_METHODS = frozenset(
    {"users.info", "conversations.info", "conversations.members", "conversations.history", "usergroups.users.list"}
)
# A create that answered internal_error/5xx may have happened (PROTOCOLS.md §2): retrying could make a second
# channel or post twice, so those errors reach the caller, who reports them (429s are always safe to retry).
_CREATES = frozenset({"conversations.create", "chat.postMessage", "files.completeUploadExternal"})
# Errors that may succeed on a second try of a method that is safe to repeat.
_TRANSIENT_CODES = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# chat.postMessage pacing per channel: Slack allows about 1 message/s. Slack counts when a request *arrives*, we
# count when we *send*: pacing at exactly 1/s draws a 429 (and a >= 1 s Retry-After) whenever a later request
# travels faster than an earlier one (a fresh connection vs a kept-alive one is enough). 10 % slack absorbs that.
_CHANNEL_RATE = 1.0 / 1.1


class SlackChat:
    """The Slack implementation of :class:`~chatops.transport.base.Chat`."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        backoff: Backoff | None = None,
        tier_limits: dict[int, int] | None = None,
        channel_burst: int = 3,
        request_timeout: float = 30.0,
    ) -> None:
        self.client = client
        # Per attempt. The SDK ignores its own ``timeout`` when given a shared session, which is how the daemon
        # builds it, so without this a stalled Slack would hold a step for aiohttp's 5-minute default.
        self._request_timeout = request_timeout
        self.bot_user_id = ""
        self.team_id = ""
        self._backoff = backoff or Backoff(attempts=5, base=0.2, cap=5.0)
        self._tier_limits = dict(TIER_LIMITS) | (tier_limits or {})
        self._windows: dict[str, SlidingWindow] = {}
        self._pacer = ChannelPacer(rate=_CHANNEL_RATE, burst=channel_burst)

    @classmethod
    def create(cls, *, token: str, base_url: str, session: aiohttp.ClientSession, **kwargs: Any) -> SlackChat:
        """Build the client on a shared aiohttp session (one connection pool for the process)."""
        web = AsyncWebClient(token=token, base_url=base_url, session=session, retry_handlers=[])
        return cls(web, **kwargs)

    async def start(self) -> dict[str, Any]:
        """Verify the token with auth.test and learn who the bot is."""
        info = await self.call("auth.test")
        self.bot_user_id = str(info.get("user_id", ""))
        self.team_id = str(info.get("team_id", ""))
        return info

    def _window(self, method: str) -> SlidingWindow:
        window = self._windows.get(method)
        if window is None:
            tier = METHOD_TIERS.get(method, 3)
            window = self._windows[method] = SlidingWindow(self._tier_limits[tier])
        return window

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a Web API method; return the response body or raise ChatError / ChatUnavailable."""

        async def attempt() -> dict[str, Any]:
            if method == "chat.postMessage":
                await self._pacer.acquire(str(params.get("channel", "")))
            else:
                await self._window(method).acquire()
            try:
                async with asyncio.timeout(self._request_timeout):
                    response = await self._send(method, params)
            except SlackApiError as exc:
                status = exc.response.status_code
                code = str(exc.response.get("error", "unknown_error"))
                if status == 429:
                    raise Retryable("ratelimited", status=429, retry_after=_retry_after(exc.response.headers)) from exc
                if (status >= 500 or code in _TRANSIENT_CODES) and method not in _CREATES:
                    raise Retryable(code, status=status) from exc
                raise ChatError(method, code) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Retryable(type(exc).__name__) from exc
            return dict(response.data) if isinstance(response.data, dict) else {}

        def give_up(exc: Retryable, attempts: int) -> Exception:
            log.warning("slack call failed", extra={"method": method, "error": exc.detail, "attempts": attempts})
            return ChatUnavailable(method, exc.detail, attempts)

        return await retry_async(attempt, self._backoff, on_giveup=give_up)

    async def _send(self, method: str, params: dict[str, Any]) -> Any:
        # Mirror the SDK's own encodings: chat.* as JSON (blocks), reads as GET, the rest form-encoded.
        if method in _JSON_METHODS:
            return await self.client.api_call(method, json=params)
        if method in _GET_METHODS:
            return await self.client.api_call(method, http_verb="GET", params=params)
        form = {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in params.items()}
        return await self.client.api_call(method, params=form)

    async def create_channel(self, name: str) -> str:
        """Create a public channel and return its id."""
        data = await self.call("conversations.create", name=name, is_private=False)
        return str(data["channel"]["id"])

    async def set_topic(self, channel: str, topic: str) -> None:
        """Set the channel topic."""
        await self.call("conversations.setTopic", channel=channel, topic=topic)

    async def set_purpose(self, channel: str, purpose: str) -> None:
        """Set the channel purpose."""
        await self.call("conversations.setPurpose", channel=channel, purpose=purpose)

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        """Invite users (at most 100 per call); ``already_in_channel`` counts as done."""
        for start in range(0, len(user_ids), 100):
            try:
                await self.call("conversations.invite", channel=channel, users=",".join(user_ids[start : start + 100]))
            except ChatError as exc:
                if exc.code != "already_in_channel":
                    raise

    async def post_message(
        self, channel: str, text: str, blocks: Blocks | None = None, *, thread_ts: str | None = None
    ) -> PostedMessage:
        """Post a message; returns where it landed."""
        params: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
        if blocks is not None:
            params["blocks"] = list(blocks)
        if thread_ts is not None:
            params["thread_ts"] = thread_ts
        data = await self.call("chat.postMessage", **params)
        return PostedMessage(channel=str(data["channel"]), ts=str(data["ts"]))

    async def update_message(self, channel: str, ts: str, text: str, blocks: Blocks | None = None) -> None:
        """Edit a message the bot posted."""
        params: dict[str, Any] = {"channel": channel, "ts": ts, "text": text}
        if blocks is not None:
            params["blocks"] = list(blocks)
        await self.call("chat.update", **params)

    async def post_ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> None:
        """Show a message to one user in a channel."""
        params: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if blocks is not None:
            params["blocks"] = list(blocks)
        await self.call("chat.postEphemeral", **params)

    async def pin(self, channel: str, ts: str) -> None:
        """Pin a message; ``already_pinned`` counts as done."""
        try:
            await self.call("pins.add", channel=channel, timestamp=ts)
        except ChatError as exc:
            if exc.code != "already_pinned":
                raise

    async def user_profile(self, user_id: str) -> UserProfile:
        """users.info, reduced to what chatops uses."""
        data = await self.call("users.info", user=user_id)
        user = data.get("user", {})
        profile = user.get("profile", {})
        return UserProfile(
            id=user_id,
            name=str(user.get("name", user_id)),
            real_name=profile.get("real_name") or user.get("real_name"),
            email=profile.get("email"),
        )

    async def channel_members(self, channel: str) -> list[str]:
        """Every page of conversations.members."""
        members: list[str] = []
        cursor = ""
        while True:
            params: dict[str, Any] = {"channel": channel, "limit": 200}
            if cursor:
                params["cursor"] = cursor
            data = await self.call("conversations.members", **params)
            members += [str(m) for m in data.get("members", [])]
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return members

    async def usergroup_members(self, usergroup: str) -> list[str]:
        """usergroups.users.list (needs the ``usergroups:read`` scope)."""
        data = await self.call("usergroups.users.list", usergroup=usergroup)
        return [str(u) for u in data.get("users", [])]

    async def fetch_message(self, channel: str, ts: str) -> StoredMessage | None:
        """conversations.history pinned to one ``ts``."""
        data = await self.call("conversations.history", channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1)
        for message in data.get("messages", []):
            if str(message.get("ts")) == ts:
                blocks = message.get("blocks")
                return StoredMessage(
                    channel, ts, str(message.get("text", "")), blocks if isinstance(blocks, list) else None
                )
        return None

    async def upload_file(
        self,
        channel: str,
        filename: str,
        content: bytes,
        *,
        title: str,
        initial_comment: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """files.getUploadURLExternal → POST the bytes to its ``upload_url`` → files.completeUploadExternal.

        (``files.upload`` is retired.) The bytes go over the shared aiohttp session, retried on 5xx and network
        errors; the file is shared in ``channel`` (optionally in a thread, with a comment). Returns the file id.
        """
        ticket = await self.call("files.getUploadURLExternal", filename=filename, length=len(content))
        upload_url, file_id = str(ticket["upload_url"]), str(ticket["file_id"])
        await self._post_bytes(upload_url, content)
        params: dict[str, Any] = {"files": [{"id": file_id, "title": title}], "channel_id": channel}
        if initial_comment:
            params["initial_comment"] = initial_comment
        if thread_ts:
            params["thread_ts"] = thread_ts
        await self.call("files.completeUploadExternal", **params)
        return file_id

    async def _post_bytes(self, url: str, content: bytes) -> None:
        session = self.client.session
        own = session is None
        http = aiohttp.ClientSession() if session is None else session

        async def attempt() -> None:
            try:
                headers = {"Content-Type": "application/octet-stream"}
                async with http.post(url, data=content, headers=headers) as response:
                    body = await response.text()
                    if response.status >= 500 or response.status == 429:
                        raise Retryable(f"http_{response.status}", status=response.status)
                    if response.status != 200:
                        raise ChatError("files.upload_url", f"http_{response.status}: {body[:200]}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Retryable(type(exc).__name__) from exc

        def give_up(exc: Retryable, attempts: int) -> Exception:
            log.warning("file upload failed", extra={"error": exc.detail, "attempts": attempts})
            return ChatUnavailable("files.upload_url", exc.detail, attempts)

        try:
            await retry_async(attempt, self._backoff, on_giveup=give_up)
        finally:
            if own:
                await http.close()

    def channel_link(self, channel_id: str) -> str:
        """``<#C123>`` renders as a clickable channel name in Slack."""
        return f"<#{channel_id}>"


def _retry_after(headers: Any) -> float | None:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == "retry-after":
            return parse_retry_after(str(value))
    return None
