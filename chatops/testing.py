"""pytest plugin for command authors: the real daemon against the sandbox workspace, in about ten lines.

Register it in your ``conftest.py``::

    pytest_plugins = ["chatops.testing"]

then write a test::

    async def test_note(bot: Bot) -> None:
        room = await bot.declare("sev2 checkout")
        run = await bot.run("/incident note rolled back to v142", channel=room)
        assert run.outcome == "ok"
        assert "rolled back to v142" in run.text
        assert [e.type for e in run.events if e.type == "note"] == ["note"]

``bot`` is a :class:`Bot`: the same :class:`chatops.app.Daemon` ``chatops run`` starts, configured through the same
environment variables, talking over real sockets to a :class:`~chatops.sandbox.world.SandboxWorld` (Slack with
Socket Mode, PagerDuty and Zoom stand-ins on 127.0.0.1) and a fresh, migrated Postgres database per test
(:mod:`chatops.testing_postgres`). :meth:`Bot.run` types a slash command, waits until the dispatcher has finished
with it and returns a :class:`Run`: the outcome, the replies the user saw, every message posted, files uploaded
and the timeline events recorded. :meth:`Bot.click` presses a button from a reply (a runbook step, a
confirmation). :meth:`Bot.advance` moves the daemon's clock (e.g. past a confirmation's expiry).

Fixtures you may override: ``chatops_policy_dir`` (copied to a temporary folder first), ``chatops_commands_dir``,
``chatops_runbooks_dir`` (default: ``policy``, ``commands`` and ``runbooks`` under the directory pytest runs in),
``chatops_world_options`` (keyword arguments of :class:`SandboxWorld`) and ``chatops_env`` (more environment
variables for the daemon, e.g. ``{"PROMETHEUS_URL": prometheus.url}`` with :mod:`chatops.testing_prometheus`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chatops.app import Daemon
from chatops.sandbox.slack import Channel
from chatops.sandbox.world import SandboxWorld
from chatops.settings import Settings
from chatops.timeline.events import TimelineEvent

__all__ = ["Bot", "Button", "Clock", "Reply", "Run", "buttons_in"]

_POSTGRES_PLUGIN = "chatops.testing_postgres"


def pytest_configure(config: pytest.Config) -> None:
    """Bring in the Postgres fixtures unless the project registered them already."""
    manager = config.pluginmanager
    if not manager.has_plugin(_POSTGRES_PLUGIN):
        manager.import_plugin(_POSTGRES_PLUGIN)


class Clock:
    """The daemon's clock: real UTC time plus an offset that :meth:`advance` grows."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        """Jump ahead (never back)."""
        if delta < timedelta(0):
            raise ValueError("the clock only moves forward")
        self.offset += delta


@dataclass(frozen=True)
class Button:
    """A button in a message the bot showed, ready for :meth:`Bot.click`."""

    text: str
    action_id: str
    value: str
    channel: str
    message_ts: str | None
    ephemeral: bool


@dataclass(frozen=True)
class Reply:
    """Something the bot showed: a channel message (``ephemeral`` false) or a message only one user saw."""

    channel: str
    text: str
    blocks: list[dict[str, Any]] | None
    ephemeral: bool
    ts: str | None = None
    user: str | None = None

    @property
    def content(self) -> str:
        """Text plus every string inside the blocks, for ``in`` assertions."""
        return self.text + "\n" + json.dumps(self.blocks or [], ensure_ascii=False)


def buttons_in(reply: Reply) -> list[Button]:
    """Every button in a reply's blocks (section accessories and actions blocks)."""
    found: list[Button] = []
    for block in reply.blocks or []:
        elements = [block["accessory"]] if isinstance(block.get("accessory"), dict) else []
        elements += (
            [e for e in block.get("elements", []) if isinstance(e, dict)] if block.get("type") == "actions" else []
        )
        for element in elements:
            if element.get("type") == "button":
                text = element.get("text", {}).get("text", "")
                found.append(
                    Button(
                        text, element["action_id"], element.get("value", ""), reply.channel, reply.ts, reply.ephemeral
                    )
                )
    return found


@dataclass
class Run:
    """What one command (or click) did. ``replies``: what the user saw where they typed it."""

    outcome: str
    replies: list[Reply] = field(default_factory=list)
    posts: list[Reply] = field(default_factory=list)
    uploads: list[dict[str, Any]] = field(default_factory=list)
    events: list[TimelineEvent] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Every reply's text and blocks, joined (for ``in`` assertions)."""
        return "\n".join(r.content for r in self.replies)

    @property
    def buttons(self) -> list[Button]:
        """Every button in the replies."""
        return [b for r in self.replies for b in buttons_in(r)]

    def button(self, text: str) -> Button:
        """The button whose label or value contains ``text`` (AssertionError naming the buttons there are)."""
        matches = [b for b in self.buttons if text in b.text or text in b.value]
        assert matches, f"no button with {text!r}; buttons: {[(b.text, b.value) for b in self.buttons]}"
        return matches[0]


class Bot:
    """The daemon under test and the sandbox it talks to (see the module docstring)."""

    def __init__(self, world: SandboxWorld, daemon: Daemon, clock: Clock, timeout: float = 30.0) -> None:
        self.world = world
        self.daemon = daemon
        self.clock = clock
        self.timeout = timeout
        self._done: dict[str, asyncio.Future[str]] = {}
        assert daemon.dispatcher is not None, "start the daemon first"
        daemon.dispatcher.observers.append(self._finished)

    def _finished(self, key: str, outcome: str) -> None:
        future = self._done.get(key)
        if future is None:
            future = self._done[key] = asyncio.get_running_loop().create_future()
        if not future.done():
            future.set_result(outcome)

    @property
    def ops_channel(self) -> str:
        """``#ops``, where everyone in the sandbox is a member: the default channel."""
        return self.world.ops_channel

    @property
    def ic(self) -> str:
        """The sandbox's on-call IC (Aditi): the default user."""
        return self.world.ic.slack_id

    def advance(self, delta: timedelta) -> None:
        """Move the daemon's clock forward."""
        self.clock.advance(delta)

    def user(self, user_id: str, *, name: str | None = None, email: str | None = None) -> str:
        """Make sure a sandbox user exists (created with ``name`` / ``email`` when new); returns its id."""
        if user_id not in self.world.slack.users:
            handle = name or user_id.lower()
            self.world.slack.add_user(user_id, handle, email=email or f"{handle}@sandbox.example")
        return user_id

    def channel(self, channel_id: str) -> Channel:
        """A sandbox channel by id (or by name)."""
        found = self.world.slack.channels.get(channel_id) or self.world.slack.channel_by_name(channel_id)
        assert found is not None, f"no channel {channel_id!r}"
        return found

    async def run(self, line: str, *, user: str | None = None, channel: str | None = None, join: bool = True) -> Run:
        """Type ``line`` (``"/cmd args"``) as ``user`` (default: the IC) in ``channel`` (default: ``#ops``).

        The user joins the channel first unless ``join`` is false (e.g. to test a non-member being refused).
        """
        command, _, text = line.strip().partition(" ")
        assert command.startswith("/"), f"a command line starts with /, got {line!r}"
        who = self.user(user or self.ic)
        room = self.channel(channel or self.ops_channel)
        if join:
            room.members.add(who)
        before = await self._snapshot()
        envelope = await self.world.slack.send_slash_command(
            command, text, user_id=who, channel_id=room.id, wait_ack=False
        )
        return await self._wait(str(envelope.payload["trigger_id"]), before, who, room.id)

    async def click(self, button: Button, *, user: str | None = None) -> Run:
        """Press ``button`` as ``user`` (default: the IC) in the channel it was shown in."""
        who = self.user(user or self.ic)
        self.channel(button.channel).members.add(who)
        before = await self._snapshot()
        envelope = await self.world.slack.click_button(
            user_id=who,
            channel_id=button.channel,
            action_id=button.action_id,
            value=button.value,
            message_ts=button.message_ts,
            is_ephemeral=button.ephemeral,
            wait_ack=False,
        )
        return await self._wait(f"{envelope.payload['trigger_id']}:0", before, who, button.channel)

    async def declare(self, text: str = "sev2 checkout", *, user: str | None = None) -> str:
        """``/incident declare <text>`` from ``#ops``; returns the war room's channel id."""
        run = await self.run(f"/incident declare {text}", user=user)
        assert run.outcome == "ok", f"declare failed ({run.outcome}): {run.text}"
        rooms = [r.channel for r in run.posts if self.channel(r.channel).name.startswith("inc-")]
        assert rooms, f"no war room was opened: {run.text}"
        return rooms[0]

    async def timeline(self, channel: str) -> list[TimelineEvent]:
        """Every timeline event of the incident whose war room is ``channel``."""
        services = self.daemon.services
        assert services is not None
        await self._flush()
        incident = await services.incidents.by_channel(channel)
        return [] if incident is None else await services.timeline.query(incident.id)

    # ------------------------------------------------------------------ internals

    async def _snapshot(self) -> dict[str, Any]:
        slack = self.world.slack
        await self._flush()
        return {
            "messages": {c.id: {m.ts for m in c.messages} for c in slack.channels.values()},
            "ephemerals": len(slack.ephemerals),
            "files": set(slack.files),
            "events": {e.id for e in await self._all_events()},
        }

    async def _all_events(self) -> list[TimelineEvent]:
        services = self.daemon.services
        assert services is not None
        pool = self.daemon.pool
        assert pool is not None
        ids = [r["incident_id"] for r in await pool.fetch("SELECT DISTINCT incident_id FROM timeline_events")]
        events: list[TimelineEvent] = []
        for incident_id in ids:
            events += await services.timeline.query(incident_id)
        return events

    async def _flush(self) -> None:
        writer = getattr(self.daemon, "writer", None)
        flush = getattr(writer, "flush", None)
        if flush is not None:
            await flush(self.timeout)

    async def _wait(self, key: str, before: dict[str, Any], user: str, channel: str) -> Run:
        loop = asyncio.get_running_loop()
        future = self._done.setdefault(key, loop.create_future())
        try:
            outcome = await asyncio.wait_for(future, self.timeout)
        finally:
            self._done.pop(key, None)
        await self._flush()
        slack = self.world.slack
        posts = [
            Reply(c.id, m.text, m.blocks, False, ts=m.ts)
            for c in slack.channels.values()
            for m in c.messages
            if m.ts not in before["messages"].get(c.id, set()) and m.user == slack.bot_user_id
        ]
        shown = [
            Reply(e.channel, e.text, e.blocks, True, user=e.user)
            for e in slack.ephemerals[before["ephemerals"] :]
            if e.user == user
        ]
        return Run(
            outcome=outcome,
            replies=shown + [p for p in posts if p.channel == channel],
            posts=posts,
            uploads=[f for file_id, f in slack.files.items() if file_id not in before["files"]],
            events=[e for e in await self._all_events() if e.id not in before["events"]],
        )


@pytest.fixture
def chatops_policy_dir(tmp_path: Path) -> Path:
    """A private copy of ``./policy`` that a test may edit."""
    target = tmp_path / "chatops-policy"
    shutil.copytree(Path.cwd() / "policy", target)
    return target


@pytest.fixture
def chatops_commands_dir() -> Path:
    """The command modules under test (default ``./commands``)."""
    return Path.cwd() / "commands"


@pytest.fixture
def chatops_runbooks_dir() -> Path:
    """The runbooks under test (default ``./runbooks``)."""
    return Path.cwd() / "runbooks"


@pytest.fixture
def chatops_world_options() -> dict[str, Any]:
    """Keyword arguments for :class:`SandboxWorld` (e.g. ``{"pagerduty": False}``)."""
    return {}


@pytest.fixture
def chatops_env() -> dict[str, str]:
    """More environment variables for the daemon (they win over the sandbox's), e.g. ``PROMETHEUS_URL``."""
    return {}


@pytest.fixture
async def bot(
    chatops_policy_dir: Path,
    chatops_commands_dir: Path,
    chatops_runbooks_dir: Path,
    chatops_world_options: dict[str, Any],
    chatops_env: dict[str, str],
    fresh_database_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Bot]:
    """The daemon, started in-process against a fresh sandbox world and database; stopped after the test."""
    async with SandboxWorld(chatops_policy_dir, **chatops_world_options) as world:
        # The PagerDuty client trusts the sandbox's throwaway CA the way production trusts a private one.
        monkeypatch.setenv("SSL_CERT_FILE", str(world.tls.ca_bundle_path))
        env = world.env(
            **{
                "DATABASE_URL": fresh_database_dsn,
                "CHATOPS_DATA_DIR": str(tmp_path / "chatops-data"),
                "CHATOPS_COMMANDS_DIR": str(chatops_commands_dir),
                "CHATOPS_RUNBOOKS_DIR": str(chatops_runbooks_dir),
                "CHATOPS_SHUTDOWN_TIMEOUT": "10",
            }
            | chatops_env
        )
        clock = Clock()
        limits = chatops_world_options.get("slack_tier_limits")
        daemon = Daemon(Settings.from_env(env), clock=clock, slack_tier_limits=limits)
        await daemon.start()
        try:
            await world.slack.wait_connected(timeout=30)
            yield Bot(world, daemon, clock)
        finally:
            await daemon.stop()
