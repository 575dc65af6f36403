"""``chatops.incidents.naming``: war-room names, incident ids, topic and purpose."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatops.incidents.naming import (
    MAX_CHANNEL_NAME,
    MAX_TOPIC,
    channel_candidates,
    incident_id_for,
    normalise_channel_name,
    purpose_text,
    topic_text,
)
from chatops.sandbox.slack_state import validate_channel_name

SLACK_NAME = re.compile(r"[a-z0-9_-]{1,80}")
IST = ZoneInfo("Asia/Kolkata")


# -------------------------------------------------------------------------------------- channel normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("inc-2026-04-22-0247-checkout", "inc-2026-04-22-0247-checkout"),
        ("INC Checkout", "inc-checkout"),
        ("rider POS / payments!!", "rider-pos-payments"),
        ("a  --  b", "a-b"),
        ("--edge_case__", "edge_case"),
        ("snake_case_ok", "snake_case_ok"),
        ("café.prod", "caf-prod"),
        ("#checkout", "checkout"),
    ],
)
def test_normalise_to_slacks_rules(raw: str, expected: str) -> None:
    assert normalise_channel_name(raw) == expected
    assert validate_channel_name(expected) is None  # the sandbox's copy of Slack's rule accepts it


def test_a_long_name_is_cut_to_80_without_a_trailing_dash() -> None:
    name = normalise_channel_name("inc-" + "x" * 75 + "-yyyy")
    assert len(name) <= MAX_CHANNEL_NAME
    assert name == "inc-" + "x" * 75  # the cut lands on the dash, which is dropped
    assert validate_channel_name(name) is None


@given(st.text(max_size=200))
def test_any_text_normalises_to_a_valid_name_or_nothing(raw: str) -> None:
    name = normalise_channel_name(raw)
    assert name == "" or SLACK_NAME.fullmatch(name), name
    assert not name.startswith(("-", "_")) and not name.endswith(("-", "_"))
    assert "--" not in name
    assert normalise_channel_name(name) == name  # idempotent


def test_candidates_start_with_the_base_then_count_up() -> None:
    names = list(channel_candidates("inc-2026-04-22-0247-checkout", attempts=4))
    assert names == [
        "inc-2026-04-22-0247-checkout",
        "inc-2026-04-22-0247-checkout-2",
        "inc-2026-04-22-0247-checkout-3",
        "inc-2026-04-22-0247-checkout-4",
    ]


def test_candidates_with_suffixes_stay_within_80_characters() -> None:
    base = "inc-2026-04-22-0247-" + "s" * 70
    names = list(channel_candidates(base, attempts=20))
    assert len(names) == 20
    assert len(set(names)) == 20
    for n, name in enumerate(names[1:], start=2):
        assert name.endswith(f"-{n}")
        assert len(name) <= MAX_CHANNEL_NAME, name
        assert validate_channel_name(name) is None
    assert len(names[0]) == MAX_CHANNEL_NAME
    assert len(names[-1]) == MAX_CHANNEL_NAME  # "-20" takes three characters off the base


# ---------------------------------------------------------------------------------------------- incident id


def test_incident_id_is_in_utc_from_a_non_utc_aware_time() -> None:
    at = datetime(2026, 4, 22, 8, 17, tzinfo=IST)  # 02:47 UTC
    assert incident_id_for(at, "checkout") == "inc-2026-04-22-0247-checkout"


def test_incident_id_takes_the_utc_date_across_midnight() -> None:
    at = datetime(2026, 4, 22, 3, 0, tzinfo=IST)  # 21:30 UTC the day before
    assert incident_id_for(at, "auth") == "inc-2026-04-21-2130-auth"
    west = datetime(2026, 12, 31, 22, 5, tzinfo=timezone(timedelta(hours=-5)))
    assert incident_id_for(west, "auth") == "inc-2027-01-01-0305-auth"


def test_incident_id_normalises_the_service_name() -> None:
    at = datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
    assert incident_id_for(at, "Rider POS") == "inc-2026-04-22-0247-rider-pos"
    long_id = incident_id_for(at, "x" * 200)
    assert len(long_id) == MAX_CHANNEL_NAME and validate_channel_name(long_id) is None


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 4, 22, 2, 47)
    with pytest.raises(ValueError, match="timezone-aware"):
        incident_id_for(naive, "checkout")
    with pytest.raises(ValueError, match="timezone-aware"):
        topic_text("SEV2", "checkout", "U1", naive)


# -------------------------------------------------------------------------------------- topic and purpose


def test_topic_has_the_seed_format_in_utc() -> None:
    at = datetime(2026, 4, 22, 8, 17, tzinfo=IST)
    assert topic_text("SEV2", "checkout", "U0ADITI01", at) == (
        "SEV2 :: checkout :: IC: <@U0ADITI01> :: started 2026-04-22-0247 UTC"
    )


def test_a_long_topic_is_cut_to_250_with_an_ellipsis() -> None:
    at = datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
    topic = topic_text("SEV1", "s" * 400, "U1", at)
    assert len(topic) == MAX_TOPIC
    assert topic.startswith("SEV1 :: sss") and topic.endswith("…")


def test_a_topic_of_exactly_250_is_not_cut() -> None:
    at = datetime(2026, 4, 22, 2, 47, tzinfo=UTC)
    fixed = len(topic_text("SEV1", "", "U1", at))
    topic = topic_text("SEV1", "s" * (MAX_TOPIC - fixed), "U1", at)
    assert len(topic) == MAX_TOPIC and not topic.endswith("…")


def test_purpose_carries_the_runbook_link() -> None:
    assert purpose_text("SEV2", "checkout", "https://playbooks.example.com/checkout") == (
        "Incident SEV2 on checkout. Runbook: https://playbooks.example.com/checkout"
    )


def test_purpose_without_a_runbook_says_so() -> None:
    assert purpose_text("SEV3", "auth", None) == "Incident SEV3 on auth. Runbook: none in policy"


def test_purpose_shows_the_minted_link_when_it_fits() -> None:
    raw = "https://playbooks.example.com/checkout"
    link = "https://chatops.example.com/go/" + "t" * 120
    assert purpose_text("SEV2", "checkout", raw, link=link) == f"Incident SEV2 on checkout. Runbook: {link}"


def test_purpose_falls_back_to_the_raw_url_rather_than_cutting_the_minted_link() -> None:
    raw = "https://playbooks.example.com/checkout"
    fixed = len(purpose_text("SEV2", "checkout", raw, link="x")) - 1
    exact = "https://chatops.example.com/go/" + "t" * (MAX_TOPIC - fixed - 31)
    assert purpose_text("SEV2", "checkout", raw, link=exact).endswith(f"Runbook: {exact}")
    assert len(purpose_text("SEV2", "checkout", raw, link=exact)) == MAX_TOPIC
    longer = exact + "t"
    assert purpose_text("SEV2", "checkout", raw, link=longer) == f"Incident SEV2 on checkout. Runbook: {raw}"


def test_a_purpose_without_a_runbook_ignores_any_link() -> None:
    assert purpose_text("SEV3", "auth", None, link="https://x/go/t") == "Incident SEV3 on auth. Runbook: none in policy"


def test_a_long_purpose_is_cut_to_250() -> None:
    purpose = purpose_text("SEV2", "checkout", "https://example.com/" + "p" * 300)
    assert len(purpose) == MAX_TOPIC and purpose.endswith("…")
