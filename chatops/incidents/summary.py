"""The war-room summary: one pinned Block Kit message that says everything a joiner needs.

It is rendered from a :class:`SummaryState` the declare workflow fills in as steps finish, and re-rendered (then
``chat.update``-d) when pages land after the first post, so the pinned message is always the truth. Runbook and
dashboard links point at ``SummaryState.link_for(url)`` (the daemon's signed ``/go/`` redirector, which records who
opened what on the timeline) and show the real URL as their text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from chatops.policy.models import Service, Severity

__all__ = ["ESCALATED_HEADING", "PageLine", "SummaryState", "add_escalation", "escalations_of", "render_summary"]

ESCALATED_HEADING = "*Escalated*"


@dataclass
class PageLine:
    """How paging one role went."""

    role: str
    state: str  # "pending" | "paged" | "already" | "failed" | "missing" | "off"
    text: str = ""


@dataclass
class SummaryState:
    """Everything the summary shows; mutated by the workflow as steps complete."""

    incident_id: str
    severity: Severity
    service: Service
    ic_user_id: str
    declared_at: datetime
    bridge: str = "voice bridge: opening…"
    acknowledged: str = ""
    pages: dict[str, PageLine] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    link_for: Callable[[str], str] = str
    """The URL to link to for a policy URL (the identity unless the workflow mints ``/go/`` links)."""

    def fallback_text(self) -> str:
        """Plain text for notifications and clients without blocks."""
        return f":rotating_light: {self.severity.label} on {self.service.name} — IC <@{self.ic_user_id}>"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def render_summary(state: SummaryState) -> list[dict[str, Any]]:
    """Block Kit blocks for the pinned summary."""
    sev, svc = state.severity, state.service
    started = state.declared_at.strftime("%Y-%m-%d %H:%M UTC")
    fields = [
        f"*Severity*\n{sev.label}",
        f"*Service*\n`{svc.name}` ({svc.owner_team})",
        f"*Incident Commander*\n<@{state.ic_user_id}>",
        f"*Started*\n{started}",
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f"{sev.label} · {svc.name} · {state.incident_id}"[:150]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    href = state.link_for
    runbook = svc.runbook_url
    links = [f"• Runbook: <{href(runbook)}|{runbook}>" if runbook else "• Runbook: none in policy"]
    links += [f"• {d.title}: <{href(d.url)}|{d.url}>" for d in svc.dashboards]
    links.append(f"• Voice bridge: {state.bridge}")
    blocks.append(_section("\n".join(links)))
    page_lines = [f"• {line.role}: {line.text or line.state}" for line in state.pages.values()] or ["• nobody"]
    if state.acknowledged:
        page_lines.insert(0, f"• {state.acknowledged}")
    blocks.append(_section("*Paged*\n" + "\n".join(page_lines)))
    blocks.append(_section(f"*Comms policy:* {sev.comms.summary()}\n*Post-mortem:* {sev.post_mortem.summary()}"))
    if state.failures:
        blocks.append(_section(":warning: *Needs a human*\n" + "\n".join(f"• {f}" for f in state.failures)))
    blocks.append(
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": "Every message, command and page here is recorded on the incident timeline."}
            ],
        }
    )
    return blocks


def _escalated_text(block: dict[str, Any]) -> str | None:
    """The text of an *Escalated* section, or None for any other block."""
    text = block.get("text")
    if block.get("type") != "section" or not isinstance(text, dict):
        return None
    body = str(text.get("text", ""))
    return body if body.startswith(ESCALATED_HEADING) else None


def add_escalation(blocks: list[dict[str, Any]], line: str) -> list[dict[str, Any]]:
    """The summary's blocks with ``line`` added under *Escalated* (the section is created before the footer).

    Used by ``/escalate`` on the pinned message as Slack holds it, so whatever the declare workflow wrote stays.
    """
    out = [dict(b) for b in blocks]
    for index, block in enumerate(out):
        body = _escalated_text(block)
        if body is not None:
            out[index] = _section(f"{body}\n• {line}")
            return out
    at = len(out) - 1 if out and out[-1].get("type") == "context" else len(out)
    out.insert(at, _section(f"{ESCALATED_HEADING}\n• {line}"))
    return out


def escalations_of(blocks: list[dict[str, Any]] | None) -> list[str]:
    """The lines under *Escalated* in ``blocks`` (as :func:`add_escalation` wrote them), oldest first.

    The declare workflow re-renders the summary from its own state, which knows nothing of ``/escalate``: it reads
    the message as Slack holds it and adds these back with :func:`add_escalation`.
    """
    for block in blocks or ():
        body = _escalated_text(block)
        if body is not None:
            return [line for line in body[len(ESCALATED_HEADING) :].split("\n• ") if line]
    return []
