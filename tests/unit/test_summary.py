"""The pinned summary's *Escalated* section: written by ``add_escalation``, read back by ``escalations_of``."""

from __future__ import annotations

from typing import Any

from chatops.incidents.summary import add_escalation, escalations_of

FOOTER: dict[str, Any] = {"type": "context", "elements": [{"type": "mrkdwn", "text": "on the timeline"}]}
PAGED: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": "*Paged*\n• primary: PD #1"}}


def test_no_section_no_lines() -> None:
    assert escalations_of([PAGED, FOOTER]) == []
    assert escalations_of([]) == []
    assert escalations_of(None) == []


def test_lines_read_back_in_order_and_carried_onto_a_fresh_render() -> None:
    lines = ["manager via PagerDuty PD #2 by <@U1>: still climbing", "<@U2> (responder request on PD #1) by <@U1>"]
    edited = [PAGED, FOOTER]
    for line in lines:
        edited = add_escalation(edited, line)
    assert escalations_of(edited) == lines
    # As the declaration's final update does: a render without the section, then the lines the message had.
    fresh: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Paged*\n• primary: PD #1 (acknowledged)"}},
        FOOTER,
    ]
    for line in escalations_of(edited):
        fresh = add_escalation(fresh, line)
    assert fresh[0]["text"]["text"].endswith("(acknowledged)")
    assert fresh[1]["text"]["text"] == "*Escalated*\n• " + "\n• ".join(lines)
    assert fresh[-1] == FOOTER


def test_slack_s_extra_keys_do_not_hide_the_section() -> None:
    stored = [dict(b, block_id=f"b{i}") for i, b in enumerate(add_escalation([PAGED, FOOTER], "vp_eng by <@U1>"))]
    assert escalations_of(stored) == ["vp_eng by <@U1>"]
