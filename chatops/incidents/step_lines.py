"""Steps of a lifecycle command that report as lines of its reply: one failing never stops the others."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from chatops.context import Context

__all__ = ["step_line"]

log = logging.getLogger(__name__)


async def step_line(ctx: Context, flow: str, what: str, work: Awaitable[str]) -> str:
    """The line ``work`` returns for the reply; an unexpected failure becomes a line too (logged with the
    correlation id), so the other steps of ``flow`` (``resolve``, ``severity change``) carry on."""
    try:
        return await work
    except Exception as exc:
        log.exception(f"{flow} step crashed", extra={"step": what, "correlation_id": ctx.correlation_id})
        return (
            f":warning: {what}: failed unexpectedly ({type(exc).__name__}, ref `{ctx.correlation_id}`) — do it by hand"
        )
