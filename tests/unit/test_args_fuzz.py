"""Fuzzing the parser with every real spec: any text parses or is refused with an ArgError, never anything else."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatops.args import parse_args, tokenise
from chatops.errors import ArgError
from chatops.policy.loader import load_policy
from chatops.registry import Registry

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "policy")
SPECS = list(Registry.discover(REPO / "commands", use_entry_points=False))

# Text people (and clients) actually produce, plus arbitrary unicode: quotes of every kind, mentions, options.
_PIECES = st.sampled_from(
    [
        '"',
        "'",
        "“",
        "”",
        "‘",
        "’",
        "\\",
        "=",
        "--",
        "-",
        "<@U0RAVI001|ravi>",
        "sev2",
        "checkout",
        "30m",
        "02:47",
        "2026-04-22T02:47Z",
        "range=",
        "at=",
        "--new",
        "help",
        " ",
        "\t",
        "\n",
        "\x00",
        "🔥",
        '{job="x"}',
        "[5m]",
    ]
)
TEXT = st.one_of(st.text(max_size=80), st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=12).map("".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=max(len(SPECS) - 1, 0)), text=TEXT)
def test_any_text_parses_or_is_an_arg_error(index: int, text: str) -> None:
    spec = SPECS[index]
    try:
        values = parse_args(spec, text, POLICY)
    except ArgError as exc:
        assert "Usage:" in str(exc) or "could not read the arguments" in str(exc)
        return
    assert set(values) <= {a.name for a in spec.args}


@settings(max_examples=300, deadline=None)
@given(text=TEXT)
def test_tokenise_never_raises_anything_but_arg_error(text: str) -> None:
    with contextlib.suppress(ArgError):
        tokenise(text)


def test_there_are_specs_to_fuzz() -> None:
    assert len(SPECS) >= 4
    assert pytest is not None
