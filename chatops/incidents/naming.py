"""War-room names and the templated channel topic and purpose.

Channel: ``inc-YYYY-MM-DD-HHMM-<service>`` in UTC, normalised to Slack's rules (lowercase, ``[a-z0-9_-]``, at most
80 characters); when the name is taken the next candidates are ``…-2``, ``…-3``, …. The same base name is the
incident's id, which is what PagerDuty incident keys and the timeline refer to.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

__all__ = [
    "MAX_CHANNEL_NAME",
    "MAX_TOPIC",
    "channel_candidates",
    "elapsed_text",
    "incident_id_for",
    "normalise_channel_name",
    "purpose_text",
    "resolved_topic_text",
    "topic_text",
]

MAX_CHANNEL_NAME = 80
MAX_TOPIC = 250
_INVALID = re.compile(r"[^a-z0-9_-]+")


def normalise_channel_name(name: str, *, limit: int = MAX_CHANNEL_NAME) -> str:
    """Lowercase, replace anything outside ``[a-z0-9_-]`` by ``-``, squeeze dashes, cut to ``limit``."""
    cleaned = _INVALID.sub("-", name.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-_")
    return cleaned[:limit].rstrip("-_")


def _stamp(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("incident times must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%d-%H%M")


def incident_id_for(declared_at: datetime, service: str) -> str:
    """``inc-2026-04-22-0247-checkout`` for a declaration at 02:47 UTC."""
    return normalise_channel_name(f"inc-{_stamp(declared_at)}-{service}")


def channel_candidates(base: str, *, attempts: int = 20) -> Iterator[str]:
    """``base``, then ``base-2``, ``base-3``, … each still within Slack's 80 characters."""
    yield normalise_channel_name(base)
    for n in range(2, attempts + 1):
        suffix = f"-{n}"
        yield normalise_channel_name(base, limit=MAX_CHANNEL_NAME - len(suffix)) + suffix


def _cut(text: str, limit: int = MAX_TOPIC) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def topic_text(severity_label: str, service: str, ic_user_id: str, declared_at: datetime) -> str:
    """``SEV2 :: checkout :: IC: <@U123> :: started 2026-04-22-0247 UTC`` (the seed's format)."""
    return _cut(f"{severity_label} :: {service} :: IC: <@{ic_user_id}> :: started {_stamp(declared_at)} UTC")


def elapsed_text(duration: timedelta) -> str:
    """``44m``, ``1h 12m``, ``2d 3h``, ``under 1m``: how long an incident lasted, at a glance."""
    minutes = max(int(duration.total_seconds()) // 60, 0)
    if minutes < 1:
        return "under 1m"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    return f"{mins}m"


def resolved_topic_text(
    severity_label: str, service: str, ic_user_id: str, declared_at: datetime, resolved_at: datetime
) -> str:
    """``RESOLVED :: SEV2 :: checkout :: IC: <@U123> :: started 2026-04-22-0247 UTC :: resolved 0331 UTC (44m)``.

    The seed's format with the status in front (what a joiner reads first) and when it ended after it.
    """
    took = elapsed_text(resolved_at - declared_at)
    base = topic_text(severity_label, service, ic_user_id, declared_at)
    return _cut(f"RESOLVED :: {base} :: resolved {_stamp(resolved_at)} UTC ({took})")


def purpose_text(severity_label: str, service: str, runbook_url: str | None, *, link: str | None = None) -> str:
    """``Incident SEV2 on checkout. Runbook: https://…`` (the seed's format).

    ``link`` is what to show for ``runbook_url`` (the signed ``/go/`` link that records who opened it) when the
    whole purpose then fits Slack's 250 characters; otherwise the runbook URL itself, so no link is cut in half.
    """
    if not runbook_url:
        return _cut(f"Incident {severity_label} on {service}. Runbook: none in policy")
    if link:
        minted = f"Incident {severity_label} on {service}. Runbook: {link}"
        if len(minted) <= MAX_TOPIC:
            return minted
    return _cut(f"Incident {severity_label} on {service}. Runbook: {runbook_url}")
