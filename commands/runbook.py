"""``/runbook [name]``: the runbooks of this channel's service, or one runbook with a Run button per step."""

from __future__ import annotations

import asyncio

from chatops import Arg, Context, UserError, command
from chatops.policy.names import closest
from chatops.runbooks import RunbookSet, load_runbooks, render_list, render_runbook


@command(
    "/runbook",
    summary="List the runbooks for this channel's service, or show one with a Run button for each step",
    args=[Arg("name", required=False, help="a runbook (e.g. restart-consumer), or a service to list its runbooks")],
    requires="incident.read",
    examples=["/runbook", "/runbook restart-consumer", "/runbook checkout-restart-consumer", "/runbook auth"],
    timeout=15.0,
)
async def runbook(ctx: Context) -> None:
    """In a war room the runbook is posted for everyone; elsewhere only you see it."""
    services = ctx.services
    runbooks = await asyncio.to_thread(
        load_runbooks,
        services.settings.runbooks_dir,
        services=list(ctx.policy.services),
        slash_commands=set(services.registry.slash_commands()),
    )
    in_room = ctx.incident is not None and ctx.incident.channel_id == ctx.channel_id
    service = ctx.incident.service if ctx.incident is not None else None
    name = str(ctx.args.get("name") or "").strip().lower()
    post = ctx.reply if in_room else ctx.ephemeral
    found = runbooks.find(name, service) if name else None
    if found is not None:
        await post(f"Runbook: {found.title}", render_runbook(found))
        return
    if name and name.lstrip("#") not in ctx.policy.services:
        raise UserError(_unknown(runbooks, name, service))
    listed_service = name.lstrip("#") or service
    chosen = runbooks.for_service(listed_service) if listed_service else list(runbooks.runbooks.values())
    if not chosen:
        where = f"for `{listed_service}`" if listed_service else "at all"
        raise UserError(f"There are no runbooks {where} yet: add one to runbooks/ (see docs/writing-commands.md).")
    heading = f"*Runbooks for `{listed_service}`*" if listed_service else "*All runbooks*"
    if runbooks.problems:
        heading += "\n:warning: " + "; ".join(runbooks.problems[:3])
    await post(heading.replace("*", ""), render_list(chosen, heading))


def _unknown(runbooks: RunbookSet, name: str, service: str | None) -> str:
    names = sorted(runbooks.runbooks)
    short = [n.removeprefix(f"{service}-") for n in names if service and n.startswith(f"{service}-")]
    suggestion = closest(name, names + short)
    hint = f" — did you mean `/runbook {suggestion}`?" if suggestion else "."
    return f"No runbook called {name!r}{hint} Type `/runbook` to list them."
