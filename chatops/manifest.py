"""The Slack app manifest, generated from the command registry (``chatops manifest``).

Paste it into https://api.slack.com/apps → *Create New App* → *From an app manifest*. Slash commands (with their
usage hints) come from the specs, so the app can never advertise a command the daemon does not have. Socket
Mode is on, so no request URLs appear; interactivity is on for runbook and confirmation buttons.
"""

from __future__ import annotations

import io
import json
from typing import Any, Literal

from ruamel.yaml import YAML

from chatops.registry import Registry
from chatops.spec import CommandSpec

__all__ = ["BOT_EVENTS", "BOT_SCOPES", "build_manifest", "render_manifest"]

BOT_SCOPES: tuple[str, ...] = (
    "commands",
    "chat:write",
    "chat:write.public",
    "channels:manage",
    "channels:read",
    "channels:join",
    "channels:history",
    "groups:read",
    "groups:history",
    "pins:write",
    "reactions:read",
    "reactions:write",
    "users:read",
    "users:read.email",
    "usergroups:read",
    "files:write",
)
"""What the daemon calls: conversations.*, chat.*, pins.add, reactions, users.info / lookupByEmail,
usergroups.users.list (grants), files.getUploadURLExternal / completeUploadExternal (charts)."""

BOT_EVENTS: tuple[str, ...] = (
    "message.channels",
    "message.groups",
    "member_joined_channel",
    "member_left_channel",
    "reaction_added",
)
"""What the timeline records from war rooms (public, or private when policy makes them so)."""
_DESCRIPTION_MAX = 100
_HINT_MAX = 1000


def _hint(specs: list[CommandSpec]) -> str:
    parts = [s.usage.split(" ", 1)[1] if " " in s.usage else "" for s in specs]
    if len(specs) > 1 or specs[0].subcommand is not None:
        parts.append("help")
    return " | ".join(p for p in parts if p)[:_HINT_MAX]


def _slash_command(slash: str, specs: list[CommandSpec]) -> dict[str, Any]:
    if len(specs) == 1 and specs[0].subcommand is None:
        description = specs[0].summary
    else:
        description = f"{slash[1:].capitalize()}: " + ", ".join(s.subcommand or "(bare)" for s in specs)
    if len(description) > _DESCRIPTION_MAX:
        description = description[: _DESCRIPTION_MAX - 1].rstrip() + "…"
    entry: dict[str, Any] = {
        "command": slash,
        "description": description,
        # Escaped text turns @mentions into <@U…|name>, which user arguments need.
        "should_escape": any(a.kind == "user" for s in specs for a in s.args) or slash == "/escalate",
    }
    hint = _hint(specs)
    if hint:
        entry["usage_hint"] = hint
    return entry


def build_manifest(registry: Registry, *, name: str = "chatops", description: str | None = None) -> dict[str, Any]:
    """The manifest as a dict (Slack's manifest schema, ``_metadata.major_version`` 1)."""
    commands = [_slash_command(slash, registry.subcommands(slash)) for slash in registry.slash_commands()]
    return {
        "_metadata": {"major_version": 1, "minor_version": 1},
        "display_information": {
            "name": name,
            "description": description or "Incident response from Slack: declare, page, runbooks, charts.",
        },
        "features": {
            "bot_user": {"display_name": name, "always_online": True},
            "slash_commands": commands,
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": {"bot_events": list(BOT_EVENTS)},
            "interactivity": {"is_enabled": True},
            "org_deploy_enabled": False,
            "socket_mode_enabled": True,
            "token_rotation_enabled": False,
        },
    }


def render_manifest(manifest: dict[str, Any], fmt: Literal["yaml", "json"] = "yaml") -> str:
    """JSON (indented) or YAML text."""
    if fmt == "json":
        return json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(manifest, out)
    return out.getvalue()
