"""``/incident sev <severity>``: change this incident's severity (see :mod:`chatops.incidents.severity_change`)."""

from __future__ import annotations

from chatops import Arg, Context, command
from chatops.incidents.severity_change import change_severity


@command(
    "/incident sev",
    summary="Change this incident's severity: an upgrade pages the roles it adds; topic and summary follow",
    args=[Arg("severity", kind="severity", help="sev1, sev2 or sev3 (SEV2, sev-2 and 2 work too)")],
    requires="incident.severity",
    side_effects=True,
    examples=["/incident sev sev1", "/incident sev 3"],
    timeout=60.0,
)
async def sev(ctx: Context) -> None:
    """Move the incident to the severity's policy: who is paged, comms, post-mortem."""
    await change_severity(ctx, ctx.args["severity"])
