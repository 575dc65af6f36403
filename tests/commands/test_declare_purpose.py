"""The war room's purpose: the seed's ``Incident SEV2 on checkout. Runbook: <link>``, with the signed ``/go/`` link."""

from __future__ import annotations

import json
import re

import aiohttp
import pytest

from chatops.incidents.naming import MAX_TOPIC
from chatops.testing import Bot

RUNBOOK = "https://playbooks.example.com/checkout"
_PURPOSE = re.compile(r"Incident SEV2 on checkout\. Runbook: (\S+)")


def summary_text(bot: Bot, room: str) -> str:
    channel = bot.channel(room)
    [pinned] = [m for m in channel.messages if m.ts == channel.pins[0]]
    return json.dumps(pinned.blocks)


async def test_the_purpose_holds_the_summarys_go_link_to_the_runbook(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    purpose = _PURPOSE.fullmatch(bot.channel(room).purpose)
    assert purpose, bot.channel(room).purpose
    link = purpose[1]
    assert "/go/" in link and "playbooks.example.com" not in link
    assert f"<{link}|{RUNBOOK}>" in summary_text(bot, room), "the same link as the pinned summary's"
    async with aiohttp.ClientSession() as client, client.get(link, allow_redirects=False) as response:
        assert response.status == 302 and response.headers["Location"] == RUNBOOK
    [opened] = [e for e in await bot.timeline(room) if e.type == "dashboard"]
    assert opened.payload["kind"] == "runbook" and opened.payload["url"] == RUNBOOK


class TestAPublicUrlTooLongForThePurpose:
    @pytest.fixture
    def chatops_env(self) -> dict[str, str]:
        return {"CHATOPS_PUBLIC_URL": "https://" + "links." * 35 + "example.com"}

    async def test_the_purpose_falls_back_to_the_runbook_url_whole(self, bot: Bot) -> None:
        room = await bot.declare("sev2 checkout")
        purpose = bot.channel(room).purpose
        assert purpose == f"Incident SEV2 on checkout. Runbook: {RUNBOOK}"
        assert len(purpose) <= MAX_TOPIC
        assert "/go/" in summary_text(bot, room), "the pinned summary still has the /go/ links"
