"""Chart PNGs: decodable, sized for Slack, deterministic, and close to a known-good rendering."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chatops.render import Chart, Panel, RenderPool, Series, Threshold, render_png
from chatops.render.charts import WIDTH_PX, grid_shape

GOLDEN = Path(__file__).parent / "golden" / "dashboard.png"
RMS_TOLERANCE = 3.0
"""Root-mean-square difference allowed per channel (0-255) against the golden PNG: absorbs anti-aliasing and
freetype differences between machines, far below what any visible change costs (see the sensitivity test)."""

END = 1_796_328_000.0  # 2026-12-03 20:00 UTC
START = END - 6 * 3600
INCIDENT = END - 40 * 60


def _series(label: str, fn: object) -> Series:
    times = tuple(START + 30 * i for i in range(721))
    return Series(label, times, tuple(fn(t) for t in times))  # type: ignore[operator]


def known_chart(*, critical: float = 0.05) -> Chart:
    """Four panels × 6 h at a 30 s step, deterministic: what /dashboard checkout draws mid-incident."""
    after = lambda t, a, b: b if t >= INCIDENT else a  # noqa: E731
    panels = (
        Panel(
            "Requests by status",
            (
                _series("200", lambda t: 120 + 15 * math.sin(t / 3000)),
                _series("500", lambda t: after(t, 0.5, 7.5)),
            ),
            unit="reqps",
        ),
        Panel(
            "Error ratio (5xx)",
            (_series("5xx share", lambda t: after(t, 0.004, 0.06)),),
            unit="ratio",
            thresholds=(Threshold(0.01, "warning"), Threshold(critical, "critical")),
        ),
        Panel(
            "Latency p99",
            (_series("p99", lambda t: after(t, 0.48, 2.3)),),
            unit="seconds",
            thresholds=(Threshold(0.75, "warning"), Threshold(1.5, "critical")),
        ),
        Panel(
            "CPU by pod",
            tuple(
                _series(f"checkout-7d4b9c-{i}", lambda t, i=i: 0.45 + 0.1 * math.sin(t / 2000 + i) + after(t, 0, 0.35))
                for i in range(7)
            ),
            unit="cores",
            hidden_series=2,
        ),
    )
    return Chart(
        title="checkout — last 6h",
        subtitle="2026-12-03 14:00 → 20:00 UTC · step 30s",
        start=START,
        end=END,
        panels=panels,
        marker=INCIDENT,
    )


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"), dtype=np.float64)


def rms(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"size changed: {a.shape} vs {b.shape}"
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def rendered() -> bytes:
    return render_png(known_chart())


def test_png_is_decodable_and_sized_for_a_slack_preview(rendered: bytes) -> None:
    assert rendered[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = decode(rendered)
    height, width, _ = pixels.shape
    assert width == WIDTH_PX and 600 <= height <= 900, "2×2 grid, landscape, ~3:2"
    assert 40_000 < len(rendered) < 400_000, "small enough to upload fast, big enough to hold four panels"
    assert pixels.std() > 10, "not a blank image"


def test_rendering_is_deterministic(rendered: bytes) -> None:
    assert render_png(known_chart()) == rendered


def test_matches_the_known_good_rendering(rendered: bytes) -> None:
    if os.environ.get("CHATOPS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(rendered)
    assert GOLDEN.is_file(), "run with CHATOPS_UPDATE_GOLDEN=1 to create the golden image"
    difference = rms(decode(rendered), decode(GOLDEN.read_bytes()))
    assert difference <= RMS_TOLERANCE, f"RMS {difference:.2f} > {RMS_TOLERANCE}: look at the chart, then re-bless"


def test_the_tolerance_still_catches_a_visible_change(rendered: bytes) -> None:
    moved = render_png(known_chart(critical=0.03))  # one threshold line moves
    assert rms(decode(rendered), decode(moved)) > RMS_TOLERANCE
    marker_gone = render_png(dataclasses.replace(known_chart(), marker=None))
    assert rms(decode(rendered), decode(marker_gone)) > RMS_TOLERANCE


def test_empty_and_degenerate_panels_render() -> None:
    chart = Chart(
        title="nothing",
        start=START,
        end=END,
        panels=(
            Panel("empty", note="query failed: bad_data"),
            Panel("all NaN", (_series("x", lambda t: math.nan),)),
            Panel("infinite", (_series("x", lambda t: math.inf if int(t) % 60 else 1.0),)),
            Panel("negative", (_series("x", lambda t: -5.0),), thresholds=(Threshold(-1.0, "critical"),)),
            Panel("flat zero", (_series("x", lambda t: 0.0),)),
        ),
    )
    pixels = decode(render_png(chart))
    assert pixels.shape[1] == WIDTH_PX and pixels.shape[0] > 900


def test_grid_shape() -> None:
    assert grid_shape(1) == (1, 1)
    assert grid_shape(4) == (2, 2)
    assert grid_shape(5) == (3, 2)


async def test_the_pool_renders_in_another_process_and_keeps_the_loop_free(rendered: bytes) -> None:
    pool = RenderPool()
    try:
        await asyncio.wrap_future(pool.warm_up())
        gaps: list[float] = []
        loop = asyncio.get_running_loop()

        async def ticker() -> None:
            last = loop.time()
            while True:
                await asyncio.sleep(0.002)
                now = loop.time()
                gaps.append(now - last)
                last = now

        task = asyncio.create_task(ticker())
        png = await pool.render(known_chart())
        task.cancel()
        assert png == rendered, "same bytes as in-process"
        # Drawing takes ~300 ms: on the loop it would stall it that long. Generous bound for loaded CI machines.
        assert max(gaps) < 0.2, f"the loop stalled {max(gaps) * 1000:.0f} ms"
    finally:
        pool.shutdown()


def test_importing_the_render_package_does_not_import_matplotlib() -> None:
    import subprocess

    code = "import chatops.render, chatops.render.pool, sys; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
