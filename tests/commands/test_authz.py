"""authorize(): audiences cheapest first, Slack lookups cached, failures fail closed without blocking others."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from chatops.authz import Membership, authorize
from chatops.incidents.model import Incident, IncidentStatus
from chatops.policy.grants import Grants
from chatops.transport.base import ChatError

ROOM = "C0ROOM"
INCIDENT = Incident(
    id="inc-1",
    severity="sev2",
    service="checkout",
    status=IncidentStatus.DECLARED,
    ic_user_id="U0IC",
    declared_by="U0IC",
    declared_at=datetime(2026, 4, 22, 2, 47, tzinfo=UTC),
    policy_digest="d",
    channel_id=ROOM,
)


class Directory:
    """Answers conversations.members / usergroups.users.list from dicts and counts the calls (a tiny Chat)."""

    def __init__(self, channels: dict[str, list[str]], groups: dict[str, list[str]]) -> None:
        self.channels = channels
        self.groups = groups
        self.calls: list[str] = []

    async def channel_members(self, channel: str) -> list[str]:
        self.calls.append(f"channel:{channel}")
        return list(self.channels.get(channel, []))

    async def usergroup_members(self, usergroup: str) -> list[str]:
        self.calls.append(f"group:{usergroup}")
        if usergroup not in self.groups:
            raise ChatError("usergroups.users.list", "no_such_subteam")
        return list(self.groups[usergroup])


def grants(**kwargs: object) -> Grants:
    base = Grants.default()
    values = {**base.__dict__, **kwargs}
    return Grants(**values)


async def check(g: Grants, user: str, directory: Directory, *, channel: str = ROOM, capability: str = "x.y") -> str:
    membership = Membership(directory)  # type: ignore[arg-type]
    decision = await authorize(
        g, capability, command="/x", user_id=user, channel_id=channel, incident=INCIDENT, membership=membership
    )
    return decision.reason if decision.allowed else "denied: " + decision.reason


async def test_ic_needs_no_lookup() -> None:
    directory = Directory({}, {})
    assert await check(Grants.default(), "U0IC", directory) == "granted to the incident commander"
    assert directory.calls == []


async def test_war_room_member_and_outsider() -> None:
    directory = Directory({ROOM: ["U0IC", "U0MEMBER"]}, {})
    assert await check(Grants.default(), "U0MEMBER", directory) == "granted to war-room members"
    denied = await check(Grants.default(), "U0OUT", directory)
    assert denied.startswith("denied: You may not run `/x`: it needs `x.y`") and "Join this channel first" in denied


async def test_roles_only_count_in_the_war_room() -> None:
    directory = Directory({"C0OPS": ["U0IC"]}, {})
    denied = await check(Grants.default(), "U0IC", directory, channel="C0OPS")
    assert "Run it in the incident's war room" in denied


async def test_a_broken_group_does_not_block_the_war_room() -> None:
    g = grants(usergroups=MappingProxyType({"S0GONE": ("*",), "S0SRE": ("x.*",)}), war_room_members=())
    directory = Directory({}, {"S0SRE": ["U0SRE"]})
    assert await check(g, "U0SRE", directory) == "granted to user group S0SRE"
    denied = await check(g, "U0OTHER", directory)
    assert "usergroups.users.list S0GONE: no_such_subteam" in denied


async def test_users_and_everyone() -> None:
    g = grants(everyone=("incident.read",), users=MappingProxyType({"U0ADITI01": ("service.*",)}))
    directory = Directory({}, {})
    assert await check(g, "U0ANY", directory, capability="incident.read") == "granted to everyone"
    assert await check(g, "U0ADITI01", directory, capability="service.operate") == "granted to <@U0ADITI01>"
    nobody = grants(everyone=(), incident_commander=(), war_room_members=())
    assert "policy/grants.yaml grants it to no one" in await check(nobody, "U0IC", directory)


async def test_membership_caches_yes_and_rechecks_no() -> None:
    now = [0.0]
    directory = Directory({ROOM: ["U1"]}, {})
    membership = Membership(directory, channel_ttl=30, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await membership.in_channel(ROOM, "U1")
    assert await membership.in_channel(ROOM, "U1")
    assert directory.calls == [f"channel:{ROOM}"]
    directory.channels[ROOM].append("U2")
    assert await membership.in_channel(ROOM, "U2"), "a 'no' is checked again: U2 just joined"
    now[0] = 31.0
    assert await membership.in_channel(ROOM, "U1")
    assert len(directory.calls) == 3
    membership.forget()
    assert await membership.in_channel(ROOM, "U1") and len(directory.calls) == 4
