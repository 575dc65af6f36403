"""``chatops.args``: tokenising and parsing command lines against declared arguments and the shipped policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from chatops.args import parse_args, tokenise
from chatops.context import Context
from chatops.errors import ArgError
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy
from chatops.spec import Arg, CommandSpec

REPO = Path(__file__).resolve().parents[2]


async def _handler(ctx: Context) -> None:  # pragma: no cover - never run, only referenced by specs
    return None


def spec(name: str, *args: Arg, examples: tuple[str, ...] = ()) -> CommandSpec:
    return CommandSpec(name=name, summary="test", handler=_handler, args=args, examples=examples)


DECLARE = spec(
    "/incident declare",
    Arg("severity", kind="severity"),
    Arg("service", kind="service"),
    Arg("new", kind="flag"),
    examples=("/incident declare sev2 checkout",),
)
NOTE = spec("/incident note", Arg("text", kind="rest"))
SCOPED_NOTE = spec("/incident note", Arg("incident", required=False), Arg("text", kind="rest"))
SEARCH = spec(
    "/search",
    Arg("query", kind="rest"),
    Arg("limit", kind="int", required=False),
    Arg("dry_run", kind="flag"),
)
CHOICE = spec("/status", Arg("state", kind="choice", choices=("Investigating", "Mitigated")))


@pytest.fixture(scope="module")
def policy() -> Policy:
    """The policy shipped in ``policy/`` (sev1..sev3; checkout, rider-pos, auth)."""
    return load_policy(REPO / "policy")


# ------------------------------------------------------------------------------------------------ tokenise


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("sev2 checkout", ["sev2", "checkout"]),
        ("  sev2\t checkout  ", ["sev2", "checkout"]),
        ('"two words" three', ["two words", "three"]),
        ("“two words” three", ["two words", "three"]),  # Slack's typographic double quotes
        ("‘two words’ three", ["two words", "three"]),  # and single ones
        ("„low quote“ x", ["low quote", "x"]),
        ("key=“a b”", ["key=a b"]),
        ("", []),
    ],
)
def test_tokenise_splits_like_a_shell_after_fixing_smart_quotes(text: str, tokens: list[str]) -> None:
    assert tokenise(text) == tokens


def test_tokenise_refuses_an_unbalanced_quote_with_a_readable_error() -> None:
    with pytest.raises(ArgError, match="could not read the arguments"):
        tokenise('"no end')


# ------------------------------------------------------------------------------------- positional and named


def test_positional_arguments_are_coerced_against_the_policy(policy: Policy) -> None:
    values = parse_args(DECLARE, "sev2 checkout", policy)
    assert values["severity"] is policy.severity("sev2")
    assert values["service"] is policy.service("checkout")
    assert values["new"] is False


def test_key_value_arguments_in_any_order(policy: Policy) -> None:
    values = parse_args(DECLARE, "service=auth severity=sev1", policy)
    assert values["severity"].name == "sev1"
    assert values["service"].name == "auth"


def test_key_value_and_positional_mix_fills_the_remaining_slots(policy: Policy) -> None:
    values = parse_args(DECLARE, "checkout severity=sev3", policy)
    assert (values["severity"].name, values["service"].name) == ("sev3", "checkout")


def test_a_flag_is_true_when_given_anywhere(policy: Policy) -> None:
    assert parse_args(DECLARE, "--new sev2 checkout", policy)["new"] is True
    assert parse_args(DECLARE, "sev2 checkout --new", policy)["new"] is True


def test_a_flag_with_dashes_names_the_underscored_argument(policy: Policy) -> None:
    values = parse_args(SEARCH, "--dry-run errors", policy)
    assert values["dry_run"] is True
    assert values["query"] == "errors"


def test_quoted_values_survive_smart_quotes(policy: Policy) -> None:
    greet = spec("/greet", Arg("who"), Arg("where"))
    assert parse_args(greet, "“Aditi Rao” ‘war room’", policy) == {"who": "Aditi Rao", "where": "war room"}


def test_choice_is_case_insensitive_and_canonicalised(policy: Policy) -> None:
    assert parse_args(CHOICE, "MITIGATED", policy) == {"state": "mitigated"}


def test_a_value_outside_the_choices_lists_them(policy: Policy) -> None:
    with pytest.raises(ArgError) as exc:
        parse_args(CHOICE, "resolved", policy)
    assert "state must be one of investigating, mitigated, got 'resolved'" in str(exc.value)


def test_an_int_that_is_not_a_number_is_refused(policy: Policy) -> None:
    with pytest.raises(ArgError, match="limit must be a whole number, got 'ten'"):
        parse_args(SEARCH, "errors limit=ten", policy)


def test_duration_and_user_kinds_are_coerced(policy: Policy) -> None:
    snooze = spec("/snooze", Arg("who", kind="user"), Arg("for_", kind="duration"))
    values = parse_args(snooze, "<@U0ADITI01|aditi> 1h30m", policy)
    assert values == {"who": "U0ADITI01", "for_": timedelta(hours=1, minutes=30)}


# ------------------------------------------------------------------------- an optional argument giving way

DASHBOARD = spec(
    "/dashboard",
    Arg("service", kind="service", required=False),
    Arg("range", kind="duration", required=False),
    examples=("/dashboard checkout",),
)


def test_a_lone_duration_skips_the_optional_service_for_the_range(policy: Policy) -> None:
    assert parse_args(DASHBOARD, "1h", policy) == {"range": timedelta(hours=1)}
    assert parse_args(DASHBOARD, "1h30m", policy) == {"range": timedelta(hours=1, minutes=30)}


def test_a_service_then_a_duration_are_taken_as_typed(policy: Policy) -> None:
    assert parse_args(DASHBOARD, "checkout 1h", policy) == {
        "service": policy.service("checkout"),
        "range": timedelta(hours=1),
    }
    assert parse_args(DASHBOARD, "checkout", policy) == {"service": policy.service("checkout")}
    assert parse_args(DASHBOARD, "range=2h", policy) == {"range": timedelta(hours=2)}


def test_a_typo_that_is_no_duration_still_gets_the_services_did_you_mean(policy: Policy) -> None:
    with pytest.raises(ArgError, match="did you mean checkout"):
        parse_args(DASHBOARD, "chekout", policy)


def test_giving_way_needs_a_spare_slot(policy: Policy) -> None:
    with pytest.raises(ArgError, match="1h"):  # both slots are taken: the first token is the service
        parse_args(DASHBOARD, "1h checkout", policy)
    with pytest.raises(ArgError, match="1h"):  # the range is named, so 1h can only be the service
        parse_args(DASHBOARD, "1h range=2h", policy)


def test_only_a_strictly_shaped_argument_is_given_way_to(policy: Policy) -> None:
    loose = spec("/x", Arg("service", kind="service", required=False), Arg("name", required=False))
    with pytest.raises(ArgError, match="did you mean checkout"):  # a typo never slides into free text
        parse_args(loose, "chekout", policy)
    counted = spec("/x", Arg("service", kind="service", required=False), Arg("count", kind="int", required=False))
    assert parse_args(counted, "3", policy) == {"count": 3}
    required = spec("/x", Arg("service", kind="service"), Arg("range", kind="duration", required=False))
    with pytest.raises(ArgError, match="1h"):  # a required argument never gives way
        parse_args(required, "1h", policy)


# --------------------------------------------------------------------------------------------- rest of line


def test_rest_takes_the_remainder_as_typed(policy: Policy) -> None:
    text = 'rolled back   "v2.3.1"  — error rate falling'
    assert parse_args(NOTE, text, policy) == {"text": text}


def test_rest_after_a_positional(policy: Policy) -> None:
    values = parse_args(SCOPED_NOTE, "inc-1 paged the DBA on-call", policy)
    assert values == {"incident": "inc-1", "text": "paged the DBA on-call"}


def test_trailing_named_arguments_are_not_part_of_the_rest(policy: Policy) -> None:
    values = parse_args(SEARCH, "rate(http_errors[5m]) > 0 limit=20 --dry-run", policy)
    assert values == {"query": "rate(http_errors[5m]) > 0", "limit": 20, "dry_run": True}


def test_a_rest_that_is_one_quoted_string_loses_its_quotes(policy: Policy) -> None:
    assert parse_args(NOTE, "“all clear”", policy) == {"text": "all clear"}


def test_a_rest_with_an_apostrophe_is_kept_as_typed(policy: Policy) -> None:
    # What an on-call types at 03:00: a lone apostrophe (Slack sends ’) is text, not an opening quote.
    assert parse_args(NOTE, "can’t reproduce, it's the cache", policy) == {"text": "can't reproduce, it's the cache"}


# ---------------------------------------------------------------------------------------------- bad usage


def test_unknown_option_is_named_with_the_usage(policy: Policy) -> None:
    with pytest.raises(ArgError) as exc:
        parse_args(DECLARE, "sev2 checkout --force", policy)
    message = str(exc.value)
    assert "unknown option '--force'" in message
    assert "Usage: `/incident declare <severity> <service> [--new]`" in message
    assert "Example: `/incident declare sev2 checkout`" in message


def test_a_flag_name_that_is_not_a_flag_is_an_unknown_option(policy: Policy) -> None:
    with pytest.raises(ArgError, match="unknown option '--service'"):
        parse_args(DECLARE, "sev2 --service", policy)


def test_missing_arguments_are_listed(policy: Policy) -> None:
    with pytest.raises(ArgError) as exc:
        parse_args(DECLARE, "", policy)
    assert "missing severity, service" in str(exc.value)
    with pytest.raises(ArgError, match="missing service"):
        parse_args(DECLARE, "sev2", policy)


def test_unexpected_extra_words_are_quoted_back(policy: Policy) -> None:
    with pytest.raises(ArgError, match="unexpected 'now please'"):
        parse_args(DECLARE, "sev2 checkout now please", policy)


def test_an_optional_argument_may_be_left_out(policy: Policy) -> None:
    values = parse_args(SEARCH, "errors", policy)
    assert values == {"query": "errors", "dry_run": False}


# ------------------------------------------------------------------------- severity and service resolution


@pytest.mark.parametrize("spelling", ["sev2", "SEV2", "sev-2", "Sev_2", "2", " SEV-2 "])
def test_severity_spellings_an_on_call_types(policy: Policy, spelling: str) -> None:
    assert parse_args(DECLARE, f"'{spelling}' checkout", policy)["severity"].name == "sev2"


@pytest.mark.parametrize("spelling", ["checkout", "CHECKOUT", "#checkout", "#Rider-POS"])
def test_service_spellings(policy: Policy, spelling: str) -> None:
    assert parse_args(DECLARE, f"sev3 {spelling}", policy)["service"].name in ("checkout", "rider-pos")


def test_unknown_service_suggests_the_closest_and_lists_all(policy: Policy) -> None:
    with pytest.raises(ArgError) as exc:
        parse_args(DECLARE, "sev2 chekout", policy)
    message = str(exc.value)
    assert "unknown service 'chekout' — did you mean checkout?" in message
    for name in policy.services:
        assert name in message
    assert "Usage: `/incident declare" in message


def test_malformed_severity_suggests_the_one_it_contains(policy: Policy) -> None:
    with pytest.raises(ArgError) as exc:
        parse_args(DECLARE, "sevv2 checkout", policy)
    assert "unknown severity 'sevv2' — did you mean sev2?" in str(exc.value)


def test_a_well_formed_but_undefined_severity_gets_no_suggestion(policy: Policy) -> None:
    # Suggesting sev3 for sev4 would be dangerous: only the valid list is shown.
    with pytest.raises(ArgError) as exc:
        parse_args(DECLARE, "sev4 checkout", policy)
    message = str(exc.value)
    assert "unknown severity 'sev4'" in message and "did you mean" not in message
    assert "sev1, sev2, sev3" in message


def test_a_service_nothing_like_any_gets_the_list_only(policy: Policy) -> None:
    with pytest.raises(ArgError) as exc:
        parse_args(DECLARE, "sev2 zzzzzz", policy)
    message = str(exc.value)
    assert "did you mean" not in message
    assert "checkout" in message and "auth" in message


def test_named_severity_is_resolved_too(policy: Policy) -> None:
    with pytest.raises(ArgError, match="did you mean checkout"):
        parse_args(DECLARE, "severity=SEV-1 service=chekout", policy)
