"""Slack Socket Mode transport (slack-bolt ``AsyncApp`` + ``AsyncSocketModeHandler``).

This module only translates: a slash-command payload becomes an :class:`~chatops.transport.base.Invocation`
handed to the dispatcher, a button click (``block_actions``) becomes an :class:`~chatops.transport.base.Action`
handed to the action sink (the dispatcher again: runbook steps and confirmations), events go to the event sink.
Every envelope is acked *before* any work starts (Slack's 3 s deadline); the work then runs as a tracked task.
Bolt sends no ack when a listener raises or none matches, so the socket handler below acks those envelopes
itself — an unacked envelope would only come back as a redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from chatops.errors import ConfigError
from chatops.tasks import TaskTracker, TrackerClosed
from chatops.transport.base import Action, Invocation

__all__ = ["SlackTransport", "actions_from_payload", "invocation_from_payload"]

log = logging.getLogger(__name__)

CommandSink = Callable[[Invocation], Awaitable[Any]]
EventSink = Callable[[dict[str, Any]], Awaitable[Any]]
ActionSink = Callable[[Action], Awaitable[Any]]
ACTION_PREFIX = "chatops."
"""Only buttons whose ``action_id`` starts with this are chatops's own (others are acked and ignored)."""


def invocation_from_payload(body: dict[str, Any], *, envelope_id: str = "", retry_attempt: int = 0) -> Invocation:
    """Translate a slash-command payload. The trigger id is the dedup key: it survives redelivery."""
    trigger_id = str(body.get("trigger_id") or "")
    return Invocation(
        command=str(body.get("command", "")),
        text=str(body.get("text", "")),
        user_id=str(body.get("user_id", "")),
        user_name=str(body.get("user_name", "") or body.get("user_id", "")),
        channel_id=str(body.get("channel_id", "")),
        channel_name=str(body.get("channel_name", "")),
        trigger_id=trigger_id,
        dedup_key=trigger_id or f"{body.get('user_id')}:{body.get('channel_id')}:{body.get('text')}",
        envelope_id=envelope_id,
        retry_attempt=retry_attempt,
        response_url=body.get("response_url"),
    )


def actions_from_payload(body: dict[str, Any]) -> list[Action]:
    """Translate a ``block_actions`` payload: one :class:`Action` per chatops button in it (usually one)."""
    user = body.get("user") or {}
    channel = body.get("channel") or {}
    container = body.get("container") or {}
    trigger_id = str(body.get("trigger_id") or "")
    out = []
    for index, action in enumerate(body.get("actions") or []):
        action_id = str(action.get("action_id", ""))
        if not action_id.startswith(ACTION_PREFIX):
            continue
        out.append(
            Action(
                action_id=action_id,
                value=str(action.get("value", "")),
                user_id=str(user.get("id", "")),
                user_name=str(user.get("username") or user.get("name") or user.get("id", "")),
                channel_id=str(channel.get("id") or container.get("channel_id") or ""),
                trigger_id=trigger_id,
                dedup_key=f"{trigger_id or action.get('action_ts', '')}:{index}",
                message_ts=container.get("message_ts") or (body.get("message") or {}).get("ts"),
                response_url=body.get("response_url"),
            )
        )
    return out


class _AckingHandler(AsyncSocketModeHandler):
    """Bolt's handler, plus: ack envelopes Bolt left unanswered (no listener / listener error), unless closing."""

    def __init__(self, *args: Any, accepting: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepting = accepting

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        if not self._accepting():
            # Shutting down: leave it unacked so Slack redelivers it to a live connection.
            return
        started = time.time()
        response = await run_async_bolt_app(self.app, req)
        if response.status == 200:
            await send_async_response(client, req, response, started)
            return
        log.warning(
            "envelope not handled by a listener; acking it anyway", extra={"type": req.type, "status": response.status}
        )
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


class SlackTransport:
    """Owns the Bolt app and the Socket Mode connection."""

    def __init__(
        self,
        *,
        web: AsyncWebClient,
        app_token: str,
        tasks: TaskTracker,
        on_command: CommandSink,
        on_event: EventSink | None = None,
        on_action: ActionSink | None = None,
        ping_interval: float = 10.0,
    ) -> None:
        self.web = web
        self.tasks = tasks
        self._app_token = app_token
        self._on_command = on_command
        self._on_event = on_event
        self._on_action = on_action
        self._ping_interval = ping_interval
        self._handler: _AckingHandler | None = None
        self.app = self._build_app()

    def _build_app(self) -> AsyncApp:
        app = AsyncApp(
            client=self.web,
            request_verification_enabled=False,
            ignoring_self_events_enabled=False,
            url_verification_enabled=False,
            process_before_response=True,  # listeners only ack and spawn: ack as soon as they return
        )

        @app.command(re.compile(".*"))
        async def on_command(ack: AsyncAck, body: dict[str, Any], request: Any) -> None:
            await ack()
            invocation = invocation_from_payload(body, retry_attempt=_retry_attempt(request))
            self._spawn(self._on_command(invocation), f"command {invocation.command}")

        @app.event(re.compile(".*"))
        async def on_event(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            if self._on_event is not None:
                self._spawn(self._on_event(body), f"event {body.get('event', {}).get('type')}")

        @app.action(re.compile(".*"))
        async def on_action(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            if self._on_action is None:
                return
            for action in actions_from_payload(body):
                self._spawn(self._on_action(action), f"action {action.action_id}")

        @app.error
        async def on_error(error: Exception, body: dict[str, Any]) -> None:
            log.error("slack listener failed", exc_info=error, extra={"payload_type": body.get("type")})

        return app

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        try:
            self.tasks.spawn(coro, name=name)  # type: ignore[arg-type]
        except TrackerClosed:
            log.warning("work arrived during shutdown and was dropped after ack", extra={"task": name})

    async def start(self, *, timeout: float = 15.0) -> None:
        """Connect Socket Mode. A bad app token or an unreachable Slack fails with a clear message, not a hang."""
        try:
            await self.web.apps_connections_open(app_token=self._app_token)
        except SlackApiError as exc:
            raise ConfigError(
                [
                    f"SLACK_APP_TOKEN was refused by apps.connections.open: "
                    f"{exc.response.get('error', exc.response.status_code)}"
                ]
            ) from exc
        self._handler = _AckingHandler(
            self.app,
            app_token=self._app_token,
            web_client=self.web,
            ping_interval=self._ping_interval,
            accepting=lambda: not self.tasks.closing,
        )
        try:
            await asyncio.wait_for(self._handler.connect_async(), timeout=timeout)  # type: ignore[no-untyped-call]
        except TimeoutError as exc:
            raise ConfigError([f"could not open the Socket Mode connection within {timeout:g}s"]) from exc

    async def stop(self) -> None:
        """Close the socket (stop receiving work)."""
        if self._handler is not None:
            await self._handler.close_async()  # type: ignore[no-untyped-call]
            self._handler = None


def _retry_attempt(request: Any) -> int:
    headers = getattr(request, "headers", {}) or {}
    values = headers.get("x-slack-retry-num") or ["0"]
    try:
        return int(values[0])
    except (TypeError, ValueError):
        return 0
