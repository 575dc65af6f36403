"""``/dashboard`` through the daemon: which service and range a line means, and where the Grafana link points.

A real Prometheus (:mod:`chatops.testing_prometheus`) answers the panels' queries.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from chatops.testing import Bot, Run
from chatops.testing_prometheus import PrometheusServer

GRAFANA = {
    "checkout": "https://grafana.example.com/d/checkout-overview",
    "rider-pos": "https://grafana.example.com/d/rider-pos-overview",
}
_LINK = re.compile(r"<([^|>]+)\|Open in Grafana>")


@pytest.fixture
def chatops_env(prometheus: PrometheusServer) -> dict[str, str]:
    return {"PROMETHEUS_URL": prometheus.url}


def comment(run: Run) -> str:
    """The text posted with the chart."""
    [upload] = run.uploads
    [message] = [p for p in run.posts if "dashboard · last" in p.text]
    assert upload["name"].endswith(".png")
    return message.text


def grafana_link(text: str) -> str:
    match = _LINK.search(text)
    assert match, text
    return match.group(1)


def span_ms(url: str) -> int:
    query = parse_qs(urlsplit(url).query)
    return int(query["to"][0]) - int(query["from"][0])


async def follow(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as client, client.get(url, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", "")


async def test_a_lone_duration_in_a_war_room_is_the_range_of_the_rooms_service(bot: Bot) -> None:
    room = await bot.declare("sev2 rider-pos")
    run = await bot.run("/dashboard 1h", channel=room)
    assert run.outcome == "ok", run.text
    assert comment(run).startswith("*rider-pos* dashboard · last 1h to ")
    assert (await bot.run("/dashboard", channel=room)).outcome == "ok"


async def test_a_war_rooms_grafana_link_goes_through_the_redirector_and_lands_on_its_timeline(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    run = await bot.run("/dashboard checkout 2h", channel=room)
    assert run.outcome == "ok", run.text
    link = grafana_link(comment(run))
    assert "/go/" in link and "grafana.example.com" not in link
    status, target = await follow(link)
    assert status == 302 and target.startswith(GRAFANA["checkout"] + "?from=")
    assert span_ms(target) == 2 * 3600 * 1000
    [opened] = [e for e in await bot.timeline(room) if e.type == "dashboard"]
    assert opened.summary == "Grafana checkout opened"
    assert opened.payload["kind"] == "grafana" and opened.payload["url"] == target
    assert opened.payload["range"]["to_ms"] - opened.payload["range"]["from_ms"] == 2 * 3600 * 1000


async def test_outside_a_war_room_the_service_and_range_are_as_typed_and_the_link_is_grafanas_own(bot: Bot) -> None:
    both = await bot.run("/dashboard checkout 1h")
    assert both.outcome == "ok", both.text
    text = comment(both)
    assert text.startswith("*checkout* dashboard · last 1h to ")
    # No incident, so no timeline to record a click on: the Grafana URL itself, over the chart's range.
    link = grafana_link(text)
    assert link.startswith(GRAFANA["checkout"] + "?from=") and span_ms(link) == 3600 * 1000
    alone = await bot.run("/dashboard checkout")
    assert alone.outcome == "ok", alone.text
    assert comment(alone).startswith("*checkout* dashboard · last 6h to ")


async def test_a_lone_duration_outside_a_war_room_asks_for_a_service(bot: Bot) -> None:
    run = await bot.run("/dashboard 1h")
    assert run.outcome == "user_error" and not run.uploads
    [reply] = run.replies
    assert reply.ephemeral
    assert "Outside a war room `/dashboard` needs one: name one of checkout, rider-pos, auth." in reply.text
    assert "Example: `/dashboard checkout 1h`" in reply.text
    assert "unknown service" not in reply.text
