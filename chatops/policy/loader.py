"""Load and validate the policy directory into an immutable :class:`~chatops.policy.models.Policy`.

``load_policy(directory)`` reads ``severity.yaml`` and ``services.yaml`` with ruamel.yaml in round-trip mode (which
keeps line numbers), validates everything and raises :class:`~chatops.errors.ConfigError` listing *every* problem,
one per line, in the form ``severity.yaml:12:5: severities.sev2.urgency: expected one of high, low, got 'urgent'``
(file relative to the directory, 1-based line and column, dotted key path, what was expected). Other ``*.yaml``
files in the directory belong to other parts of chatops and are ignored here, except the optional ``grants.yaml``
(who may run which command), validated the same way by :mod:`chatops.policy.grants`, and the optional
``audit.yaml`` (which Kubernetes audit events are recorded, :mod:`chatops.sources.audit_filter`), and the
optional ``dashboards.yaml`` (the ``/dashboard`` panels, :mod:`chatops.dashboards`). The schema is documented in
``docs/policy.md``.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from chatops.dashboards import DASHBOARDS_FILE, read_dashboards
from chatops.errors import ConfigError
from chatops.policy.grants import GRANTS_FILE, read_grants
from chatops.policy.models import (
    COMMS_POLICIES,
    DEPLOY_WATCH_MODES,
    TEMPLATE_FIELDS,
    URGENCIES,
    AlertTrigger,
    BurnRateTrigger,
    CommsPolicy,
    CommsRule,
    Dashboard,
    DeployWatch,
    JudgementTrigger,
    Policy,
    PostMortemRule,
    Service,
    Severity,
    SupportTicketShareTrigger,
    TagTrigger,
    Trigger,
    UnavailableTrigger,
    Urgency,
)
from chatops.policy.names import closest, normalise_severity
from chatops.sources.audit_filter import AUDIT_FILE, read_audit_filter

__all__ = [
    "DEFAULT_DRAFT_CHANNEL",
    "DEFAULT_PLATFORM_CHANNEL",
    "POLICY_FILES",
    "SERVICES_FILE",
    "SEVERITY_FILE",
    "load_policy",
]

SEVERITY_FILE = "severity.yaml"
SERVICES_FILE = "services.yaml"
POLICY_FILES = (SEVERITY_FILE, SERVICES_FILE)
"""The files this loader reads (and whose bytes make up :attr:`Policy.digest`)."""
DEFAULT_DRAFT_CHANNEL = "status-pages-draft"
DEFAULT_PLATFORM_CHANNEL = "chatops-platform"

_SEVERITY_NAME = re.compile(r"sev[1-9][0-9]?")
_ROLE = re.compile(r"[a-z][a-z0-9_]*")
_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,58}[a-z0-9])?")
_CHANNEL = re.compile(r"[a-z0-9][a-z0-9_-]{0,79}")
_NAMESPACE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TIER = re.compile(r"P[0-9]")
_PAGERDUTY_ID = re.compile(r"P[A-Z0-9]{6}")
_DURATION = re.compile(r"([1-9][0-9]*)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

_TRIGGER_FIELDS: dict[str, tuple[str, ...]] = {
    "alert": ("name",),
    "burn_rate": ("slo_tier", "threshold", "window"),
    "judgement": (),
    "support_ticket_share": ("threshold_pct", "window"),
    "tag": ("name",),
    "unavailable": ("service_tier",),
}


@dataclass(frozen=True)
class _Node:
    """A YAML value with where it came from: file, dotted path, 0-based value and key positions."""

    value: Any
    file: str
    path: str
    line: int = 0
    col: int = 0
    key_line: int = 0
    key_col: int = 0


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(str(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__} ({value})"


def _position(lookup: Callable[[Any], Any], key: Any, fallback: tuple[int, int]) -> tuple[int, int]:
    try:
        line, col = lookup(key)
    except (KeyError, IndexError, TypeError, AttributeError):
        return fallback
    return int(line), int(col)


class _Reader:
    """Typed accessors over ``_Node`` that record a problem (and return a default) instead of raising."""

    def __init__(self) -> None:
        self._found: list[tuple[str, int, int, str]] = []

    @property
    def problems(self) -> list[str]:
        """Every problem so far, in file order (as ``POLICY_FILES`` lists them), then by line and column."""
        order = {name: index for index, name in enumerate(POLICY_FILES)}
        found = sorted(self._found, key=lambda p: (order.get(p[0], len(order)), p[0], p[1], p[2]))
        return [
            f"{file}:{line + 1}:{col + 1}: {message}" if line >= 0 else f"{file}: {message}"
            for file, line, col, message in found
        ]

    def add(self, file: str, line: int | None, col: int, message: str) -> None:
        """Record a problem at a 0-based position (``line=None``: the file as a whole)."""
        self._found.append((file, -1 if line is None else line, col, message))

    def problem(self, node: _Node, message: str, *, at_key: bool = False) -> None:
        """Record a problem at ``node``'s value (or, with ``at_key``, at its key)."""
        line, col = (node.key_line, node.key_col) if at_key else (node.line, node.col)
        path = f"{node.path}: " if node.path else ""
        self.add(node.file, line, col, f"{path}{message}")

    def entries(self, node: _Node) -> list[tuple[str, _Node]]:
        """The (key, value node) pairs of a mapping; keys that are not text are reported and skipped."""
        mapping = node.value
        if not isinstance(mapping, CommentedMap):
            self.problem(node, f"expected a mapping, got {_describe(mapping)}")
            return []
        out = []
        for key in mapping:
            key_line, key_col = _position(mapping.lc.key, key, (node.line, node.col))
            value = mapping[key]
            line, col = (key_line, key_col)
            if value is not None:
                line, col = _position(mapping.lc.value, key, (key_line, key_col))
            path = f"{node.path}.{key}" if node.path else str(key)
            child = _Node(value, node.file, path, line, col, key_line, key_col)
            if not isinstance(key, str):
                self.problem(child, f"keys must be text, got {_describe(key)}", at_key=True)
                continue
            out.append((key, child))
        return out

    def fields(self, node: _Node, required: Collection[str], optional: Collection[str] = ()) -> dict[str, _Node]:
        """A mapping with a fixed set of keys: unknown keys (with a did-you-mean) and missing ones are reported."""
        allowed = [*required, *optional]
        found: dict[str, _Node] = {}
        for key, child in self.entries(node):
            if key in allowed:
                found[key] = child
                continue
            suggestion = closest(key, allowed)
            hint = f"did you mean {suggestion}?" if suggestion else f"expected one of {', '.join(allowed)}"
            self.problem(child, f"unknown key — {hint}", at_key=True)
        if isinstance(node.value, CommentedMap):
            for key in required:
                if key not in found:
                    self.problem(node, f"missing required key {key!r}", at_key=True)
        return found

    def items(self, node: _Node) -> list[_Node]:
        """The item nodes of a sequence."""
        seq = node.value
        if not isinstance(seq, CommentedSeq):
            self.problem(node, f"expected a list, got {_describe(seq)}")
            return []
        out = []
        for index, value in enumerate(seq):
            line, col = _position(seq.lc.item, index, (node.line, node.col))
            out.append(_Node(value, node.file, f"{node.path}[{index}]", line, col, line, col))
        return out

    def text(self, node: _Node, default: str = "", *, pattern: re.Pattern[str] | None = None, like: str = "") -> str:
        """Non-empty text, optionally matching ``pattern`` (``like`` says what it should look like)."""
        value = node.value
        if not isinstance(value, str) or not value.strip():
            self.problem(node, f"expected {like or 'text'}, got {_describe(value)}")
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(node, f"expected {like}, got {_describe(value)}")
            return default
        return str(value)

    def flag(self, node: _Node, default: bool = False) -> bool:
        if not isinstance(node.value, bool):
            self.problem(node, f"expected true or false, got {_describe(node.value)}")
            return default
        return node.value

    def integer(self, node: _Node, minimum: int = 1) -> int | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(node, f"expected a whole number ≥ {minimum}, got {_describe(value)}")
            return None
        return int(value)

    def number(self, node: _Node, *, maximum: float | None = None) -> float:
        value = node.value
        ok = isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf
        if not ok or (maximum is not None and value > maximum):
            limit = f"between 0 and {maximum:g}" if maximum is not None else "greater than 0"
            self.problem(node, f"expected a number {limit}, got {_describe(value)}")
            return 0.0
        return float(value)

    def choice(self, node: _Node, options: Collection[str]) -> str | None:
        value = node.value
        if isinstance(value, str) and value in options:
            return str(value)
        suggestion = closest(value, options) if isinstance(value, str) else None
        hint = f" — did you mean {suggestion}?" if suggestion else ""
        self.problem(node, f"expected one of {', '.join(options)}, got {_describe(value)}{hint}")
        return None

    def url(self, node: _Node) -> str:
        value = self.text(node, like="an http(s) URL")
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                self.problem(node, f"expected an http(s) URL, got {value!r}")
                return ""
        return value

    def duration(self, node: _Node) -> timedelta:
        like = "a duration like 30m or 1h (a number and one of s, m, h, d)"
        value = self.text(node, pattern=_DURATION, like=like)
        match = _DURATION.fullmatch(value)
        return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)]) if match else timedelta(0)

    def optional_text(self, node: _Node | None) -> str | None:
        return None if node is None else self.text(node)


@dataclass(frozen=True)
class _SeverityFile:
    roles: dict[str, str] | None  # None: the roles could not be read, so role names are not checked
    severities: dict[str, Severity]
    draft_channel: str
    platform_channel: str


class _Builder(_Reader):
    """Turns the two parsed documents into model objects, recording every problem on the way."""

    def severity_file(self, document: _Node) -> _SeverityFile:
        top = self.fields(document, ("roles", "severities"), ("comms",))
        roles = self.roles(top["roles"]) if "roles" in top else None
        comms = self.fields(top["comms"], (), ("draft_channel", "platform_channel")) if "comms" in top else {}
        severities: dict[str, Severity] = {}
        listed = top.get("severities")
        for name, child in self.entries(listed) if listed is not None else []:
            severity = self.severity(name, child, roles)
            if severity is not None:
                severities[name] = severity
        if listed is not None and isinstance(listed.value, CommentedMap) and not listed.value:
            self.problem(listed, "define at least one severity", at_key=True)
        return _SeverityFile(
            roles=roles,
            severities=severities,
            draft_channel=self.channel(comms.get("draft_channel"), DEFAULT_DRAFT_CHANNEL),
            platform_channel=self.channel(comms.get("platform_channel"), DEFAULT_PLATFORM_CHANNEL),
        )

    def roles(self, node: _Node) -> dict[str, str]:
        roles = {}
        for name, child in self.entries(node):
            if not _ROLE.fullmatch(name):
                self.problem(child, "role names are lower-case letters, digits and _", at_key=True)
                continue
            roles[name] = self.text(child, like="a description of the role")
        if isinstance(node.value, CommentedMap) and not node.value:
            self.problem(node, "define at least one role", at_key=True)
        return roles

    def channel(self, node: _Node | None, default: str) -> str:
        if node is None:
            return default
        value = node.value.lstrip("#") if isinstance(node.value, str) else node.value
        like = "a Slack channel name (lower-case letters, digits, - and _)"
        return self.text(_Node(value, node.file, node.path, node.line, node.col), default, pattern=_CHANNEL, like=like)

    def severity(self, name: str, node: _Node, roles: Collection[str] | None) -> Severity | None:
        if not _SEVERITY_NAME.fullmatch(name):
            fixed = normalise_severity(name)
            hint = f"; write it as {fixed}" if fixed else ""
            self.problem(node, f"severity names are sev followed by the rank (sev1, sev2, ...){hint}", at_key=True)
            return None
        required = ("description", "urgency", "page", "war_room_required", "comms", "post_mortem", "triggers")
        f = self.fields(node, required, ("label",))
        rank = int(name[3:])
        urgency = self.choice(f["urgency"], URGENCIES) if "urgency" in f else None
        return Severity(
            name=name,
            label=self.text(f["label"]) if "label" in f else f"SEV{rank}",
            rank=rank,
            description=self.text(f["description"]) if "description" in f else "",
            page=self.page(f["page"], roles) if "page" in f else (),
            urgency=cast(Urgency, urgency or "high"),
            comms=self.comms(f["comms"]) if "comms" in f else CommsRule(policy="internal_only"),
            post_mortem=self.post_mortem(f["post_mortem"]) if "post_mortem" in f else PostMortemRule(required=False),
            war_room_required=self.flag(f["war_room_required"]) if "war_room_required" in f else False,
            triggers=self.triggers(f["triggers"]) if "triggers" in f else (),
        )

    def page(self, node: _Node, roles: Collection[str] | None) -> tuple[str, ...]:
        page: list[str] = []
        items = self.items(node)
        if isinstance(node.value, CommentedSeq) and not items:
            self.problem(node, "page at least one role (usually primary)")
        for item in items:
            role = self.text(item, like="a role name")
            if not role:
                continue
            if roles is not None and role not in roles:
                suggestion = closest(role, roles)
                hint = f"did you mean {suggestion}? " if suggestion else ""
                self.problem(item, f"unknown role {role!r} — {hint}known roles: {', '.join(roles)}")
            elif role in page:
                self.problem(item, f"role {role!r} is listed twice")
            else:
                page.append(role)
        return tuple(page)

    def comms(self, node: _Node) -> CommsRule:
        minutes = ("initial_update_minutes", "update_every_minutes", "mitigated_update_every_minutes")
        f = self.fields(node, ("policy",), (*minutes, "draft_template"))
        policy = cast(CommsPolicy | None, self.choice(f["policy"], COMMS_POLICIES) if "policy" in f else None)
        template = self.template(f["draft_template"]) if "draft_template" in f else None
        if policy and policy != "internal_only" and "draft_template" not in f:
            self.problem(node, f"comms policy {policy} needs a draft_template", at_key=True)
        numbers = {key: self.integer(f[key]) if key in f else None for key in minutes}
        return CommsRule(
            policy=policy or "internal_only",
            initial_update_minutes=numbers["initial_update_minutes"],
            update_every_minutes=numbers["update_every_minutes"],
            mitigated_update_every_minutes=numbers["mitigated_update_every_minutes"],
            draft_template=template,
        )

    def template(self, node: _Node) -> str | None:
        text = self.text(node, like="a message template")
        known = ", ".join(f"{{{name}}}" for name in TEMPLATE_FIELDS)
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            self.problem(node, f"malformed template ({exc}); write a literal brace as {{{{ or }}}}")
            return text or None
        for _literal, field, spec, conversion in parsed:
            if field is None:
                continue
            if field not in TEMPLATE_FIELDS:
                suggestion = closest(field, TEMPLATE_FIELDS)
                hint = f"did you mean {{{suggestion}}}? " if suggestion else ""
                self.problem(node, f"unknown placeholder {{{field}}} — {hint}known placeholders: {known}")
            elif spec or conversion:
                self.problem(node, f"placeholder {{{field}}} takes no format spec or conversion")
        return text or None

    def post_mortem(self, node: _Node) -> PostMortemRule:
        f = self.fields(node, ("required",), ("within_business_days", "executive_review", "note"))
        required = self.flag(f["required"]) if "required" in f else False
        days = self.integer(f["within_business_days"]) if "within_business_days" in f else None
        if days is not None and not required:
            self.problem(f["within_business_days"], "only applies when required is true")
        return PostMortemRule(
            required=required,
            within_business_days=days,
            executive_review=self.flag(f["executive_review"]) if "executive_review" in f else False,
            note=self.optional_text(f.get("note")),
        )

    def triggers(self, node: _Node) -> tuple[Trigger, ...]:
        items = self.items(node)
        if isinstance(node.value, CommentedSeq) and not items:
            self.problem(node, "list at least one trigger (use {kind: judgement} for the IC's call)")
        triggers = [self.trigger(item) for item in items]
        return tuple(t for t in triggers if t is not None)

    def trigger(self, node: _Node) -> Trigger | None:
        every = sorted({name for names in _TRIGGER_FIELDS.values() for name in names} | {"description"})
        f = self.fields(node, ("kind",), every)
        kind = self.choice(f["kind"], list(_TRIGGER_FIELDS)) if "kind" in f else None
        if kind is None:
            return None
        wanted = _TRIGGER_FIELDS[kind]
        article = "an" if kind[0] in "aeiou" else "a"
        takes = f"{article} {kind} trigger takes {', '.join(wanted) if wanted else 'no parameters'}"
        for key, child in f.items():
            if key not in (*wanted, "kind", "description"):
                self.problem(child, f"not used by this kind of trigger ({takes})", at_key=True)
        missing = [key for key in wanted if key not in f]
        if missing:
            self.problem(node, f"missing {', '.join(missing)} ({takes})")
            return None
        description = self.optional_text(f.get("description"))
        like = "a tier like P0 or P1"
        if kind == "burn_rate":
            return BurnRateTrigger(
                slo_tier=self.text(f["slo_tier"], pattern=_TIER, like=like),
                threshold=self.number(f["threshold"]),
                window=self.duration(f["window"]),
                description=description,
            )
        if kind == "alert":
            return AlertTrigger(name=self.text(f["name"], like="an alert name"), description=description)
        if kind == "tag":
            return TagTrigger(name=self.text(f["name"], like="a tag name"), description=description)
        if kind == "unavailable":
            tier = self.text(f["service_tier"], pattern=_TIER, like=like)
            return UnavailableTrigger(service_tier=tier, description=description)
        if kind == "support_ticket_share":
            return SupportTicketShareTrigger(
                threshold_pct=self.number(f["threshold_pct"], maximum=100),
                window=self.duration(f["window"]),
                description=description,
            )
        return JudgementTrigger(description=description)

    def services(self, node: _Node, roles: Collection[str] | None) -> dict[str, Service]:
        services: dict[str, Service] = {}
        owners: dict[str, str] = {}
        for name, child in self.entries(node):
            if not _SERVICE.fullmatch(name):
                like = "lower-case letters, digits and - (it becomes part of the war-room channel name)"
                fixed = name.lower().replace("_", "-")
                hint = f"; write it as {fixed}" if _SERVICE.fullmatch(fixed) else ""
                self.problem(child, f"service names are {like}{hint}", at_key=True)
                continue
            services[name] = self.service(name, child, roles, owners)
        if isinstance(node.value, CommentedMap) and not node.value:
            self.problem(node, "define at least one service", at_key=True)
        return services

    def service(self, name: str, node: _Node, roles: Collection[str] | None, owners: dict[str, str]) -> Service:
        required = ("tier", "owner_team", "pagerduty", "runbook_url")
        f = self.fields(node, required, ("dashboards", "bridge_url", "namespaces"))
        tier_like = "a tier like P0 or P1"
        return Service(
            name=name,
            tier=self.text(f["tier"], pattern=_TIER, like=tier_like) if "tier" in f else "",
            owner_team=self.text(f["owner_team"], like="the owning team's name") if "owner_team" in f else "",
            pagerduty=MappingProxyType(self.routing(f["pagerduty"], roles) if "pagerduty" in f else {}),
            runbook_url=self.url(f["runbook_url"]) if "runbook_url" in f else "",
            dashboards=self.dashboards(f["dashboards"]) if "dashboards" in f else (),
            bridge_url=self.url(f["bridge_url"]) if "bridge_url" in f else None,
            namespaces=self.namespaces(f["namespaces"], name, owners) if "namespaces" in f else (),
        )

    def routing(self, node: _Node, roles: Collection[str] | None) -> dict[str, str]:
        routing = {}
        like = "a PagerDuty service id like P3CHKO1 (P and 6 capital letters or digits)"
        for role, child in self.entries(node):
            if roles is not None and role not in roles:
                suggestion = closest(role, roles)
                hint = f"did you mean {suggestion}? " if suggestion else ""
                known = ", ".join(roles)
                self.problem(child, f"unknown role — {hint}roles are defined in {SEVERITY_FILE}: {known}", at_key=True)
            routing[role] = self.text(child, pattern=_PAGERDUTY_ID, like=like)
        if isinstance(node.value, CommentedMap) and "primary" not in routing:
            self.problem(node, "every service needs a primary on-call", at_key=True)
        return routing

    def dashboards(self, node: _Node) -> tuple[Dashboard, ...]:
        out = []
        for item in self.items(node):
            f = self.fields(item, ("title", "url"))
            title = self.text(f["title"], like="a title") if "title" in f else ""
            out.append(Dashboard(title=title, url=self.url(f["url"]) if "url" in f else ""))
        return tuple(out)

    def namespaces(self, node: _Node, service: str, owners: dict[str, str]) -> tuple[str, ...]:
        """The service's namespaces; ``owners`` (namespace → service, shared across services) catches overlaps."""
        out: list[str] = []
        like = "a Kubernetes namespace (lower-case letters, digits and -, at most 63)"
        for item in self.items(node):
            namespace = self.text(item, pattern=_NAMESPACE, like=like)
            if namespace in out:
                self.problem(item, f"namespace {namespace!r} is listed twice")
            elif namespace in owners:
                self.problem(item, f"namespace {namespace!r} is already owned by {owners[namespace]}")
            elif namespace:
                out.append(namespace)
                owners[namespace] = service
        return tuple(out)


def _parse(directory: Path, name: str, reader: _Reader) -> tuple[bytes, _Node | None]:
    """Read and parse one file; a missing file, bad encoding or YAML error becomes a problem and ``None``."""
    path = directory / name
    if not path.is_file():
        other = path.with_suffix(".yml")
        hint = f" (found {other.name}: rename it to {name})" if other.is_file() else ""
        reader.add(name, None, 0, f"required policy file is missing{hint}")
        return b"", None
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except OSError as exc:
        reader.add(name, None, 0, f"cannot read: {exc.strerror or exc}")
        return b"", None
    except UnicodeDecodeError as exc:
        reader.add(name, None, 0, f"not valid UTF-8 (byte {exc.start})")
        return b"", None
    try:
        document = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reader.add(name, mark.line if mark else None, mark.column if mark else 0, _yaml_message(exc))
        return raw, None
    except YAMLError as exc:
        reader.add(name, None, 0, f"YAML error: {exc}")
        return raw, None
    if document is None:
        reader.add(name, 0, 0, "the file is empty")
        return raw, None
    return raw, _Node(document, name, "")


def _yaml_message(exc: MarkedYAMLError) -> str:
    if isinstance(exc, DuplicateKeyError):
        return str(exc.problem)
    detail = str(exc.problem or exc.context or "invalid YAML")
    context = exc.context_mark
    if exc.context and context is not None and context is not exc.problem_mark:
        detail += f" ({exc.context} at line {context.line + 1}, column {context.column + 1})"
    return f"YAML syntax error: {detail}"


def _digest(sources: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name] + b"\0")
    return digest.hexdigest()


def load_policy(directory: Path) -> Policy:
    """Load, validate and snapshot the policy in ``directory``.

    Raises :class:`~chatops.errors.ConfigError` whose ``problems`` lists every problem found, one line each,
    ``file:line:column: key.path: what was expected``.
    """
    if not directory.is_dir():
        raise ConfigError([f"{directory}: policy directory not found"])
    b = _Builder()
    raw_severity, severity_doc = _parse(directory, SEVERITY_FILE, b)
    raw_services, services_doc = _parse(directory, SERVICES_FILE, b)
    part = b.severity_file(severity_doc) if severity_doc is not None else _SeverityFile(None, {}, "", "")
    services: dict[str, Service] = {}
    deploy_watch: DeployWatch = "open_incidents"
    if services_doc is not None:
        top = b.fields(services_doc, ("services",), ("deploy_watch",))
        services = b.services(top["services"], part.roles) if "services" in top else {}
        mode = b.choice(top["deploy_watch"], DEPLOY_WATCH_MODES) if "deploy_watch" in top else None
        deploy_watch = next((m for m in DEPLOY_WATCH_MODES if m == mode), deploy_watch)
    grants, raw_grants = read_grants(directory, b)
    audit, raw_audit = read_audit_filter(directory, b)
    dashboards, raw_dashboards = read_dashboards(directory, b, list(services))
    if b.problems:
        raise ConfigError(b.problems)
    return Policy(
        severities=MappingProxyType(dict(sorted(part.severities.items(), key=lambda item: item[1].rank))),
        services=MappingProxyType(services),
        roles=MappingProxyType(part.roles or {}),
        draft_channel=part.draft_channel,
        platform_channel=part.platform_channel,
        digest=_digest(
            {SEVERITY_FILE: raw_severity, SERVICES_FILE: raw_services}
            | ({GRANTS_FILE: raw_grants} if raw_grants is not None else {})
            | ({AUDIT_FILE: raw_audit} if raw_audit is not None else {})
            | ({DASHBOARDS_FILE: raw_dashboards} if raw_dashboards is not None else {})
        ),
        loaded_at=datetime.now(UTC),
        grants=grants,
        audit=audit,
        dashboards=dashboards,
        deploy_watch=deploy_watch,
    )
