"""The shipped policy (policy/*.yaml) loads and encodes the seed's SEV-1/2/3 rubric and service routing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from chatops.policy.loader import load_policy
from chatops.policy.models import (
    AlertTrigger,
    BurnRateTrigger,
    JudgementTrigger,
    Policy,
    SupportTicketShareTrigger,
    TagTrigger,
    UnavailableTrigger,
)

SHIPPED = Path(__file__).resolve().parents[2] / "policy"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(SHIPPED)


def test_severities_in_rank_order(policy: Policy) -> None:
    assert list(policy.severities) == ["sev1", "sev2", "sev3"]
    assert [(s.label, s.rank) for s in policy.severities.values()] == [("SEV1", 1), ("SEV2", 2), ("SEV3", 3)]


def test_pages_per_seed(policy: Policy) -> None:
    assert policy.severities["sev1"].page == ("primary", "secondary", "manager", "vp_eng", "ciso")
    assert policy.severities["sev2"].page == ("primary", "secondary", "cs_lead")
    assert policy.severities["sev3"].page == ("primary",)


def test_urgency_and_war_room(policy: Policy) -> None:
    sev = policy.severities
    assert (sev["sev1"].urgency, sev["sev2"].urgency, sev["sev3"].urgency) == ("high", "high", "low")
    assert [s.war_room_required for s in sev.values()] == [True, True, False]


def test_comms_per_seed(policy: Policy) -> None:
    sev1, sev2, sev3 = policy.severities.values()
    assert sev1.comms.policy == "public_status_page"
    assert (sev1.comms.initial_update_minutes, sev1.comms.update_every_minutes) == (15, 30)
    assert sev2.comms.policy == "in_app_banner"
    assert sev3.comms.policy == "internal_only"
    assert not sev3.comms.customer_facing
    assert sev3.comms.draft(service="auth", severity="SEV3", channel="#x", started_at="now") is None
    draft = sev1.comms.draft(service="checkout", severity="SEV1", channel="#inc", started_at="02:47")
    assert draft == (
        "We are currently investigating an issue affecting checkout. We will share an update within 30 minutes."
    )
    assert (policy.draft_channel, policy.platform_channel) == ("status-pages-draft", "chatops-platform")


def test_post_mortem_per_seed(policy: Policy) -> None:
    sev1, sev2, sev3 = (s.post_mortem for s in policy.severities.values())
    assert (sev1.required, sev1.within_business_days, sev1.executive_review) == (True, 3, True)
    assert (sev2.required, sev2.within_business_days, sev2.executive_review) == (True, 5, False)
    assert (sev3.required, sev3.within_business_days) == (False, None)
    assert sev1.summary() == "required within 3 business days, executive review"
    assert sev3.summary() == "optional"


def test_triggers_per_seed(policy: Policy) -> None:
    sev1, sev2, sev3 = (s.triggers for s in policy.severities.values())
    assert sev1[0] == BurnRateTrigger(slo_tier="P0", threshold=14.4, window=timedelta(hours=1))
    assert sev1[1] == AlertTrigger(name="data-loss-detected")
    assert isinstance(sev1[2], TagTrigger) and sev1[2].name == "cse-confirmed"
    assert sev2 == (
        BurnRateTrigger(slo_tier="P0", threshold=6, window=timedelta(hours=1)),
        UnavailableTrigger(service_tier="P1"),
        SupportTicketShareTrigger(threshold_pct=5, window=timedelta(minutes=30)),
    )
    assert len(sev3) == 1 and isinstance(sev3[0], JudgementTrigger)
    assert sev1[0].summary() == "burn-rate > 14.4 over 1h on a P0 SLO"
    assert sev2[2].summary() == "> 5% of support tickets in the last 30m name the service"


def test_routing_per_seed(policy: Policy) -> None:
    expected = {
        "checkout": ("P3CHKO1", "P4CHKO2", "PCS1234", "checkout-platform"),
        "rider-pos": ("P9RPOS1", "P0RPOS2", "PCS1234", "rider-platform"),
        "auth": ("P5AUTH1", "P6AUTH2", "PCS1234", "identity"),
    }
    for name, (primary, secondary, cs_lead, team) in expected.items():
        service = policy.services[name]
        assert (service.pagerduty["primary"], service.pagerduty["secondary"]) == (primary, secondary)
        assert service.pagerduty["cs_lead"] == cs_lead
        assert service.owner_team == team
        assert service.runbook_url == f"https://playbooks.example.com/{name}"
        assert [d.url for d in service.dashboards] == [
            f"https://grafana.example.com/d/{name}-overview",
            f"https://tempo.example.com/search?service.name={name}",
        ]
        assert "ciso" not in service.pagerduty
    assert policy.services["rider-pos"].bridge_url is not None
    assert policy.services["checkout"].bridge_url is None


def test_sev1_on_checkout_pages_four_roles_and_reports_ciso_missing(policy: Policy) -> None:
    routed, missing = policy.roles_for("sev1", "checkout")
    assert [role for role, _ in routed] == ["primary", "secondary", "manager", "vp_eng"]
    assert missing == ["ciso"]


def test_sev2_on_auth(policy: Policy) -> None:
    routed, missing = policy.roles_for(policy.severity("SEV-2"), policy.service("#auth"))
    assert routed == [("primary", "P5AUTH1"), ("secondary", "P6AUTH2"), ("cs_lead", "PCS1234")]
    assert missing == []


def test_namespace_lookup(policy: Policy) -> None:
    assert policy.service_for_namespace("rider-pos") is policy.services["rider-pos"]
    assert policy.service_for_namespace("kube-system") is None


def test_digest_is_stable_sha256(policy: Policy) -> None:
    assert len(policy.digest) == 64
    assert load_policy(SHIPPED).digest == policy.digest


def test_snapshot_is_immutable(policy: Policy) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.digest = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.severities["sev1"].comms.policy = "internal_only"  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.services["payments"] = policy.services["checkout"]  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.services["checkout"].pagerduty["ciso"] = "PCISO01"  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.roles["x"] = "y"  # type: ignore[index]
    assert isinstance(policy.severities["sev1"].page, tuple)
    assert isinstance(policy.services["checkout"].dashboards, tuple)
    assert isinstance(policy.severities["sev1"].triggers, tuple)
