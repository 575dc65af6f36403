"""Edits of the pinned war-room summary after the declaration: one read-modify-write under the summary locks.

Every editor but the declaration's own post and final refresh (``/escalate``, ``/incident sev``,
``/incident resolve``) goes through :func:`edit_summary`: hold :meth:`Services.summary_edit`, read the message as
Slack holds it, change its blocks, ``chat.update``, then ``bump()`` — so edits never interleave and the
declaration's refresh knows to read the message back (see ``docs/architecture.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatops.context import Services
    from chatops.incidents.model import Incident

__all__ = ["SummaryMissing", "edit_summary"]

Blocks = list[dict[str, Any]]


class SummaryMissing(Exception):
    """The incident has no pinned summary to edit (never posted, or deleted)."""


async def edit_summary(services: Services, incident: Incident, change: Callable[[Blocks], Blocks]) -> None:
    """Apply ``change`` to the pinned summary's blocks. Raises :class:`SummaryMissing`, ``ChatError`` or a Postgres
    error; an update that may have reached Slack is counted anyway (a needless read later, never a lost edit)."""
    channel = incident.channel_id
    if not channel:
        raise SummaryMissing("no war room")
    async with services.summary_edit(incident.id) as held:
        ts = held.ts
        if not ts:
            raise SummaryMissing("the summary was never posted")
        current = await services.chat.fetch_message(channel, ts)
        if current is None or current.blocks is None:
            raise SummaryMissing("the pinned summary is gone")
        failed: Exception | None = None
        try:
            await services.chat.update_message(channel, ts, current.text, change(current.blocks))
        except Exception as exc:  # maybe applied (a timeout after Slack took it): count it anyway
            failed = exc
        await held.bump()
    if failed is not None:
        raise failed
