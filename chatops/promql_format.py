"""Numbers and label sets as an on-call reads them: ``12.3k``, ``480ms``, ``6.00%``, ``NaN``, ``+Inf``.

:func:`format_value` formats one value in a unit (see :data:`UNITS`); :func:`series_label` and
:func:`common_labels` shorten label sets (labels every series shares are said once, not on every row);
:func:`instant_table` turns an instant vector into a compact, aligned table for a Slack code block, the top
series by value first (``+Inf`` first, ``NaN`` last).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "UNITS",
    "InstantTable",
    "common_labels",
    "format_value",
    "instant_table",
    "series_label",
    "sort_key",
]

UNITS = ("none", "percent", "ratio", "seconds", "bytes", "reqps", "cores")
"""``percent``: values already in 0–100; ``ratio``: 0–1 shown as a percentage; ``reqps``: per second."""

_SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))
_BINARY = ((2**50, "PiB"), (2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB"))
_MAX_LABEL_VALUE = 40
_MAX_ROWS = 15


def _number(value: float, digits: int = 4) -> str:
    """Up to ``digits`` significant digits, no exponent for everyday magnitudes, no trailing zeros."""
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.2e}"
    if value == int(value) and abs(value) < 1e4:
        return str(int(value))
    text = f"{value:.{digits}g}"
    if "e" in text:
        text = f"{value:.{max(0, digits - 1 - math.floor(math.log10(abs(value))))}f}"
    return text


def _special(value: float) -> str | None:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return None


def format_value(value: float, unit: str = "none") -> str:
    """``value`` formatted for people in ``unit`` (one of :data:`UNITS`; unknown units are treated as none)."""
    special = _special(value)
    if special is not None:
        return special
    if unit == "ratio":
        return f"{_number(value * 100, 3)}%"
    if unit == "percent":
        return f"{_number(value, 3)}%"
    if unit == "seconds":
        magnitude = abs(value)
        if magnitude == 0:
            return "0s"
        if magnitude < 1e-3:
            return f"{_number(value * 1e6, 3)}µs"
        if magnitude < 1:
            return f"{_number(value * 1e3, 3)}ms"
        if magnitude < 120:
            return f"{_number(value, 3)}s"
        if magnitude < 7200:
            return f"{_number(value / 60, 3)}min"
        return f"{_number(value / 3600, 3)}h"
    if unit == "bytes":
        for size, suffix in _BINARY:
            if abs(value) >= size:
                return f"{_number(value / size, 3)} {suffix}"
        return f"{_number(value, 4)} B"
    suffix = "/s" if unit == "reqps" else ""
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{_number(value / scale, 3)}{prefix}{suffix}"
    return f"{_number(value)}{suffix}"


def sort_key(value: float) -> tuple[int, float]:
    """Sort key for "largest first": ``+Inf`` first, then descending values, ``-Inf``, and ``NaN`` last."""
    if math.isnan(value):
        return (1, 0.0)
    return (0, -value)


def common_labels(label_sets: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The labels (name and value) every one of ``label_sets`` has; empty for fewer than two sets."""
    if len(label_sets) < 2:
        return {}
    first = label_sets[0]
    return {k: v for k, v in first.items() if all(s.get(k) == v for s in label_sets[1:])}


def _short(value: str) -> str:
    return value if len(value) <= _MAX_LABEL_VALUE else value[: _MAX_LABEL_VALUE - 1] + "…"


def series_label(labels: Mapping[str, str], *, omit: Mapping[str, str] | None = None) -> str:
    """``metric{a="1", b="2"}`` without the labels in ``omit``; long values are cut; ``{}`` for an empty set."""
    skip = omit or {}
    name = labels.get("__name__", "") if "__name__" not in skip else ""
    rest = [f'{k}="{_short(v)}"' for k, v in sorted(labels.items()) if k != "__name__" and k not in skip]
    if not rest:
        return name or "{}"
    return f"{name}{{{', '.join(rest)}}}"


@dataclass(frozen=True)
class InstantTable:
    """A rendered instant vector: ``text`` goes in a code block; ``header`` names the labels shared by all rows."""

    header: str
    text: str
    shown: int
    total: int


def instant_table(
    rows: Sequence[tuple[Mapping[str, str], float]], *, unit: str = "none", limit: int = _MAX_ROWS
) -> InstantTable:
    """Top ``limit`` series by value as aligned ``labels  value`` lines, with the shared labels pulled out."""
    ordered = sorted(rows, key=lambda row: sort_key(row[1]))
    shown = ordered[:limit]
    shared = common_labels([labels for labels, _ in ordered])
    header = series_label(shared) if shared else ""
    names = [series_label(labels, omit=shared) for labels, _ in shown]
    values = [format_value(value, unit) for _, value in shown]
    width = min(max((len(n) for n in names), default=0), 72)
    value_width = max((len(v) for v in values), default=0)
    lines = [
        f"{(n if len(n) <= width else n[: width - 1] + '…'):<{width}}  {v:>{value_width}}"
        for n, v in zip(names, values, strict=True)
    ]
    if len(ordered) > len(shown):
        lines.append(f"… {len(ordered) - len(shown)} more series (showing the top {len(shown)} by value)")
    return InstantTable(header=header, text="\n".join(lines), shown=len(shown), total=len(ordered))
