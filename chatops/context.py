"""What a command handler is given: the :class:`Context`, and the :class:`Services` it reaches through it.

No globals: everything a handler may touch hangs off its context, built per invocation by the dispatcher.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chatops.locks import KeyedLock
from chatops.timeline.events import EventType, TimelineEvent
from chatops.transport.base import Blocks, Chat, ChatError, Invocation, PostedMessage

if TYPE_CHECKING:
    from chatops.incidents.model import Incident
    from chatops.incidents.store import IncidentStore, SummaryHold
    from chatops.integrations.pagerduty import PagerDutyClient
    from chatops.integrations.prometheus import PrometheusClient
    from chatops.integrations.zoom import ZoomClient
    from chatops.links import Links
    from chatops.policy.models import Policy
    from chatops.policy.store import PolicyStore
    from chatops.registry import Registry
    from chatops.settings import Settings
    from chatops.spec import CommandSpec
    from chatops.tasks import TaskTracker
    from chatops.timeline.sink import TimelineSink
    from chatops.timeline.store import TimelineStore

__all__ = ["Context", "Services"]


@dataclass(frozen=True)
class Services:
    """The long-lived parts of the daemon, built once by the composition root (:mod:`chatops.app`)."""

    settings: Settings
    chat: Chat
    policy: PolicyStore
    incidents: IncidentStore
    timeline: TimelineStore
    sink: TimelineSink
    registry: Registry
    tasks: TaskTracker
    clock: Callable[[], datetime]
    pagerduty: PagerDutyClient | None = None
    zoom: ZoomClient | None = None
    prometheus: PrometheusClient | None = None
    links: Links | None = None
    """Mints the signed ``/go/`` links the bot posts instead of raw dashboard and runbook URLs."""
    summary_locks: KeyedLock = field(default_factory=KeyedLock)
    """Per incident id: held while anything edits that incident's pinned summary (read, change, ``chat.update``)."""

    @asynccontextmanager
    async def summary_edit(self, incident_id: str) -> AsyncIterator[SummaryHold]:
        """Hold the incident's summary locks for a read-modify-write of its pinned summary.

        Every edit of the pinned summary (``/escalate``, the declaration's final refresh) goes through here, so they
        run one at a time and each starts from the message the one before wrote. In-process first (``summary_locks``,
        enough for one daemon), then Postgres (:meth:`IncidentStore.summary_lock`, for a second replica): always in
        this order, so two holders never wait for each other crosswise. Yields the :class:`SummaryHold` read from
        Postgres inside the lock: the summary's ``ts`` (``None``: not posted yet) and how many edits others made
        (an editor other than the declaration calls ``bump()`` after its ``chat.update``).
        """
        async with self.summary_locks.hold(incident_id), self.incidents.summary_lock(incident_id) as held:
            yield held


@dataclass
class Context:
    """One command run: who asked, where, with which arguments, under which policy."""

    invocation: Invocation
    spec: CommandSpec
    args: Mapping[str, Any]
    policy: Policy
    services: Services
    incident: Incident | None
    correlation_id: str
    replies: list[str] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        """The Slack user who ran the command."""
        return self.invocation.user_id

    @property
    def channel_id(self) -> str:
        """The channel the command was typed in."""
        return self.invocation.channel_id

    @property
    def origin(self) -> str:
        """``slash`` (typed), ``button`` or ``confirmed`` (a button the user then confirmed)."""
        return self.invocation.origin

    async def reply(self, text: str, blocks: Blocks | None = None) -> PostedMessage:
        """Post to the channel the command came from, visible to everyone."""
        self.replies.append(text)
        return await self.services.chat.post_message(self.channel_id, text, blocks)

    async def ephemeral(self, text: str, blocks: Blocks | None = None) -> None:
        """Answer only the person who ran the command."""
        self.replies.append(text)
        await send_ephemeral(self.services.chat, self.invocation, text, blocks)

    async def record(
        self, type_: EventType | str, summary: str, payload: Mapping[str, Any] | None = None, *, key: str = ""
    ) -> bool:
        """Put an event on the incident's timeline; False (nothing recorded) when not run in a war room.

        The event's dedup key derives from this invocation (plus ``key`` for several events per run), so a
        redelivered command records it once.
        """
        if self.incident is None:
            return False
        suffix = f":{key}" if key else ""
        event = TimelineEvent(
            incident_id=self.incident.id,
            type=type_,
            occurred_at=self.services.clock(),
            actor=self.user_id,
            source="chatops",
            summary=summary,
            payload=dict(payload or {}),
            dedup_key=f"{type_}:{self.invocation.dedup_key}{suffix}",
        )
        await self.services.sink.record(event)
        return True

    async def upload(self, filename: str, content: bytes, *, title: str, initial_comment: str | None = None) -> str:
        """Share a file (e.g. a chart PNG) in the channel the command came from; returns the file id."""
        if initial_comment:
            self.replies.append(initial_comment)
        return await self.services.chat.upload_file(
            self.channel_id, filename, content, title=title, initial_comment=initial_comment
        )


async def send_ephemeral(chat: Chat, invocation: Invocation, text: str, blocks: Blocks | None = None) -> None:
    """Show ``text`` to the invoking user; falls back to a DM when the bot cannot post in that channel."""
    try:
        await chat.post_ephemeral(invocation.channel_id, invocation.user_id, text, blocks)
    except ChatError as exc:
        if exc.code not in ("channel_not_found", "not_in_channel", "user_not_in_channel"):
            raise
        await chat.post_message(invocation.user_id, text, blocks)
