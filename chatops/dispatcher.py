"""The one choke point every command goes through.

Transport acks first and hands an :class:`~chatops.transport.base.Invocation` here; the dispatcher then resolves
the command, parses its arguments against the policy in force, runs the handler under the spec's timeout and turns
the outcome into a reply: a :class:`~chatops.errors.UserError` becomes an ephemeral message as written; anything
else is logged with a correlation id and the user gets a short apology quoting that id. Commands run in a war room
are recorded on its timeline with their outcome.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from chatops.args import parse_args
from chatops.context import Context, Services, send_ephemeral
from chatops.errors import UserError
from chatops.help import render_help
from chatops.timeline.events import EventType, TimelineEvent
from chatops.transport.base import ChatError, Invocation

if TYPE_CHECKING:
    from chatops.incidents.model import Incident

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """Invocation → resolve → parse → run (timeout) → reply."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def handle(self, invocation: Invocation) -> str:
        """Run one invocation to completion; returns its outcome ("ok", "user_error", "timeout", "error")."""
        correlation_id = uuid.uuid4().hex[:10]
        registry = self.services.registry
        spec, rest = registry.resolve(invocation.command, invocation.text)
        first_word = invocation.text.strip().split(" ", 1)[0].lower()
        if spec is None or (first_word == "help" and spec.subcommand is None):
            await self._ephemeral(invocation, render_help(registry, invocation.command))
            return "help"
        if rest.strip().lower() == "help":
            await self._ephemeral(invocation, render_help(registry, invocation.command, spec))
            return "help"

        started = time.monotonic()
        incident = await self._incident_for(invocation.channel_id)
        outcome = "ok"
        detail = ""
        try:
            policy = self.services.policy.current
            args = parse_args(spec, rest, policy)
            ctx = Context(
                invocation=invocation,
                spec=spec,
                args=args,
                policy=policy,
                services=self.services,
                incident=incident,
                correlation_id=correlation_id,
            )
            await asyncio.wait_for(spec.handler(ctx), timeout=spec.timeout)
        except UserError as exc:
            outcome, detail = "user_error", str(exc)
            await self._ephemeral(invocation, str(exc))
        except TimeoutError:
            outcome, detail = "timeout", f"timed out after {spec.timeout:g}s"
            log.error("command timed out", extra={"command": spec.name, "correlation_id": correlation_id})
            await self._ephemeral(
                invocation,
                f"`{spec.name}` did not finish within {spec.timeout:g}s and was "
                f"stopped. Reference: `{correlation_id}`.",
            )
        except Exception:
            outcome, detail = "error", "internal error"
            log.exception("command failed", extra={"command": spec.name, "correlation_id": correlation_id})
            await self._ephemeral(
                invocation,
                f"Sorry — `{spec.name}` failed unexpectedly. The error is logged with reference `{correlation_id}`.",
            )
        if incident is not None:
            await self._record(invocation, incident, spec.name, outcome, detail, time.monotonic() - started)
        return outcome

    async def _incident_for(self, channel_id: str) -> Incident | None:
        try:
            return await self.services.incidents.by_channel(channel_id)
        except Exception:
            log.exception("could not look up the incident for a channel", extra={"channel": channel_id})
            return None

    async def _ephemeral(self, invocation: Invocation, text: str) -> None:
        try:
            await send_ephemeral(self.services.chat, invocation, text)
        except ChatError:
            log.exception("could not answer the user", extra={"user": invocation.user_id})

    async def _record(
        self, invocation: Invocation, incident: Incident, name: str, outcome: str, detail: str, seconds: float
    ) -> None:
        event = TimelineEvent(
            incident_id=incident.id,
            type=EventType.COMMAND,
            occurred_at=self.services.clock(),
            actor=invocation.user_id,
            source="slack",
            summary=f"{invocation.command} {invocation.text}".strip()[:200] + f" → {outcome}",
            payload={
                "command": name,
                "text": invocation.text,
                "outcome": outcome,
                "detail": detail,
                "seconds": round(seconds, 3),
            },
            dedup_key=f"command:{invocation.dedup_key}",
        )
        try:
            await self.services.sink.record(event)
        except Exception:
            log.exception("could not record the command on the timeline", extra={"incident": incident.id})
