"""End-to-end harness: the daemon runs as a real subprocess (``python -m chatops run``), configured only through
the production environment variables, against the sandbox world on 127.0.0.1 and a fresh real Postgres database.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chatops.sandbox.world import SandboxWorld

REPO = Path(__file__).resolve().parents[2]


class DaemonProcess:
    """A ``chatops run`` child process and its JSON log."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, world: SandboxWorld, *, wait: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "ZOOM_", "CHATOPS_"))}
        env |= self.env
        log = self.log_path.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "chatops", "run", cwd=str(REPO), env=env, stdout=log, stderr=log
        )
        log.close()
        if wait:
            await self.wait_log("chatops is running", timeout=60)
            await world.slack.wait_connected(timeout=30)

    def logs(self) -> list[dict[str, Any]]:
        entries = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                entries.append({"message": line, "level": "raw"})
        return entries

    @property
    def http_url(self) -> str:
        """``http://host:port`` of the daemon's HTTP side, from the ``http`` field of its "chatops is running" log."""
        for entry in self.logs():
            if str(entry.get("message", "")).startswith("chatops is running") and entry.get("http"):
                return f"http://{entry['http']}"
        raise AssertionError("the daemon has not logged 'chatops is running' with its HTTP address yet")

    async def wait_log(self, message: str, *, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = [e for e in self.logs() if str(e.get("message", "")).startswith(message)]
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before logging {message!r}:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(
                    f"no {message!r} in the daemon log within {timeout}s:\n"
                    + self.log_path.read_text(errors="replace")[-4000:]
                )
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("level") in ("error", "critical", "raw")]


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped policy that a test may edit."""
    target = tmp_path / "policy"
    shutil.copytree(REPO / "policy", target)
    return target


@pytest.fixture
def world_options() -> dict[str, Any]:
    """Override in a test module (or parametrize indirectly) to change the sandbox."""
    return {}


@pytest.fixture
async def world(policy_dir: Path, world_options: dict[str, Any]) -> AsyncIterator[SandboxWorld]:
    async with SandboxWorld(policy_dir, **world_options) as w:
        yield w


DaemonFactory = Callable[..., Awaitable[DaemonProcess]]


@pytest.fixture
async def start_daemon(world: SandboxWorld, fresh_database_dsn: str, tmp_path: Path) -> AsyncIterator[DaemonFactory]:
    started: list[DaemonProcess] = []

    async def start(*, wait: bool = True, **overrides: str) -> DaemonProcess:
        env = world.env(
            DATABASE_URL=fresh_database_dsn,
            CHATOPS_DATA_DIR=str(tmp_path / "data"),
            CHATOPS_SHUTDOWN_TIMEOUT="20",
            **overrides,
        )
        daemon = DaemonProcess(env, tmp_path / f"daemon-{len(started)}.log")
        started.append(daemon)
        await daemon.start(world, wait=wait)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc is not None:
            await daemon.stop()


@pytest.fixture
async def db(fresh_database_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(fresh_database_dsn)
    try:
        yield conn
    finally:
        await conn.close()


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 10.0) -> Any:
    """Retry ``check`` (an async callable that asserts) until it passes; the timeline writer flushes in batches."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)
