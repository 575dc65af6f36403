"""The public API for command authors is pinned, and `chatops manifest` prints the app manifest from the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML

import chatops
from chatops.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_public_api_is_pinned() -> None:
    assert chatops.__all__ == ["Arg", "CommandSpec", "Context", "UserError", "command"]
    for name in chatops.__all__:
        assert getattr(chatops, name) is not None


def test_manifest_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifest", "--format", "json", "--commands-dir", str(REPO / "commands")]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    commands = {c["command"]: c for c in manifest["features"]["slash_commands"]}
    assert {"/incident", "/runbook", "/escalate"} <= set(commands)
    assert commands["/incident"]["usage_hint"].startswith("declare <severity> <service> [--new]")
    assert commands["/escalate"]["should_escape"] is True, "mentions must arrive as <@U…>"
    assert all(len(c["description"]) <= 100 for c in commands.values())
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    assert {"commands", "chat:write", "usergroups:read", "channels:read", "files:write"} <= set(scopes)
    assert "message.channels" in manifest["settings"]["event_subscriptions"]["bot_events"]


def test_manifest_yaml_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    main(["manifest", "--format", "json", "--commands-dir", str(REPO / "commands")])
    as_json = json.loads(capsys.readouterr().out)
    main(["manifest", "--commands-dir", str(REPO / "commands"), "--name", "chatops"])
    assert YAML(typ="safe").load(capsys.readouterr().out) == as_json


def test_manifest_with_a_broken_commands_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    assert main(["manifest", "--commands-dir", str(tmp_path)]) == 2
    assert "failed to import: RuntimeError: boom" in capsys.readouterr().err
