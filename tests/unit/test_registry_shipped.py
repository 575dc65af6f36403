"""The real registry discovered from commands/: every example of every spec parses, help and grants cover all."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatops.args import parse_args
from chatops.authz import _grants
from chatops.help import render_help
from chatops.manifest import build_manifest
from chatops.policy.loader import load_policy
from chatops.registry import Registry
from chatops.spec import CommandSpec

REPO = Path(__file__).resolve().parents[2]
REGISTRY = Registry.discover(REPO / "commands", use_entry_points=False)
POLICY = load_policy(REPO / "policy")
EXAMPLES = [(spec.name, example) for spec in REGISTRY for example in spec.examples]
SPECS = {spec.name: spec for spec in REGISTRY}


def test_the_shipped_commands_are_there() -> None:
    assert {"/incident declare", "/incident note", "/runbook", "/escalate"} <= set(SPECS)


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
def test_every_spec_has_examples_and_a_summary(spec: CommandSpec) -> None:
    assert spec.examples, f"{spec.name} needs at least one example (help and the usage errors show it)"
    assert spec.summary and len(spec.summary) <= 100
    assert 0 < spec.timeout <= 300


@pytest.mark.parametrize(("name", "example"), EXAMPLES, ids=[e for _, e in EXAMPLES])
def test_every_example_resolves_to_its_command_and_parses(name: str, example: str) -> None:
    slash, _, text = example.partition(" ")
    spec, rest = REGISTRY.resolve(slash, text)
    assert spec is not None and spec.name == name, f"{example!r} resolves to {spec and spec.name}, not {name}"
    values = parse_args(spec, rest, POLICY)
    required = {a.name for a in spec.args if a.required and a.kind != "flag"}
    assert required <= set(values)


@pytest.mark.parametrize("spec", list(REGISTRY), ids=lambda s: s.name)
def test_every_capability_is_declared_and_the_ic_and_war_room_may_run_it(spec: CommandSpec) -> None:
    grants = POLICY.grants
    assert spec.requires in grants.capabilities, f"{spec.name} requires undeclared {spec.requires!r}"
    assert _grants(grants.incident_commander, spec.requires)
    assert _grants(grants.war_room_members, spec.requires)


def test_declaring_needs_no_war_room() -> None:
    assert _grants(POLICY.grants.everyone, SPECS["/incident declare"].requires)


@pytest.mark.parametrize("slash", REGISTRY.slash_commands())
def test_help_lists_every_command(slash: str) -> None:
    text = render_help(REGISTRY, slash)
    for spec in REGISTRY.subcommands(slash):
        assert spec.usage in text
        assert spec.summary in text


def test_incident_help_lists_every_subcommand_with_its_summary() -> None:
    text = render_help(REGISTRY, "/incident")
    assert text.startswith("*/incident* commands:")
    assert "Type `/incident <command> help`" in text


def test_manifest_has_every_slash_command() -> None:
    commands = [c["command"] for c in build_manifest(REGISTRY)["features"]["slash_commands"]]
    assert commands == REGISTRY.slash_commands()
