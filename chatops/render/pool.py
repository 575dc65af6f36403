"""Render charts in a small process pool, so matplotlib never holds the event loop's GIL.

Rendering in a thread stalls the loop ~60 ms per chart (the GIL); a separate process keeps it free and keeps
matplotlib (and its memory) out of the daemon's main process. Workers are *spawned* (the daemon has threads, so
forking would be unsafe), each with ``MPLCONFIGDIR`` pointing at a private cache folder. :meth:`RenderPool.warm_up`
starts a worker and renders a tiny chart ahead of the first request; a worker that dies is replaced on the next call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import tempfile
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from chatops.render.charts import Chart, Panel, Series, render_png

__all__ = ["RenderPool", "default_pool", "render_chart"]

log = logging.getLogger(__name__)


def _mpl_config_dir() -> str:
    path = Path(tempfile.gettempdir()) / f"chatops-mpl-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)


def _init_worker(config_dir: str) -> None:
    os.environ["MPLCONFIGDIR"] = config_dir
    import matplotlib

    matplotlib.use("Agg")


def _warm() -> float:
    started = time.perf_counter()
    series = Series("warm-up", (0.0, 60.0), (1.0, 2.0))
    render_png(Chart(title="warm-up", start=0.0, end=60.0, panels=(Panel("warm-up", (series,)),)))
    return time.perf_counter() - started


def _report_warm_up(future: concurrent.futures.Future[float]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.warning("the chart worker failed to warm up", extra={"error": repr(error)})
    else:
        log.info("chart worker ready", extra={"seconds": round(future.result(), 3)})


class RenderPool:
    """A lazily started pool of ``workers`` render processes."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(_mpl_config_dir(),),
            )
        return self._executor

    def warm_up(self) -> concurrent.futures.Future[float]:
        """Start the worker(s) and render once in the background (the first real chart then skips ~1 s of imports)."""
        future = self._pool().submit(_warm)
        future.add_done_callback(_report_warm_up)
        return future

    async def render(self, chart: Chart) -> bytes:
        """PNG bytes of ``chart``, rendered in a worker process."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool(), render_png, chart)
        except BrokenProcessPool:
            log.warning("a chart worker died; starting a new one")
            self.shutdown()
            return await loop.run_in_executor(self._pool(), render_png, chart)

    def shutdown(self) -> None:
        """Stop the workers (pending renders are cancelled)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


_DEFAULT = RenderPool()


def default_pool() -> RenderPool:
    """The process-wide pool the commands use (the daemon warms it at start and shuts it down at stop)."""
    return _DEFAULT


async def render_chart(chart: Chart) -> bytes:
    """Render ``chart`` in the process-wide pool."""
    return await _DEFAULT.render(chart)
