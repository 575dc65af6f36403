"""A bounded home for background work (the arq / aiojobs shape).

Work is spawned as tracked tasks, at most ``limit`` running at once (the rest wait their turn). On shutdown,
:meth:`TaskTracker.close` stops taking work, waits up to a timeout for what is in flight, then cancels the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskTracker", "TrackerClosed"]

log = logging.getLogger(__name__)


class TrackerClosed(RuntimeError):
    """Raised by :meth:`TaskTracker.spawn` once shutdown has begun."""


class TaskTracker:
    """Track, bound and drain background tasks."""

    def __init__(self, limit: int = 64) -> None:
        self._semaphore = asyncio.Semaphore(limit)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def closing(self) -> bool:
        """True once shutdown started; new work is refused."""
        return self._closing

    @property
    def in_flight(self) -> int:
        """Tasks spawned and not finished."""
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Run ``coro`` in the background under the concurrency bound."""
        if self._closing:
            coro.close()
            raise TrackerClosed("shutting down: not taking new work")

        async def bounded() -> Any:
            async with self._semaphore:
                return await coro

        task = asyncio.create_task(bounded(), name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)
        # Cancelled before it started (still waiting for the semaphore, or before its first step): close the
        # coroutine, or it is garbage-collected with a "coroutine was never awaited" warning. A no-op otherwise.
        task.add_done_callback(lambda _: coro.close())
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception(), extra={"task": task.get_name()})

    async def wait_idle(self) -> None:
        """Return once no tracked task is running (immediately when none is)."""
        await self._idle.wait()

    def stop_accepting(self) -> None:
        """Refuse new work from now on (in-flight work continues)."""
        self._closing = True

    async def close(self, timeout: float) -> int:
        """Stop taking work, wait up to ``timeout`` seconds, cancel what is left; return how many were cancelled."""
        self._closing = True
        pending = set(self._tasks)
        if not pending:
            return 0
        log.info("draining in-flight work", extra={"tasks": len(pending), "timeout_s": timeout})
        _, still = await asyncio.wait(pending, timeout=timeout)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=5)
            log.warning("cancelled work still running at shutdown", extra={"tasks": len(still)})
        return len(still)
