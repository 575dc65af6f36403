"""``/incident note <text>``: add a note to this incident's timeline.

The worked example of docs/writing-commands.md: that page builds this file from empty to a passing test.
"""

from __future__ import annotations

from chatops import Arg, Context, UserError, command


@command(
    "/incident note",
    summary="Add a note to this incident's timeline",
    args=[Arg("text", kind="rest", help="what happened, or what you decided and why")],
    requires="incident.write",
    examples=["/incident note rolled checkout back to v142", "/incident note restarting checkout-orders-consumer"],
    timeout=10.0,
)
async def note(ctx: Context) -> None:
    """Record the note, then show it to the room."""
    text = str(ctx.args["text"]).strip()
    if not await ctx.record("note", text, {"text": text}):
        raise UserError("`/incident note` writes to an incident's timeline: run it in the incident's war room.")
    await ctx.reply(f":memo: Noted by <@{ctx.user_id}>: {text}")
