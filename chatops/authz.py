"""The one authorization choke point: may this person run this command here?

:func:`authorize` is called by the dispatcher for every invocation, after parsing and before anything runs. It
checks the capability the command's spec ``requires`` against the grants in force (``policy/grants.yaml``, see
:mod:`chatops.policy.grants`), audience by audience, cheapest first, and stops at the first that grants it:

1. ``everyone``;
2. the user's own ``users`` entry;
3. ``incident_commander`` — the IC of the incident whose war room the command is typed in;
4. ``war_room_members`` — via ``conversations.members`` of that war room (cached briefly, :class:`Membership`);
5. ``usergroups`` — via ``usergroups.users.list`` (cached longer).

Slack lookups only happen for audiences whose grants would help. A lookup that fails grants nothing (fail
closed) but does not stop the other audiences from granting; a denial then says which lookups failed. A
denial's ``reason`` is written for the person who was refused: what is needed, who has it, what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatops.policy.grants import Grants, capability_matches
from chatops.transport.base import Chat, ChatError

if TYPE_CHECKING:
    from chatops.incidents.model import Incident

__all__ = ["Decision", "Membership", "authorize"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The answer: ``allowed``, and ``reason`` (who the grant came from, or why not)."""

    allowed: bool
    capability: str
    reason: str


class Membership:
    """Cached answers to "is U in channel C / user group S?".

    Lists are kept for ``ttl`` seconds (channels: short, people join war rooms all the time; user groups:
    longer). A "no" from a list older than ``refresh_after`` seconds (default: any) is checked against Slack
    again, so someone who just joined the war room is never refused from a stale list; denials are rare, so
    this costs little.
    """

    def __init__(
        self,
        chat: Chat,
        *,
        channel_ttl: float = 30.0,
        usergroup_ttl: float = 300.0,
        refresh_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chat = chat
        self._ttl = {"channel": channel_ttl, "usergroup": usergroup_ttl}
        self._refresh_after = refresh_after
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, frozenset[str]]] = {}

    async def _contains(self, kind: str, ref: str, user_id: str) -> bool:
        now = self._clock()
        cached = self._cache.get((kind, ref))
        if cached is not None and now - cached[0] < self._ttl[kind]:
            fetched_at, members = cached
            if user_id in members or now - fetched_at < self._refresh_after:
                return user_id in members
        listed = await (self.chat.channel_members(ref) if kind == "channel" else self.chat.usergroup_members(ref))
        members = frozenset(listed)
        self._cache[(kind, ref)] = (now, members)
        return user_id in members

    async def in_channel(self, channel_id: str, user_id: str) -> bool:
        """Whether ``user_id`` is a member of ``channel_id``."""
        return await self._contains("channel", channel_id, user_id)

    async def in_usergroup(self, usergroup_id: str, user_id: str) -> bool:
        """Whether ``user_id`` is in the user group ``usergroup_id``."""
        return await self._contains("usergroup", usergroup_id, user_id)

    def forget(self) -> None:
        """Drop every cached list."""
        self._cache.clear()


def _grants(patterns: tuple[str, ...], capability: str) -> bool:
    return any(capability_matches(p, capability) for p in patterns)


def _holders(grants: Grants, capability: str) -> list[str]:
    holders = []
    if _grants(grants.everyone, capability):
        holders.append("everyone")
    if _grants(grants.incident_commander, capability):
        holders.append("the incident commander")
    if _grants(grants.war_room_members, capability):
        holders.append("war-room members")
    holders += [f"user group <!subteam^{g}>" for g, p in grants.usergroups.items() if _grants(p, capability)]
    holders += [f"<@{u}>" for u, p in grants.users.items() if _grants(p, capability)]
    return holders


def _denial(grants: Grants, capability: str, command: str, in_room: bool, outsider: bool) -> str:
    holders = _holders(grants, capability)
    who = ", ".join(holders) if holders else "nobody (policy/grants.yaml grants it to no one)"
    text = f"You may not run `{command}`: it needs `{capability}`, which policy gives to {who}."
    room_grants = _grants(grants.war_room_members, capability) or _grants(grants.incident_commander, capability)
    if room_grants and not in_room:
        text += " Run it in the incident's war room."
    elif outsider and _grants(grants.war_room_members, capability):
        text += " Join this channel first, then run it again."
    return text + " Ask in the war room or change policy/grants.yaml if this is wrong."


async def authorize(
    grants: Grants,
    capability: str,
    *,
    command: str,
    user_id: str,
    channel_id: str,
    incident: Incident | None,
    membership: Membership,
) -> Decision:
    """Decide whether ``user_id`` may use ``capability`` (running ``command``) in ``channel_id``.

    ``incident`` is the incident whose war room ``channel_id`` is, if any: the incident roles only count there.
    """
    if _grants(grants.everyone, capability):
        return Decision(True, capability, "granted to everyone")
    if _grants(grants.users.get(user_id, ()), capability):
        return Decision(True, capability, f"granted to <@{user_id}>")
    in_room = incident is not None and incident.channel_id == channel_id
    is_ic = in_room and incident is not None and incident.ic_user_id == user_id
    if is_ic and _grants(grants.incident_commander, capability):
        return Decision(True, capability, "granted to the incident commander")
    failures: list[str] = []
    member = False
    if in_room and _grants(grants.war_room_members, capability):
        try:
            member = await membership.in_channel(channel_id, user_id)
        except ChatError as exc:
            failures.append(f"conversations.members: {exc.code}")
        if member:
            return Decision(True, capability, "granted to war-room members")
    for group, patterns in grants.usergroups.items():
        if not _grants(patterns, capability):
            continue
        try:
            if await membership.in_usergroup(group, user_id):
                return Decision(True, capability, f"granted to user group {group}")
        except ChatError as exc:  # one broken group must not take the others (or the war room) down
            failures.append(f"usergroups.users.list {group}: {exc.code}")
    if failures:
        log.warning("membership lookups failed", extra={"user": user_id, "failures": failures})
    outsider = in_room and not member
    reason = _denial(grants, capability, command, in_room, outsider)
    if failures:
        reason += f" (Slack could not tell whether you are in some of those: {'; '.join(failures)}.)"
    return Decision(False, capability, reason)
