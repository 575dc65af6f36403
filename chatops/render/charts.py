"""Chart PNGs with matplotlib's Agg canvas: one figure, a grid of time-series panels, laid out by hand.

Made to read well as a Slack preview: 1200 px wide, large type, UTC time axis, at most :data:`MAX_LEGEND`
legend entries per panel, dashed threshold lines (warning amber, critical red), and the incident start as a red
line with the time after it shaded. No layout engine (``tight``/``constrained`` layout costs ~2x on date axes):
the axes are positioned from fixed pixel margins.

Everything is deterministic for a given :class:`Chart` (fixed fonts, DPI, no timestamps in the PNG metadata), so a
rendering can be compared with a known-good one. matplotlib is imported inside :func:`render_png` only: the daemon's
main process never loads it (rendering runs in :mod:`chatops.render.pool`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from chatops.promql_format import format_value

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["MAX_LEGEND", "Chart", "Panel", "Series", "Threshold", "grid_shape", "render_png"]

MAX_LEGEND = 5
DPI = 100
WIDTH_PX = 1200
_HEADER_PX = 64
_FOOTER_PX = 14
_ROW_PX = {1: 420, 2: 350, 3: 300}
_CELL_PAD = {"left": 78, "right": 22, "top": 40, "bottom": 40}
_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")
_THRESHOLD_COLOURS = {"warning": "#e69f00", "critical": "#d62728"}
_MARKER_COLOUR = "#d62728"
_STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 12,
    "axes.titlesize": 14,
    "axes.titleweight": "bold",
    "axes.labelsize": 12,
    "xtick.labelsize": 11.5,
    "ytick.labelsize": 11.5,
    "legend.fontsize": 10.5,
    "axes.edgecolor": "#9a9a9a",
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "grid.color": "#e3e3e3",
    "grid.linewidth": 0.8,
    "lines.linewidth": 1.8,
    "path.simplify": True,
    "text.hinting": "default",
    "text.antialiased": True,
    "svg.hashsalt": "chatops",
}


@dataclass(frozen=True)
class Series:
    """One line: its legend label, unix-second timestamps and values (NaN / ±Inf are drawn as gaps)."""

    label: str
    times: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Threshold:
    """A horizontal line at ``value``."""

    value: float
    level: Literal["warning", "critical"] = "warning"


@dataclass(frozen=True)
class Panel:
    """One time-series panel. ``note`` is shown in the panel when there is nothing to draw (or beside the title)."""

    title: str
    series: tuple[Series, ...] = ()
    unit: str = "none"
    thresholds: tuple[Threshold, ...] = ()
    hidden_series: int = 0
    note: str = ""


@dataclass(frozen=True)
class Chart:
    """A figure: a title line, a subtitle (e.g. the time range) and panels on a shared UTC time range."""

    title: str
    start: float
    end: float
    panels: tuple[Panel, ...]
    subtitle: str = ""
    marker: float | None = None
    marker_label: str = "incident start"
    columns: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def grid_shape(count: int, columns: int | None = None) -> tuple[int, int]:
    """(rows, columns) for ``count`` panels: one column for a single panel, two otherwise."""
    cols = columns or (1 if count <= 1 else 2)
    return max(1, math.ceil(count / cols)), cols


def _clean(values: Sequence[float]) -> list[float]:
    return [v if math.isfinite(v) else math.nan for v in values]


def _time_format(span_s: float) -> str:
    if span_s <= 2 * 86400:
        return "%H:%M"
    return "%d %b %H:%M"


def _draw_panel(ax: Axes, panel: Panel, chart: Chart) -> None:
    import matplotlib.dates as mdates
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    # A plain text, not set_title: the title's auto-positioning measures the axes' tight bbox (~25 ms per panel).
    ax.annotate(
        panel.title,
        xy=(0.0, 1.0),
        xycoords="axes fraction",
        xytext=(0, 8),
        textcoords="offset points",
        fontsize=14,
        fontweight="bold",
        va="bottom",
        ha="left",
    )
    finite: list[float] = []
    for index, series in enumerate(panel.series):
        values = _clean(series.values)
        finite.extend(v for v in values if not math.isnan(v))
        xs = [t / 86400.0 for t in series.times]
        label = series.label if index < MAX_LEGEND else None
        ax.plot(xs, values, color=_PALETTE[index % len(_PALETTE)], label=label, solid_joinstyle="round")
    lows = [t.value for t in panel.thresholds]
    top = max([*finite, min(lows)] if lows else finite, default=1.0)
    bottom = min(finite, default=0.0)
    if bottom >= 0:
        bottom = 0.0
    if top <= bottom:
        top = bottom + 1.0
    ax.set_ylim(bottom, top * 1.15 if top > 0 else top + abs(top) * 0.15)
    for threshold in panel.thresholds:
        colour = _THRESHOLD_COLOURS[threshold.level]
        ax.axhline(threshold.value, color=colour, linestyle=(0, (6, 3)), linewidth=1.4, zorder=1.5)
        ax.annotate(
            f"{threshold.level} {format_value(threshold.value, panel.unit)}",
            xy=(1.0, threshold.value),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 3),
            textcoords="offset points",
            ha="right",
            va="bottom",
            fontsize=10,
            color=colour,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            zorder=3,
        )
    if chart.marker is not None and chart.start <= chart.marker <= chart.end:
        x = chart.marker / 86400.0
        ax.axvline(x, color=_MARKER_COLOUR, linewidth=1.6, zorder=2.5)
        ax.axvspan(x, chart.end / 86400.0, color=_MARKER_COLOUR, alpha=0.05, linewidth=0)
    ax.set_xlim(chart.start / 86400.0, chart.end / 86400.0)
    locator = mdates.AutoDateLocator(tz=UTC, minticks=4, maxticks=7)  # type: ignore[no-untyped-call]
    formatter = mdates.DateFormatter(_time_format(chart.end - chart.start), tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    unit = panel.unit
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: format_value(value, unit)))
    ax.tick_params(length=3, color="#9a9a9a")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if not panel.series:
        ax.text(0.5, 0.5, panel.note or "no data", transform=ax.transAxes, ha="center", va="center", color="#777777")
        return
    handles, labels = ax.get_legend_handles_labels()
    hidden = panel.hidden_series + max(0, len(panel.series) - MAX_LEGEND)
    if hidden:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], linestyle="none"))
        labels.append(f"+{hidden} more")
    ax.legend(handles, labels, loc="upper left", frameon=True, framealpha=0.85, edgecolor="#dddddd", borderpad=0.4)


def render_png(chart: Chart) -> bytes:
    """Render ``chart`` to PNG bytes (Agg, 100 DPI, 1200 px wide, height from the number of panel rows)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows, cols = grid_shape(len(chart.panels), chart.columns)
    row_px = _ROW_PX.get(rows, 260)
    height_px = _HEADER_PX + rows * row_px + _FOOTER_PX
    with matplotlib.rc_context(_STYLE):  # type: ignore[arg-type]
        figure = Figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI, facecolor="white")
        FigureCanvasAgg(figure)
        figure.text(14 / WIDTH_PX, 1 - 14 / height_px, chart.title, fontsize=17, fontweight="bold", va="top")
        subtitle = chart.subtitle
        if chart.marker is not None:
            when = datetime.fromtimestamp(chart.marker, UTC).strftime("%H:%M UTC")
            subtitle = f"{subtitle}   ▌ {chart.marker_label} {when}" if subtitle else f"{chart.marker_label} {when}"
        if subtitle:
            figure.text(14 / WIDTH_PX, 1 - 42 / height_px, subtitle, fontsize=12, color="#444444", va="top")
        cell_w = WIDTH_PX / cols
        for index, panel in enumerate(chart.panels):
            row, col = divmod(index, cols)
            left_px = col * cell_w + _CELL_PAD["left"]
            top_px = _HEADER_PX + row * row_px + _CELL_PAD["top"]
            width_px = cell_w - _CELL_PAD["left"] - _CELL_PAD["right"]
            plot_h = row_px - _CELL_PAD["top"] - _CELL_PAD["bottom"]
            rect = (left_px / WIDTH_PX, 1 - (top_px + plot_h) / height_px, width_px / WIDTH_PX, plot_h / height_px)
            _draw_panel(figure.add_axes(rect), panel, chart)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
