"""``/promql`` and ``/dashboard`` end to end: the daemon subprocess, the sandbox Slack over Socket Mode and a real
Prometheus (Debian's binary on data backfilled by promtool)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from chatops.sandbox.slack import Message
from chatops.sandbox.world import SandboxWorld
from chatops.testing_prometheus import PrometheusServer

from .conftest import DaemonFactory, DaemonProcess

pytestmark = pytest.mark.slow


async def run(world: SandboxWorld, command: str, text: str, channel: str | None = None) -> None:
    envelope = await world.slack.send_slash_command(
        command, text, user_id=world.ic.slack_id, channel_id=channel or world.ops_channel
    )
    assert envelope.acked_at is not None and envelope.ack_latency is not None and envelope.ack_latency < 3.0


async def bot_message(world: SandboxWorld, channel: str, *, files: bool, after: int = 0) -> Message:
    room = world.slack.channels[channel]

    def found() -> list[Message]:
        return [m for m in room.messages[after:] if m.bot_id and bool(m.files) == files]

    await world.slack.wait_for(lambda: bool(found()), timeout=30, what="the bot's answer")
    return found()[0]


async def ephemeral(world: SandboxWorld, contains: str) -> str:
    def found() -> list[str]:
        return [e.text for e in world.slack.ephemerals if contains in e.text]

    await world.slack.wait_for(lambda: bool(found()), timeout=30, what=f"an ephemeral with {contains!r}")
    return found()[0]


def png(world: SandboxWorld, message: Message) -> Image.Image:
    [file_id] = message.files
    record: dict[str, Any] = world.slack.files[file_id]
    assert record["completed"] and record["name"].endswith(".png")
    image = Image.open(io.BytesIO(record["content"]))
    image.load()
    return image


@pytest.fixture
async def daemon(world: SandboxWorld, start_daemon: DaemonFactory, prometheus: PrometheusServer) -> DaemonProcess:
    return await start_daemon(PROMETHEUS_URL=prometheus.url)


async def test_promql_instant_table_range_chart_and_errors(world: SandboxWorld, daemon: DaemonProcess) -> None:
    await run(world, "/promql", "deploy_replicas")
    table = await bot_message(world, world.ops_channel, files=False)
    assert "`deploy_replicas` at " in table.text and "3 series" in table.text
    assert "```" in table.text and 'service="checkout"' in table.text
    rows = table.text.split("```")[1].strip().splitlines()
    assert rows[0].startswith('{namespace="checkout", service="checkout"}') and rows[0].endswith("3")

    # Smart quotes from the Slack client are fixed; the PromQL quotes survive; a range gives a chart.
    await run(world, "/promql", "sum by (code) (rate(http_requests_total{service=“checkout”}[5m])) range=1h")
    chart = await bot_message(world, world.ops_channel, files=True)
    assert 'service="checkout"' in chart.text and "1h to" in chart.text and "step 15s" in chart.text
    image = png(world, chart)
    assert image.format == "PNG" and image.size[0] == 1200
    methods = [c.method for c in world.slack.calls if c.method.startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.completeUploadExternal"], "the 3-step upload"

    await run(world, "/promql", "sum(rate(http_requests_total[5m])")
    assert (await ephemeral(world, "your query is invalid")).startswith("your query is invalid: ")
    await run(world, "/promql", "deploy_replicas step=1m")
    await ephemeral(world, "`step=` only applies to a chart")
    seen = len(world.slack.channels[world.ops_channel].messages)
    await run(world, "/promql", 'deploy_replicas{service="nope"} range=30m')
    empty = await bot_message(world, world.ops_channel, files=False, after=seen)
    assert "no series matched in that range" in empty.text
    assert not daemon.errors(), daemon.errors()


async def test_dashboard_posts_one_png_grid_and_the_grafana_link(world: SandboxWorld, daemon: DaemonProcess) -> None:
    await run(world, "/dashboard", "checkout")
    message = await bot_message(world, world.ops_channel, files=True)
    assert message.text.startswith("*checkout* dashboard · last 6h to ")
    assert (
        "<https://grafana.example.com/d/checkout-overview?from=" in message.text and "|Open in Grafana>" in message.text
    )
    image = png(world, message)
    assert image.size[0] == 1200 and 600 <= image.size[1] <= 900
    [file_id] = message.files
    assert world.slack.files[file_id]["title"] == "checkout dashboard, last 6h"
    await run(world, "/dashboard", "chekout")
    await ephemeral(world, "did you mean checkout?")
    assert not daemon.errors(), daemon.errors()


async def test_dashboard_in_a_war_room_defaults_to_its_service(world: SandboxWorld, daemon: DaemonProcess) -> None:
    await run(world, "/incident", "declare sev2 rider-pos")
    await daemon.wait_log("incident declared", timeout=60)
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    seen = len(room.messages)
    await run(world, "/dashboard", "range=2h", channel=room.id)
    message = await bot_message(world, room.id, files=True, after=seen)
    assert message.text.startswith("*rider-pos* dashboard · last 2h")
    assert png(world, message).size[0] == 1200
    assert not daemon.errors(), daemon.errors()


async def test_without_prometheus_the_commands_say_how_to_configure_it(
    world: SandboxWorld, start_daemon: DaemonFactory
) -> None:
    await start_daemon()
    await run(world, "/dashboard", "checkout")
    await ephemeral(world, "set PROMETHEUS_URL")


HEAVY = "histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket[5m])))"
ADVICE = "try a shorter range, a larger step or a simpler query"


async def test_a_query_over_prometheus_timeout_is_explained_to_the_user(
    world: SandboxWorld, start_daemon: DaemonFactory, prometheus: PrometheusServer
) -> None:
    # PROMETHEUS_TIMEOUT reaches Prometheus as the query's timeout: 1 ms is too short for this chart (6,480 steps).
    daemon = await start_daemon(PROMETHEUS_URL=prometheus.url, PROMETHEUS_TIMEOUT="0.001")
    await run(world, "/promql", f"{HEAVY} range=9h step=5s")
    text = await ephemeral(world, "timed out")
    assert text.startswith(f"the query timed out in Prometheus (limit 1ms, PROMETHEUS_TIMEOUT): {ADVICE}"), text
    assert not [m for m in world.slack.channels[world.ops_channel].messages if m.bot_id], "nothing posted"
    assert not daemon.errors(), daemon.errors()


@pytest.fixture
async def slow_prometheus() -> AsyncIterator[str]:
    """A Prometheus stand-in that answers every query after 3 s."""

    async def answer(_request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    app = web.Application()
    app.router.add_route("*", "/api/v1/{endpoint}", answer)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_no_answer_within_prometheus_timeout_is_explained_to_the_user(
    world: SandboxWorld, start_daemon: DaemonFactory, slow_prometheus: str
) -> None:
    await start_daemon(PROMETHEUS_URL=slow_prometheus, PROMETHEUS_TIMEOUT="0.2")
    await run(world, "/promql", "up")
    text = await ephemeral(world, "timed out")
    assert text.startswith(
        f"the query timed out: Prometheus did not answer within 1.2s (query limit 200ms, PROMETHEUS_TIMEOUT): {ADVICE}"
    ), text
