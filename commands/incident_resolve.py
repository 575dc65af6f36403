"""``/incident resolve [summary]``: resolve the incident of this war room (see :mod:`chatops.incidents.resolve`)."""

from __future__ import annotations

from chatops import Arg, Context, command
from chatops.incidents.resolve import resolve_incident


@command(
    "/incident resolve",
    summary="Resolve this incident: PagerDuty pages, topic, pinned summary and timeline archive, all at once",
    args=[Arg("summary", kind="rest", required=False, help="what fixed it: goes onto the timeline and the summary")],
    requires="incident.resolve",
    side_effects=True,
    examples=[
        "/incident resolve",
        "/incident resolve rolled checkout back to v142; error rate back under SLO",
    ],
    timeout=90.0,
)
async def resolve(ctx: Context) -> None:
    """Resolve once, then close everything it opened; a later resolve finishes what that one left undone."""
    await resolve_incident(ctx, str(ctx.args.get("summary") or "").strip())
