"""Benchmark ``/dashboard`` (``make bench-dashboard``; not a test).

The daemon runs as a subprocess (``python -m chatops run``, embedded Postgres under a scratch folder) against the
sandbox Slack (Socket Mode + Web API, 3-step file upload) and a real Prometheus (Debian's binary, the test
fixture's data backfilled by promtool). ``/dashboard checkout`` draws the shipped 4 panels over 6 h at a 30 s step
(721 points per series).

Figures printed:

* **cold**: the first ``/dashboard`` right after the daemon logged "chatops is running" (the render worker may still
  be importing matplotlib), and **warm**: ``--runs`` more; each from the slash command being sent to the sandbox
  receiving ``files.completeUploadExternal`` (the upload is complete).
* **RSS** of the daemon's main process and of its render worker (``/proc``: now and peak).
* **render baseline**, same data, in this process: the chart as chatops draws it (``Figure`` + Agg, axes placed by
  hand) against the naive way (``pyplot.subplots`` + ``tight_layout``), and how long the event loop stalls when
  rendering runs in a thread (``asyncio.to_thread``) versus in the process pool.

Targets (issue 4): warm < 1 s, daemon RSS < 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from chatops.integrations.prometheus import PrometheusClient, choose_step  # noqa: E402
from chatops.policy.loader import load_policy  # noqa: E402
from chatops.render import Chart, RenderPool, render_png  # noqa: E402
from chatops.render.from_prometheus import panel_from_range  # noqa: E402
from chatops.render.pool import _mpl_config_dir  # noqa: E402
from chatops.sandbox.world import SandboxWorld  # noqa: E402
from chatops.testing_prometheus import PrometheusServer, start_prometheus  # noqa: E402

WARM_TARGET_S = 1.0
RSS_TARGET_MB = 250.0
SERVICE = "checkout"


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", 0.0), fields.get("VmHWM", 0.0)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            out += [int(child), *_children(int(child))]
    return out


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()


def _read(path: Path) -> str:
    return path.read_text(errors="replace")


async def _wait_log(path: Path, message: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while message not in _read(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"daemon did not log {message!r}:\n{_read(path)[-3000:]}")
        await asyncio.sleep(0.05)


async def _dashboard_once(world: SandboxWorld, text: str) -> float:
    """Seconds from sending ``/dashboard <text>`` to files.completeUploadExternal arriving."""
    before = len(world.slack.calls_to("files.completeUploadExternal"))
    started = time.monotonic()
    await world.slack.send_slash_command("/dashboard", text, user_id=world.ic.slack_id, channel_id=world.ops_channel)
    await world.slack.wait_for(
        lambda: len(world.slack.calls_to("files.completeUploadExternal")) > before, timeout=60, what="the upload"
    )
    done = world.slack.calls_to("files.completeUploadExternal")[before]
    assert done.response.get("ok"), done.response
    return done.at - started


async def _end_to_end(scratch: Path, prometheus: PrometheusServer, runs: int) -> dict[str, object]:
    policy_dir = scratch / "policy"
    shutil.copytree(REPO / "policy", policy_dir)
    async with SandboxWorld(policy_dir, zoom=False, pagerduty=False) as world:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "ZOOM_", "CHATOPS_"))}
        env.pop("DATABASE_URL", None)
        env |= world.env(PROMETHEUS_URL=prometheus.url, CHATOPS_DATA_DIR=str(scratch / "data"))
        log_path = scratch / "daemon.log"
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chatops", "run", cwd=str(REPO), env=env, stdout=log, stderr=log
            )
        try:
            await _wait_log(log_path, "chatops is running", 90)
            await world.slack.wait_connected(timeout=30)
            cold = await _dashboard_once(world, SERVICE)
            warm = [await _dashboard_once(world, SERVICE) for _ in range(runs)]
            main_rss = _rss_mb(proc.pid)
            workers = [(pid, _rss_mb(pid), _cmdline(pid)) for pid in _children(proc.pid)]
            [file_id] = world.slack.channels[world.ops_channel].messages[-1].files
            size = len(world.slack.files[file_id]["content"])
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 60)
    return {"cold": cold, "warm": warm, "main_rss": main_rss, "workers": workers, "png_bytes": size}


async def _chart(prometheus: PrometheusServer) -> Chart:
    """The same chart /dashboard draws, from the same Prometheus."""
    policy = load_policy(REPO / "policy")
    board = policy.dashboards.services[SERVICE]
    service = policy.services[SERVICE]
    client = PrometheusClient(prometheus.url)
    end = prometheus.anchor
    span = timedelta(hours=6)
    step = choose_step(span, minimum_s=30).step
    results = await asyncio.gather(
        *(client.range(p.query_for(service), start=end - span, end=end, step=step) for p in board.panels)
    )
    client.close()
    panels = tuple(
        panel_from_range(r, title=p.title, unit=p.unit, thresholds=p.thresholds, legend=p.legend_for)
        for p, r in zip(board.panels, results, strict=True)
    )
    points = {len(s.times) for r in results for s in r.series}
    assert points == {721}, points
    return Chart(title=f"{SERVICE} — last 6h", start=(end - span).timestamp(), end=end.timestamp(), panels=panels)


def naive_render(chart: Chart) -> bytes:
    """The baseline: pyplot, datetime x values, tight_layout — how a first version usually looks."""
    from datetime import UTC, datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 7.8), dpi=100)
    for ax, panel in zip(axes.flat, chart.panels, strict=False):
        for series in panel.series:
            ax.plot([datetime.fromtimestamp(t, UTC) for t in series.times], series.values, label=series.label)
        for threshold in panel.thresholds:
            ax.axhline(threshold.value, linestyle="--", color="red" if threshold.level == "critical" else "orange")
        ax.set_title(panel.title)
        ax.legend(loc="upper left")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def _max_stall(work: Callable[[], Awaitable[object]]) -> float:
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.001)
            now = loop.time()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    await work()
    task.cancel()
    return max(gaps) - 0.001


async def _render_baseline(prometheus: PrometheusServer, repeat: int) -> dict[str, float]:
    chart = await _chart(prometheus)
    ours = _timed(lambda: render_png(chart), repeat)
    naive = _timed(lambda: naive_render(chart), repeat)
    pool = RenderPool()
    await asyncio.wrap_future(pool.warm_up())
    await pool.render(chart)
    thread_stall = max([await _max_stall(lambda: asyncio.to_thread(render_png, chart)) for _ in range(3)])
    pool_stall = max([await _max_stall(lambda: pool.render(chart)) for _ in range(3)])
    pool.shutdown()
    return {"ours": ours, "naive": naive, "thread_stall": thread_stall, "pool_stall": pool_stall}


def _report(e2e: dict[str, object], render: dict[str, float], prometheus: PrometheusServer) -> bool:
    warm = sorted(e2e["warm"])  # type: ignore[call-overload]
    median, p95 = statistics.median(warm), warm[max(0, round(0.95 * len(warm)) - 1)]
    main_now, main_peak = e2e["main_rss"]  # type: ignore[misc]
    workers = e2e["workers"]
    print(f"/dashboard {SERVICE}: 4 panels × 6 h at 30 s step (721 points/series), PNG {e2e['png_bytes']:,} bytes")
    print(f"  prometheus backfill + start   {prometheus.startup_seconds:6.2f} s")
    print(f"  cold (first after start)      {e2e['cold']:6.3f} s")
    print(f"  warm median / p95 / max       {median:6.3f} / {p95:.3f} / {warm[-1]:.3f} s   (n={len(warm)})")
    print(f"  daemon RSS now / peak         {main_now:6.1f} / {main_peak:.1f} MB")
    for pid, (now, peak), cmd in workers:  # type: ignore[attr-defined]
        kind = "render worker" if "spawn_main" in cmd else "child"
        print(f"  {kind:<14} pid {pid:<7}  {now:6.1f} / {peak:.1f} MB")
    total = main_now + sum(now for _, (now, _peak), _ in workers)  # type: ignore[attr-defined]
    print(f"  daemon + children RSS         {total:6.1f} MB")
    print("render only (same chart, this process, median):")
    print(f"  chatops (Figure, manual axes) {render['ours']:6.3f} s")
    speedup = render["naive"] / render["ours"]
    print(f"  naive (pyplot + tight_layout) {render['naive']:6.3f} s   → chatops is {speedup:.1f}× faster")
    print(f"  loop stall, render in thread  {render['thread_stall'] * 1000:6.1f} ms")
    less = render["thread_stall"] / max(render["pool_stall"], 1e-4)
    print(f"  loop stall, render in pool    {render['pool_stall'] * 1000:6.1f} ms   → {less:.0f}× less")
    ok_warm, ok_rss = median < WARM_TARGET_S, main_now < RSS_TARGET_MB
    print(
        f"targets: warm < {WARM_TARGET_S:g} s: {'PASS' if ok_warm else 'FAIL'} ({median / WARM_TARGET_S:.0%} of it); "
        f"RSS < {RSS_TARGET_MB:g} MB: {'PASS' if ok_rss else 'FAIL'} ({main_now / RSS_TARGET_MB:.0%} of it)"
    )
    return ok_warm and ok_rss


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="warm /dashboard runs")
    parser.add_argument("--repeat", type=int, default=5, help="in-process renders per baseline figure")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLCONFIGDIR", _mpl_config_dir())
    scratch = Path(tempfile.mkdtemp(prefix="chatops-bench-dashboard-", dir="/tmp"))
    (scratch / "prometheus").mkdir()
    prometheus = await asyncio.to_thread(start_prometheus, scratch / "prometheus")
    try:
        e2e = await _end_to_end(scratch, prometheus, args.runs)
        render = await _render_baseline(prometheus, args.repeat)
    finally:
        prometheus.stop()
    ok = _report(e2e, render, prometheus)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
