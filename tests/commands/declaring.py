"""Test helpers for commands that meet a declaration still in progress, and for reading the pinned summary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from chatops.testing import Bot


def summary_text(bot: Bot, room: str) -> str:
    """The pinned summary's blocks as JSON text (what Slack holds now)."""
    channel = bot.channel(room)
    [pinned] = [m for m in channel.messages if m.ts == channel.pins[0]]
    return json.dumps(pinned.blocks, ensure_ascii=False)


@asynccontextmanager
async def declaration_before_its_last_step(
    bot: Bot, monkeypatch: pytest.MonkeyPatch, text: str = "sev2 checkout"
) -> AsyncIterator[str]:
    """Declare, holding the declaration's last step (acknowledging the IC's page, after which it re-renders the
    pinned summary from its own state) until the body is done; yields the war room once the summary is pinned.

    On leaving, the acknowledgement goes ahead and the declaration must finish in that war room."""
    pd = bot.daemon.services.pagerduty  # type: ignore[union-attr]
    assert pd is not None
    acknowledge, release = pd.acknowledge, asyncio.Event()

    async def acknowledge_when_released(incident_id: str) -> str:
        await release.wait()
        return await acknowledge(incident_id)

    monkeypatch.setattr(pd, "acknowledge", acknowledge_when_released)
    slack = bot.world.slack
    declaring = asyncio.create_task(bot.declare(text))
    try:
        await slack.wait_for(
            lambda: any(c.name.startswith("inc-") and c.pins for c in slack.channels.values()),
            timeout=bot.timeout,
            what="the pinned summary",
        )
        [room] = [c.id for c in slack.channels.values() if c.name.startswith("inc-")]
        yield room
    finally:
        release.set()
    assert await declaring == room
