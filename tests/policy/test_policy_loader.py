"""Validation: every problem is reported with its file:line:column, key path and what was expected."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chatops.errors import ConfigError
from chatops.policy.loader import load_policy

SHIPPED = Path(__file__).resolve().parents[2] / "policy"

# Line numbers matter below: keep these two documents exactly as they are.
SEVERITY = """\
roles:
  primary: Primary on-call
  secondary: Secondary on-call
severities:
  sev1:
    description: Outage
    urgency: high
    page: [primary, secondary]
    war_room_required: true
    comms:
      policy: public_status_page
      draft_template: "Investigating {service}."
    post_mortem:
      required: true
      within_business_days: 3
    triggers:
      - {kind: alert, name: data-loss-detected}
"""

SERVICES = """\
services:
  checkout:
    tier: P0
    owner_team: checkout-platform
    pagerduty:
      primary: P3CHKO1
    runbook_url: https://playbooks.example.com/checkout
"""


def write(directory: Path, severity: str = SEVERITY, services: str = SERVICES) -> Path:
    (directory / "severity.yaml").write_text(severity, encoding="utf-8")
    (directory / "services.yaml").write_text(services, encoding="utf-8")
    return directory


def replaced(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_policy(directory)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def test_minimal_documents_load(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path))
    assert list(policy.severities) == ["sev1"]
    assert policy.severities["sev1"].label == "SEV1"  # label defaults from the rank
    assert policy.services["checkout"].dashboards == ()
    assert policy.services["checkout"].namespaces == ()
    assert policy.draft_channel == "status-pages-draft"
    assert policy.platform_channel == "chatops-platform"


SEVERITY_CASES: list[tuple[str, str, str | list[str]]] = [
    (
        "urgency: high",
        "urgency: urgent",
        "severity.yaml:7:14: severities.sev1.urgency: expected one of high, low, got 'urgent'",
    ),
    (
        "urgency: high",
        "urgency: High",
        "severity.yaml:7:14: severities.sev1.urgency: expected one of high, low, got 'High' — did you mean high?",
    ),
    (
        "page: [primary, secondary]",
        "page: [primary, seconary]",
        "severity.yaml:8:21: severities.sev1.page[1]: unknown role 'seconary' — did you mean secondary? "
        "known roles: primary, secondary",
    ),
    (
        "page: [primary, secondary]",
        "page: [primary, primary]",
        "severity.yaml:8:21: severities.sev1.page[1]: role 'primary' is listed twice",
    ),
    (
        "page: [primary, secondary]",
        "page: []",
        "severity.yaml:8:11: severities.sev1.page: page at least one role (usually primary)",
    ),
    (
        "page: [primary, secondary]",
        "page: primary",
        "severity.yaml:8:11: severities.sev1.page: expected a list, got 'primary'",
    ),
    (
        "war_room_required: true",
        "war_room_required: yes",
        "severity.yaml:9:24: severities.sev1.war_room_required: expected true or false, got 'yes'",
    ),
    (
        "policy: public_status_page",
        "policy: statuspage",
        "severity.yaml:11:15: severities.sev1.comms.policy: expected one of public_status_page, in_app_banner, "
        "internal_only, got 'statuspage'",
    ),
    (
        '      draft_template: "Investigating {service}."\n',
        "",
        "severity.yaml:10:5: severities.sev1.comms: comms policy public_status_page needs a draft_template",
    ),
    (
        "{service}",
        "{svc}",
        "severity.yaml:12:23: severities.sev1.comms.draft_template: unknown placeholder {svc} — "
        "known placeholders: {service}, {severity}, {channel}, {started_at}",
    ),
    (
        "{service}",
        "{servce}",
        "severity.yaml:12:23: severities.sev1.comms.draft_template: unknown placeholder {servce} — "
        "did you mean {service}? known placeholders: {service}, {severity}, {channel}, {started_at}",
    ),
    (
        "{service}",
        "{service!r}",
        "severity.yaml:12:23: severities.sev1.comms.draft_template: placeholder {service} takes no format spec "
        "or conversion",
    ),
    (
        "{service}.",
        "{service.",
        "severity.yaml:12:23: severities.sev1.comms.draft_template: malformed template (expected '}' before end "
        "of string); write a literal brace as {{ or }}",
    ),
    (
        "policy: public_status_page",
        "policy: public_status_page\n      update_every_minutes: half an hour",
        "severity.yaml:12:29: severities.sev1.comms.update_every_minutes: expected a whole number ≥ 1, "
        "got 'half an hour'",
    ),
    (
        "within_business_days: 3",
        "within_business_days: 0",
        "severity.yaml:15:29: severities.sev1.post_mortem.within_business_days: expected a whole number ≥ 1, got 0",
    ),
    (
        "      required: true",
        "      required: false",
        "severity.yaml:15:29: severities.sev1.post_mortem.within_business_days: only applies when required is true",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: alrt, name: data-loss-detected}",
        "severity.yaml:17:16: severities.sev1.triggers[0].kind: expected one of alert, burn_rate, judgement, "
        "support_ticket_share, tag, unavailable, got 'alrt' — did you mean alert?",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: burn_rate, slo_tier: P0, window: 1h}",
        "severity.yaml:17:9: severities.sev1.triggers[0]: missing threshold (a burn_rate trigger takes slo_tier, "
        "threshold, window)",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: judgement, name: gut-feel}",
        "severity.yaml:17:27: severities.sev1.triggers[0].name: not used by this kind of trigger "
        "(a judgement trigger takes no parameters)",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: alert, nmae: data-loss-detected}",
        [
            "severity.yaml:17:9: severities.sev1.triggers[0]: missing name (an alert trigger takes name)",
            "severity.yaml:17:23: severities.sev1.triggers[0].nmae: unknown key — did you mean name?",
        ],
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: burn_rate, slo_tier: P0, threshold: fast, window: 1h}",
        "severity.yaml:17:52: severities.sev1.triggers[0].threshold: expected a number greater than 0, got 'fast'",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: burn_rate, slo_tier: gold, threshold: 14.4, window: 1h}",
        "severity.yaml:17:37: severities.sev1.triggers[0].slo_tier: expected a tier like P0 or P1, got 'gold'",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: support_ticket_share, threshold_pct: 5, window: 30}",
        "severity.yaml:17:64: severities.sev1.triggers[0].window: expected a duration like 30m or 1h "
        "(a number and one of s, m, h, d), got 30",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: support_ticket_share, threshold_pct: 150, window: 30m}",
        "severity.yaml:17:53: severities.sev1.triggers[0].threshold_pct: expected a number between 0 and 100, got 150",
    ),
    (
        "{kind: alert, name: data-loss-detected}",
        "{kind: unavailable, service_tier: P1x}",
        "severity.yaml:17:43: severities.sev1.triggers[0].service_tier: expected a tier like P0 or P1, got 'P1x'",
    ),
    (
        "      - {kind: alert, name: data-loss-detected}\n",
        "      - alert\n",
        "severity.yaml:17:9: severities.sev1.triggers[0]: expected a mapping, got 'alert'",
    ),
    (
        "    triggers:\n      - {kind: alert, name: data-loss-detected}\n",
        "    triggers: []\n",
        "severity.yaml:16:15: severities.sev1.triggers: list at least one trigger (use {kind: judgement} for the "
        "IC's call)",
    ),
    (
        "  sev1:",
        "  SEV-1:",
        "severity.yaml:5:3: severities.SEV-1: severity names are sev followed by the rank (sev1, sev2, ...); "
        "write it as sev1",
    ),
    (
        "  secondary: Secondary on-call",
        "  Secondary: Secondary on-call",
        [
            "severity.yaml:3:3: roles.Secondary: role names are lower-case letters, digits and _",
            "severity.yaml:8:21: severities.sev1.page[1]: unknown role 'secondary' — known roles: primary",
        ],
    ),
    (
        "    description: Outage",
        "    description: ''",
        "severity.yaml:6:18: severities.sev1.description: expected text, got ''",
    ),
    (
        "    description: Outage",
        "    description: Outage\n    label: [SEV1]",
        "severity.yaml:7:12: severities.sev1.label: expected text, got a list",
    ),
    (
        "roles:",
        "comms:\n  draft_channel: Status Drafts\nroles:",
        "severity.yaml:2:18: comms.draft_channel: expected a Slack channel name (lower-case letters, digits, - and _), "
        "got 'Status Drafts'",
    ),
    (
        "roles:",
        "comms:\n  platfrom_channel: ops\nroles:",
        "severity.yaml:2:3: comms.platfrom_channel: unknown key — did you mean platform_channel?",
    ),
]


@pytest.mark.parametrize(("old", "new", "problem"), SEVERITY_CASES)
def test_severity_problem(tmp_path: Path, old: str, new: str, problem: str | list[str]) -> None:
    expected = [problem] if isinstance(problem, str) else problem
    assert problems_of(write(tmp_path, severity=replaced(SEVERITY, old, new))) == expected


SERVICES_CASES = [
    (
        "      primary: P3CHKO1",
        "      secondary: P3CHKO1",
        "services.yaml:5:5: services.checkout.pagerduty: every service needs a primary on-call",
    ),
    (
        "P3CHKO1",
        "p3chko1",
        "services.yaml:6:16: services.checkout.pagerduty.primary: expected a PagerDuty service id like P3CHKO1 "
        "(P and 6 capital letters or digits), got 'p3chko1'",
    ),
    (
        "P3CHKO1",
        "P3CHKO12",
        "services.yaml:6:16: services.checkout.pagerduty.primary: expected a PagerDuty service id like P3CHKO1 "
        "(P and 6 capital letters or digits), got 'P3CHKO12'",
    ),
    (
        "      primary: P3CHKO1",
        "      primary: P3CHKO1\n      vp_eng: P8VPENG",
        "services.yaml:7:7: services.checkout.pagerduty.vp_eng: unknown role — roles are defined in severity.yaml: "
        "primary, secondary",
    ),
    (
        "      primary: P3CHKO1",
        "      primary: P3CHKO1\n      secondry: P4CHKO2",
        "services.yaml:7:7: services.checkout.pagerduty.secondry: unknown role — did you mean secondary? "
        "roles are defined in severity.yaml: primary, secondary",
    ),
    (
        "  checkout:",
        "  Check_out:",
        "services.yaml:2:3: services.Check_out: service names are lower-case letters, digits and - (it becomes part "
        "of the war-room channel name); write it as check-out",
    ),
    (
        "  checkout:",
        "  checkout.v2:",
        "services.yaml:2:3: services.checkout.v2: service names are lower-case letters, digits and - (it becomes "
        "part of the war-room channel name)",
    ),
    (
        "https://playbooks.example.com/checkout",
        "playbooks/checkout",
        "services.yaml:7:18: services.checkout.runbook_url: expected an http(s) URL, got 'playbooks/checkout'",
    ),
    (
        "https://playbooks.example.com/checkout",
        "ftp://playbooks.example.com/checkout",
        "services.yaml:7:18: services.checkout.runbook_url: expected an http(s) URL, got "
        "'ftp://playbooks.example.com/checkout'",
    ),
    (
        "tier: P0",
        "tier: 0",
        "services.yaml:3:11: services.checkout.tier: expected a tier like P0 or P1, got 0",
    ),
    (
        "    owner_team: checkout-platform\n",
        "",
        "services.yaml:2:3: services.checkout: missing required key 'owner_team'",
    ),
    (
        "    tier: P0",
        "    tier: P0\n    bridge_url: zoom",
        "services.yaml:4:17: services.checkout.bridge_url: expected an http(s) URL, got 'zoom'",
    ),
    (
        "    tier: P0",
        "    tier: P0\n    dashboards:\n      - title: Overview",
        "services.yaml:5:9: services.checkout.dashboards[0]: missing required key 'url'",
    ),
    (
        "    tier: P0",
        "    tier: P0\n    namespaces: [checkout, Checkout]",
        "services.yaml:4:28: services.checkout.namespaces[1]: expected a Kubernetes namespace (lower-case letters, "
        "digits and -, at most 63), got 'Checkout'",
    ),
    (
        "    tier: P0",
        "    tier: P0\n    oncall: P3CHKO1",
        "services.yaml:4:5: services.checkout.oncall: unknown key — expected one of tier, owner_team, pagerduty, "
        "runbook_url, dashboards, bridge_url, namespaces",
    ),
    (
        "    tier: P0",
        "    teir: P0",
        "services.yaml:2:3: services.checkout: missing required key 'tier'",
    ),
]


@pytest.mark.parametrize(("old", "new", "problem"), SERVICES_CASES)
def test_services_problem(tmp_path: Path, old: str, new: str, problem: str) -> None:
    problems = problems_of(write(tmp_path, services=replaced(SERVICES, old, new)))
    assert problem in problems
    assert len(problems) == (2 if new.startswith("    teir") else 1)


def test_misspelt_key_reports_unknown_key_and_missing_key(tmp_path: Path) -> None:
    problems = problems_of(write(tmp_path, severity=replaced(SEVERITY, "urgency: high", "urgncy: high")))
    assert problems == [
        "severity.yaml:5:3: severities.sev1: missing required key 'urgency'",
        "severity.yaml:7:5: severities.sev1.urgncy: unknown key — did you mean urgency?",
    ]


def test_namespace_owned_twice(tmp_path: Path) -> None:
    services = (
        SERVICES
        + """\
    namespaces: [checkout]
  payments:
    tier: P0
    owner_team: payments
    pagerduty: {primary: PPAY001}
    runbook_url: https://playbooks.example.com/payments
    namespaces: [payments, checkout]
"""
    )
    assert problems_of(write(tmp_path, services=services)) == [
        "services.yaml:14:28: services.payments.namespaces[1]: namespace 'checkout' is already owned by checkout"
    ]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "page: [primary, secondary]", "page: [primary, secondary")
    assert problems_of(write(tmp_path, severity=severity)) == [
        "severity.yaml:9:22: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence at line 8, column 11)"
    ]


def test_yaml_scanner_error(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "    urgency: high", "    urgency: high: low")
    assert problems_of(write(tmp_path, severity=severity)) == [
        "severity.yaml:7:18: YAML syntax error: mapping values are not allowed here"
    ]


def test_duplicate_key(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "    urgency: high\n", "    urgency: high\n    urgency: low\n")
    assert problems_of(write(tmp_path, severity=severity)) == [
        'severity.yaml:8:5: found duplicate key "urgency" with value "low" (original value: "high")'
    ]


def test_a_broken_file_does_not_hide_the_other_files_problems(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "urgency: high", "urgency: [high")
    services = replaced(SERVICES, "P3CHKO1", "nope")
    problems = problems_of(write(tmp_path, severity=severity, services=services))
    assert len(problems) == 2
    assert problems[0].startswith("severity.yaml:")
    assert problems[1].startswith("services.yaml:6:16: services.checkout.pagerduty.primary: expected a PagerDuty")


def test_all_problems_are_collected_in_file_order(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "urgency: high", "urgency: urgent")
    severity = replaced(severity, "within_business_days: 3", "within_business_days: soon")
    severity = replaced(severity, "page: [primary, secondary]", "page: [primary, vp_eng]")
    services = replaced(SERVICES, "tier: P0", "tier: gold")
    services = replaced(services, "https://playbooks.example.com/checkout", "n/a")
    problems = problems_of(write(tmp_path, severity=severity, services=services))
    assert [p.split(": ")[0] for p in problems] == [
        "severity.yaml:7:14",
        "severity.yaml:8:21",
        "severity.yaml:15:29",
        "services.yaml:3:11",
        "services.yaml:7:18",
    ]


def test_missing_file(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "services.yaml").unlink()
    assert problems_of(tmp_path) == ["services.yaml: required policy file is missing"]


def test_misnamed_file_gets_a_hint(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "severity.yaml").rename(tmp_path / "severity.yml")
    assert problems_of(tmp_path) == [
        "severity.yaml: required policy file is missing (found severity.yml: rename it to severity.yaml)"
    ]


def test_missing_directory(tmp_path: Path) -> None:
    assert problems_of(tmp_path / "nope") == [f"{tmp_path / 'nope'}: policy directory not found"]


def test_empty_file(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, services="# nothing yet\n")) == ["services.yaml:1:1: the file is empty"]


def test_not_utf8(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "services.yaml").write_bytes(b"services:\n  caf\xe9: {}\n")
    assert problems_of(tmp_path) == ["services.yaml: not valid UTF-8 (byte 15)"]


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems_of(write(tmp_path, services="- checkout\n")) == [
        "services.yaml:1:1: expected a mapping, got a list"
    ]


def test_missing_and_unknown_top_level_keys(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "severities:", "severites:")
    assert problems_of(write(tmp_path, severity=severity)) == [
        "severity.yaml:1:1: missing required key 'severities'",
        "severity.yaml:4:1: severites: unknown key — did you mean severities?",
    ]


def test_unreadable_roles_do_not_cascade(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "roles:\n  primary: Primary on-call\n  secondary: Secondary on-call\n", "")
    assert problems_of(write(tmp_path, severity=severity)) == ["severity.yaml:1:1: missing required key 'roles'"]


def test_non_text_keys(tmp_path: Path) -> None:
    severity = replaced(SEVERITY, "  sev1:", "  1:")
    assert problems_of(write(tmp_path, severity=severity)) == [
        "severity.yaml:5:3: severities.1: keys must be text, got 1"
    ]


def test_other_yaml_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "notes.yaml").write_text("this: [is, not: ours\n", encoding="utf-8")
    (tmp_path / "grants.yaml").write_text("grants: {}\n", encoding="utf-8")
    assert list(load_policy(tmp_path).services) == ["checkout"]


def test_digest_covers_policy_files_only(tmp_path: Path) -> None:
    first = load_policy(write(tmp_path)).digest
    (tmp_path / "notes.yaml").write_text("x: 1\n", encoding="utf-8")
    assert load_policy(tmp_path).digest == first
    write(tmp_path, services=SERVICES + "# a comment is a change too\n")
    assert load_policy(tmp_path).digest != first


def test_shipped_copy_mutated_reports_exact_positions(tmp_path: Path) -> None:
    for name in ("severity.yaml", "services.yaml"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    path = tmp_path / "severity.yaml"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    line = next(i for i, ln in enumerate(lines, 1) if ln.strip() == "urgency: low")
    path.write_text(text.replace("urgency: low", "urgency: urgent"), encoding="utf-8")
    col = lines[line - 1].index("low") + 1
    assert problems_of(tmp_path) == [
        f"severity.yaml:{line}:{col}: severities.sev3.urgency: expected one of high, low, got 'urgent'"
    ]
