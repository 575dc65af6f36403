"""Plumbing shared by the HTTP stand-ins (PagerDuty, Zoom): the call log, fault injection and the lifecycle.

:class:`RecordingSandbox` serves an :mod:`aiohttp` app on the test's loop (``async with Sandbox(...) as s``),
optionally over TLS. Its middleware delays each request by the configured latency, reads the body (JSON by
default), answers from the :class:`FaultInjector` when an injection matches, else calls the subclass's
:meth:`~RecordingSandbox._respond`, and records every request with its final status in ``calls``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from chatops.sandbox.tls import SandboxTLS

__all__ = ["BODY_KEY", "FaultInjector", "Handler", "Injection", "RecordedCall", "RecordingSandbox"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BODY_KEY = web.RequestKey("sandbox_body", object)
"""Where the middleware stores the decoded request body (None when there was none or it was malformed)."""


@dataclass(frozen=True)
class RecordedCall:
    """One request as the stand-in saw it; ``headers`` keys are lower-cased, ``body`` is the decoded body or None."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    status: int
    at: float

    @classmethod
    def of(cls, request: web.Request, body: Any, status: int) -> RecordedCall:
        """The record of ``request`` answered with ``status``, stamped with :func:`time.monotonic` now."""
        return cls(
            method=request.method,
            path=request.path,
            query={k: request.query.getall(k) for k in request.query},
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            status=status,
            at=time.monotonic(),
        )


@dataclass
class Injection:
    """A canned error status for the next ``remaining`` requests matching ``method`` and ``path_prefix``."""

    status: int
    remaining: int
    method: str | None
    path_prefix: str
    retry_after: int | None

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method.upper() == method)
            and path.startswith(self.path_prefix)
        )

    def headers(self) -> dict[str, str]:
        """``Retry-After`` when one was asked for."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class FaultInjector:
    """Canned error statuses and an added latency, consulted by :class:`RecordingSandbox` on every request."""

    def __init__(self) -> None:
        self._injections: list[Injection] = []
        self.latency = 0.0

    def inject(self, injection: Injection) -> None:
        """Add ``injection`` after those already queued (the first matching one answers)."""
        self._injections.append(injection)

    def set_latency(self, seconds: float) -> None:
        self.latency = max(0.0, seconds)

    async def delay(self) -> None:
        """Sleep for the configured latency (not at all when it is zero)."""
        if self.latency:
            await asyncio.sleep(self.latency)

    def take(self, method: str, path: str) -> Injection | None:
        """Use up one request of the first injection matching ``method``/``path``; None when none matches."""
        for inj in self._injections:
            if inj.matches(method, path):
                inj.remaining -= 1
                return inj
        return None


class RecordingSandbox:
    """Base of the HTTP stand-ins: lifecycle, recording/latency/injection middleware, ``inject``/``set_latency``.

    Subclasses add their routes in :meth:`_add_routes`, answer in :meth:`_respond`, shape injected errors in
    :meth:`_injected_body` and may decode other body types in :meth:`_decode_body`.
    """

    def __init__(self, tls: SandboxTLS | None) -> None:
        self._tls = tls
        self._faults = FaultInjector()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.calls: list[RecordedCall] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0 = any free port), over TLS when the sandbox has one; sets :attr:`url`."""
        app = web.Application(middlewares=[self._middleware])
        self._add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ssl_context = self._tls.server_ssl_context() if self._tls is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        self._runner = runner
        scheme = "https" if self._tls is not None else "http"
        self.url = f"{scheme}://{host}:{runner.addresses[0][1]}"

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------------------------ controls

    def inject(
        self,
        status: int,
        *,
        times: int = 1,
        method: str | None = None,
        path_prefix: str = "",
        retry_after: int | None = None,
    ) -> None:
        """Answer ``status`` to the next ``times`` requests matching ``method``/``path_prefix``.

        Injections are checked before anything else (authentication, body validation); a ``Retry-After``
        header is sent when ``retry_after`` is given. The body is the service's error shape (see the module).
        """
        self._faults.inject(Injection(status, times, method, path_prefix, retry_after))

    def set_latency(self, seconds: float) -> None:
        """Delay every response by ``seconds``."""
        self._faults.set_latency(seconds)

    # -------------------------------------------------------------- middleware

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        await self._faults.delay()
        body, malformed = await self._read_body(request)
        request[BODY_KEY] = body
        injected = self._faults.take(request.method, request.path)
        response: web.StreamResponse
        if injected is not None:
            response = web.json_response(
                self._injected_body(injected.status),
                status=injected.status,
                headers=injected.headers(),
            )
        else:
            response = await self._respond(request, handler, malformed)
        self.calls.append(RecordedCall.of(request, body, response.status))
        return response

    async def _read_body(self, request: web.Request) -> tuple[Any, bool]:
        """``(body, malformed)``: ``(None, False)`` for an empty body, else :meth:`_decode_body`."""
        if not request.can_read_body:
            return None, False
        raw = await request.read()
        if not raw:
            return None, False
        return await self._decode_body(request, raw)

    async def _decode_body(self, request: web.Request, raw: bytes) -> tuple[Any, bool]:
        """Decode a non-empty body as JSON; ``(None, True)`` when it is not JSON."""
        try:
            return json.loads(raw), False
        except ValueError:
            return None, True

    # ------------------------------------------------------------ for subclasses

    def _add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _respond(self, request: web.Request, handler: Handler, malformed: bool) -> web.StreamResponse:
        """Answer a request no injection matched; ``malformed`` is true when the body could not be decoded."""
        raise NotImplementedError

    def _injected_body(self, status: int) -> Any:
        """The JSON body of an injected ``status`` response."""
        raise NotImplementedError
