"""The composition root: builds every long-lived part once and owns their start and stop.

Start order: policy (fail fast on a bad policy) → command registry → Postgres (embedded unless DATABASE_URL) and
migrations → Slack Web API (auth.test) → integrations → HTTP → Socket Mode. Stop order reverses it, and SIGTERM
first stops taking work (the socket is closed, so Slack redelivers anything new elsewhere), then drains in-flight
work for ``CHATOPS_SHUTDOWN_TIMEOUT`` seconds, then cancels what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from chatops.confirm import ConfirmationStore
from chatops.context import Services
from chatops.db.embedded import EmbeddedPostgres
from chatops.db.migrate import migrate
from chatops.db.pool import create_pool
from chatops.dispatcher import Dispatcher
from chatops.errors import ConfigError
from chatops.http import HttpServer
from chatops.incidents.store import IncidentStore
from chatops.integrations.pagerduty import PagerDutyClient
from chatops.integrations.prometheus import PrometheusClient
from chatops.integrations.zoom import ZoomClient
from chatops.links import Links, load_link_key
from chatops.policy.store import PolicyStore
from chatops.registry import Registry
from chatops.render.pool import default_pool
from chatops.settings import Settings
from chatops.sources.k8s_deploys import deploy_watcher
from chatops.sources.routes import HttpSources, http_sources
from chatops.sources.slack_events import SlackEventRecorder
from chatops.tasks import TaskTracker
from chatops.timeline.archive import archive_periodically
from chatops.timeline.spool import Spool
from chatops.timeline.store import TimelineStore
from chatops.timeline.writer import TimelineWriter
from chatops.transport.base import ChatError
from chatops.transport.slack import SlackTransport
from chatops.transport.slack_api import SlackChat

__all__ = ["Daemon", "utcnow"]

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """The daemon's clock (UTC, timezone-aware)."""
    return datetime.now(UTC)


class Daemon:
    """One chatops process. ``await start()``, then ``await stop()`` (or ``run_until_signal()``)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        slack_tier_limits: dict[int, int] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._slack_tier_limits = slack_tier_limits
        self._stack = contextlib.AsyncExitStack()
        self._background: list[asyncio.Task[Any]] = []
        self.services: Services | None = None
        self.http: HttpServer | None = None
        self.transport: SlackTransport | None = None
        self.dispatcher: Dispatcher | None = None
        self.embedded: EmbeddedPostgres | None = None
        self.pool: asyncpg.Pool | None = None
        self.writer: TimelineWriter | None = None
        self.sources: HttpSources | None = None

    async def start(self) -> None:
        """Bring everything up; raises ConfigError with one line per problem when it cannot."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        s = self.settings
        assert s.slack_bot_token is not None and s.slack_app_token is not None, "Settings.from_env checks these"
        policy = PolicyStore(s.policy_dir, on_refused=self._policy_refused)
        policy.load_initial()
        registry = Registry.discover(s.commands_dir)
        log.info("commands loaded", extra={"commands": [spec.name for spec in registry]})

        dsn = s.database_url.value if s.database_url else await self._start_embedded()
        try:
            self.pool = await create_pool(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            raise ConfigError(
                [f"cannot connect to Postgres ({type(exc).__name__}: {exc}); check DATABASE_URL"]
            ) from exc
        self._stack.push_async_callback(self.pool.close)
        applied = await migrate(self.pool)
        if applied:
            log.info("database migrated", extra={"versions": applied})

        session = aiohttp.ClientSession()
        self._stack.push_async_callback(session.close)
        chat = SlackChat.create(
            token=s.slack_bot_token.value,
            base_url=s.slack_api_url,
            session=session,
            tier_limits=self._slack_tier_limits,
        )
        try:
            await chat.start()
        except ChatError as exc:
            raise ConfigError([f"SLACK_BOT_TOKEN was refused by auth.test: {exc.code}"]) from exc

        pagerduty = None
        if s.pagerduty_api_key is not None and s.pagerduty_from is not None:
            pagerduty = PagerDutyClient(
                api_key=s.pagerduty_api_key.value, from_email=s.pagerduty_from, base_url=s.pagerduty_api_url
            )
            self._stack.callback(pagerduty.close)
        zoom = None
        if s.zoom_enabled:
            assert s.zoom_account_id and s.zoom_client_id and s.zoom_client_secret
            zoom = ZoomClient(
                account_id=s.zoom_account_id,
                client_id=s.zoom_client_id,
                client_secret=s.zoom_client_secret.value,
                api_url=s.zoom_api_url,
                oauth_url=s.zoom_oauth_url,
                session=session,
            )
            self._stack.push_async_callback(zoom.aclose)
        prometheus = None
        if s.prometheus_url is not None:
            prometheus = PrometheusClient(s.prometheus_url, query_timeout=s.prometheus_timeout)
            self._stack.callback(prometheus.close)
            # Charts render in a worker process: start it now so the first /dashboard skips its imports.
            charts = default_pool()
            charts.warm_up()
            self._stack.callback(charts.shutdown)
        log.info(
            "integrations",
            extra={"pagerduty": pagerduty is not None, "zoom": zoom is not None, "prometheus": prometheus is not None},
        )

        tasks = TaskTracker()
        timeline = TimelineStore(self.pool)
        # Closed after the HTTP side and the Socket Mode transport (the exit stack unwinds in reverse) and before
        # the pool: everything producers handed over is committed, or spooled when Postgres is down.
        self.writer = TimelineWriter(timeline, Spool(s.data_dir / "timeline"), clock=self.clock)
        await self.writer.start()
        self._stack.push_async_callback(self.writer.close, s.shutdown_timeout)
        link_key = await asyncio.to_thread(load_link_key, s.link_secret.value if s.link_secret else None, s.data_dir)
        self.services = Services(
            settings=s,
            chat=chat,
            policy=policy,
            incidents=IncidentStore(self.pool),
            timeline=timeline,
            sink=self.writer,
            registry=registry,
            tasks=tasks,
            clock=self.clock,
            pagerduty=pagerduty,
            zoom=zoom,
            prometheus=prometheus,
            links=Links(link_key, base_url=self._public_url),
        )
        self.dispatcher = Dispatcher(self.services, confirmations=ConfirmationStore(self.pool))

        self.http = HttpServer(
            s.http_host,
            s.http_port,
            checks={"postgres": self._postgres_ready, "slack": self._slack_ready, "timeline": self._timeline_ready},
        )
        sources = self.sources = http_sources(self.services)
        self.http.add_routes(sources.routes())
        self._stack.push_async_callback(sources.close)
        await self.http.start()
        self._stack.push_async_callback(self.http.stop)

        self._background.append(asyncio.create_task(policy.run(), name="policy watcher"))
        if s.archive_interval > 0:
            self._background.append(
                asyncio.create_task(archive_periodically(self.services, s.archive_interval), name="timeline archive")
            )
        deploys = deploy_watcher(self.services)
        if deploys is not None:
            self._background.append(asyncio.create_task(deploys.run(), name="deploy watcher"))
        war_rooms = SlackEventRecorder(
            incidents=self.services.incidents, sink=self.services.sink, clock=self.clock, bot_user_id=chat.bot_user_id
        )
        self.transport = SlackTransport(
            web=chat.client,
            app_token=s.slack_app_token.value,
            tasks=tasks,
            on_command=self.dispatcher.handle,
            on_action=self.dispatcher.handle_action,
            on_event=war_rooms.handle,
        )
        await self.transport.start()
        # Start-up objects live as long as the process: keep them out of the collector's way so a full collection
        # does not stall the first burst of acks (measured: ~140 ms).
        gc.collect()
        gc.freeze()
        # Ingest allocates containers by the thousand per request (a batch's payloads, events, rows) that die
        # within the second: a larger young generation lets them die uncollected instead of being traced and
        # promoted, which cost ~20 % of the audit webhook's CPU at the default (700, 10, 10).
        gc.set_threshold(50_000, 20, 10)
        log.info("chatops is running", extra={"http": f"{s.http_host}:{self.http.port}", "team": chat.team_id})

    def _public_url(self) -> str:
        """Base URL of the links the bot posts: CHATOPS_PUBLIC_URL, else the address actually bound."""
        if self.settings.public_url_set or self.http is None:
            return self.settings.public_url
        return f"http://{self.http.address}"

    async def _start_embedded(self) -> str:
        self.embedded = EmbeddedPostgres(self.settings.data_dir)
        dsn = await self.embedded.start()
        self._stack.push_async_callback(self.embedded.stop)
        return dsn

    async def _postgres_ready(self) -> bool:
        if self.pool is None:
            return False
        async with self.pool.acquire() as conn:
            return bool(await conn.fetchval("select 1") == 1)

    async def _timeline_ready(self) -> bool:
        """Not ready while timeline events wait in the spool for Postgres (see chatops.timeline.writer)."""
        return self.writer is not None and self.writer.ready

    async def _slack_ready(self) -> bool:
        return self.transport is not None and self.services is not None and not self.services.tasks.closing

    async def _policy_refused(self, problems: list[str]) -> None:
        if self.services is None:
            return
        channel = self.services.policy.current.platform_channel
        text = ":no_entry: Policy edit refused; the last good policy stays in force:\n" + "\n".join(
            f"• `{p}`" for p in problems
        )
        try:
            await self.services.chat.post_message(channel, text)
        except ChatError as exc:
            log.warning("could not report the refused policy", extra={"channel": channel, "error": exc.code})

    async def stop(self) -> None:
        """Stop taking work, drain in-flight work (bounded), cancel the rest, close everything."""
        if self.transport is not None:
            if self.services is not None:
                self.services.tasks.stop_accepting()
            with contextlib.suppress(Exception):
                await self.transport.stop()
        if self.services is not None:
            cancelled = await self.services.tasks.close(self.settings.shutdown_timeout)
            if cancelled:
                log.warning("shutdown cancelled unfinished work", extra={"tasks": cancelled})
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stack.aclose()
        log.info("chatops stopped")

    async def run_until_signal(self) -> None:
        """Start, serve until SIGTERM/SIGINT (SIGHUP reloads policy), then stop."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        assert self.services is not None
        loop.add_signal_handler(signal.SIGHUP, self.services.policy.request_reload)
        try:
            await stop.wait()
            log.info("shutdown requested")
        finally:
            await self.stop()
