"""A local Slack workspace over real sockets: the Slack stand-in for end-to-end tests, benchmarks and ``chatops demo``.

:class:`SlackSandbox` runs an aiohttp server on 127.0.0.1 that the real slack-sdk ``AsyncWebClient(base_url=
sandbox.api_url)`` and slack-bolt ``AsyncSocketModeHandler`` talk to exactly as they talk to Slack; only the base
URL changes. It emulates, following ``/work/shared/PROTOCOLS.md`` §1, §2 and §7:

* **Web API** (``POST /api/<method>``, form-encoded, multipart or JSON bodies, query parameters): the token rules
  (``Authorization: Bearer`` or a ``token`` parameter; ``not_authed``, ``invalid_auth``, ``not_allowed_token_type``),
  the methods listed in :data:`chatops.sandbox.slack_state.METHOD_TIERS` with Slack's error codes (HTTP 200
  ``ok:false``), per-method tier limits over a sliding 60 s window and a per-channel token bucket for
  ``chat.postMessage`` (HTTP 429, ``Retry-After``, ``{"ok":false,"error":"ratelimited"}``), and the 3-step file
  upload (``files.getUploadURLExternal``, ``POST /upload/<file_id>``, ``files.completeUploadExternal``;
  ``files.upload`` answers ``method_deprecated``).
* **Socket Mode** (``apps.connections.open`` → single-use ``ws://127.0.0.1:PORT/socket/<ticket>``): ``hello``,
  envelopes to one socket round-robin, acks matched on ``envelope_id``, redelivery of unacked envelopes as new
  envelopes, ``disconnect`` frames, at most 10 sockets. See :mod:`chatops.sandbox.slack_socket`.
* **Events**: bot posts, user posts made through the helpers, edits, deletes, joins and reactions emit Events API
  envelopes, only for channels the bot is a member of.
* **Slash commands**: payloads with a fresh ``trigger_id`` (usable once in ``views.open`` within 3 s) and a working
  ``response_url``; an ack body is shown to the user (an :class:`Ephemeral`, or a channel message when
  ``response_type`` is ``in_channel``).

Fault injection: :meth:`SlackSandbox.set_latency`, :meth:`SlackSandbox.hold` (make calls overlap),
:meth:`SlackSandbox.fail`, :meth:`SlackSandbox.rate_limit`, :meth:`SlackSandbox.disconnect`,
:attr:`SlackSandbox.socket_mode_enabled`. Everything is recorded for assertions: :attr:`SlackSandbox.calls`,
:attr:`SlackSandbox.envelopes`, channels with their messages, ephemerals and files.

Sandbox-specific choices (not promised by Slack): ``apps.connections.open`` is not rate limited (Slack: Tier 1);
``chat.postMessage`` has no workspace-wide limit; a ``thread_ts`` that names no message answers
``thread_not_found``; ``files.completeUploadExternal`` answers ``file_not_found`` for a file whose bytes were never
uploaded; with :attr:`SlackSandbox.socket_mode_enabled` false, ``apps.connections.open`` answers
``socket_mode_not_enabled``; ``channel_join`` events are not kept in channel history; a ``response_url`` refuses a
sixth use with HTTP 404 ``used_url``.

The control API is meant for tests running on the same event loop; it is not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import BodyPartReader, web

from chatops.sandbox.slack_socket import MAX_CONNECTIONS, Envelope, SocketHub
from chatops.sandbox.slack_state import (
    APP_TOKEN_METHODS,
    DEFAULT_TIER_LIMITS,
    METHOD_TIERS,
    TOKENLESS_METHODS,
    ApiError,
    Call,
    Channel,
    Ephemeral,
    Message,
    SlidingWindow,
    TokenBucket,
    User,
    Usergroup,
    Workspace,
    retry_after_seconds,
)

__all__ = ["Call", "Channel", "Envelope", "Ephemeral", "Message", "SlackSandbox", "User", "Usergroup"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_JSON_FIELDS = ("blocks", "attachments", "files", "view", "metadata")
_BOT_SCOPES = (
    "commands,chat:write,chat:write.public,channels:read,channels:manage,channels:join,channels:history,"
    "groups:read,groups:write,groups:history,pins:read,pins:write,reactions:write,users:read,users:read.email,"
    "files:read,files:write,usergroups:read"
)
_RESPONSE_URL_USES = 5


class _Hold:
    """A pending :meth:`SlackSandbox.hold`: how many calls wait, and the event that lets them go."""

    def __init__(self, until: int, timeout: float) -> None:
        self.until = until
        self.timeout = timeout
        self.waiting = 0
        self.released = asyncio.Event()


class SlackSandbox:
    """A Slack workspace with one app installed, served on 127.0.0.1; see the module docstring.

    Args:
        team_id: the workspace id.
        ack_timeout: seconds before an unacked envelope is redelivered (Slack: 3 s).
        max_redeliveries: redeliveries per payload after the first envelope.
        tier_limits: calls per minute by tier, merged over :data:`DEFAULT_TIER_LIMITS` (1, 20, 50, 100).
        channel_burst: capacity of each channel's ``chat.postMessage`` token bucket.
        channel_rate: refill of that bucket, tokens per second (Slack: about 1).
        emit_message_events: emit Events API envelopes for the bot's own posts, edits, deletes and reactions
            (as Slack does); user activity made through the helpers is always emitted.
        max_connections: sockets allowed at once (Slack: 10).
        ping_interval: seconds between server pings on each socket, ``None`` for none.
    """

    def __init__(
        self,
        *,
        team_id: str = "T0SANDBOX",
        ack_timeout: float = 3.0,
        max_redeliveries: int = 3,
        tier_limits: dict[int, int] | None = None,
        channel_burst: int = 3,
        channel_rate: float = 1.0,
        emit_message_events: bool = True,
        max_connections: int = MAX_CONNECTIONS,
        ping_interval: float | None = 10.0,
    ) -> None:
        self.team_id = team_id
        self.team_domain = "sandbox"
        #: The bot's user id, bot id and the app id, as auth.test and payloads report them.
        self.bot_user_id = "U0BOT"
        self.bot_id = "B0BOT"
        self.app_id = "A0SANDBOX"
        #: The bot token (every Web API method but apps.connections.open), random per sandbox.
        self.bot_token = f"xoxb-{secrets.randbelow(10**12):012d}-{secrets.token_hex(12)}"
        #: The app-level token (apps.connections.open only), random per sandbox.
        self.app_token = f"xapp-1-{self.app_id}-{secrets.randbelow(10**12):012d}-{secrets.token_hex(16)}"
        #: The deprecated verification token Slack still puts in payloads.
        self.verification_token = secrets.token_hex(12)
        self.tier_limits: dict[int, int] = {**DEFAULT_TIER_LIMITS, **(tier_limits or {})}
        self.channel_burst = channel_burst
        self.channel_rate = channel_rate
        #: When false, ``apps.connections.open`` answers ``socket_mode_not_enabled``.
        self.socket_mode_enabled = True
        self.workspace = Workspace(
            team_id=team_id,
            team_domain=self.team_domain,
            app_id=self.app_id,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            bot_name="chatops",
            emit_message_events=emit_message_events,
        )
        self.hub = SocketHub(
            app_id=self.app_id,
            ack_timeout=ack_timeout,
            max_redeliveries=max_redeliveries,
            max_connections=max_connections,
            ping_interval=ping_interval,
        )
        self.hub.on_ack = self._on_ack
        #: Channels by id (the workspace's own dict).
        self.channels: dict[str, Channel] = self.workspace.channels
        #: Users by id, the bot user included.
        self.users: dict[str, User] = self.workspace.users
        #: Uploaded files by id: ``name``, ``title``, ``length``, ``content``, ``channels``, ``completed``, ...
        self.files: dict[str, dict[str, Any]] = self.workspace.files
        #: Messages only one user saw.
        self.ephemerals: list[Ephemeral] = self.workspace.ephemerals
        #: Every Web API request, in the order they were answered.
        self.calls: list[Call] = []
        #: Bodies posted to slash-command ``response_url``\ s: ``{"command", "channel_id", "user_id", "body"}``.
        self.responses: list[dict[str, Any]] = []
        #: Exceptions raised inside the sandbox while answering (a sandbox bug; tests may assert it is empty).
        self.errors: list[BaseException] = []
        #: ``http://127.0.0.1:PORT`` once started.
        self.url = ""
        #: ``http://127.0.0.1:PORT/api/`` once started: the ``base_url`` for ``AsyncWebClient``.
        self.api_url = ""
        self._runner: web.AppRunner | None = None
        self._latency: dict[str, float] = {}
        self._holds: dict[str, _Hold] = {}
        self._failures: defaultdict[str, deque[str]] = defaultdict(deque)
        self._forced_429: defaultdict[str, deque[int]] = defaultdict(deque)
        self._windows: dict[str, SlidingWindow] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._response_urls: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0: any free port); :attr:`api_url` is valid afterwards."""
        if self._runner is not None:
            raise RuntimeError("SlackSandbox is already running")
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/socket/{ticket}", self.hub.handle)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_get("/files/{file_id}", self._handle_download)
        app.router.add_post("/response/{response_id}", self._handle_response_url)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        self.url = f"http://{bound_host}:{bound_port}"
        self.api_url = f"{self.url}/api/"
        self.workspace.public_url = self.url
        self.hub.resume()

    async def stop(self) -> None:
        """Close every socket and stop listening. State is kept; :meth:`start` may be called again."""
        await self.hub.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ workspace set-up and inspection

    def add_user(
        self, user_id: str, name: str, *, email: str | None = None, real_name: str | None = None, tz: str = "UTC"
    ) -> None:
        """Create a workspace member (``tz`` is an IANA zone name)."""
        self.workspace.add_user(user_id, name, email=email, real_name=real_name, tz=tz)

    def add_channel(
        self, name: str, *, members: Iterable[str] = (), bot_member: bool = True, is_private: bool = False
    ) -> str:
        """Create a channel without an API call and return its id; raises ``ValueError`` for a bad or taken name."""
        return self.workspace.add_channel(name, members=members, bot_member=bot_member, is_private=is_private).id

    def add_usergroup(self, handle: str, users: Iterable[str] = (), *, usergroup_id: str | None = None) -> str:
        """Create a user group (``usergroups.users.list`` answers for it) and return its ``S…`` id."""
        return self.workspace.add_usergroup(handle, users, usergroup_id=usergroup_id).id

    def channel_by_name(self, name: str) -> Channel | None:
        """The channel called ``name`` (``#`` optional), or ``None``."""
        return self.workspace.channel_by_name(name)

    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of one Web API method."""
        return [c for c in self.calls if c.method == method]

    @property
    def envelopes(self) -> list[Envelope]:
        """Every envelope sent over Socket Mode, redeliveries included."""
        return self.hub.envelopes

    @property
    def connection_count(self) -> int:
        """Sockets currently connected (that got their ``hello``)."""
        return self.hub.connection_count

    def unacked(self) -> list[Envelope]:
        """Envelopes never acked."""
        return self.hub.unacked()

    # ------------------------------------------------------------------ fault injection

    def set_latency(self, method: str, seconds: float) -> None:
        """Delay every answer of ``method`` (``"*"``: every Web API method without its own delay) by ``seconds``."""
        if seconds > 0:
            self._latency[method] = seconds
        else:
            self._latency.pop(method, None)

    def hold(self, method: str, *, until: int = 2, timeout: float = 2.0) -> None:
        """Hold the next calls of ``method`` until ``until`` of them wait together, or ``timeout`` seconds pass.

        Then they all go on (the last to arrive first) and the hold is gone. This makes two clients' calls overlap on
        demand — e.g. two read-modify-write edits of one message, to show a lost update — while a client that
        serialises its calls only costs ``timeout``: its first call waits alone, then runs.
        """
        if until < 1 or timeout <= 0:
            raise ValueError("hold needs until >= 1 and timeout > 0")
        self._holds[method] = _Hold(until, timeout)

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any) with HTTP 200 ``{"ok":false,"error":error}``.

        Injected answers come before the token check and do not count against rate limits.
        """
        self._failures[method].extend([error] * times)

    def rate_limit(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"``: any) with HTTP 429 and ``Retry-After``.

        Takes precedence over :meth:`fail`; like it, comes before the token check.
        """
        self._forced_429[method].extend([retry_after] * times)

    # ------------------------------------------------------------------ Socket Mode control

    async def wait_connected(self, timeout: float = 10.0, *, count: int = 1) -> None:
        """Wait until at least ``count`` sockets got their ``hello``."""
        await self.wait_for(
            lambda: self.hub.connection_count >= count,
            timeout,
            what=f"{count} Socket Mode connection(s) (apps.connections.open calls: "
            f"{len(self.calls_to('apps.connections.open'))})",
        )

    async def send_slash_command(
        self,
        command: str,
        text: str,
        *,
        user_id: str,
        channel_id: str,
        wait_ack: bool = True,
        timeout: float = 5.0,
    ) -> Envelope:
        """Deliver a ``slash_commands`` envelope as if ``user_id`` typed ``command text`` in ``channel_id``.

        With ``wait_ack`` the call returns the first envelope of the delivery that was acked (raises
        ``TimeoutError`` after ``timeout`` s); otherwise it returns the envelope at once.
        """
        channel = self._require_channel(channel_id)
        user = self._require_user(user_id)
        response_id = secrets.token_urlsafe(12)
        payload = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel.id,
            "channel_name": channel.name,
            "user_id": user.id,
            "user_name": user.name,
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": f"{self.url}/response/{response_id}",
            "trigger_id": self.workspace.issue_trigger(),
        }
        self._response_urls[response_id] = {"command": command, "channel_id": channel.id, "user_id": user.id, "uses": 0}
        envelope = self.hub.dispatch("slash_commands", payload, accepts_response_payload=True)
        return await self._maybe_wait(envelope, wait_ack, timeout)

    async def send_event(
        self, event: dict[str, Any], *, wait_ack: bool = True, timeout: float = 5.0, event_id: str | None = None
    ) -> Envelope:
        """Deliver an ``events_api`` envelope wrapping ``event`` in an ``event_callback`` body.

        ``event_id`` (default: fresh), ``event_time``, ``team_id`` and ``api_app_id`` are filled in, and
        ``event_ts`` when the event has none. No membership check is made: the event is sent as given.
        """
        body = dict(event)
        body.setdefault("event_ts", self.workspace.next_ts())
        envelope = self._dispatch_event(body, event_id=event_id)
        return await self._maybe_wait(envelope, wait_ack, timeout)

    async def send_interactive(
        self, payload: dict[str, Any], *, wait_ack: bool = True, timeout: float = 5.0
    ) -> Envelope:
        """Deliver an ``interactive`` envelope (block_actions, view_submission, ...) with ``payload`` as given."""
        accepts = payload.get("type") == "view_submission"
        envelope = self.hub.dispatch("interactive", payload, accepts_response_payload=accepts)
        return await self._maybe_wait(envelope, wait_ack, timeout)

    async def click_button(
        self,
        *,
        user_id: str,
        channel_id: str,
        action_id: str,
        value: str,
        message_ts: str | None = None,
        is_ephemeral: bool = False,
        block_id: str = "",
        wait_ack: bool = True,
        timeout: float = 5.0,
    ) -> Envelope:
        """Deliver the ``block_actions`` payload Slack sends when ``user_id`` clicks a button in ``channel_id``.

        ``message_ts`` names the message holding the button (its JSON is included unless ``is_ephemeral``, as on
        Slack, where an ephemeral message's container has ``is_ephemeral`` and the payload carries no message).
        The payload has a fresh ``trigger_id`` and a working ``response_url``.
        """
        channel = self._require_channel(channel_id)
        user = self._require_user(user_id)
        response_id = secrets.token_urlsafe(12)
        self._response_urls[response_id] = {
            "command": action_id,
            "channel_id": channel.id,
            "user_id": user.id,
            "uses": 0,
        }
        ts = message_ts or self.workspace.next_ts()
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user.id, "username": user.name, "name": user.name, "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": self.verification_token,
            "container": {"type": "message", "message_ts": ts, "channel_id": channel.id, "is_ephemeral": is_ephemeral},
            "trigger_id": self.workspace.issue_trigger(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel.id, "name": channel.name},
            "state": {"values": {}},
            "response_url": f"{self.url}/response/{response_id}",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": block_id or secrets.token_hex(3),
                    "text": {"type": "plain_text", "text": "button", "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        message = channel.find(ts) if not is_ephemeral else None
        if message is not None:
            payload["message"] = self.workspace.message_json(channel, message)
        envelope = self.hub.dispatch("interactive", payload, accepts_response_payload=False)
        return await self._maybe_wait(envelope, wait_ack, timeout)

    async def redeliver(self, envelope: Envelope, *, wait_ack: bool = True, timeout: float = 5.0) -> Envelope:
        """Send ``envelope``'s payload again: new ``envelope_id``, ``retry_attempt`` + 1, ``retry_reason`` "timeout"."""
        again = self.hub.redeliver(envelope)
        if not wait_ack:
            return again
        await self._wait_envelope(again, timeout)
        return again

    async def disconnect(self, reason: str = "refresh_requested", *, close: bool = True) -> None:
        """Send a ``disconnect`` frame with ``reason`` to every socket, then close them (unless ``close`` is false).

        ``link_disabled`` also sets :attr:`socket_mode_enabled` to false, as Slack does when Socket Mode is turned
        off: reconnecting fails until a test sets it back.
        """
        if reason == "link_disabled":
            self.socket_mode_enabled = False
        await self.hub.disconnect(reason, close=close)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0, *, what: str = "") -> None:
        """Poll ``predicate`` every 5 ms until it is true; ``TimeoutError`` naming ``what`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= deadline:
                name = what or getattr(predicate, "__name__", repr(predicate))
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {name}; sockets={self.connection_count}, "
                    f"envelopes={len(self.envelopes)} (unacked {len(self.unacked())}), calls={len(self.calls)}"
                )
            await asyncio.sleep(0.005)

    # ------------------------------------------------------------------ user activity (emits events)

    async def post_user_message(
        self,
        channel_id: str,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[Any] | None = None,
        wait_ack: bool = False,
        timeout: float = 5.0,
    ) -> Message:
        """Post as ``user_id`` (who must be a member); emits a ``message`` event if the bot is in the channel."""
        channel = self._require_channel(channel_id)
        self._require_member(channel, user_id)
        if channel.is_archived:
            raise ValueError(f"#{channel.name} is archived")
        try:
            message = self.workspace.post(channel, user=user_id, text=text, blocks=blocks, thread_ts=thread_ts)
        except ApiError as exc:
            raise ValueError(f"cannot post in {channel.name}: {exc.code}") from None
        await self._emit(wait_ack, timeout)
        return message

    async def edit_user_message(
        self,
        channel_id: str,
        ts: str,
        text: str,
        *,
        blocks: list[Any] | None = None,
        wait_ack: bool = False,
        timeout: float = 5.0,
    ) -> Message:
        """Edit a message as its author; emits ``message_changed``."""
        channel = self._require_channel(channel_id)
        message = self._require_message(channel, ts)
        self.workspace.edit(channel, ts, text=text, blocks=blocks, editor=message.user or self.bot_user_id)
        await self._emit(wait_ack, timeout)
        return message

    async def delete_message(self, channel_id: str, ts: str, *, wait_ack: bool = False, timeout: float = 5.0) -> None:
        """Delete a message (any author); emits ``message_deleted``."""
        channel = self._require_channel(channel_id)
        message = self._require_message(channel, ts)
        self.workspace.delete(channel, ts, by=message.user or self.bot_user_id)
        await self._emit(wait_ack, timeout)

    async def join_channel(
        self, channel_id: str, user_id: str, *, wait_ack: bool = False, timeout: float = 5.0
    ) -> None:
        """Make ``user_id`` join; emits a ``channel_join`` message event."""
        channel = self._require_channel(channel_id)
        self._require_user(user_id)
        if user_id in channel.members:
            raise ValueError(f"{user_id} is already in {channel.name}")
        self.workspace.join(channel, user_id)
        await self._emit(wait_ack, timeout)

    async def add_reaction(
        self, channel_id: str, ts: str, user_id: str, name: str, *, wait_ack: bool = False, timeout: float = 5.0
    ) -> None:
        """React as ``user_id``; emits ``reaction_added``."""
        channel = self._require_channel(channel_id)
        self._require_member(channel, user_id)
        self._require_message(channel, ts)
        try:
            self.workspace.react(channel, ts, user=user_id, name=name)
        except ApiError as exc:
            raise ValueError(f"cannot react: {exc.code}") from None
        await self._emit(wait_ack, timeout)

    # ------------------------------------------------------------------ internals: control helpers

    def _require_channel(self, channel_id: str) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ValueError(f"no channel {channel_id!r} (known: {sorted(c.name for c in self.channels.values())})")
        return channel

    def _require_user(self, user_id: str) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise ValueError(f"no user {user_id!r}: add it with add_user() first")
        return user

    def _require_member(self, channel: Channel, user_id: str) -> None:
        self._require_user(user_id)
        if user_id not in channel.members:
            raise ValueError(f"{user_id} is not a member of #{channel.name}")

    @staticmethod
    def _require_message(channel: Channel, ts: str) -> Message:
        message = channel.find(ts)
        if message is None:
            raise ValueError(f"no message {ts} in #{channel.name}")
        return message

    async def _maybe_wait(self, envelope: Envelope, wait_ack: bool, timeout: float) -> Envelope:
        return await self.hub.wait_acked(envelope, timeout) if wait_ack else envelope

    async def _wait_envelope(self, envelope: Envelope, timeout: float) -> None:
        await self.wait_for(
            lambda: envelope.acked_at is not None, timeout, what=f"an ack of envelope {envelope.envelope_id}"
        )

    def _dispatch_event(self, event: dict[str, Any], *, event_id: str | None = None) -> Envelope:
        payload = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or self.workspace.new_id("Ev"),
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_urlsafe(24)}",
        }
        return self.hub.dispatch("events_api", payload)

    def _emit_queued(self) -> list[Envelope]:
        return [self._dispatch_event(event) for event in self.workspace.drain_events()]

    async def _emit(self, wait_ack: bool, timeout: float) -> None:
        for envelope in self._emit_queued():
            if wait_ack:
                await self.hub.wait_acked(envelope, timeout)

    def _on_ack(self, envelope: Envelope) -> None:
        if envelope.type == "slash_commands" and envelope.ack_payload:
            payload = envelope.payload
            self._show_response(str(payload["channel_id"]), str(payload["user_id"]), envelope.ack_payload, "ack")

    def _show_response(self, channel_id: str, user_id: str, body: dict[str, Any], source: str) -> None:
        """Show a slash-command reply: in the channel (``in_channel``) or to the user only."""
        text = body.get("text") if isinstance(body.get("text"), str) else ""
        blocks = body.get("blocks") if isinstance(body.get("blocks"), list) else None
        channel = self.channels.get(channel_id)
        if channel is None or not (text or blocks):
            return
        if body.get("response_type") == "in_channel":
            self.workspace.post(channel, user=self.bot_user_id, text=str(text), blocks=blocks)
            self._emit_queued()
        else:
            self.ephemerals.append(Ephemeral(channel_id, user_id, str(text), blocks, source=source))

    # ------------------------------------------------------------------ internals: HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        arrived = time.monotonic()
        token: str | None = None
        params: dict[str, Any] = {}
        headers: dict[str, str] = {}
        try:
            params, token, parse_error = await self._read_params(request)
            status, body, headers = await self._answer(method, params, token, parse_error)
        except Exception as exc:  # a sandbox bug: answer like Slack's internal_error and keep it for the test
            log.exception("slack sandbox failed on %s", method)
            self.errors.append(exc)
            status, body = 500, {"ok": False, "error": "internal_error"}
        self.calls.append(Call(method, dict(params), token, arrived, status, body))
        return web.json_response(body, status=status, headers=headers)

    async def _answer(
        self, method: str, params: dict[str, Any], token: str | None, parse_error: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        delay = self._latency.get(method, self._latency.get("*", 0.0))
        if delay:
            await asyncio.sleep(delay)
        if method in self._holds:
            await self._wait_hold(method, self._holds[method])
        if method not in METHOD_TIERS:
            return 200, ApiError("unknown_method").body(), {}
        forced_wait = self._take(self._forced_429, method)
        if forced_wait is not None:
            return self._ratelimited(forced_wait)
        forced_error = self._take(self._failures, method)
        if forced_error is not None:
            return 200, ApiError(forced_error).body(), {}
        if parse_error:
            return 200, ApiError(parse_error).body(), {}
        try:
            if method not in TOKENLESS_METHODS:
                self._check_token(method, token)
            wait = self._admit(method, params)
            if wait is not None:
                return self._ratelimited(wait)
            if method == "apps.connections.open":
                body = self._connections_open()
            else:
                body = self.workspace.call(method, params)
        except ApiError as exc:
            body = exc.body()
        finally:
            self._emit_queued()
        extra = {} if method in APP_TOKEN_METHODS else {"X-OAuth-Scopes": _BOT_SCOPES}
        return 200, body, extra

    async def _wait_hold(self, method: str, hold: _Hold) -> None:
        hold.waiting += 1
        if hold.waiting >= hold.until:
            hold.released.set()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hold.released.wait(), hold.timeout)
            hold.released.set()
        if self._holds.get(method) is hold:
            del self._holds[method]

    @staticmethod
    def _ratelimited(retry_after: int) -> tuple[int, dict[str, Any], dict[str, str]]:
        return 429, ApiError("ratelimited").body(), {"Retry-After": str(retry_after)}

    @staticmethod
    def _take(queues: defaultdict[str, deque[_T]], method: str) -> _T | None:
        for key in (method, "*"):
            queue = queues.get(key)
            if queue:
                return queue.popleft()
        return None

    def _check_token(self, method: str, token: str | None) -> None:
        if not token:
            raise ApiError("not_authed")
        wanted, other = (
            (self.app_token, self.bot_token) if method in APP_TOKEN_METHODS else (self.bot_token, self.app_token)
        )
        if token == other:
            raise ApiError("not_allowed_token_type")
        if token != wanted:
            raise ApiError("invalid_auth")

    def _admit(self, method: str, params: dict[str, Any]) -> int | None:
        """Count the call against its limit; return a ``Retry-After`` when it is over."""
        now = time.monotonic()
        if method == "chat.postMessage":
            ref = params.get("channel")
            channel = self.workspace.resolve_channel(ref if isinstance(ref, str) else None)
            key = channel.id if channel else str(ref)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.channel_burst, self.channel_rate, now)
            wait = bucket.acquire(now)
        else:
            tier = METHOD_TIERS.get(method)
            if tier is None:
                return None
            window = self._windows.get(method)
            if window is None:
                window = self._windows[method] = SlidingWindow(self.tier_limits[tier])
            wait = window.acquire(now)
        return None if wait is None else retry_after_seconds(wait)

    def _connections_open(self) -> dict[str, Any]:
        if not self.socket_mode_enabled:
            raise ApiError("socket_mode_not_enabled")
        ws_url = self.url.replace("http://", "ws://", 1)
        return {"ok": True, "url": f"{ws_url}/socket/{self.hub.issue_ticket()}"}

    @staticmethod
    async def _read_params(request: web.Request) -> tuple[dict[str, Any], str | None, str | None]:
        """Query string + body (JSON, form or multipart) → params; the token; a parse error code or ``None``."""
        params: dict[str, Any] = dict(request.query)
        parse_error: str | None = None
        if request.body_exists:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    body = None
                if isinstance(body, dict):
                    params.update(body)
                else:
                    parse_error = "invalid_json"
            elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, str):
                        params[key] = value
                    elif isinstance(value, web.FileField):
                        value.file.close()
                        params[key] = {"filename": value.filename, "content_type": value.content_type}
                    else:
                        params[key] = bytes(value).decode("utf-8", "replace")
        for key in _JSON_FIELDS:
            raw = params.get(key)
            if isinstance(raw, str) and raw.strip()[:1] in ("[", "{"):
                # an undecodable value stays a string: the method reports invalid_blocks / invalid_arguments
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(raw)
        form_token = params.pop("token", None)
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return params, credential.strip(), parse_error
        return params, form_token if isinstance(form_token, str) else None, parse_error

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """Step 2 of the file upload: the raw bytes (or a multipart ``file`` part); length must match."""
        record = self.files.get(request.match_info["file_id"])
        if record is None:
            return web.Response(status=404, text="file_not_found")
        if record["completed"]:
            return web.Response(status=400, text="upload_already_completed")
        content = b""
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.filename is not None:
                    content = bytes(await part.read())
                    break
        else:
            content = await request.read()
        if len(content) != record["length"]:
            return web.Response(
                status=400, text=f"length_mismatch: got {len(content)} bytes, announced {record['length']}"
            )
        record["content"] = content
        record["uploaded"] = True
        return web.Response(status=200, text=f"OK - {len(content)}", content_type="text/plain")

    async def _handle_download(self, request: web.Request) -> web.Response:
        """``url_private`` of a file: needs the bot token."""
        if request.headers.get("Authorization", "") != f"Bearer {self.bot_token}":
            return web.Response(status=403, text="invalid_auth")
        record = self.files.get(request.match_info["file_id"])
        if record is None or not record["completed"]:
            return web.Response(status=404, text="file_not_found")
        return web.Response(body=record["content"], content_type="application/octet-stream")

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        """A slash command's ``response_url``: up to 5 JSON posts, shown like an ack body."""
        target = self._response_urls.get(request.match_info["response_id"])
        if target is None or target["uses"] >= _RESPONSE_URL_USES:
            return web.Response(status=404, text="used_url" if target else "no_such_url")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.Response(status=400, text="invalid_payload")
        target["uses"] += 1
        self.responses.append(
            {
                "command": target["command"],
                "channel_id": target["channel_id"],
                "user_id": target["user_id"],
                "body": body,
            }
        )
        self._show_response(target["channel_id"], target["user_id"], body, "response_url")
        return web.json_response({"ok": True})
