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

__all__ = [
    "ESCALATED_HEADING",
    "RESOLVED_HEADING",
    "PageLine",
    "SummaryState",
    "add_escalation",
    "escalations_of",
    "render_summary",
    "resolution_of",
    "with_resolution",
    "with_severity",
]

ESCALATED_HEADING = "*Escalated*"
RESOLVED_HEADING = ":white_check_mark: *Resolved*"
_SEVERITY_FIELD = "*Severity*\n"
_COMMS_LINE = "*Comms policy:*"
_RESOLVED_PREFIX = "RESOLVED · "


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


def _policy_text(sev: Severity) -> str:
    return f"{_COMMS_LINE} {sev.comms.summary()}\n*Post-mortem:* {sev.post_mortem.summary()}"


def _section_text(block: dict[str, Any]) -> str | None:
    text = block.get("text")
    if block.get("type") != "section" or not isinstance(text, dict):
        return None
    return str(text.get("text", ""))


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
    blocks.append(_section(_policy_text(sev)))
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


def with_severity(blocks: list[dict[str, Any]], severity: Severity) -> list[dict[str, Any]]:
    """The summary's blocks showing ``severity``: the header, the *Severity* field and the comms/post-mortem line.

    Used by ``/incident sev`` on the pinned message as Slack holds it; everything else (pages, escalations) stays.
    """
    out: list[dict[str, Any]] = []
    for original in blocks:
        block = dict(original)
        text = block.get("text")
        if block.get("type") == "header" and isinstance(text, dict):
            head = str(text.get("text", ""))
            resolved = head.startswith(_RESOLVED_PREFIX)
            rest = head.removeprefix(_RESOLVED_PREFIX).split(" · ", 1)
            rest[0] = severity.label
            block["text"] = dict(text, text=((_RESOLVED_PREFIX if resolved else "") + " · ".join(rest))[:150])
        elif isinstance(block.get("fields"), list):
            block["fields"] = [
                dict(f, text=f"{_SEVERITY_FIELD}{severity.label}")
                if isinstance(f, dict) and str(f.get("text", "")).startswith(_SEVERITY_FIELD)
                else f
                for f in block["fields"]
            ]
        elif (_section_text(block) or "").startswith(_COMMS_LINE):
            block = _section(_policy_text(severity))
        out.append(block)
    return out


def with_resolution(blocks: list[dict[str, Any]], line: str) -> list[dict[str, Any]]:
    """The summary's blocks marked resolved: ``RESOLVED ·`` in the header and a *Resolved* section with ``line``
    right under the fields (replacing one already there), so a joiner sees it first."""
    out = [dict(b) for b in blocks]
    section = _section(f"{RESOLVED_HEADING} {line}")
    for index, block in enumerate(out):
        text = block.get("text")
        if block.get("type") == "header" and isinstance(text, dict):
            head = str(text.get("text", ""))
            if not head.startswith(_RESOLVED_PREFIX):
                block["text"] = dict(text, text=(_RESOLVED_PREFIX + head)[:150])
        if (_section_text(block) or "").startswith(RESOLVED_HEADING):
            out[index] = section
            return out
    at = next((i + 1 for i, b in enumerate(out) if isinstance(b.get("fields"), list)), min(1, len(out)))
    out.insert(at, section)
    return out


def resolution_of(blocks: list[dict[str, Any]] | None) -> str | None:
    """The line of the *Resolved* section :func:`with_resolution` wrote, or None (so a re-render can carry it over)."""
    for block in blocks or ():
        text = _section_text(block) or ""
        if text.startswith(RESOLVED_HEADING):
            return text[len(RESOLVED_HEADING) :].strip()
    return None
