"""Typed arguments: durations, timestamps, user mentions, the raw rest of the line, and the error format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chatops.args import parse_args, parse_duration, parse_timestamp, parse_user
from chatops.errors import ArgError
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy
from chatops.spec import Arg, CommandSpec

SHIPPED = Path(__file__).resolve().parents[2] / "policy"
NOW = datetime(2026, 4, 22, 3, 10, tzinfo=UTC)


async def _noop(ctx: object) -> None:
    return None


def spec(*args: Arg, name: str = "/t") -> CommandSpec:
    return CommandSpec(name=name, summary="test", handler=_noop, args=args, examples=(f"{name} example",))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(SHIPPED)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(days=7)),
        (" 6H ", timedelta(hours=6)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "m", "1.5h", "-5m", "0m", "401d", "1h 30m", "9999999999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_clock_times_are_the_latest_past_utc_moment() -> None:
    assert parse_timestamp("02:47", NOW) == datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
    assert parse_timestamp("03:10", NOW) == NOW
    assert parse_timestamp("23:59:30", NOW) == datetime(2026, 4, 21, 23, 59, 30, tzinfo=UTC)


def test_iso_timestamps_are_utc() -> None:
    assert parse_timestamp("2026-04-22T02:47Z", NOW) == datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
    assert parse_timestamp("2026-04-22 08:17+05:30", NOW) == datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
    assert parse_timestamp("2026-04-22T02:47", NOW).tzinfo is UTC


@pytest.mark.parametrize("text", ["24:00", "2:7", "yesterday", "W2026-17", "2026-13-01T00:00"])
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text, NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("<@U0RAVI001|ravi>", "U0RAVI001"), ("<@U0RAVI001>", "U0RAVI001"), ("W0ENT1234", "W0ENT1234")],
)
def test_user_mentions(text: str, expected: str) -> None:
    assert parse_user(text) == expected


@pytest.mark.parametrize("text", ["@ravi", "ravi", "<#C123|ops>", "<@ravi>", ""])
def test_not_user_mentions(text: str) -> None:
    with pytest.raises(ValueError):
        parse_user(text)


def test_typed_args_are_coerced(policy: Policy) -> None:
    s = spec(Arg("who", kind="user"), Arg("since", kind="timestamp"), Arg("window", kind="duration", required=False))
    values = parse_args(s, "<@U0RAVI001|ravi> since=02:47 window=45m", policy, now=NOW)
    assert values == {
        "who": "U0RAVI001",
        "since": datetime(2026, 4, 22, 2, 47, tzinfo=UTC),
        "window": timedelta(minutes=45),
    }


def test_rest_keeps_the_line_as_typed_and_peels_trailing_options(policy: Policy) -> None:
    s = spec(Arg("expr", kind="rest"), Arg("range", kind="duration", required=False), Arg("v", kind="flag"))
    values = parse_args(s, 'sum by (job) (rate(http{code=~"5..", path="/a b"}[5m]))  >  0 range=1h --v', policy)
    assert values == {
        "expr": 'sum by (job) (rate(http{code=~"5..", path="/a b"}[5m]))  >  0',
        "range": timedelta(hours=1),
        "v": True,
    }


def test_rest_that_is_one_quoted_string_loses_its_quotes(policy: Policy) -> None:
    s = spec(Arg("target"), Arg("reason", kind="rest", required=False))
    assert parse_args(s, "secondary “db is on fire”", policy) == {"target": "secondary", "reason": "db is on fire"}
    assert parse_args(s, "secondary it’s “on fire”", policy)["reason"] == 'it\'s "on fire"'


def test_smart_quotes_group_words(policy: Policy) -> None:
    s = spec(Arg("a"), Arg("b"))
    assert parse_args(s, "‘one two’ “three four”", policy) == {"a": "one two", "b": "three four"}


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        ((Arg("n", kind="int"),), "x", "n must be a whole number, got 'x'"),
        ((Arg("d", kind="duration"),), "soon", "d must be a duration like 30m"),
        ((Arg("t", kind="timestamp"),), "25:00", "t must be a time like 02:47 (UTC)"),
        ((Arg("u", kind="user"),), "@ravi", "u must be a person: type @ and pick them"),
        ((Arg("c", kind="choice", choices=("a", "b")),), "z", "c must be one of a, b, got 'z'"),
        ((Arg("s", kind="service"),), "chekout", "did you mean checkout?"),
        ((Arg("a"),), "one two", "unexpected 'two'"),
        ((Arg("a"),), "", "missing a"),
        ((Arg("a"),), "--nope", "unknown option '--nope'"),
        ((Arg("a"),), '"unbalanced', "could not read the arguments"),
    ],
)
def test_errors_name_the_problem(policy: Policy, args: tuple[Arg, ...], text: str, message: str) -> None:
    with pytest.raises(ArgError) as caught:
        parse_args(spec(*args), text, policy, now=NOW)
    assert message in str(caught.value)


def test_usage_errors_show_usage_and_example(policy: Policy) -> None:
    with pytest.raises(ArgError) as caught:
        parse_args(spec(Arg("n", kind="int")), "x", policy)
    assert str(caught.value).splitlines()[1:] == ["Usage: `/t <n>`", "Example: `/t example`"]


def test_arg_declarations_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Arg("x", kind="number")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs choices"):
        Arg("x", kind="choice")
    with pytest.raises(ValueError, match="identifier"):
        Arg("dry-run", kind="flag")
    assert Arg("x", kind="choice", choices=("Fast", "SLOW")).choices == ("fast", "slow")
