"""``chatops demo``: the whole thing working, with no configuration at all.

Starts an embedded Postgres under ``CHATOPS_DATA_DIR`` (or uses ``DATABASE_URL``), the sandbox workspace with its
PagerDuty and Zoom stand-ins on 127.0.0.1, and the daemon against them — the same :class:`~chatops.app.Daemon`
``chatops run`` starts, configured through the same variables. Then it types ``/incident declare sev2 checkout``
as the IC over Socket Mode and prints the war-room transcript.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chatops.app import Daemon
from chatops.logs import configure_logging
from chatops.sandbox.world import SandboxWorld
from chatops.settings import Settings
from chatops.timeline.sink import flush_sink

__all__ = ["run_demo"]


def _blocks_to_text(blocks: Iterable[dict[str, Any]] | None) -> list[str]:
    lines: list[str] = []
    for block in blocks or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {block['text']['text']} ==")
        elif kind == "section":
            if "text" in block:
                lines.extend(block["text"]["text"].splitlines())
            for field in block.get("fields", []):
                lines.append(field["text"].replace("\n", ": ", 1))
        elif kind == "context":
            lines.extend(f"({e.get('text', '')})" for e in block.get("elements", []))
    return lines


def _indent(lines: Iterable[str], prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in lines)


def _transcript(world: SandboxWorld, started: float) -> list[tuple[float, str]]:
    """Everything the daemon did to the outside world, in order, relative to the command."""
    events: list[tuple[float, str]] = []
    for call in world.slack.calls:
        if call.at < started or not call.response.get("ok"):
            continue
        p = call.params
        if call.method == "conversations.create":
            events.append((call.at, f"channel #{p['name']} created (id {call.response['channel']['id']})"))
        elif call.method == "conversations.setTopic":
            events.append((call.at, f'topic set: "{p["topic"]}"'))
        elif call.method == "conversations.setPurpose":
            events.append((call.at, f'purpose set: "{p["purpose"]}"'))
        elif call.method == "conversations.invite":
            events.append((call.at, f"invited {p['users']}"))
        elif call.method == "chat.postMessage":
            where = world.slack.channels.get(call.response.get("channel", ""))
            events.append((call.at, f"message posted in #{where.name if where else p['channel']}"))
        elif call.method == "pins.add":
            events.append((call.at, "summary pinned"))
        elif call.method == "chat.update":
            events.append((call.at, "summary updated with the final page results"))
        elif call.method == "chat.postEphemeral":
            events.append((call.at, f"told the IC (ephemeral): {p['text']}"))
    if world.pagerduty is not None:
        for pd in world.pagerduty.calls:
            if pd.at < started or pd.status >= 400:
                continue
            body = pd.body if isinstance(pd.body, dict) else {}
            if pd.method == "POST" and pd.path == "/incidents":
                key = body.get("incident", {}).get("incident_key", "")
                events.append((pd.at, f"PagerDuty incident created -> {key.rsplit('/', 1)[-1]} on-call"))
            elif pd.method == "PUT":
                events.append((pd.at, f"PagerDuty {pd.path} acknowledged (the IC's page)"))
    if world.zoom is not None:
        for zc in world.zoom.calls:
            if zc.at >= started and zc.path.endswith("/meetings") and zc.status == 201:
                events.append((zc.at, "Zoom bridge created"))
    return sorted(events)


async def run_demo(
    *, policy_dir: Path, severity: str = "sev2", service: str = "checkout", verbose: bool = False
) -> int:
    """Run the scripted declare and print what happened. Returns the exit code."""
    configure_logging("INFO" if verbose else "WARNING")
    logging.getLogger("chatops.db.embedded").setLevel(logging.INFO if verbose else logging.WARNING)
    print("chatops demo — sandbox Slack, PagerDuty and Zoom on 127.0.0.1, a real Postgres, the real daemon\n")
    async with SandboxWorld(policy_dir) as world:
        # The PagerDuty client verifies TLS; the sandbox's throwaway CA is trusted for this process only.
        os.environ["SSL_CERT_FILE"] = str(world.tls.ca_bundle_path)
        env = world.env(CHATOPS_DATA_DIR=os.environ.get("CHATOPS_DATA_DIR", ".chatops"))
        for passthrough in ("DATABASE_URL", "CHATOPS_COMMANDS_DIR", "CHATOPS_RUNBOOKS_DIR"):
            if os.environ.get(passthrough):
                env[passthrough] = os.environ[passthrough]
        settings = Settings.from_env(env)
        daemon = Daemon(settings)
        began = time.monotonic()
        await daemon.start()
        assert daemon.services is not None
        print(
            f"daemon up in {time.monotonic() - began:.1f}s "
            f"({'DATABASE_URL' if settings.database_url else f'embedded Postgres in {settings.data_dir}'})\n"
        )
        try:
            return await _declare_and_show(world, daemon, severity, service)
        finally:
            await daemon.stop()


async def _declare_and_show(world: SandboxWorld, daemon: Daemon, severity: str, service: str) -> int:
    assert daemon.services is not None
    text = f"declare {severity} {service}"
    before = set(world.slack.channels)
    started = time.monotonic()
    envelope = await world.slack.send_slash_command(
        "/incident", text, user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.services.tasks.wait_idle()
    if daemon.writer is not None:
        await daemon.writer.flush(timeout=10)
    elapsed = max([c.at for c in world.slack.calls] + [started]) - started

    print(f"[+0.000s] /incident {text}  (from @{world.ic.name} in #ops)")
    if envelope.ack_latency is not None:
        print(f"[+{envelope.ack_latency:.3f}s] ack returned to Slack (within {envelope.ack_latency * 1000:.0f} ms)")
    for at, line in _transcript(world, started):
        print(f"[+{at - started:.3f}s] {line}")
    print(f"\nelapsed: {elapsed:.2f} seconds\n")

    rooms = [world.slack.channels[c] for c in set(world.slack.channels) - before]
    if not rooms:
        print("No war room was opened. What the IC was told:")
        print(_indent(e.text for e in world.slack.ephemerals))
        return 1
    room = rooms[0]
    members = ", ".join(sorted(room.members))
    print(
        f"War room #{room.name} ({room.id})\n  topic:   {room.topic}\n  purpose: {room.purpose}\n"
        f"  members: {members}\n  pinned summary:"
    )
    for message in room.messages:
        if message.ts in room.pins:
            print(_indent(_blocks_to_text(message.blocks)))
    draft = world.slack.channels[world.draft_channel].messages
    if draft:
        print(f"\n#{world.slack.channels[world.draft_channel].name}:")
        print(_indent(draft[-1].text.splitlines()))

    incident = await daemon.services.incidents.by_channel(room.id)
    if incident is not None:
        await flush_sink(daemon.services.sink, timeout=5.0)  # the batching writer commits within ~200 ms
        events = await daemon.services.timeline.query(incident.id)
        print(f"\nTimeline of {incident.id} (Postgres):")
        for event in events:
            print(f"    {event.occurred_at:%H:%M:%S.%f}"[:-3] + f" UTC  {event.type:<12} {event.summary}")
    return 0
