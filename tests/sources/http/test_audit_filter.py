"""The audit filter as policy data: ``audit.yaml`` validated by the policy loader, and how rules match."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from chatops.errors import ConfigError
from chatops.policy.loader import load_policy
from chatops.sources.audit_filter import DEFAULT_AUDIT_FILTER, AuditFacts, AuditFilter, AuditRule, Pattern

from .conftest import REPO


def facts(verb: str = "create", **kw: object) -> AuditFacts:
    base: dict[str, object] = {
        "stage": "ResponseComplete",
        "verb": verb,
        "resource": "pods",
        "subresource": None,
        "namespace": "checkout",
        "user": "ravi@paisabridge.example",
        "groups": ("system:authenticated",),
    }
    return AuditFacts(**(base | kw))  # type: ignore[arg-type]


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    for name in ("severity.yaml", "services.yaml"):
        shutil.copy(REPO / "policy" / name, tmp_path / name)
    return tmp_path


def problems(directory: Path, audit: str) -> list[str]:
    (directory / "audit.yaml").write_text(audit, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(directory)
    return info.value.problems


def test_the_shipped_file_spells_out_the_default() -> None:
    assert load_policy(REPO / "policy").audit == DEFAULT_AUDIT_FILTER


def test_without_the_file_the_default_applies_and_the_digest_is_unchanged(directory: Path) -> None:
    before = load_policy(directory)
    assert before.audit == DEFAULT_AUDIT_FILTER
    (directory / "audit.yaml").write_text("stages: [ResponseComplete, Panic]\n", encoding="utf-8")
    after = load_policy(directory)
    assert after.audit.stages == {"ResponseComplete", "Panic"}
    assert after.audit.record == DEFAULT_AUDIT_FILTER.record, "keys left out keep the default"
    assert after.digest != before.digest


@pytest.mark.parametrize(
    ("verb", "kw", "kind"),
    [
        ("get", {}, None),
        ("list", {}, None),
        ("watch", {}, None),
        ("create", {}, "mutation"),
        ("deletecollection", {}, "mutation"),
        ("create", {"subresource": "exec"}, "exec"),
        ("get", {"subresource": "exec"}, "exec"),  # websocket exec is a GET
        ("get", {"subresource": "log"}, "logs"),
        ("create", {"subresource": "portforward"}, "exec"),
        ("patch", {"resource": "deployments", "subresource": "scale"}, "scale"),
        (
            "patch",
            {"resource": "deployments", "template_annotations": frozenset({"kubectl.kubernetes.io/restartedAt"})},
            "rollout_restart",
        ),
        ("patch", {"resource": "deployments"}, "mutation"),
        ("create", {"stage": "RequestReceived"}, None),
        ("update", {"resource": "leases"}, None),
        ("patch", {"groups": ("system:nodes",), "user": "system:node:n1"}, None),
        ("update", {"user": "system:serviceaccount:kube-system:deployment-controller"}, None),
        ("update", {"user": "system:serviceaccount:checkout:ci-deployer"}, "mutation"),
    ],
)
def test_default_filter(verb: str, kw: dict[str, object], kind: str | None) -> None:
    assert DEFAULT_AUDIT_FILTER.classify(facts(verb, **kw)) == kind


def test_rules_are_and_of_criteria_or_of_values_with_globs() -> None:
    audit = AuditFilter(
        record=(
            AuditRule(name="ci", users=Pattern(("system:serviceaccount:*:ci-*",)), verbs=Pattern(("patch",))),
            AuditRule(name="secrets", resources=Pattern(("secrets", "configmaps"))),
        )
    )
    assert audit.classify(facts("patch", user="system:serviceaccount:checkout:ci-bot")) == "ci"
    assert audit.classify(facts("create", user="system:serviceaccount:checkout:ci-bot")) is None
    assert audit.classify(facts("get", resource="configmaps")) == "secrets"
    assert audit.classify(facts("get", resource=None)) is None


def test_a_custom_file_loads(directory: Path) -> None:
    (directory / "audit.yaml").write_text(
        "stages: [ResponseComplete]\n"
        "ignore:\n"
        "  - users: ['system:serviceaccount:*']\n"
        "record:\n"
        "  - name: deletes\n"
        "    description: only deletions\n"
        "    verbs: [delete, deletecollection]\n",
        encoding="utf-8",
    )
    audit = load_policy(directory).audit
    assert [r.name for r in audit.record] == ["deletes"]
    assert audit.classify(facts("delete")) == "deletes"
    assert audit.classify(facts("create")) is None
    assert audit.classify(facts("delete", user="system:serviceaccount:x:y")) is None


def test_problems_name_file_line_and_column(directory: Path) -> None:
    found = problems(
        directory,
        "stages: [ResponseCompleted]\n"  # 1
        "ignore:\n"  # 2
        "  - {}\n"  # 3
        "record:\n"  # 4
        "  - name: Exec\n"  # 5
        "    subresources: [exec]\n"  # 6
        "  - name: mutation\n"  # 7
        "    verbs: []\n"  # 8
        "  - name: mutation\n"  # 9
        "    verbs: [patch]\n"  # 10
        "    verbz: [patch]\n"  # 11
        "  - verbs: [create]\n"  # 12
        "records: []\n",  # 13
    )
    assert found == [
        "audit.yaml:1:10: stages[0]: expected one of RequestReceived, ResponseStarted, ResponseComplete, Panic, "
        "got 'ResponseCompleted' — did you mean ResponseComplete?",
        "audit.yaml:3:5: ignore[0]: a rule needs at least one of verbs, resources, subresources, namespaces, users, "
        "groups, sets_annotation",
        "audit.yaml:5:11: record[0].name: expected a rule name (lower-case letters, digits and _), got 'Exec'",
        "audit.yaml:8:12: record[1].verbs: list at least one value (leave the key out to match anything)",
        "audit.yaml:9:5: record[2]: rule name 'mutation' is used twice",
        "audit.yaml:11:5: record[2].verbz: unknown key — did you mean verbs?",
        "audit.yaml:12:5: record[3]: missing required key 'name'",
        "audit.yaml:13:1: records: unknown key — did you mean record?",
    ]


def test_a_yaml_error_is_reported_with_the_other_files_still_checked(directory: Path) -> None:
    found = problems(directory, "record: [\n")
    assert len(found) == 1 and found[0].startswith("audit.yaml:") and "YAML syntax error" in found[0]
