"""policy/grants.yaml: validated with file:line errors like the rest of the policy, reloaded with it."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from chatops.errors import ConfigError
from chatops.policy.grants import Grants, capability_matches
from chatops.policy.loader import load_policy
from chatops.policy.store import describe_change

SHIPPED = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for name in ("severity.yaml", "services.yaml"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return tmp_path


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_policy(directory)
    return caught.value.problems


def test_shipped_grants() -> None:
    grants = load_policy(SHIPPED).grants
    assert grants.everyone == ("incident.read", "incident.declare")
    assert grants.incident_commander == ("*",) and grants.war_room_members == ("*",)
    assert grants.confirm_ttl == timedelta(minutes=2) and grants.confirm_always == ()
    assert "incident.escalate" in grants.capabilities


def test_without_a_grants_file_the_defaults_apply(policy_dir: Path) -> None:
    assert load_policy(policy_dir).grants == Grants.default()


def test_grants_are_part_of_the_digest(policy_dir: Path) -> None:
    before = load_policy(policy_dir).digest
    shutil.copy(SHIPPED / "grants.yaml", policy_dir / "grants.yaml")
    assert load_policy(policy_dir).digest != before


def test_errors_have_file_line_column(policy_dir: Path) -> None:
    (policy_dir / "grants.yaml").write_text(
        "capabilities:\n"
        "  incident.read: Read\n"
        "  incident.escalate: Page more people\n"
        "grants:\n"
        "  everyone: [incident.raed]\n"
        "  war_room_member: ['*']\n"
        "  users:\n"
        "    ravi: ['*']\n"
        "  usergroups:\n"
        "    S0SRE: [incident.*, 'not a pattern']\n"
        "confirm:\n"
        "  expire_after: soon\n"
        "  always: [restart-consumer]\n",
        encoding="utf-8",
    )
    assert problems(policy_dir) == [
        "grants.yaml:5:14: grants.everyone[0]: unknown capability 'incident.raed' — did you mean incident.read? "
        "declared: incident.read, incident.escalate",
        "grants.yaml:6:3: grants.war_room_member: unknown key — did you mean war_room_members?",
        "grants.yaml:8:5: grants.users.ravi: expected a Slack user id like U0ADITI01, got 'ravi'",
        "grants.yaml:10:25: grants.usergroups.S0SRE[1]: expected a capability, 'prefix.*' or '*', got 'not a pattern'",
        "grants.yaml:12:17: confirm.expire_after: expected a duration like 30m or 1h (a number and one of s, m, h, d), "
        "got 'soon'",
        "grants.yaml:13:12: confirm.always[0]: expected a command name like /restart-consumer, got 'restart-consumer'",
    ]


def test_yaml_errors_are_reported_too(policy_dir: Path) -> None:
    (policy_dir / "grants.yaml").write_text("grants: [unclosed\n", encoding="utf-8")
    [problem] = problems(policy_dir)
    assert problem.startswith("grants.yaml:2:1: YAML syntax error")


def test_a_full_grants_file(policy_dir: Path) -> None:
    (policy_dir / "grants.yaml").write_text(
        "grants:\n"
        "  everyone: [incident.read]\n"
        "  incident_commander: ['*']\n"
        "  users: {U0ADITI01: [service.operate]}\n"
        "  usergroups: {S0SREONCALL: ['incident.*']}\n"
        "confirm: {expire_after: 5m, always: ['/failover-db', '/incident declare']}\n",
        encoding="utf-8",
    )
    grants = load_policy(policy_dir).grants
    assert grants.users == {"U0ADITI01": ("service.operate",)}
    assert grants.usergroups == {"S0SREONCALL": ("incident.*",)}
    assert grants.war_room_members == ()
    assert grants.confirm_ttl == timedelta(minutes=5)
    assert grants.needs_confirmation("/incident declare") and not grants.needs_confirmation("/runbook")


def test_changes_are_described(policy_dir: Path) -> None:
    shutil.copy(SHIPPED / "grants.yaml", policy_dir / "grants.yaml")
    old = load_policy(policy_dir)
    path = policy_dir / "grants.yaml"
    path.write_text(
        path.read_text(encoding="utf-8")
        .replace('war_room_members: ["*"]', "war_room_members: [incident.read]")
        .replace("always: []", "always: [/failover-db]"),
        encoding="utf-8",
    )
    changes = describe_change(old, load_policy(policy_dir))
    assert "grants: war-room members now get incident.read" in changes
    assert "grants: war-room members no longer get *" in changes
    assert "confirmation now always asked for: /failover-db" in changes


@pytest.mark.parametrize(
    ("pattern", "capability", "expected"),
    [
        ("*", "x.y", True),
        ("incident.*", "incident.read", True),
        ("incident.*", "incidents.read", False),
        ("incident.read", "incident.read", True),
        ("incident.read", "incident.readall", False),
    ],
)
def test_capability_patterns(pattern: str, capability: str, expected: bool) -> None:
    assert capability_matches(pattern, capability) is expected
