"""The resolve / severity-change renderings: topic, duration, pinned-summary edits, the open-incidents view."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from chatops.incidents.model import Incident, IncidentStatus
from chatops.incidents.naming import MAX_TOPIC, elapsed_text, resolved_topic_text
from chatops.incidents.summary import SummaryState, add_escalation, render_summary, with_resolution, with_severity
from chatops.policy.loader import load_policy
from chatops.sources.open_incidents import OpenIncidents

POLICY = load_policy(Path(__file__).resolve().parents[2] / "policy")
AT = dt.datetime(2026, 4, 22, 2, 47, tzinfo=dt.UTC)


def test_elapsed_text() -> None:
    assert elapsed_text(dt.timedelta(seconds=20)) == "under 1m"
    assert elapsed_text(dt.timedelta(minutes=44, seconds=59)) == "44m"
    assert elapsed_text(dt.timedelta(hours=1, minutes=12)) == "1h 12m"
    assert elapsed_text(dt.timedelta(hours=3)) == "3h"
    assert elapsed_text(dt.timedelta(days=2, hours=3, minutes=5)) == "2d 3h"


def test_resolved_topic_keeps_the_seed_format_and_slacks_limit() -> None:
    topic = resolved_topic_text("SEV2", "checkout", "U0ADITI01", AT, AT + dt.timedelta(minutes=44))
    assert topic == (
        "RESOLVED :: SEV2 :: checkout :: IC: <@U0ADITI01> :: started 2026-04-22-0247 UTC :: "
        "resolved 2026-04-22-0331 UTC (44m)"
    )
    long = resolved_topic_text("SEV2", "x" * 300, "U0ADITI01", AT, AT + dt.timedelta(minutes=1))
    assert len(long) == MAX_TOPIC and long.startswith("RESOLVED :: SEV2 :: xxx")


def _summary(severity: str = "sev2") -> list[dict[str, Any]]:
    state = SummaryState(
        incident_id="inc-2026-04-22-0247-checkout",
        severity=POLICY.severities[severity],
        service=POLICY.services["checkout"],
        ic_user_id="U0ADITI01",
        declared_at=AT,
    )
    return render_summary(state)


def test_with_severity_is_a_fresh_render_at_that_severity_and_keeps_escalations() -> None:
    blocks = add_escalation(_summary("sev2"), "manager via PagerDuty")
    changed = with_severity(blocks, POLICY.severities["sev1"])
    assert changed == add_escalation(_summary("sev1"), "manager via PagerDuty")
    assert blocks == add_escalation(_summary("sev2"), "manager via PagerDuty"), "the input is not changed"


def test_with_resolution_marks_the_header_and_adds_one_section_under_the_fields() -> None:
    once = with_resolution(_summary(), "03:31 UTC by <@U0ADITI01> after 44m")
    assert once[0]["text"]["text"].startswith("RESOLVED · SEV2 · checkout")
    assert once[2]["text"]["text"] == ":white_check_mark: *Resolved* 03:31 UTC by <@U0ADITI01> after 44m"
    twice = with_resolution(once, "03:40 UTC by <@U0RAVI001> after 53m")
    assert len(twice) == len(once) and twice[0]["text"]["text"].count("RESOLVED") == 1
    assert "53m" in twice[2]["text"]["text"]
    assert with_severity(once, POLICY.severities["sev1"])[0]["text"]["text"].startswith("RESOLVED · SEV1 ·")


def _incident(incident_id: str) -> Incident:
    return Incident(incident_id, "sev2", "checkout", IncidentStatus.DECLARED, "U1", "U1", AT, "digest")


async def test_an_invalidated_view_refreshes_and_drops_the_closed_incident_from_its_fallback() -> None:
    class Store:
        def __init__(self) -> None:
            self.open = [_incident("a"), _incident("b")]
            self.calls = 0
            self.fail = False
            self.gate: asyncio.Event | None = None

        async def open_incidents(self) -> list[Incident]:
            self.calls += 1
            listed = list(self.open)
            if self.gate is not None:
                await self.gate.wait()
            if self.fail:
                raise OSError("down")
            return listed

    store = Store()
    view = OpenIncidents(store, ttl=60.0, timeout=1.0)  # type: ignore[arg-type]
    old = AT  # an old event: the snapshot would be served from memory for a minute
    assert (await view.covering(old)).incidents_of("checkout") == ("a", "b")
    assert (await view.covering(old)).incidents_of("checkout") == ("a", "b") and store.calls == 1

    # A query sent before the resolve committed is not joined after it.
    store.gate = asyncio.Event()
    inflight = asyncio.create_task(view.refresh())
    await asyncio.sleep(0)
    store.open = [_incident("b")]
    view.invalidate("a")
    store.gate.set()
    assert (await view.covering(old)).incidents_of("checkout") == ("b",)
    await inflight
    assert store.calls == 3
    # And when Postgres then fails, the fallback does not bring it back.
    view.invalidate("b")
    store.fail = True
    assert (await view.covering(old)).incidents_of("checkout") == ()
    await view.close()
