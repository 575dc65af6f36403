"""``/incident``: declare an incident (more subcommands arrive with their issues)."""

from __future__ import annotations

from chatops import Arg, Context, command
from chatops.incidents.declare import declare


@command(
    "/incident declare",
    summary="Declare an incident: war room, pages, bridge, timeline and comms draft, all at once",
    args=[
        Arg("severity", kind="severity", help="sev1, sev2 or sev3 (SEV2, sev-2 and 2 work too)"),
        Arg("service", kind="service", help="a service from policy/services.yaml"),
        Arg("new", kind="flag", help="declare a separate incident although the service already has one open"),
    ],
    requires="incident.declare",
    side_effects=True,
    examples=[
        "/incident declare sev2 checkout",
        "/incident declare SEV1 auth",
        "/incident declare sev3 rider-pos --new",
    ],
    timeout=120.0,
)
async def declare_incident(ctx: Context) -> None:
    """Run the severity's playbook for the service, exactly once per command."""
    await declare(ctx, ctx.args["severity"], ctx.args["service"], separate=bool(ctx.args["new"]))
