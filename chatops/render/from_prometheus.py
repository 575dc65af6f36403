"""Prometheus range results → chart panels: the busiest series first, short legend labels, the rest counted."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from chatops.integrations.prometheus import RangeResult, RangeSeries
from chatops.promql_format import common_labels, series_label, sort_key
from chatops.render.charts import Panel, Series, Threshold

__all__ = ["MAX_SERIES", "panel_from_range"]

MAX_SERIES = 8
"""Series drawn per panel; more are counted in the legend ("+12 more") rather than drawn as noise."""

Legend = Callable[[Mapping[str, str]], str | None]


def _peak(series: RangeSeries) -> float:
    finite = [v for v in series.values if not math.isnan(v)]
    return max(finite) if finite else math.nan


def panel_from_range(
    result: RangeResult,
    *,
    title: str,
    unit: str = "none",
    thresholds: Sequence[Threshold] = (),
    legend: Legend | None = None,
    max_series: int = MAX_SERIES,
    note: str = "",
) -> Panel:
    """A panel of ``result``'s series, the ``max_series`` with the highest peaks, labelled by ``legend`` (or by the
    labels that differ between series)."""
    ordered = sorted(result.series, key=lambda s: sort_key(_peak(s)))
    shown = ordered[:max_series]
    shared = common_labels([s.labels for s in ordered])

    def label(s: RangeSeries) -> str:
        text = (legend(s.labels) if legend is not None else None) or series_label(s.labels, omit=shared)
        return title if text == "{}" else text

    return Panel(
        title=title,
        series=tuple(Series(label(s), s.times, s.values) for s in shown),
        unit=unit,
        thresholds=tuple(thresholds),
        hidden_series=len(ordered) - len(shown),
        note=note or ("no data in this range" if not ordered else ""),
    )
