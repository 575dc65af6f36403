"""Fixtures for the HTTP-side sources: real Postgres, the real timeline writer, a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from chatops.http import HttpServer
from chatops.incidents.model import Incident
from chatops.incidents.store import IncidentStore
from chatops.policy.store import PolicyStore
from chatops.tasks import TaskTracker
from chatops.timeline.events import TimelineEvent
from chatops.timeline.spool import Spool
from chatops.timeline.store import TimelineStore
from chatops.timeline.writer import TimelineWriter
from chatops.transport.base import PostedMessage

REPO = Path(__file__).resolve().parents[3]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class FakeChat:
    """Records posts; enough of :class:`~chatops.transport.base.Chat` for the webhooks."""

    bot_user_id: str = "U0BOT"
    posts: list[tuple[str, str]] = field(default_factory=list)

    async def post_message(
        self, channel: str, text: str, blocks: Any = None, *, thread_ts: str | None = None
    ) -> PostedMessage:
        self.posts.append((channel, text))
        return PostedMessage(channel=channel, ts=f"{len(self.posts)}.000100")


@dataclass
class Stack:
    """What the tests poke at."""

    pool: asyncpg.Pool
    incidents: IncidentStore
    timeline: TimelineStore
    writer: TimelineWriter
    policy: PolicyStore
    policy_dir: Path
    tasks: TaskTracker
    chat: FakeChat
    declared: int = 0

    async def declare(self, service: str, *, channel: str | None = None, separate: bool = False) -> Incident:
        """An open incident on ``service`` (as the declare workflow's claim makes it), with a war-room channel."""
        self.declared += 1
        claim = await self.incidents.claim_declaration(
            dedup_key=f"test:{self.declared}",
            incident_id=f"inc-2026-04-22-0247-{service}",
            severity="sev2",
            service=service,
            ic_user_id="U0ADITI01",
            declared_by="U0ADITI01",
            declared_at=utcnow() - dt.timedelta(minutes=5),
            policy_digest=self.policy.current.digest,
            allow_concurrent=separate,
        )
        assert claim.outcome == "created", claim
        room = channel or f"C0ROOM{self.declared:03d}"
        await self.incidents.set_channel(claim.incident.id, room, claim.incident.id)
        incident = await self.incidents.get(claim.incident.id)
        assert incident is not None
        return incident

    async def events(self, incident_id: str, *types: str) -> list[TimelineEvent]:
        """Everything committed so far for ``incident_id`` (flushes the writer first)."""
        assert await self.writer.flush(timeout=10)
        return await self.timeline.query(incident_id, types=list(types) or None)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policy that a test may edit."""
    target = tmp_path / "policy"
    shutil.copytree(REPO / "policy", target)
    return target


@pytest.fixture
def writer_capacity() -> int:
    """Override to test a full buffer."""
    return 50_000


@pytest.fixture
async def stack(db_pool: asyncpg.Pool, tmp_path: Path, policy_dir: Path, writer_capacity: int) -> AsyncIterator[Stack]:
    policy = PolicyStore(policy_dir)
    policy.load_initial()
    timeline = TimelineStore(db_pool)
    writer = TimelineWriter(
        timeline, Spool(tmp_path / "spool"), capacity=writer_capacity, batch_size=min(writer_capacity, 2_000)
    )
    await writer.start()
    tasks = TaskTracker()
    yield Stack(db_pool, IncidentStore(db_pool), timeline, writer, policy, policy_dir, tasks, FakeChat())
    await tasks.close(5)
    await writer.close()


ServerFactory = Callable[[Iterable[web.AbstractRouteDef]], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[ServerFactory]:
    """Start an :class:`HttpServer` on 127.0.0.1 with extra routes; returns its base URL."""
    servers: list[HttpServer] = []

    async def start(routes: Iterable[web.AbstractRouteDef]) -> str:
        server = HttpServer("127.0.0.1", 0, checks={})
        server.add_routes(routes)
        await server.start()
        servers.append(server)
        return f"http://{server.address}"

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
