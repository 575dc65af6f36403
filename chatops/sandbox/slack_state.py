"""Workspace state and Web API semantics of the Slack sandbox.

This module holds everything of :mod:`chatops.sandbox.slack` that needs no socket: the records tests inspect
(:class:`Call`, :class:`Message`, :class:`Channel`, :class:`Ephemeral`, :class:`User`), the rate-limit primitives,
channel-name validation, and :class:`Workspace`, which implements each emulated Web API method as a plain
synchronous function of its parameters (PROTOCOLS §2). Methods raise :class:`ApiError` for ``ok:false`` answers
and queue the Events API events they cause (``message``, ``message_changed``, ``message_deleted``,
``channel_join``, ``reaction_added``) in :attr:`Workspace.outbox`; the server drains that queue into Socket Mode
envelopes. Events about a channel are only queued when the bot is a member of it, as on Slack.
"""

from __future__ import annotations

import copy
import math
import re
import secrets
import time
import zoneinfo
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "APP_TOKEN_METHODS",
    "DEFAULT_TIER_LIMITS",
    "METHOD_TIERS",
    "TOKENLESS_METHODS",
    "ApiError",
    "Call",
    "Channel",
    "Ephemeral",
    "Message",
    "SlidingWindow",
    "TokenBucket",
    "User",
    "Usergroup",
    "Workspace",
    "retry_after_seconds",
    "validate_channel_name",
]

#: Requests per minute per method, by tier (PROTOCOLS §2: Tier 1 ≥1, Tier 2 ≥20, Tier 3 ≥50, Tier 4 ≥100).
DEFAULT_TIER_LIMITS: dict[int, int] = {1: 1, 2: 20, 3: 50, 4: 100}

#: Every emulated method and its tier; ``None`` means "special" (not limited per minute here).
#: ``chat.postMessage`` is limited per channel by a token bucket instead. ``apps.connections.open`` is Tier 1 on
#: Slack but is left unlimited so that reconnect tests do not wait a minute for their second URL.
METHOD_TIERS: dict[str, int | None] = {
    "api.test": None,
    "auth.test": None,
    "apps.connections.open": None,
    "conversations.create": 2,
    "conversations.setTopic": 2,
    "conversations.setPurpose": 2,
    "conversations.invite": 3,
    "conversations.info": 3,
    "conversations.members": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.archive": 2,
    "conversations.join": 3,
    "conversations.list": 2,
    "chat.postMessage": None,
    "chat.postEphemeral": 4,
    "chat.update": 3,
    "chat.delete": 3,
    "pins.add": 2,
    "pins.list": 2,
    "reactions.add": 3,
    "users.info": 4,
    "users.lookupByEmail": 3,
    "files.getUploadURLExternal": 4,
    "files.completeUploadExternal": 4,
    "files.info": 4,
    "files.upload": 2,
    "views.open": 4,
    "usergroups.users.list": 2,
}

#: Methods that take the app-level ``xapp-`` token; every other method takes the bot ``xoxb-`` token.
APP_TOKEN_METHODS: frozenset[str] = frozenset({"apps.connections.open"})

#: Methods that need no token at all.
TOKENLESS_METHODS: frozenset[str] = frozenset({"api.test"})

MAX_NAME_LENGTH = 80
MAX_TOPIC_LENGTH = 250
MAX_TEXT_LENGTH = 40_000
MAX_BLOCKS = 50
MAX_PINS = 100
MAX_INVITE_USERS = 100
TRIGGER_TTL = 3.0

_NAME_CHARS = re.compile(r"[a-z0-9_-]+")


class ApiError(Exception):
    """An ``ok:false`` answer: ``{"ok": false, "error": code, **extra}`` with HTTP 200."""

    def __init__(self, code: str, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body Slack would send."""
        return {"ok": False, "error": self.code, **self.extra}


@dataclass
class Call:
    """One Web API request as the sandbox saw and answered it (failed and rate-limited ones included).

    ``params`` merges query string and body, without ``token``; ``blocks``, ``attachments``, ``files``, ``view``
    and ``metadata`` sent as JSON strings are decoded. ``at`` is ``time.monotonic()`` on arrival.
    """

    method: str
    params: dict[str, Any]
    token: str | None
    at: float
    status: int
    response: dict[str, Any]


@dataclass
class Message:
    """A message in a channel. ``thread_ts`` is set on replies only; ``files`` holds file ids."""

    ts: str
    user: str | None
    bot_id: str | None
    text: str
    blocks: list[Any] | None = None
    thread_ts: str | None = None
    files: list[str] = field(default_factory=list)
    attachments: list[Any] | None = None
    reactions: dict[str, list[str]] = field(default_factory=dict)
    edited_ts: str | None = None


@dataclass
class Channel:
    """A conversation. ``members`` includes the bot user id when the bot is in it; ``pins`` holds message ts."""

    id: str
    name: str
    topic: str = ""
    purpose: str = ""
    members: set[str] = field(default_factory=set)
    pins: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    is_archived: bool = False
    is_private: bool = False
    creator: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def find(self, ts: str) -> Message | None:
        """The message with this ``ts`` (replies included), or ``None``."""
        for message in reversed(self.messages):
            if message.ts == ts:
                return message
        return None


@dataclass
class Ephemeral:
    """A message only ``user`` saw: chat.postEphemeral, a slash-command ack body, or a response_url post."""

    channel: str
    user: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None = None
    source: str = "api"


@dataclass
class Usergroup:
    """A user group (``@sre-oncall``): ``id`` like ``S0123``, ``handle`` without ``@``, member user ids."""

    id: str
    handle: str
    users: list[str] = field(default_factory=list)


@dataclass
class User:
    """A workspace member."""

    id: str
    name: str
    email: str | None = None
    real_name: str | None = None
    tz: str = "UTC"
    tz_offset: int = 0
    is_bot: bool = False
    bot_id: str | None = None


def validate_channel_name(name: str) -> str | None:
    """Return the conversations.create error code for ``name``, or ``None`` when Slack would accept it.

    Slack validates and does not fix: upper case, spaces and other punctuation are refused, never lowered or
    replaced. Only ASCII letters are accepted here.
    """
    if not name or not name.strip():
        return "invalid_name_required"
    if len(name) > MAX_NAME_LENGTH:
        return "invalid_name_maxlength"
    if not _NAME_CHARS.fullmatch(name):
        return "invalid_name_specials"
    if set(name) <= {"-", "_"}:
        return "invalid_name_punctuation"
    return None


def retry_after_seconds(wait: float) -> int:
    """A ``Retry-After`` value: whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class SlidingWindow:
    """At most ``limit`` admissions in any ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()

    def acquire(self, now: float) -> float | None:
        """Admit one call at ``now`` and return ``None``, or return the seconds until one would be admitted."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return (self._times[0] + self.window - now) if self._times else self.window
        self._times.append(now)
        return None


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` tokens per second."""

    def __init__(self, capacity: int, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self._tokens = float(capacity)
        self._stamp = now

    def acquire(self, now: float) -> float | None:
        """Take a token and return ``None``, or return the seconds until a token is available."""
        self._tokens = min(float(self.capacity), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate if self.rate > 0 else 60.0


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _as_ts(value: Any, default: float, error: str) -> float:
    text = _as_str(value)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ApiError(error) from None


def _page(items: list[Any], params: dict[str, Any], default_limit: int) -> tuple[list[Any], str]:
    """Cursor pagination: ``cursor`` is an opaque offset; returns the page and the next cursor ("" at the end)."""
    limit = max(1, min(_as_int(params.get("limit"), default_limit), 1000))
    cursor = _as_str(params.get("cursor")) or ""
    if cursor and not (cursor.startswith("offset_") and cursor[len("offset_") :].isdigit()):
        raise ApiError("invalid_cursor")
    offset = int(cursor[len("offset_") :]) if cursor else 0
    page = items[offset : offset + limit]
    return page, (f"offset_{offset + limit}" if offset + limit < len(items) else "")


class Workspace:
    """One Slack workspace with one installed app; see the module docstring."""

    def __init__(
        self,
        *,
        team_id: str,
        team_domain: str,
        app_id: str,
        bot_user_id: str,
        bot_id: str,
        bot_name: str,
        emit_message_events: bool = True,
    ) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.emit_message_events = emit_message_events
        #: Base of the sandbox's own URLs (upload URLs, file links), set by the server once it listens.
        self.public_url = "http://127.0.0.1"
        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.ephemerals: list[Ephemeral] = []
        self.views: list[dict[str, Any]] = []
        self.usergroups: dict[str, Usergroup] = {}
        #: Inner ``event`` bodies waiting to be wrapped in ``event_callback`` envelopes and sent.
        self.outbox: list[dict[str, Any]] = []
        self._triggers: dict[str, tuple[float, bool]] = {}
        self._last_us = 0
        self._seq = 0
        self.users[bot_user_id] = User(bot_user_id, bot_name, real_name=bot_name, is_bot=True, bot_id=bot_id)
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "api.test": lambda params: {"args": params},
            "auth.test": self._auth_test,
            "conversations.create": self._conversations_create,
            "conversations.setTopic": lambda p: self._set_text_field(p, "topic"),
            "conversations.setPurpose": lambda p: self._set_text_field(p, "purpose"),
            "conversations.invite": self._conversations_invite,
            "conversations.info": self._conversations_info,
            "conversations.members": self._conversations_members,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.archive": self._conversations_archive,
            "conversations.join": self._conversations_join,
            "conversations.list": self._conversations_list,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "pins.add": self._pins_add,
            "pins.list": self._pins_list,
            "reactions.add": self._reactions_add,
            "users.info": self._users_info,
            "users.lookupByEmail": self._users_lookup_by_email,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "files.info": self._files_info,
            "files.upload": self._files_upload,
            "views.open": self._views_open,
            "usergroups.users.list": self._usergroups_users_list,
        }

    # ------------------------------------------------------------------ identifiers and time

    def new_id(self, prefix: str) -> str:
        """A fresh Slack-looking id: ``prefix`` + sequence + random hex, e.g. ``C0001A1B2C3``."""
        self._seq += 1
        return f"{prefix}{self._seq:04d}{secrets.token_hex(3).upper()}"

    def next_ts(self) -> str:
        """A message ``ts``: the current time with microseconds, strictly increasing across the workspace."""
        now_us = time.time_ns() // 1000
        self._last_us = max(now_us, self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def issue_trigger(self) -> str:
        """A fresh ``trigger_id`` (single use, valid for 3 s in views.open)."""
        trigger = f"{int(time.time())}.{self._seq + 1}.{secrets.token_hex(16)}"
        self._seq += 1
        self._triggers[trigger] = (time.monotonic(), False)
        return trigger

    # ------------------------------------------------------------------ control operations (no token checks)

    def add_user(
        self, user_id: str, name: str, *, email: str | None = None, real_name: str | None = None, tz: str = "UTC"
    ) -> User:
        """Create a user; ``tz`` must be an IANA zone name (``ValueError`` otherwise)."""
        try:
            zone = zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {tz!r}") from None
        offset = datetime.now(zone).utcoffset()
        user = User(user_id, name, email, real_name or name, tz, int(offset.total_seconds()) if offset else 0)
        self.users[user_id] = user
        return user

    def add_channel(
        self, name: str, *, members: Iterable[str] = (), bot_member: bool = True, is_private: bool = False
    ) -> Channel:
        """Create a channel directly (no event, no rate limit); raises ``ValueError`` like conversations.create.

        A leading ``#`` is ignored.
        """
        name = name.removeprefix("#")
        error = validate_channel_name(name) or ("name_taken" if self.channel_by_name(name) else None)
        if error:
            raise ValueError(f"cannot create channel {name!r}: {error}")
        member_ids = set(members)
        unknown = sorted(m for m in member_ids if m not in self.users)
        if unknown:
            raise ValueError(f"unknown users {unknown}: add them with add_user() first")
        if bot_member:
            member_ids.add(self.bot_user_id)
        channel = Channel(self.new_id("C"), name, members=member_ids, is_private=is_private, creator=self.bot_user_id)
        self.channels[channel.id] = channel
        return channel

    def add_usergroup(self, handle: str, users: Iterable[str] = (), *, usergroup_id: str | None = None) -> Usergroup:
        """Create a user group directly; raises ``ValueError`` for unknown users or a taken handle."""
        handle = handle.removeprefix("@")
        if any(g.handle == handle for g in self.usergroups.values()):
            raise ValueError(f"user group handle @{handle} is taken")
        members = list(dict.fromkeys(users))
        unknown = sorted(u for u in members if u not in self.users)
        if unknown:
            raise ValueError(f"unknown users {unknown}: add them with add_user() first")
        group = Usergroup(usergroup_id or self.new_id("S"), handle, members)
        self.usergroups[group.id] = group
        return group

    def channel_by_name(self, name: str) -> Channel | None:
        """The channel called ``name`` (a leading ``#`` is ignored), archived ones included."""
        name = name.removeprefix("#")
        return next((c for c in self.channels.values() if c.name == name), None)

    def resolve_channel(self, ref: str | None) -> Channel | None:
        """A channel by id, or by name (``#name`` or ``name``) as chat.postMessage accepts."""
        if not ref:
            return None
        return self.channels.get(ref) or self.channel_by_name(ref)

    def post(
        self,
        channel: Channel,
        *,
        user: str,
        text: str,
        blocks: list[Any] | None = None,
        attachments: list[Any] | None = None,
        thread_ts: str | None = None,
        files: list[str] | None = None,
    ) -> Message:
        """Append a message (from the bot when ``user`` is the bot user) and queue its ``message`` event."""
        from_bot = user == self.bot_user_id
        if thread_ts is not None:
            parent = channel.find(thread_ts)
            if parent is None:
                raise ApiError("thread_not_found")
            thread_ts = parent.thread_ts or parent.ts
        message = Message(
            ts=self.next_ts(),
            user=user,
            bot_id=self.bot_id if from_bot else None,
            text=text,
            blocks=blocks,
            thread_ts=thread_ts,
            files=list(files or []),
            attachments=attachments,
        )
        channel.messages.append(message)
        event = self._message_event(channel, message)
        if not from_bot:
            event["client_msg_id"] = secrets.token_hex(16)
        self._queue(channel, event, from_bot=from_bot)
        return message

    def edit(self, channel: Channel, ts: str, *, text: str, blocks: list[Any] | None, editor: str) -> Message:
        """Change a message in place and queue ``message_changed``."""
        message = channel.find(ts)
        if message is None:
            raise ApiError("message_not_found")
        previous = self.message_json(channel, message)
        message.text = text
        message.blocks = blocks
        message.edited_ts = self.next_ts()
        current = self.message_json(channel, message)
        current["edited"] = {"user": editor, "ts": message.edited_ts}
        event = {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel.id,
            "channel_type": self._channel_type(channel),
            "ts": message.edited_ts,
            "event_ts": message.edited_ts,
            "message": current,
            "previous_message": previous,
        }
        self._queue(channel, event, from_bot=editor == self.bot_user_id)
        return message

    def delete(self, channel: Channel, ts: str, *, by: str) -> Message:
        """Remove a message (and its pin) and queue ``message_deleted``."""
        message = channel.find(ts)
        if message is None:
            raise ApiError("message_not_found")
        previous = self.message_json(channel, message)
        channel.messages.remove(message)
        if ts in channel.pins:
            channel.pins.remove(ts)
        event_ts = self.next_ts()
        event = {
            "type": "message",
            "subtype": "message_deleted",
            "hidden": True,
            "channel": channel.id,
            "channel_type": self._channel_type(channel),
            "ts": event_ts,
            "event_ts": event_ts,
            "deleted_ts": ts,
            "previous_message": previous,
        }
        self._queue(channel, event, from_bot=by == self.bot_user_id)
        return message

    def join(self, channel: Channel, user: str, *, inviter: str | None = None) -> None:
        """Add a member and queue a ``channel_join`` message event (not kept in the channel's history)."""
        channel.members.add(user)
        ts = self.next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "subtype": "channel_join",
            "channel": channel.id,
            "channel_type": self._channel_type(channel),
            "user": user,
            "text": f"<@{user}> has joined the channel",
            "ts": ts,
            "event_ts": ts,
        }
        if inviter:
            event["inviter"] = inviter
        self._queue(channel, event, from_bot=user == self.bot_user_id)

    def react(self, channel: Channel, ts: str, *, user: str, name: str) -> None:
        """Add a reaction and queue ``reaction_added``."""
        message = channel.find(ts)
        if message is None:
            raise ApiError("message_not_found")
        users = message.reactions.setdefault(name, [])
        if user in users:
            raise ApiError("already_reacted")
        users.append(user)
        event = {
            "type": "reaction_added",
            "user": user,
            "reaction": name,
            "item": {"type": "message", "channel": channel.id, "ts": ts},
            "item_user": message.user,
            "event_ts": self.next_ts(),
        }
        self._queue(channel, event, from_bot=user == self.bot_user_id)

    def drain_events(self) -> list[dict[str, Any]]:
        """Take every queued event."""
        events, self.outbox = self.outbox, []
        return events

    def _queue(self, channel: Channel, event: dict[str, Any], *, from_bot: bool) -> None:
        if self.bot_user_id in channel.members and (self.emit_message_events or not from_bot):
            self.outbox.append(event)

    # ------------------------------------------------------------------ JSON shapes

    def _channel_type(self, channel: Channel) -> str:
        return "group" if channel.is_private else "channel"

    def channel_json(self, channel: Channel) -> dict[str, Any]:
        """The ``channel`` object of conversations.* answers."""
        return {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "is_archived": channel.is_archived,
            "is_general": False,
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "created": channel.created,
            "creator": channel.creator,
            "context_team_id": self.team_id,
            "is_member": self.bot_user_id in channel.members,
            "num_members": len(channel.members),
            "topic": {"value": channel.topic, "creator": "", "last_set": 0},
            "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
        }

    def message_json(self, channel: Channel, message: Message) -> dict[str, Any]:
        """A message as conversations.history and chat.* return it."""
        body: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text, "team": self.team_id}
        if message.user:
            body["user"] = message.user
        if message.bot_id:
            body["bot_id"] = message.bot_id
            body["app_id"] = self.app_id
            body["bot_profile"] = {"id": self.bot_id, "app_id": self.app_id, "name": self.bot_name}
        if message.blocks is not None:
            body["blocks"] = copy.deepcopy(message.blocks)
        if message.attachments is not None:
            body["attachments"] = copy.deepcopy(message.attachments)
        if message.thread_ts:
            body["thread_ts"] = message.thread_ts
        else:
            replies = [m for m in channel.messages if m.thread_ts == message.ts]
            if replies:
                body.update(thread_ts=message.ts, reply_count=len(replies), latest_reply=replies[-1].ts)
        if message.files:
            body["files"] = [self.file_json(fid) for fid in message.files if fid in self.files]
        if message.reactions:
            body["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in message.reactions.items()
                if users
            ]
        if message.edited_ts:
            body["edited"] = {"user": message.user, "ts": message.edited_ts}
        return body

    def _message_event(self, channel: Channel, message: Message) -> dict[str, Any]:
        event = self.message_json(channel, message)
        event.pop("reply_count", None)
        event.pop("latest_reply", None)
        if not message.thread_ts:
            event.pop("thread_ts", None)
        event.update(channel=channel.id, channel_type=self._channel_type(channel), event_ts=message.ts)
        if message.files:
            event["subtype"] = "file_share"
        return event

    def user_json(self, user: User) -> dict[str, Any]:
        """The ``user`` object of users.info."""
        profile: dict[str, Any] = {
            "real_name": user.real_name or user.name,
            "real_name_normalized": user.real_name or user.name,
            "display_name": user.name,
            "display_name_normalized": user.name,
            "team": self.team_id,
        }
        if user.email:
            profile["email"] = user.email
        if user.bot_id:
            profile["bot_id"] = user.bot_id
        return {
            "id": user.id,
            "team_id": self.team_id,
            "name": user.name,
            "deleted": False,
            "real_name": user.real_name or user.name,
            "tz": user.tz,
            "tz_label": user.tz,
            "tz_offset": user.tz_offset,
            "is_bot": user.is_bot,
            "is_admin": False,
            "is_app_user": False,
            "profile": profile,
        }

    def file_json(self, file_id: str) -> dict[str, Any]:
        """The ``file`` object of files.* answers."""
        record = self.files[file_id]
        return {
            "id": file_id,
            "name": record["name"],
            "title": record["title"],
            "size": record["length"],
            "user": self.bot_user_id,
            "created": record["created"],
            "channels": list(record["channels"]),
            "url_private": f"{self.public_url}/files/{file_id}",
        }

    # ------------------------------------------------------------------ Web API dispatch

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Run one Web API method (token and rate checks are the server's); raises :class:`ApiError`."""
        handler = self._methods.get(method)
        if handler is None:
            raise ApiError("unknown_method")
        return {"ok": True, **handler(params)}

    def _visible_channel(self, params: dict[str, Any], key: str = "channel", *, by_name: bool = False) -> Channel:
        ref = _as_str(params.get(key))
        channel = self.resolve_channel(ref) if by_name else self.channels.get(ref or "")
        if channel is None or (channel.is_private and self.bot_user_id not in channel.members):
            raise ApiError("channel_not_found")
        return channel

    def _member_channel(self, params: dict[str, Any], *, by_name: bool = False, writable: bool = True) -> Channel:
        channel = self._visible_channel(params, by_name=by_name)
        if writable and channel.is_archived:
            raise ApiError("is_archived")
        if self.bot_user_id not in channel.members:
            raise ApiError("not_in_channel")
        return channel

    def _message_content(self, params: dict[str, Any]) -> tuple[str, list[Any] | None, list[Any] | None]:
        blocks = params.get("blocks")
        if blocks is not None and (
            not isinstance(blocks, list)
            or len(blocks) > MAX_BLOCKS
            or not all(isinstance(b, dict) and isinstance(b.get("type"), str) and b["type"] for b in blocks)
        ):
            raise ApiError("invalid_blocks")
        attachments = params.get("attachments")
        if attachments is not None and not (
            isinstance(attachments, list) and all(isinstance(a, dict) for a in attachments)
        ):
            raise ApiError("invalid_attachments")
        text = _as_str(params.get("text")) or ""
        if not text and not blocks and not attachments:
            raise ApiError("no_text")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError("msg_too_long")
        return text, blocks, attachments

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _conversations_create(self, params: dict[str, Any]) -> dict[str, Any]:
        name = _as_str(params.get("name")) or ""
        error = validate_channel_name(name)
        if error:
            raise ApiError(error)
        if self.channel_by_name(name):
            raise ApiError("name_taken")
        channel = Channel(
            self.new_id("C"),
            name,
            members={self.bot_user_id},
            is_private=_as_bool(params.get("is_private")),
            creator=self.bot_user_id,
        )
        self.channels[channel.id] = channel
        return {"channel": self.channel_json(channel)}

    def _set_text_field(self, params: dict[str, Any], which: str) -> dict[str, Any]:
        channel = self._member_channel(params)
        value = _as_str(params.get(which)) or ""
        if len(value) > MAX_TOPIC_LENGTH:
            raise ApiError("too_long")
        setattr(channel, which, value)
        return {"channel": self.channel_json(channel), which: value}

    def _conversations_invite(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params)
        users = [u.strip() for u in (_as_str(params.get("users")) or "").split(",") if u.strip()]
        if not users:
            raise ApiError("no_user")
        if len(users) > MAX_INVITE_USERS:
            raise ApiError("too_many_users")
        if self.bot_user_id in users:
            raise ApiError("cant_invite_self")
        if any(u not in self.users for u in users):
            raise ApiError("user_not_found")
        new = [u for u in dict.fromkeys(users) if u not in channel.members]
        if not new:
            raise ApiError("already_in_channel")
        for user in new:
            self.join(channel, user, inviter=self.bot_user_id)
        return {"channel": self.channel_json(channel)}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.channel_json(self._visible_channel(params))}

    def _conversations_members(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params)
        page, cursor = _page(sorted(channel.members), params, 100)
        return {"members": page, "response_metadata": {"next_cursor": cursor}}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(_as_str(params.get("usergroup")) or "")
        if group is None:
            raise ApiError("no_such_subteam")
        return {"users": list(group.users)}

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params, writable=False)
        oldest = _as_ts(params.get("oldest"), 0.0, "invalid_ts_oldest")
        latest = _as_ts(params.get("latest"), math.inf, "invalid_ts_latest")
        inclusive = _as_bool(params.get("inclusive"))

        def in_range(ts: float) -> bool:
            return (oldest <= ts <= latest) if inclusive else (oldest < ts < latest)

        top = [m for m in reversed(channel.messages) if m.thread_ts is None and in_range(float(m.ts))]
        page, cursor = _page(top, params, 100)
        return {
            "messages": [self.message_json(channel, m) for m in page],
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params, writable=False)
        parent = channel.find(_as_str(params.get("ts")) or "")
        if parent is None:
            raise ApiError("thread_not_found")
        root = parent.thread_ts or parent.ts
        thread = [m for m in channel.messages if root in (m.ts, m.thread_ts)]
        page, cursor = _page(thread, params, 1000)
        return {
            "messages": [self.message_json(channel, m) for m in page],
            "has_more": bool(cursor),
            "response_metadata": {"next_cursor": cursor},
        }

    def _conversations_archive(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params)
        if channel.is_archived:
            raise ApiError("already_archived")
        if self.bot_user_id not in channel.members:
            raise ApiError("not_in_channel")
        channel.is_archived = True
        return {}

    def _conversations_join(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params)
        if channel.is_private:
            raise ApiError("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiError("is_archived")
        if self.bot_user_id in channel.members:
            return {
                "channel": self.channel_json(channel),
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        self.join(channel, self.bot_user_id)
        return {"channel": self.channel_json(channel)}

    def _conversations_list(self, params: dict[str, Any]) -> dict[str, Any]:
        types = set((_as_str(params.get("types")) or "public_channel").split(","))
        exclude_archived = _as_bool(params.get("exclude_archived"))
        wanted = [
            c
            for c in self.channels.values()
            if ("private_channel" if c.is_private else "public_channel") in types
            and not (c.is_private and self.bot_user_id not in c.members)
            and not (exclude_archived and c.is_archived)
        ]
        page, cursor = _page(wanted, params, 100)
        return {"channels": [self.channel_json(c) for c in page], "response_metadata": {"next_cursor": cursor}}

    def _chat_post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params, by_name=True)
        text, blocks, attachments = self._message_content(params)
        message = self.post(
            channel,
            user=self.bot_user_id,
            text=text,
            blocks=blocks,
            attachments=attachments,
            thread_ts=_as_str(params.get("thread_ts")) or None,
        )
        return {"channel": channel.id, "ts": message.ts, "message": self.message_json(channel, message)}

    def _chat_post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params, by_name=True)
        user = _as_str(params.get("user")) or ""
        if user not in self.users:
            raise ApiError("user_not_found")
        if user not in channel.members:
            raise ApiError("user_not_in_channel")
        text, blocks, _ = self._message_content(params)
        thread_ts = _as_str(params.get("thread_ts")) or None
        self.ephemerals.append(Ephemeral(channel.id, user, text, blocks, thread_ts=thread_ts, source="api"))
        return {"message_ts": self.next_ts()}

    def _own_message(self, params: dict[str, Any], ts_key: str, refusal: str) -> tuple[Channel, Message]:
        channel = self._visible_channel(params)
        message = channel.find(_as_str(params.get(ts_key)) or "")
        if message is None:
            raise ApiError("message_not_found")
        if message.bot_id != self.bot_id:
            raise ApiError(refusal)
        return channel, message

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._own_message(params, "ts", "cant_update_message")
        if channel.is_archived:
            raise ApiError("is_archived")
        text, blocks, _ = self._message_content(params)
        self.edit(channel, message.ts, text=text, blocks=blocks, editor=self.bot_user_id)
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": self.message_json(channel, message),
        }

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, message = self._own_message(params, "ts", "cant_delete_message")
        self.delete(channel, message.ts, by=self.bot_user_id)
        return {"channel": channel.id, "ts": message.ts}

    def _pins_add(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params)
        ts = _as_str(params.get("timestamp"))
        if not ts:
            raise ApiError("no_item_specified")
        if channel.find(ts) is None:
            raise ApiError("message_not_found")
        if ts in channel.pins:
            raise ApiError("already_pinned")
        if len(channel.pins) >= MAX_PINS:
            raise ApiError("too_many_pins")
        channel.pins.append(ts)
        return {}

    def _pins_list(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._visible_channel(params)
        items = []
        for ts in channel.pins:
            message = channel.find(ts)
            if message is not None:
                items.append({"type": "message", "channel": channel.id, "message": self.message_json(channel, message)})
        return {"items": items}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._member_channel(params)
        name = (_as_str(params.get("name")) or "").strip(":")
        if not name:
            raise ApiError("invalid_name")
        self.react(channel, _as_str(params.get("timestamp")) or "", user=self.bot_user_id, name=name)
        return {}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(_as_str(params.get("user")) or "")
        if user is None:
            raise ApiError("user_not_found")
        return {"user": self.user_json(user)}

    def _users_lookup_by_email(self, params: dict[str, Any]) -> dict[str, Any]:
        email = (_as_str(params.get("email")) or "").lower()
        user = next((u for u in self.users.values() if email and (u.email or "").lower() == email), None)
        if user is None:
            raise ApiError("users_not_found")
        return {"user": self.user_json(user)}

    def _files_get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = _as_str(params.get("filename"))
        length = _as_int(params.get("length"), -1)
        if not filename or length < 0:
            raise ApiError("invalid_arguments")
        file_id = self.new_id("F")
        self.files[file_id] = {
            "name": filename,
            "title": filename,
            "length": length,
            "content": b"",
            "channels": [],
            "completed": False,
            "uploaded": False,
            "created": int(time.time()),
        }
        return {"upload_url": f"{self.public_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) and "id" in e for e in entries):
            raise ApiError("invalid_arguments")
        for entry in entries:
            record = self.files.get(str(entry["id"]))
            if record is None or not record["uploaded"]:
                raise ApiError("file_not_found")
        target = _as_str(params.get("channel_id")) or (_as_str(params.get("channels")) or "").split(",")[0]
        channel = self._member_channel({"channel": target}) if target else None
        ids = [str(e["id"]) for e in entries]
        for entry, file_id in zip(entries, ids, strict=True):
            record = self.files[file_id]
            record["completed"] = True
            if entry.get("title"):
                record["title"] = str(entry["title"])
        if channel is not None:
            self.post(
                channel,
                user=self.bot_user_id,
                text=_as_str(params.get("initial_comment")) or "",
                thread_ts=_as_str(params.get("thread_ts")) or None,
                files=ids,
            )
            for file_id in ids:
                self.files[file_id]["channels"].append(channel.id)
        return {"files": [self.file_json(fid) for fid in ids]}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = _as_str(params.get("file")) or ""
        if file_id not in self.files:
            raise ApiError("file_not_found")
        return {"file": self.file_json(file_id)}

    def _files_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        raise ApiError("method_deprecated")

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            raise ApiError("invalid_arguments")
        trigger = _as_str(params.get("trigger_id")) or ""
        issued = self._triggers.get(trigger)
        if issued is None:
            raise ApiError("invalid_trigger_id")
        issued_at, used = issued
        if used:
            raise ApiError("exchanged_trigger_id")
        if time.monotonic() - issued_at > TRIGGER_TTL:
            raise ApiError("expired_trigger_id")
        self._triggers[trigger] = (issued_at, True)
        opened = {"id": self.new_id("V"), "team_id": self.team_id, "app_id": self.app_id, **copy.deepcopy(view)}
        self.views.append({"trigger_id": trigger, "view": opened})
        return {"view": opened}
