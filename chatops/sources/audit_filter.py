"""Which Kubernetes audit events reach the timeline: the filter as policy data (``policy/audit.yaml``).

An :class:`AuditFilter` has the stages it keeps, ``ignore`` rules (noise: controllers, nodes, leases) and ``record``
rules, each named (the name is stored as the event's ``kind``: ``exec``, ``scale``, ``rollout_restart``, …).
An event is recorded when its stage is kept, no ignore rule matches and some record rule does; the first matching
record rule names it, so specific rules go before general ones. Within a rule every criterion given must match
(AND), and a criterion lists alternatives (OR); text criteria accept ``*`` globs (``system:serviceaccount:*``).

The policy loader (:mod:`chatops.policy.loader`) calls :func:`read_audit_filter`, which validates ``audit.yaml``
through the loader's reader (``audit.yaml:12:7: record[0].verbs[1]: …`` errors, all at once). Without the
file :data:`DEFAULT_AUDIT_FILTER` applies; a key the file leaves out keeps the default's value for that key.
Schema (``docs/k8s-audit.md``)::

    stages: [ResponseComplete]          # optional, default [ResponseComplete]
    ignore:                             # optional: noise that is never recorded
      - groups: [system:nodes]
    record:                             # optional: the first rule that matches names the event
      - name: exec
        subresources: [exec, attach, portforward]
      - name: mutation
        verbs: [create, update, patch, delete, deletecollection]
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from chatops.policy.loader import _Node, _Reader

__all__ = [
    "AUDIT_FILE",
    "AUDIT_STAGES",
    "DEFAULT_AUDIT_FILTER",
    "MUTATING_VERBS",
    "RESTART_ANNOTATION",
    "AuditFacts",
    "AuditFilter",
    "AuditRule",
    "Pattern",
    "read_audit_filter",
]

AUDIT_FILE = "audit.yaml"
_MEMO_SIZE = 4096
AUDIT_STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
MUTATING_VERBS = ("create", "update", "patch", "delete", "deletecollection")
RESTART_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
"""The pod-template annotation ``kubectl rollout restart`` patches in."""


@dataclass(frozen=True)
class Pattern:
    """Alternatives for one criterion: exact values and ``*`` globs. Empty means "any"."""

    values: tuple[str, ...] = ()
    _exact: frozenset[str] = field(init=False, repr=False, compare=False)
    _glob: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        globs = [v for v in self.values if "*" in v]
        object.__setattr__(self, "_exact", frozenset(v for v in self.values if "*" not in v))
        joined = "|".join(fnmatch.translate(g) for g in globs)
        object.__setattr__(self, "_glob", re.compile(joined) if globs else None)

    def __bool__(self) -> bool:
        return bool(self.values)

    def matches(self, value: str | None) -> bool:
        """True when ``value`` is one of the alternatives (an empty pattern matches nothing here: check truth)."""
        if value is None:
            return False
        return value in self._exact or (self._glob is not None and self._glob.match(value) is not None)

    def any_of(self, values: Iterable[str]) -> bool:
        """True when one of ``values`` matches."""
        return any(self.matches(v) for v in values)


class AuditFacts(NamedTuple):
    """What a rule may look at, extracted once per audit event (a tuple: cheap to build, hash and memoise)."""

    stage: str
    verb: str
    resource: str | None
    subresource: str | None
    namespace: str | None
    user: str
    groups: tuple[str, ...] = ()
    template_annotations: frozenset[str] = frozenset()
    """Pod-template annotation keys the request body sets (only known at the Request level or above)."""


AuditFactFields = tuple[str, str, str | None, str | None, str | None, str, tuple[str, ...], frozenset[str]]
"""The fields of :class:`AuditFacts`, as a plain tuple."""


@dataclass(frozen=True, kw_only=True)
class AuditRule:
    """One rule. ``name`` is empty for ignore rules. Every non-empty criterion must match."""

    name: str = ""
    verbs: Pattern = Pattern()
    resources: Pattern = Pattern()
    subresources: Pattern = Pattern()
    namespaces: Pattern = Pattern()
    users: Pattern = Pattern()
    groups: Pattern = Pattern()
    sets_annotation: str | None = None
    _checks: tuple[tuple[str, Pattern], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = (
            ("verb", self.verbs),
            ("resource", self.resources),
            ("subresource", self.subresources),
            ("namespace", self.namespaces),
            ("user", self.users),
        )
        object.__setattr__(self, "_checks", tuple((attr, pattern) for attr, pattern in given if pattern))

    def matches(self, facts: AuditFacts) -> bool:
        """True when every criterion given matches ``facts``."""
        for attr, pattern in self._checks:
            if not pattern.matches(getattr(facts, attr)):
                return False
        if self.groups and not self.groups.any_of(facts.groups):
            return False
        return self.sets_annotation is None or self.sets_annotation in facts.template_annotations


@dataclass(frozen=True, kw_only=True)
class AuditFilter:
    """Stages kept, ignore rules, then named record rules (first match wins)."""

    stages: frozenset[str] = frozenset({"ResponseComplete"})
    ignore: tuple[AuditRule, ...] = ()
    record: tuple[AuditRule, ...] = ()
    _memo: dict[AuditFactFields, str | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    def classify(self, facts: AuditFacts) -> str | None:
        """The name of the record rule that keeps this event, or ``None`` when it is not recorded.

        Answers are memoised (bounded): audit traffic repeats the same few users, verbs and resources.
        """
        memo = self._memo
        try:
            return memo[facts]
        except KeyError:
            pass
        if len(memo) >= _MEMO_SIZE:
            memo.clear()
        kind = memo[facts] = self._classify(facts)
        return kind

    def classify_fields(self, fields: AuditFactFields) -> str | None:
        """:meth:`classify` of ``AuditFacts(*fields)``, without building the :class:`AuditFacts` when memoised.

        (A plain tuple equals, and hashes like, the named tuple with the same values.)"""
        try:
            return self._memo[fields]
        except KeyError:
            return self.classify(AuditFacts(*fields))

    def _classify(self, facts: AuditFacts) -> str | None:
        if facts.stage not in self.stages:
            return None
        if any(rule.matches(facts) for rule in self.ignore):
            return None
        for rule in self.record:
            if rule.matches(facts):
                return rule.name
        return None


def _p(*values: str) -> Pattern:
    return Pattern(values)


DEFAULT_AUDIT_FILTER = AuditFilter(
    stages=frozenset({"ResponseComplete"}),
    ignore=(
        AuditRule(resources=_p("events", "leases", "tokenreviews", "subjectaccessreviews")),
        AuditRule(groups=_p("system:nodes")),
        AuditRule(users=_p("system:kube-controller-manager", "system:kube-scheduler", "system:apiserver")),
        AuditRule(users=_p("system:serviceaccount:kube-system:*")),
    ),
    record=(
        AuditRule(
            name="rollout_restart",
            verbs=_p("patch"),
            resources=_p("deployments", "statefulsets", "daemonsets"),
            sets_annotation=RESTART_ANNOTATION,
        ),
        AuditRule(name="scale", subresources=_p("scale")),
        AuditRule(name="exec", subresources=_p("exec", "attach", "portforward")),
        AuditRule(name="logs", subresources=_p("log")),
        AuditRule(name="mutation", verbs=_p(*MUTATING_VERBS)),
    ),
)
"""What is recorded when the policy has no ``audit.yaml``; the shipped ``policy/audit.yaml`` spells out the same."""


_CRITERIA = ("verbs", "resources", "subresources", "namespaces", "users", "groups")
_RULE_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_VALUE = re.compile(r"[A-Za-z0-9*][A-Za-z0-9*:._/@-]*")
_ANNOTATION = re.compile(r"(?:[a-z0-9.-]+/)?[A-Za-z0-9][A-Za-z0-9._-]*")


def read_audit_filter(directory: Path, reader: _Reader) -> tuple[AuditFilter, bytes | None]:
    """Parse ``directory/audit.yaml`` (problems go to ``reader``); :data:`DEFAULT_AUDIT_FILTER` without one.

    Returns the filter and the file's bytes (``None`` when absent), which are part of the policy digest.
    """
    from chatops.policy.loader import _parse

    if not (directory / AUDIT_FILE).is_file():
        return DEFAULT_AUDIT_FILTER, None
    raw, document = _parse(directory, AUDIT_FILE, reader)
    if document is None:
        return DEFAULT_AUDIT_FILTER, raw
    return _AuditReader(reader).document(document), raw


class _AuditReader:
    """Validation of one ``audit.yaml`` document, reporting through the policy loader's reader."""

    def __init__(self, reader: _Reader) -> None:
        self.r = reader

    def document(self, node: _Node) -> AuditFilter:
        top = self.r.fields(node, (), ("stages", "ignore", "record"))
        default = DEFAULT_AUDIT_FILTER
        stages = self.stages(top["stages"]) if "stages" in top else default.stages
        ignore = self.rules(top["ignore"], named=False) if "ignore" in top else default.ignore
        record = self.rules(top["record"], named=True) if "record" in top else default.record
        if "record" in top and not record and isinstance(top["record"].value, list) and not top["record"].value:
            self.r.problem(top["record"], "list at least one rule (an empty list would record nothing)")
        return AuditFilter(stages=stages, ignore=ignore, record=record)

    def stages(self, node: _Node) -> frozenset[str]:
        items = self.r.items(node)
        if isinstance(node.value, list) and not items:
            self.r.problem(node, f"list at least one stage ({', '.join(AUDIT_STAGES)})")
        chosen = (self.r.choice(item, AUDIT_STAGES) for item in items)
        return frozenset(stage for stage in chosen if stage)

    def rules(self, node: _Node, *, named: bool) -> tuple[AuditRule, ...]:
        out: list[AuditRule] = []
        seen: set[str] = set()
        for item in self.r.items(node):
            rule = self.rule(item, named=named)
            if rule is None:
                continue
            if named and rule.name in seen:
                self.r.problem(item, f"rule name {rule.name!r} is used twice")
                continue
            seen.add(rule.name)
            out.append(rule)
        return tuple(out)

    def rule(self, node: _Node, *, named: bool) -> AuditRule | None:
        optional = (*_CRITERIA, "sets_annotation", "description")
        f = self.r.fields(node, ("name",) if named else (), optional)
        name = ""
        if named and "name" in f:
            name = self.r.text(f["name"], pattern=_RULE_NAME, like="a rule name (lower-case letters, digits and _)")
        patterns = {key: self.values(f[key]) for key in _CRITERIA if key in f}
        annotation = None
        if "sets_annotation" in f:
            like = "an annotation key like kubectl.kubernetes.io/restartedAt"
            annotation = self.r.text(f["sets_annotation"], pattern=_ANNOTATION, like=like) or None
        if "description" in f:
            self.r.text(f["description"], like="a description of the rule")
        if not patterns and "sets_annotation" not in f and isinstance(node.value, dict):
            self.r.problem(node, f"a rule needs at least one of {', '.join(_CRITERIA)}, sets_annotation")
            return None
        if named and not name:
            return None
        return AuditRule(name=name, sets_annotation=annotation, **patterns)

    def values(self, node: _Node) -> Pattern:
        items = self.r.items(node)
        if isinstance(node.value, list) and not items:
            self.r.problem(node, "list at least one value (leave the key out to match anything)")
        like = "a name or a * glob (letters, digits and : . _ / @ -)"
        found = (self.r.text(item, pattern=_VALUE, like=like) for item in items)
        return Pattern(tuple(dict.fromkeys(v for v in found if v)))
