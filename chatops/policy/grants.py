"""Who may run what: ``policy/grants.yaml`` parsed into an immutable :class:`Grants`.

Commands declare the capability they require (``requires="incident.escalate"``); grants give capabilities to
audiences. :func:`chatops.authz.authorize` is the one place they are checked. Schema (``docs/policy.md``)::

    capabilities:                 # optional; when present, grants may only name these (typos get a did-you-mean)
      incident.read: Read incident state, runbooks and metrics
    grants:
      everyone: [incident.read]   # any member of the workspace
      incident_commander: ["*"]   # the IC of the war room the command is run in
      war_room_members: ["*"]     # members of that war room (conversations.members)
      users: {U0ADITI01: [service.operate]}           # Slack user ids
      usergroups: {S0SREONCALL: ["incident.*"]}        # Slack user-group ids (usergroups.users.list)
    confirm:
      expire_after: 2m            # how long a confirmation button stays valid
      always: ["/incident declare"]   # side-effect commands that ask even when typed with explicit arguments

A pattern is a capability name, ``prefix.*`` or ``*``. Without a ``grants.yaml`` the :meth:`Grants.default` rules
apply: everyone may read and declare; the IC and war-room members may run everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from chatops.policy.names import closest

if TYPE_CHECKING:
    from chatops.policy.loader import _Node, _Reader

__all__ = ["GRANTS_FILE", "Grants", "capability_matches", "describe_grants_change", "read_grants"]

GRANTS_FILE = "grants.yaml"
_CAPABILITY = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*")
_PATTERN = re.compile(r"\*|[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*(?:\.\*)?")
_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_USERGROUP = re.compile(r"S[A-Z0-9]{2,}")
_COMMAND = re.compile(r"/[a-z0-9][a-z0-9_-]*(?: [a-z0-9][a-z0-9_-]*)?")
_AUDIENCES = ("everyone", "incident_commander", "war_room_members", "users", "usergroups")


def capability_matches(pattern: str, capability: str) -> bool:
    """``*`` matches everything, ``incident.*`` matches ``incident.read``, a plain name matches itself."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return capability.startswith(pattern[:-1])
    return pattern == capability


def _empty() -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Grants:
    """The grants in force. Every field is immutable; ``capabilities`` is empty when the file declares none."""

    capabilities: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    everyone: tuple[str, ...] = ()
    incident_commander: tuple[str, ...] = ()
    war_room_members: tuple[str, ...] = ()
    users: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)
    usergroups: Mapping[str, tuple[str, ...]] = field(default_factory=_empty)
    confirm_always: tuple[str, ...] = ()
    confirm_ttl: timedelta = timedelta(minutes=2)

    @classmethod
    def default(cls) -> Grants:
        """The rules used when the policy has no ``grants.yaml``."""
        return cls(
            everyone=("incident.read", "incident.declare"),
            incident_commander=("*",),
            war_room_members=("*",),
        )

    def needs_confirmation(self, command: str) -> bool:
        """Whether policy asks for confirmation of ``command`` (a side-effect command) even when typed."""
        return command in self.confirm_always


class _GrantsReader:
    """Validation of one ``grants.yaml`` document, reporting through the policy loader's reader."""

    def __init__(self, reader: _Reader) -> None:
        self.r = reader

    def document(self, node: _Node) -> Grants:
        top = self.r.fields(node, (), ("capabilities", "grants", "confirm"))
        capabilities = self.capabilities(top["capabilities"]) if "capabilities" in top else {}
        audiences = self.r.fields(top["grants"], (), _AUDIENCES) if "grants" in top else {}

        def patterns(key: str) -> tuple[str, ...]:
            return self.patterns(audiences[key], capabilities) if key in audiences else ()

        confirm = self.r.fields(top["confirm"], (), ("expire_after", "always")) if "confirm" in top else {}
        ttl = self.r.duration(confirm["expire_after"]) if "expire_after" in confirm else timedelta(minutes=2)
        return Grants(
            capabilities=MappingProxyType(capabilities),
            everyone=patterns("everyone"),
            incident_commander=patterns("incident_commander"),
            war_room_members=patterns("war_room_members"),
            users=MappingProxyType(
                self.keyed(audiences.get("users"), _USER, "a Slack user id like U0ADITI01", capabilities)
            ),
            usergroups=MappingProxyType(
                self.keyed(
                    audiences.get("usergroups"), _USERGROUP, "a Slack user-group id like S0SREONCALL", capabilities
                )
            ),
            confirm_always=self.commands(confirm["always"]) if "always" in confirm else (),
            confirm_ttl=ttl or timedelta(minutes=2),
        )

    def capabilities(self, node: _Node) -> dict[str, str]:
        out = {}
        for name, child in self.r.entries(node):
            if not _CAPABILITY.fullmatch(name):
                self.r.problem(child, "capability names are dotted lower-case words, e.g. incident.read", at_key=True)
                continue
            out[name] = self.r.text(child, like="a description of the capability")
        return out

    def patterns(self, node: _Node, capabilities: Mapping[str, str]) -> tuple[str, ...]:
        out: list[str] = []
        for item in self.r.items(node):
            like = "a capability, 'prefix.*' or '*'"
            pattern = self.r.text(item, pattern=_PATTERN, like=like)
            if not pattern:
                continue
            if capabilities and not any(capability_matches(pattern, c) for c in capabilities):
                suggestion = closest(pattern, capabilities)
                hint = f"did you mean {suggestion}? " if suggestion else ""
                self.r.problem(item, f"unknown capability {pattern!r} — {hint}declared: {', '.join(capabilities)}")
                continue
            out.append(pattern)
        return tuple(out)

    def keyed(
        self, node: _Node | None, key_pattern: re.Pattern[str], like: str, capabilities: Mapping[str, str]
    ) -> Mapping[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for key, child in self.r.entries(node) if node is not None else []:
            if not key_pattern.fullmatch(key):
                self.r.problem(child, f"expected {like}, got {key!r}", at_key=True)
                continue
            out[key] = self.patterns(child, capabilities)
        return MappingProxyType(out)

    def commands(self, node: _Node) -> tuple[str, ...]:
        out = []
        for item in self.r.items(node):
            name = self.r.text(item, pattern=_COMMAND, like="a command name like /restart-consumer")
            if name:
                out.append(name)
        return tuple(out)


def read_grants(directory: Path, reader: _Reader) -> tuple[Grants, bytes | None]:
    """Parse ``directory/grants.yaml`` (problems go to ``reader``); :meth:`Grants.default` when there is none.

    Returns the grants and the file's bytes (``None`` when absent), which are part of the policy digest.
    """
    from chatops.policy.loader import _parse

    if not (directory / GRANTS_FILE).is_file():
        return Grants.default(), None
    raw, document = _parse(directory, GRANTS_FILE, reader)
    if document is None:
        return Grants.default(), raw
    return _GrantsReader(reader).document(document), raw


def _audiences(grants: Grants) -> dict[str, tuple[str, ...]]:
    out = {
        "everyone": grants.everyone,
        "the incident commander": grants.incident_commander,
        "war-room members": grants.war_room_members,
    }
    out |= {f"<@{user}>": patterns for user, patterns in grants.users.items()}
    out |= {f"user group {group}": patterns for group, patterns in grants.usergroups.items()}
    return out


def _listed(values: Iterable[str]) -> str:
    return ", ".join(values) or "nothing"


def describe_grants_change(old: Grants, new: Grants) -> list[str]:
    """One line per change in who may do what (``"war-room members now get incident.escalate"``)."""
    out: list[str] = []
    before, after = _audiences(old), _audiences(new)
    for who, patterns in after.items():
        was = before.get(who, ())
        added = [p for p in patterns if p not in was]
        removed = [p for p in was if p not in patterns]
        out += [f"grants: {who} now get {_listed(added)}"] if added else []
        out += [f"grants: {who} no longer get {_listed(removed)}"] if removed else []
    out += [f"grants: {who} no longer get {_listed(p)}" for who, p in before.items() if who not in after and p]
    if old.confirm_always != new.confirm_always:
        out.append(f"confirmation now always asked for: {_listed(new.confirm_always)}")
    if old.confirm_ttl != new.confirm_ttl:
        out.append(f"confirmations now expire after {int(new.confirm_ttl.total_seconds())}s")
    return out
