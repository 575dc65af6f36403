"""``policy/dashboards.yaml`` is validated with the policy, with file:line:column problems."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from chatops.dashboards import MAX_PANELS
from chatops.errors import ConfigError
from chatops.policy.loader import load_policy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(REPO / "policy", target)
    return target


def problems(directory: Path, text: str) -> list[str]:
    (directory / "dashboards.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as caught:
        load_policy(directory)
    return caught.value.problems


def test_the_shipped_dashboards_load(policy_dir: Path) -> None:
    policy = load_policy(policy_dir)
    boards = policy.dashboards
    assert boards.configured and set(boards.services) == set(policy.services)
    checkout = boards.services["checkout"]
    assert [p.title for p in checkout.panels] == [
        "Requests by status",
        "Error ratio (5xx)",
        "Latency p99",
        "CPU by pod",
    ]
    assert checkout.grafana == "https://grafana.example.com/d/checkout-overview"
    errors = checkout.panels[1]
    assert errors.unit == "ratio" and [(t.level, t.value) for t in errors.thresholds] == [
        ("warning", 0.01),
        ("critical", 0.05),
    ]
    query = errors.query_for(policy.services["checkout"])
    assert 'namespace=~"checkout"' in query and "$" not in query
    auth_latency = boards.services["auth"].panels[2]
    assert auth_latency.title == "Latency p99" and auth_latency.thresholds[1].value == 0.6, "use: + overrides"
    assert checkout.panels[3].legend_for({"pod": "checkout-1"}) == "checkout-1"


def test_without_the_file_there_are_no_dashboards(policy_dir: Path) -> None:
    (policy_dir / "dashboards.yaml").unlink()
    boards = load_policy(policy_dir).dashboards
    assert not boards.configured and not boards.services


def test_dashboards_are_part_of_the_digest(policy_dir: Path) -> None:
    before = load_policy(policy_dir).digest
    path = policy_dir / "dashboards.yaml"
    path.write_text(path.read_text().replace("range: 6h", "range: 3h"))
    after = load_policy(policy_dir)
    assert after.digest != before and after.dashboards.default_range.total_seconds() == 3 * 3600


def test_every_problem_is_reported_with_its_place(policy_dir: Path) -> None:
    found = problems(
        policy_dir,
        """\
        defaults:
          range: soon
        panels:
          errors:
            title: Errors
            query: sum(rate(http_requests_total{namespace="$namespce"}[5m]))
            unit: percentage
            thresholds: {warning: high, critical: 0.05}
          Bad-Name:
            title: x
            query: up
          untitled:
            query: up
        services:
          chekout:
            panels: [errors]
          auth:
            grafana: not a url
            panels: [erors, {use: errors, colour: red}]
          rider-pos:
            panels: []
        """,
    )
    assert found == [
        "dashboards.yaml:2:10: defaults.range: expected a duration like 30m or 1h (a number and one of s, m, h, d), "
        "got 'soon'",
        "dashboards.yaml:6:12: panels.errors.query: unknown placeholder $namespce — did you mean $namespace? "
        "placeholders: $service, $namespace, $namespaces",
        "dashboards.yaml:7:11: panels.errors.unit: expected one of none, percent, ratio, seconds, bytes, reqps, "
        "cores, got 'percentage' — did you mean percent?",
        "dashboards.yaml:8:27: panels.errors.thresholds.warning: expected a number, got 'high'",
        "dashboards.yaml:9:3: panels.Bad-Name: panel names are lower-case letters, digits and _",
        "dashboards.yaml:12:3: panels.untitled: missing required key 'title'",
        "dashboards.yaml:15:3: services.chekout: unknown service — did you mean checkout? services are defined in "
        "services.yaml: checkout, rider-pos, auth",
        "dashboards.yaml:18:14: services.auth.grafana: expected an http(s) URL, got 'not a url'",
        "dashboards.yaml:19:14: services.auth.panels[0]: unknown panel 'erors' — did you mean errors? panels: errors",
        "dashboards.yaml:19:35: services.auth.panels[1].colour: unknown key — expected one of title, query, unit, "
        "thresholds, legend, use",
        "dashboards.yaml:21:13: services.rider-pos.panels: list at least one panel",
    ]


def test_too_many_panels(policy_dir: Path) -> None:
    many = ", ".join(["requests"] * (MAX_PANELS + 1))
    found = problems(
        policy_dir,
        f"""\
        panels:
          requests: {{title: Requests, query: up}}
        services:
          checkout:
            panels: [{many}]
        """,
    )
    assert found == [
        "dashboards.yaml:5:13: services.checkout.panels: at most 6 panels (more do not read at Slack preview size)"
    ]


def test_a_yaml_syntax_error_names_the_line(policy_dir: Path) -> None:
    found = problems(policy_dir, "services:\n  checkout: [\n")
    assert len(found) == 1 and found[0].startswith("dashboards.yaml:3:1: YAML syntax error")
