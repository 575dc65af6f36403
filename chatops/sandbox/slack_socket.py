"""Socket Mode side of the Slack sandbox (PROTOCOLS §1).

:class:`SocketHub` serves the websocket URLs that ``apps.connections.open`` hands out: each ticket is single use
(a second connect with it is refused with HTTP 401), the first frame is ``hello``, more than ``max_connections``
sockets get a ``too_many_websockets`` disconnect frame and are closed, and the server pings. Every payload is
sent as an :class:`Envelope` to **one** connected socket, round-robin. An envelope that is not acked within
``ack_timeout`` seconds is sent again as a *new* envelope (new ``envelope_id``, ``retry_attempt`` + 1,
``retry_reason`` ``"timeout"``, same payload) up to ``max_redeliveries`` times, unless some envelope of the same
delivery was acked meanwhile. Payloads dispatched while no socket is connected wait and go to the next socket
that says hello.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import secrets
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

__all__ = ["MAX_CONNECTIONS", "Envelope", "SocketHub"]

MAX_CONNECTIONS = 10
SOCKET_HOST = "applink-sandbox"


@dataclass(eq=False)
class Envelope:
    """One Socket Mode envelope as sent to the app (every redelivery is a separate envelope).

    ``sent_at`` and ``acked_at`` are ``time.monotonic()`` values; ``sent_at`` is when the envelope was written to
    a socket (when it was queued, while it still waits for one). ``delivery_id`` is shared by an envelope and its
    redeliveries; ``connection_id`` says which socket got it.
    """

    envelope_id: str
    type: str
    payload: dict[str, Any]
    retry_attempt: int = 0
    sent_at: float = 0.0
    acked_at: float | None = None
    ack_payload: dict[str, Any] | None = None
    retry_reason: str = ""
    accepts_response_payload: bool = False
    delivery_id: str = ""
    connection_id: int | None = None

    @property
    def ack_latency(self) -> float | None:
        """Seconds from sending to the ack, or ``None`` while unacked."""
        return None if self.acked_at is None else self.acked_at - self.sent_at

    def frame(self) -> dict[str, Any]:
        """The JSON frame written to the socket."""
        frame: dict[str, Any] = {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "accepts_response_payload": self.accepts_response_payload,
            "payload": self.payload,
        }
        if self.type == "events_api" or self.retry_attempt:
            frame["retry_attempt"] = self.retry_attempt
            frame["retry_reason"] = self.retry_reason
        return frame


@dataclass(eq=False)
class _Connection:
    id: int
    ws: web.WebSocketResponse
    ready: bool = False
    outbox: asyncio.Queue[Envelope] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None


@dataclass(eq=False)
class _Delivery:
    done: asyncio.Event = field(default_factory=asyncio.Event)
    acked: Envelope | None = None


class SocketHub:
    """Tickets, sockets, envelopes, acks and redelivery; see the module docstring."""

    def __init__(
        self,
        *,
        app_id: str,
        ack_timeout: float,
        max_redeliveries: int,
        max_connections: int = MAX_CONNECTIONS,
        ping_interval: float | None = 10.0,
        connection_time: int = 18060,
    ) -> None:
        self.app_id = app_id
        self.ack_timeout = ack_timeout
        self.max_redeliveries = max_redeliveries
        self.max_connections = max_connections
        self.ping_interval = ping_interval
        self.connection_time = connection_time
        #: Every envelope dispatched, redeliveries included, in order.
        self.envelopes: list[Envelope] = []
        #: Ack frames that matched no envelope, or repeated an ack.
        self.unknown_acks: list[dict[str, Any]] = []
        #: Sockets that got their ``hello``, over the hub's life.
        self.connections_opened = 0
        #: Sockets turned away with ``too_many_websockets``.
        self.connections_refused = 0
        #: Called once per delivery, with the first envelope of it that was acked.
        self.on_ack: Callable[[Envelope], None] | None = None
        self._tickets: set[str] = set()
        self._conns: list[_Connection] = []
        self._next_conn = 0
        self._rr = 0
        self._pending: deque[Envelope] = deque()
        self._by_id: dict[str, Envelope] = {}
        self._deliveries: dict[str, _Delivery] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._closing = False

    # ------------------------------------------------------------------ connections

    @property
    def connection_count(self) -> int:
        """Open sockets that got their ``hello``."""
        return sum(1 for c in self._conns if c.ready and not c.ws.closed)

    def issue_ticket(self) -> str:
        """A fresh single-use ticket for ``/socket/<ticket>``."""
        ticket = secrets.token_urlsafe(18)
        self._tickets.add(ticket)
        return ticket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The ``GET /socket/{ticket}`` websocket endpoint."""
        ticket = request.match_info["ticket"]
        if self._closing or ticket not in self._tickets:
            return web.Response(status=401, text="invalid_ticket: call apps.connections.open for a new URL")
        ws = web.WebSocketResponse(heartbeat=self.ping_interval, timeout=2.0)
        if not ws.can_prepare(request).ok:
            return web.Response(status=400, text="websocket upgrade expected")
        self._tickets.discard(ticket)
        await ws.prepare(request)
        if len(self._conns) >= self.max_connections:
            self.connections_refused += 1
            await self._send_quietly(ws, self._disconnect_frame("too_many_websockets"))
            await ws.close()
            return ws
        self._next_conn += 1
        conn = _Connection(self._next_conn, ws)
        self._conns.append(conn)
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": len(self._conns),
                    "debug_info": {
                        "host": SOCKET_HOST,
                        "build_number": 1,
                        "approximate_connection_time": self.connection_time,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            conn.ready = True
            self.connections_opened += 1
            conn.writer = asyncio.create_task(self._write_loop(conn))
            self._flush_pending()
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self._on_frame(message.data)
        except ConnectionError:
            pass
        finally:
            self._drop(conn)
        return ws

    async def disconnect(self, reason: str, *, close: bool = True) -> None:
        """Send ``{"type":"disconnect","reason":reason}`` to every socket, then (by default) close them."""
        conns = list(self._conns)
        for conn in conns:
            if close:
                conn.ready = False
                self._requeue(conn)
            await self._send_quietly(conn.ws, self._disconnect_frame(reason))
        if close:
            await asyncio.gather(*(conn.ws.close(code=WSCloseCode.GOING_AWAY) for conn in conns))

    async def close(self) -> None:
        """Stop redeliveries and close every socket (the server is going away)."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        conns = list(self._conns)
        for conn in conns:
            conn.ready = False
        await asyncio.gather(*(conn.ws.close(code=WSCloseCode.GOING_AWAY) for conn in conns))
        for conn in conns:
            self._drop(conn)

    def resume(self) -> None:
        """Accept sockets again after :meth:`close` (the server was restarted)."""
        self._closing = False

    def _disconnect_frame(self, reason: str) -> dict[str, Any]:
        return {"type": "disconnect", "reason": reason, "debug_info": {"host": SOCKET_HOST}}

    @staticmethod
    async def _send_quietly(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError):
            await ws.send_json(frame)

    def _drop(self, conn: _Connection) -> None:
        conn.ready = False
        if conn in self._conns:
            self._conns.remove(conn)
        if conn.writer is not None and conn.writer is not asyncio.current_task():
            conn.writer.cancel()
        self._requeue(conn)

    def _requeue(self, conn: _Connection) -> None:
        """Route envelopes queued for ``conn`` but never written to another socket."""
        while not conn.outbox.empty():
            self._route(conn.outbox.get_nowait())

    # ------------------------------------------------------------------ envelopes

    def dispatch(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int = 0,
        retry_reason: str = "",
        delivery_id: str | None = None,
    ) -> Envelope:
        """Create an envelope and queue it for one socket; returns at once."""
        envelope = Envelope(
            envelope_id=str(uuid.uuid4()),
            type=type_,
            payload=payload,
            retry_attempt=retry_attempt,
            sent_at=time.monotonic(),
            retry_reason=retry_reason,
            accepts_response_payload=accepts_response_payload,
            delivery_id=delivery_id or str(uuid.uuid4()),
        )
        self._deliveries.setdefault(envelope.delivery_id, _Delivery())
        self._by_id[envelope.envelope_id] = envelope
        self.envelopes.append(envelope)
        self._route(envelope)
        return envelope

    def redeliver(self, envelope: Envelope, *, reason: str = "timeout") -> Envelope:
        """Send ``envelope``'s payload again in a new envelope with ``retry_attempt`` + 1."""
        return self.dispatch(
            envelope.type,
            copy.deepcopy(envelope.payload),
            accepts_response_payload=envelope.accepts_response_payload,
            retry_attempt=envelope.retry_attempt + 1,
            retry_reason=reason,
            delivery_id=envelope.delivery_id,
        )

    async def wait_acked(self, envelope: Envelope, timeout: float) -> Envelope:
        """Wait until ``envelope`` or one of its redeliveries is acked; return the acked one."""
        delivery = self._deliveries[envelope.delivery_id]
        try:
            async with asyncio.timeout(timeout):
                await delivery.done.wait()
        except TimeoutError:
            attempts = [e for e in self.envelopes if e.delivery_id == envelope.delivery_id]
            raise TimeoutError(
                f"{envelope.type} envelope {envelope.envelope_id} was not acked within {timeout}s "
                f"({len(attempts)} attempt(s), {self.connection_count} socket(s) connected, "
                f"{len(self._pending)} envelope(s) waiting for a socket)"
            ) from None
        assert delivery.acked is not None
        return delivery.acked

    def unacked(self) -> list[Envelope]:
        """Envelopes never acked (a redelivered envelope stays here even when its redelivery was acked)."""
        return [e for e in self.envelopes if e.acked_at is None]

    def _route(self, envelope: Envelope) -> None:
        ready = [c for c in self._conns if c.ready and not c.ws.closed]
        if not ready:
            self._pending.append(envelope)
            return
        conn = ready[self._rr % len(ready)]
        self._rr += 1
        conn.outbox.put_nowait(envelope)

    def _flush_pending(self) -> None:
        while self._pending:
            self._route(self._pending.popleft())

    async def _write_loop(self, conn: _Connection) -> None:
        while True:
            envelope = await conn.outbox.get()
            if not conn.ready or conn.ws.closed:
                self._route(envelope)
                continue
            envelope.sent_at = time.monotonic()
            envelope.connection_id = conn.id
            self._arm(envelope)
            try:
                await conn.ws.send_str(json.dumps(envelope.frame()))
            except ConnectionError:
                return  # lost with the socket; the ack timer redelivers it

    def _arm(self, envelope: Envelope) -> None:
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        self._timers[envelope.envelope_id] = loop.call_later(self.ack_timeout, self._on_ack_timeout, envelope)

    def _on_ack_timeout(self, envelope: Envelope) -> None:
        self._timers.pop(envelope.envelope_id, None)
        delivery = self._deliveries[envelope.delivery_id]
        if self._closing or envelope.acked_at is not None or delivery.acked is not None:
            return
        if envelope.retry_attempt < self.max_redeliveries:
            self.redeliver(envelope)

    def _on_frame(self, data: str) -> None:
        try:
            frame = json.loads(data)
        except ValueError:
            return
        if not isinstance(frame, dict) or "envelope_id" not in frame:
            return
        envelope = self._by_id.get(str(frame["envelope_id"]))
        if envelope is None or envelope.acked_at is not None:
            self.unknown_acks.append(frame)
            return
        envelope.acked_at = time.monotonic()
        payload = frame.get("payload")
        envelope.ack_payload = payload if isinstance(payload, dict) else None
        timer = self._timers.pop(envelope.envelope_id, None)
        if timer is not None:
            timer.cancel()
        delivery = self._deliveries[envelope.delivery_id]
        if delivery.acked is None:
            delivery.acked = envelope
            delivery.done.set()
            if self.on_ack is not None:
                self.on_ack(envelope)
