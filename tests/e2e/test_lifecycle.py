"""The daemon's life: start-up errors, policy hot reload, SIGTERM draining, acks under load."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from chatops.sandbox.world import SandboxWorld

from .conftest import REPO, DaemonFactory

pytestmark = pytest.mark.slow


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "ZOOM_", "CHATOPS_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatops",
        *args,
        cwd=str(REPO),
        env=base | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_bad_settings_fail_with_one_line_per_problem() -> None:
    code, out = await run_cli(
        {
            "SLACK_BOT_TOKEN": "xoxp-wrong",
            "SLACK_APP_TOKEN": "app-token",
            "CHATOPS_HTTP_ADDR": "nowhere",
            "PROMETHEUS_TIMEOUT": "0",
        },
        "run",
    )
    assert code == 2
    lines = out.strip().splitlines()
    assert "chatops: SLACK_BOT_TOKEN must start with xoxb-" in lines
    assert "chatops: SLACK_APP_TOKEN must start with xapp-" in lines
    assert any(line.startswith("chatops: CHATOPS_HTTP_ADDR must look like HOST:PORT") for line in lines)
    assert (
        "chatops: PROMETHEUS_TIMEOUT must be a number of seconds above 0 and at most 30 (/promql and /dashboard "
        "stop after 45 s), got '0'" in lines
    )
    assert "Traceback" not in out


async def test_refused_tokens_fail_clearly(world: SandboxWorld, fresh_database_dsn: str, tmp_path: Path) -> None:
    env = world.env(
        DATABASE_URL=fresh_database_dsn, CHATOPS_DATA_DIR=str(tmp_path), SLACK_APP_TOKEN="xapp-1-not-the-right-one"
    )
    code, out = await run_cli(env, "run")
    assert code == 2, out
    assert "chatops: SLACK_APP_TOKEN was refused by apps.connections.open: invalid_auth" in out
    assert "Traceback" not in out


async def test_invalid_policy_edit_is_refused_and_the_old_policy_stays(
    world: SandboxWorld, start_daemon: DaemonFactory, policy_dir: Path
) -> None:
    daemon = await start_daemon()
    services = policy_dir / "services.yaml"
    services.write_text(services.read_text().replace("owner_team: checkout-platform", "owner_team: [oops"))
    platform = world.slack.channels[world.platform_channel]
    await world.slack.wait_for(lambda: bool(platform.messages), timeout=20)
    assert "services.yaml:" in platform.messages[0].text and "refused" in platform.messages[0].text
    await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.wait_log("incident declared", timeout=60)
    rooms = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    assert len(rooms) == 1 and rooms[0].pins


async def test_sighup_applies_a_valid_edit(world: SandboxWorld, start_daemon: DaemonFactory, policy_dir: Path) -> None:
    daemon = await start_daemon()
    severity = policy_dir / "severity.yaml"
    text = severity.read_text()
    # sev3 now also pages the secondary.
    marker = "page: [primary]"
    assert marker in text, "the shipped sev3 pages [primary] in flow style"
    severity.write_text(text.replace(marker, "page: [primary, secondary]"))
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    await daemon.wait_log("policy applied", timeout=20)
    await world.slack.send_slash_command(
        "/incident", "declare sev3 auth", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.wait_log("incident declared", timeout=60)
    assert world.pagerduty is not None
    roles = {i["incident_key"].split("/")[-1] for i in world.pagerduty.incidents if i.get("incident_key")}
    assert roles == {"primary", "secondary"}


async def test_sigterm_during_a_declare_finishes_it_then_exits(
    world: SandboxWorld, start_daemon: DaemonFactory
) -> None:
    assert world.pagerduty is not None
    world.pagerduty.set_latency(1.0)
    daemon = await start_daemon()
    envelope = await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    assert envelope.acked_at is not None
    await world.slack.wait_for(lambda: bool(world.slack.calls_to("conversations.create")), timeout=15)
    code = await daemon.stop(signal.SIGTERM)
    assert code == 0
    roles = {i["incident_key"].split("/")[-1] for i in world.pagerduty.incidents if i.get("incident_key")}
    assert roles == {"primary", "secondary", "cs_lead"}, "in-flight pages were drained, not dropped"
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    assert room.pins
    messages = [e.get("message") for e in daemon.logs()]
    assert "shutdown requested" in messages and "chatops stopped" in messages
    assert messages.index("incident declared") < messages.index("chatops stopped")


async def test_every_envelope_is_acked_fast_under_a_burst(world: SandboxWorld, start_daemon: DaemonFactory) -> None:
    await start_daemon()
    envelopes = await asyncio.gather(
        *(
            world.slack.send_slash_command("/incident", "help", user_id=world.ic.slack_id, channel_id=world.ops_channel)
            for _ in range(50)
        )
    )
    latencies = sorted(e.ack_latency for e in envelopes if e.ack_latency is not None)
    assert len(latencies) == 50
    assert latencies[-1] < 3.0
    event = await world.slack.send_event(
        {
            "type": "reaction_added",
            "user": world.ic.slack_id,
            "reaction": "eyes",
            "item": {"type": "message", "channel": world.ops_channel, "ts": "1.0"},
        }
    )
    assert event.acked_at is not None, "events without a consumer are acked too"
    assert not world.slack.unacked()
