"""The transport seam: what the rest of chatops needs from a chat platform.

Nothing outside ``chatops.transport`` imports ``slack_sdk`` or ``slack_bolt``. Workflows and commands talk to a
:class:`Chat`; the Slack implementation lives in :mod:`chatops.transport.slack_api`.

Errors::

    ChatError                     the platform refused a call (``code`` is Slack's error string, e.g. "name_taken")
    └── ChatUnavailable           it kept failing (rate limit / 5xx / network) after retries
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = [
    "Action",
    "Chat",
    "ChatError",
    "ChatUnavailable",
    "Invocation",
    "InvocationOrigin",
    "PostedMessage",
    "StoredMessage",
    "UserProfile",
]

Blocks = Sequence[dict[str, Any]]
InvocationOrigin = Literal["slash", "button", "confirmed"]
"""How a command was started: typed, a button (e.g. a runbook step), or a confirmed button."""


class ChatError(Exception):
    """The chat platform answered with an error code (Slack: HTTP 200 ``ok: false``)."""

    def __init__(self, method: str, code: str) -> None:
        super().__init__(f"{method}: {code}")
        self.method = method
        self.code = code


class ChatUnavailable(ChatError):
    """The platform could not be reached or kept rate limiting / failing after every retry."""

    def __init__(self, method: str, code: str, attempts: int) -> None:
        super().__init__(method, code)
        self.attempts = attempts


@dataclass(frozen=True)
class UserProfile:
    """Who a chat user is: enough to address and page them."""

    id: str
    name: str
    real_name: str | None
    email: str | None


@dataclass(frozen=True)
class PostedMessage:
    """A message the bot posted."""

    channel: str
    ts: str


@dataclass(frozen=True)
class StoredMessage:
    """A message as read back from a channel."""

    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None


@dataclass(frozen=True)
class Invocation:
    """A slash command as the dispatcher sees it, independent of the platform's payload shape.

    ``dedup_key`` identifies the command across redeliveries (Slack: the ``trigger_id``), never the envelope.
    ``origin`` says whether it was typed, started by a button, or is a button run the user has just confirmed.
    """

    command: str
    text: str
    user_id: str
    user_name: str
    channel_id: str
    channel_name: str
    trigger_id: str
    dedup_key: str
    envelope_id: str = ""
    retry_attempt: int = 0
    response_url: str | None = None
    origin: InvocationOrigin = "slash"


@dataclass(frozen=True)
class Action:
    """A button click (Slack ``block_actions``), independent of the payload shape.

    ``dedup_key`` identifies the click across redeliveries (Slack: the click's ``trigger_id``).
    """

    action_id: str
    value: str
    user_id: str
    user_name: str
    channel_id: str
    trigger_id: str
    dedup_key: str
    message_ts: str | None = None
    response_url: str | None = None


class Chat(Protocol):
    """Operations on the chat platform. Every method retries rate limits itself and raises :class:`ChatError`."""

    bot_user_id: str

    async def create_channel(self, name: str) -> str:
        """Create a public channel; return its id. ``ChatError("name_taken")`` when the name exists."""
        ...

    async def set_topic(self, channel: str, topic: str) -> None:
        """Set a channel's topic (at most 250 characters)."""
        ...

    async def set_purpose(self, channel: str, purpose: str) -> None:
        """Set a channel's purpose (at most 250 characters)."""
        ...

    async def invite(self, channel: str, user_ids: Sequence[str]) -> None:
        """Invite users; users already in the channel are not an error."""
        ...

    async def post_message(
        self, channel: str, text: str, blocks: Blocks | None = None, *, thread_ts: str | None = None
    ) -> PostedMessage:
        """Post a message; ``channel`` is an id or a channel name."""
        ...

    async def update_message(self, channel: str, ts: str, text: str, blocks: Blocks | None = None) -> None:
        """Replace a message the bot posted."""
        ...

    async def post_ephemeral(self, channel: str, user: str, text: str, blocks: Blocks | None = None) -> None:
        """Show a message to one user only."""
        ...

    async def pin(self, channel: str, ts: str) -> None:
        """Pin a message; already pinned is not an error."""
        ...

    async def user_profile(self, user_id: str) -> UserProfile:
        """Look a user up."""
        ...

    async def channel_members(self, channel: str) -> list[str]:
        """User ids of a channel's members (every page of conversations.members)."""
        ...

    async def usergroup_members(self, usergroup: str) -> list[str]:
        """User ids in a user group (usergroups.users.list)."""
        ...

    async def fetch_message(self, channel: str, ts: str) -> StoredMessage | None:
        """One top-level message of a channel by ``ts`` (None when it is gone)."""
        ...

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
        """Share a file in a channel (Slack: the 3-step external upload); returns the file id."""
        ...

    def channel_link(self, channel_id: str) -> str:
        """A mrkdwn reference to a channel that renders as a link."""
        ...
