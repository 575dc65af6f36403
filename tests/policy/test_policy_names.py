"""Severity and service name normalisation, suggestions and the UnknownName error."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatops.errors import UserError
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy
from chatops.policy.names import UnknownName, closest, edit_distance, normalise_service, normalise_severity

SHIPPED = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(SHIPPED)


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("sev2", "sev2"),
        ("SEV2", "sev2"),
        ("Sev2", "sev2"),
        ("sev-2", "sev2"),
        ("SEV-2", "sev2"),
        ("sev_2", "sev2"),
        ("Sev_2", "sev2"),
        ("2", "sev2"),
        (" sev1 ", "sev1"),
        ("\tSEV-3\n", "sev3"),
    ],
)
def test_accepted_severity_spellings(policy: Policy, typed: str, name: str) -> None:
    assert normalise_severity(typed) == name
    assert policy.severity(typed).name == name


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("sevv2", "sev2"),
        ("sev 2", "sev2"),
        ("s2", "sev2"),
        ("severity1", "sev1"),
        ("sev--2", "sev2"),
        ("sev02", "sev2"),
        ("sev–3", "sev3"),  # an en dash, as a phone keyboard may type it
        ("sev4", None),  # well-formed but undefined: never suggest a different severity
        ("5", None),
        ("sev", None),
        ("high", None),
        ("", None),
    ],
)
def test_rejected_severity_spellings(policy: Policy, typed: str, suggestion: str | None) -> None:
    with pytest.raises(UnknownName) as caught:
        policy.severity(typed)
    err = caught.value
    assert isinstance(err, UserError)
    assert (err.kind, err.given, err.valid, err.suggestion) == ("severity", typed, ("sev1", "sev2", "sev3"), suggestion)


def test_severity_error_message_lists_forms(policy: Policy) -> None:
    with pytest.raises(UnknownName) as caught:
        policy.severity("sevv2")
    assert str(caught.value) == (
        "unknown severity 'sevv2' — did you mean sev2? Valid severities: sev1, sev2, sev3 "
        "(any case; sev-1, sev_1 and plain 1 work too)"
    )
    with pytest.raises(UnknownName) as caught:
        policy.severity("sev4")
    assert str(caught.value).startswith("unknown severity 'sev4'. Valid severities: sev1, sev2, sev3")


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("checkout", "checkout"),
        ("Checkout", "checkout"),
        ("CHECKOUT", "checkout"),
        ("#checkout", "checkout"),
        (" #rider-pos ", "rider-pos"),
        ("# auth", "auth"),
        ("RIDER-POS", "rider-pos"),
    ],
)
def test_accepted_service_spellings(policy: Policy, typed: str, name: str) -> None:
    assert policy.service(typed).name == name


@pytest.mark.parametrize(
    ("typed", "suggestion"),
    [
        ("chekout", "checkout"),
        ("checkuot", "checkout"),
        ("#chcekout", "checkout"),
        ("rider_pos", "rider-pos"),
        ("riderpos", "rider-pos"),
        ("ride", "rider-pos"),
        ("auht", "auth"),
        ("aut", "auth"),
        ("payments", None),
        ("xyz", None),
        ("c", None),
        ("", None),
    ],
)
def test_rejected_service_spellings(policy: Policy, typed: str, suggestion: str | None) -> None:
    with pytest.raises(UnknownName) as caught:
        policy.service(typed)
    assert caught.value.kind == "service"
    assert caught.value.suggestion == suggestion
    assert caught.value.valid == ("auth", "checkout", "rider-pos")


def test_service_error_message(policy: Policy) -> None:
    with pytest.raises(UnknownName) as caught:
        policy.service("chekout")
    assert (
        str(caught.value)
        == "unknown service 'chekout' — did you mean checkout? Valid services: auth, checkout, rider-pos"
    )
    with pytest.raises(UnknownName) as caught:
        policy.service("  ")
    assert str(caught.value) == "no service given. Valid services: auth, checkout, rider-pos"


def test_roles_for_accepts_names_and_raises_for_unknown(policy: Policy) -> None:
    assert policy.roles_for("3", "checkout") == ([("primary", "P3CHKO1")], [])
    with pytest.raises(UnknownName):
        policy.roles_for("sev1", "chekout")


def test_normalise_service() -> None:
    assert normalise_service("  #Rider-POS ") == "rider-pos"


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("", "", 0), ("abc", "", 3), ("checkout", "chekout", 1), ("auth", "auht", 1), ("kitten", "sitting", 3)],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_closest_for_keys() -> None:
    keys = ["description", "urgency", "page", "war_room_required", "comms", "post_mortem", "triggers", "label"]
    assert closest("urgncy", keys) == "urgency"
    assert closest("war_room_requried", keys) == "war_room_required"
    assert closest("postmortem", keys) == "post_mortem"
    assert closest("Triggers", keys) == "triggers"
    assert closest("zzz", keys) is None
    assert closest("urgency", []) is None
