"""The one choke point every command goes through.

Transport acks first and hands an :class:`~chatops.transport.base.Invocation` (a typed slash command) or an
:class:`~chatops.transport.base.Action` (a button click) here. For an invocation the dispatcher then

1. resolves the command (``/x help`` and unknown subcommands get generated help);
2. parses its arguments against the policy in force (errors: ephemeral, with usage and an example);
3. authorizes it with :func:`chatops.authz.authorize` (a denial: ephemeral with the reason);
4. asks for confirmation when a side-effect command was started from a button, or policy names it
   (``confirm.always``); a command typed with explicit arguments runs at once, read-only ones never ask;
5. runs the handler under the spec's timeout and turns the outcome into a reply: a
   :class:`~chatops.errors.UserError` becomes an ephemeral message as written; a timeout or anything else is
   logged with a correlation id and the user gets a short message quoting that id.

Every invocation in a war room — denied, confirmed, failed or fine — is a ``command`` event on its timeline.
Button values: ``chatops.run…`` carries a command line (runbook steps), ``chatops.confirm`` / ``chatops.cancel``
a confirmation token (:mod:`chatops.confirm`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from chatops.args import parse_args
from chatops.authz import Membership, authorize
from chatops.confirm import CANCEL_ACTION, CONFIRM_ACTION, ConfirmationStore, confirmation_blocks
from chatops.context import Context, Services, send_ephemeral
from chatops.errors import UserError
from chatops.help import render_help
from chatops.timeline.events import EventType, TimelineEvent
from chatops.transport.base import Action, Blocks, ChatError, Invocation, InvocationOrigin

if TYPE_CHECKING:
    from chatops.incidents.model import Incident
    from chatops.spec import CommandSpec

__all__ = ["RUN_ACTION", "Dispatcher", "Observer"]

log = logging.getLogger(__name__)

RUN_ACTION = "chatops.run"
"""Buttons whose ``action_id`` starts with this run the command line in their ``value`` (e.g. a runbook step)."""

Observer = Callable[[str, str], None]
"""Called with ``(dedup_key, outcome)`` when an invocation or action has been fully handled (used by tests)."""


class Dispatcher:
    """Invocation → resolve → parse → authorize → confirm? → run (timeout) → reply → record."""

    def __init__(self, services: Services, *, confirmations: ConfirmationStore | None = None) -> None:
        self.services = services
        self.confirmations = confirmations
        self.membership = Membership(services.chat)
        self.observers: list[Observer] = []

    # ------------------------------------------------------------------ slash commands

    async def handle(self, invocation: Invocation) -> str:
        """Run one invocation to completion; returns its outcome.

        Outcomes: ``ok``, ``help``, ``user_error``, ``denied``, ``confirmation_requested``, ``timeout``, ``error``.
        """
        if "\x00" in invocation.text:  # Postgres text cannot hold NUL; no person types one
            invocation = replace(invocation, text=invocation.text.replace("\x00", ""))
        try:
            outcome = await self._handle(invocation)
        except Exception:  # the dispatcher itself must never fail silently: log it and still answer
            correlation_id = uuid.uuid4().hex[:10]
            log.exception("dispatcher failed", extra={"command": invocation.command, "correlation_id": correlation_id})
            await self._ephemeral(
                invocation, f"Sorry — `{invocation.command}` failed unexpectedly. Reference: `{correlation_id}`."
            )
            outcome = "error"
        self._notify(invocation.dedup_key, outcome)
        return outcome

    async def _handle(self, invocation: Invocation) -> str:
        correlation_id = uuid.uuid4().hex[:10]
        registry = self.services.registry
        spec, rest = registry.resolve(invocation.command, invocation.text)
        first_word = invocation.text.strip().split(" ", 1)[0].lower()
        if spec is None or (first_word == "help" and spec.subcommand is None):
            unknown = first_word if spec is None and first_word and first_word != "help" else None
            await self._ephemeral(invocation, render_help(registry, invocation.command, unknown=unknown))
            return "help"
        if rest.strip().lower() == "help":
            await self._ephemeral(invocation, render_help(registry, invocation.command, spec))
            return "help"

        started = time.monotonic()
        incident = await self._incident_for(invocation.channel_id)
        outcome, detail = await self._run(invocation, spec, rest, incident, correlation_id)
        if incident is not None:
            await self._record(invocation, incident, spec.name, outcome, detail, time.monotonic() - started)
        elif outcome == "denied":
            log.info("command denied", extra={"command": spec.name, "user": invocation.user_id, "reason": detail})
        return outcome

    async def _run(
        self, invocation: Invocation, spec: CommandSpec, rest: str, incident: Incident | None, correlation_id: str
    ) -> tuple[str, str]:
        """Parse, authorize, maybe ask, run: ``(outcome, detail)``."""
        policy = self.services.policy.current
        try:
            args = parse_args(spec, rest, policy, now=self.services.clock())
        except UserError as exc:
            await self._ephemeral(invocation, str(exc))
            return "user_error", str(exc)
        decision = await authorize(
            policy.grants,
            spec.requires,
            command=spec.name,
            user_id=invocation.user_id,
            channel_id=invocation.channel_id,
            incident=incident,
            membership=self.membership,
        )
        if not decision.allowed:
            await self._ephemeral(invocation, f":no_entry: {decision.reason}")
            return "denied", decision.reason
        if self._needs_confirmation(invocation, spec):
            return await self._ask(invocation, spec, rest)
        ctx = Context(
            invocation=invocation,
            spec=spec,
            args=args,
            policy=policy,
            services=self.services,
            incident=incident,
            correlation_id=correlation_id,
        )
        try:
            await asyncio.wait_for(spec.handler(ctx), timeout=spec.timeout)
        except UserError as exc:
            await self._ephemeral(invocation, str(exc))
            return "user_error", str(exc)
        except TimeoutError:
            log.error("command timed out", extra={"command": spec.name, "correlation_id": correlation_id})
            await self._ephemeral(
                invocation,
                f"`{spec.name}` did not finish within {spec.timeout:g}s and was "
                f"stopped. Reference: `{correlation_id}`.",
            )
            return "timeout", f"timed out after {spec.timeout:g}s"
        except Exception:
            log.exception("command failed", extra={"command": spec.name, "correlation_id": correlation_id})
            await self._ephemeral(
                invocation,
                f"Sorry — `{spec.name}` failed unexpectedly. The error is logged with reference `{correlation_id}`.",
            )
            return "error", f"internal error ({correlation_id})"
        return "ok", ""

    def _needs_confirmation(self, invocation: Invocation, spec: CommandSpec) -> bool:
        if not spec.side_effects or invocation.origin == "confirmed":
            return False
        grants = self.services.policy.current.grants
        return (
            invocation.origin == "button"
            or grants.needs_confirmation(spec.name)
            or grants.needs_confirmation(spec.slash)
        )

    async def _ask(self, invocation: Invocation, spec: CommandSpec, rest: str) -> tuple[str, str]:
        if self.confirmations is None:
            text = f"`{spec.name}` needs a confirmation, and confirmations are not available here. Type it instead."
            await self._ephemeral(invocation, text)
            return "user_error", text
        grants = self.services.policy.current.grants
        question = await self.confirmations.ask(
            user_id=invocation.user_id,
            channel_id=invocation.channel_id,
            command=invocation.command,
            args_text=invocation.text,
            now=self.services.clock(),
            ttl=grants.confirm_ttl,
        )
        blocks = confirmation_blocks(question, spec.summary, grants.confirm_ttl)
        await self._ephemeral(invocation, f"Run `{question.command_line}`?", blocks)
        return "confirmation_requested", question.command_line

    # ------------------------------------------------------------------ buttons

    async def handle_action(self, action: Action) -> str:
        """Handle one chatops button click; returns the outcome (that of the command it ran, if any)."""
        if "\x00" in action.value:
            action = replace(action, value=action.value.replace("\x00", ""))
        try:
            outcome = await self._handle_action(action)
        except Exception:
            correlation_id = uuid.uuid4().hex[:10]
            log.exception("action failed", extra={"action": action.action_id, "correlation_id": correlation_id})
            await self._tell(action, f"Sorry — that button failed unexpectedly. Reference: `{correlation_id}`.")
            outcome = "error"
        self._notify(action.dedup_key, outcome)
        return outcome

    async def _handle_action(self, action: Action) -> str:
        if action.action_id.startswith(RUN_ACTION):
            command, _, text = action.value.strip().partition(" ")
            if not command.startswith("/") or not self.services.registry.subcommands(command):
                await self._tell(action, f"This button names no chatops command (`{action.value[:100]}`).")
                return "user_error"
            return await self._handle(self._invocation(action, command, text, "button"))
        if action.action_id in (CONFIRM_ACTION, CANCEL_ACTION):
            return await self._answer(action, confirm=action.action_id == CONFIRM_ACTION)
        log.info("unhandled button", extra={"action": action.action_id})
        return "ignored"

    async def _answer(self, action: Action, *, confirm: bool) -> str:
        if self.confirmations is None:
            await self._tell(action, "Confirmations are not available here.")
            return "user_error"
        answer = await self.confirmations.answer(
            action.value,
            user_id=action.user_id,
            channel_id=action.channel_id,
            confirm=confirm,
            now=self.services.clock(),
        )
        question = answer.question
        if answer.outcome == "cancelled" and question is not None:
            await self._tell(action, f"Cancelled: `{question.command_line}` did not run.")
            return "cancelled"
        if answer.outcome == "confirmed" and question is not None:
            return await self._handle(self._invocation(action, question.command, question.args_text, "confirmed"))
        line = f"`{question.command_line}`" if question is not None else "That command"
        messages = {
            "expired": f"{line} was not run: the confirmation expired. Click the step again to get a fresh one.",
            "not_yours": "That confirmation belongs to someone else (or another channel): run the step yourself.",
            "answered": f"{line} was already confirmed or cancelled.",
            "unknown": "That confirmation is unknown here (it may have been cleaned up). Click the step again.",
        }
        await self._tell(action, messages[answer.outcome])
        return "user_error"

    @staticmethod
    def _invocation(action: Action, command: str, text: str, origin: InvocationOrigin) -> Invocation:
        return Invocation(
            command=command,
            text=text.strip(),
            user_id=action.user_id,
            user_name=action.user_name,
            channel_id=action.channel_id,
            channel_name="",
            trigger_id=action.trigger_id,
            dedup_key=action.dedup_key,
            response_url=action.response_url,
            origin=origin,
        )

    async def _tell(self, action: Action, text: str) -> None:
        await self._ephemeral(self._invocation(action, "", "", "button"), text)

    # ------------------------------------------------------------------ plumbing

    def _notify(self, key: str, outcome: str) -> None:
        for observer in list(self.observers):
            try:
                observer(key, outcome)
            except Exception:
                log.exception("dispatcher observer failed")

    async def _incident_for(self, channel_id: str) -> Incident | None:
        try:
            return await self.services.incidents.by_channel(channel_id)
        except Exception:
            log.exception("could not look up the incident for a channel", extra={"channel": channel_id})
            return None

    async def _ephemeral(self, invocation: Invocation, text: str, blocks: Blocks | None = None) -> None:
        try:
            await send_ephemeral(self.services.chat, invocation, text, blocks)
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
                "origin": invocation.origin,
                "seconds": round(seconds, 3),
            },
            dedup_key=f"command:{invocation.dedup_key}",
        )
        try:
            await self.services.sink.record(event)
        except Exception:
            log.exception("could not record the command on the timeline", extra={"incident": incident.id})
