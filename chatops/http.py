"""The daemon's HTTP side (aiohttp): health, readiness, and the routes other parts register.

``/healthz`` answers 200 while the process runs. ``/readyz`` answers 200 only when every readiness check passes
(Postgres reachable, Socket Mode connected, policy loaded) and 503 with the failing checks otherwise.

Webhooks and the link redirector live in their own modules and are registered by the composition root with
:meth:`HttpServer.add_routes` before :meth:`HttpServer.start` (aiohttp freezes the router once it serves).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

__all__ = ["HttpServer", "ReadinessCheck"]

ReadinessCheck = Callable[[], Awaitable[bool]]


class HttpServer:
    """Owns the aiohttp runner for the daemon's HTTP endpoints."""

    def __init__(self, host: str, port: int, checks: dict[str, ReadinessCheck]) -> None:
        self.host = host
        self.port = port
        self.checks = checks
        self.app = web.Application()
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/readyz", self._readyz)
        self._runner: web.AppRunner | None = None

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """Serve ``routes`` (``web.post(path, handler)``, …) too; only before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("routes must be added before the HTTP server starts")
        self.app.router.add_routes(list(routes))

    @property
    def address(self) -> str:
        """``host:port`` actually bound (after :meth:`start`; the port is real even when configured as 0)."""
        return f"{self.host}:{self.port}"

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        results: dict[str, bool] = {}
        for name, check in self.checks.items():
            try:
                results[name] = await check()
            except Exception:
                results[name] = False
        ready = all(results.values())
        return web.json_response({"ready": ready, "checks": results}, status=200 if ready else 503)

    async def start(self) -> None:
        """Bind and serve; the bound port is written back to ``self.port`` (useful with port 0)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        for address in self._runner.addresses:
            self.port = int(address[1])
            break

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
