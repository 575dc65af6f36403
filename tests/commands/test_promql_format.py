"""Value formatting, label shortening, the instant table and the step choice: pure functions."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from chatops.errors import UserError
from chatops.integrations.prometheus import MAX_POINTS, choose_step, format_duration
from chatops.promql_format import common_labels, format_value, instant_table, series_label, sort_key


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (0.0, "none", "0"),
        (3.0, "none", "3"),
        (0.0599999, "none", "0.06"),
        (120.5, "none", "120.5"),
        (12_345.0, "none", "12.3k"),
        (4_560_000.0, "reqps", "4.56M/s"),
        (120.0, "reqps", "120/s"),
        (0.00001234, "none", "1.23e-05"),
        (math.nan, "seconds", "NaN"),
        (math.inf, "none", "+Inf"),
        (-math.inf, "bytes", "-Inf"),
        (0.06, "ratio", "6%"),
        (0.0042, "ratio", "0.42%"),
        (99.5, "percent", "99.5%"),
        (0.48, "seconds", "480ms"),
        (0.00025, "seconds", "250µs"),
        (2.35, "seconds", "2.35s"),
        (900.0, "seconds", "15min"),
        (1536.0, "bytes", "1.5 KiB"),
        (3 * 2**30, "bytes", "3 GiB"),
        (512.0, "bytes", "512 B"),
    ],
)
def test_format_value(value: float, unit: str, expected: str) -> None:
    assert format_value(value, unit) == expected


def test_sort_key_puts_inf_first_and_nan_last() -> None:
    values = [1.0, math.nan, math.inf, -math.inf, 5.0]
    ordered = sorted(values, key=sort_key)
    assert ordered[:4] == [math.inf, 5.0, 1.0, -math.inf]
    assert math.isnan(ordered[4])


def test_labels_shared_by_every_series_are_said_once() -> None:
    rows = [
        ({"__name__": "up", "job": "api", "instance": "a:9090"}, 1.0),
        ({"__name__": "up", "job": "api", "instance": "b:9090"}, 0.0),
    ]
    assert common_labels([r[0] for r in rows]) == {"__name__": "up", "job": "api"}
    table = instant_table(rows)
    assert table.header == 'up{job="api"}'
    assert table.text.splitlines() == ['{instance="a:9090"}  1', '{instance="b:9090"}  0']


def test_long_label_values_are_cut() -> None:
    label = series_label({"pod": "x" * 80})
    assert len(label) < 60 and label.endswith('…"}')


def test_instant_table_shows_the_top_series_and_counts_the_rest() -> None:
    rows = [({"pod": f"p{i:02d}"}, float(i)) for i in range(40)] + [({"pod": "nan"}, math.nan)]
    table = instant_table(rows, limit=5)
    lines = table.text.splitlines()
    assert lines[0].startswith('{pod="p39"}') and lines[0].endswith("39")
    assert len(lines) == 6 and lines[-1] == "… 36 more series (showing the top 5 by value)"
    assert (table.shown, table.total) == (5, 41)


def test_instant_table_aligns_values_and_handles_specials() -> None:
    rows = [({"kind": "inf"}, math.inf), ({"kind": "normal"}, 1.5), ({"kind": "nan"}, math.nan)]
    lines = instant_table(rows).text.splitlines()
    assert [line.split()[-1] for line in lines] == ["+Inf", "1.5", "NaN"]
    assert len({len(line) for line in lines}) == 1, "columns are aligned"


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(hours=6), timedelta(seconds=30)),
        (timedelta(hours=1), timedelta(seconds=15)),
        (timedelta(days=1), timedelta(minutes=2)),
        (timedelta(days=30), timedelta(hours=1)),
    ],
)
def test_automatic_step_aims_for_about_720_points(span: timedelta, expected: timedelta) -> None:
    choice = choose_step(span)
    assert choice.step == expected
    assert choice.points <= 721 and not choice.note


def test_a_requested_step_over_the_limit_is_raised_with_a_note() -> None:
    choice = choose_step(timedelta(days=7), timedelta(seconds=15))
    assert choice.points <= MAX_POINTS
    assert choice.step == timedelta(seconds=55)
    assert "step raised from 15s to 55s" in choice.note and "11,000" in choice.note
    ok = choose_step(timedelta(hours=1), timedelta(seconds=1))
    assert ok.step == timedelta(seconds=1) and ok.points == 3601 and not ok.note


@pytest.mark.parametrize("days", [1, 7, 31, 400])
def test_no_step_choice_ever_exceeds_the_limit(days: int) -> None:
    for requested in (None, timedelta(seconds=1)):
        assert choose_step(timedelta(days=days), requested).points <= MAX_POINTS


def test_zero_range_is_refused() -> None:
    with pytest.raises(UserError):
        choose_step(timedelta(0))


def test_format_duration() -> None:
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(days=2)) == "2d"
    assert format_duration(timedelta(seconds=55)) == "55s"
