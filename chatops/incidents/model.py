"""Incidents as values: the row, its lifecycle status and the recorded outcome of a declare-workflow step.

Lifecycle: ``declared → mitigated → resolved → postmortem_shipped → archived``. An incident is *open* while
declared or mitigated; at most one open incident per service unless a declaration explicitly allows another.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["OPEN_STATUSES", "Incident", "IncidentNotFoundError", "IncidentStatus", "StepOutcome", "StepStatus"]


class IncidentStatus(StrEnum):
    """Where an incident is in its lifecycle (the values stored in ``incidents.status``)."""

    DECLARED = "declared"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    POSTMORTEM_SHIPPED = "postmortem_shipped"
    ARCHIVED = "archived"


#: Statuses in which an incident is still being worked on.
OPEN_STATUSES: frozenset[IncidentStatus] = frozenset({IncidentStatus.DECLARED, IncidentStatus.MITIGATED})


class StepStatus(StrEnum):
    """Outcome of one declare-workflow step (``incident_steps.status``)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class IncidentNotFoundError(LookupError):
    """An operation named an incident id that is not in the database."""


@dataclass(frozen=True)
class Incident:
    """One row of ``incidents``. Timestamps are timezone-aware (UTC)."""

    id: str
    severity: str
    service: str
    status: IncidentStatus
    ic_user_id: str
    declared_by: str
    declared_at: dt.datetime
    policy_digest: str
    channel_id: str | None = None
    channel_name: str | None = None
    resolved_at: dt.datetime | None = None
    resolved_by: str | None = None
    summary_ts: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def is_open(self) -> bool:
        """True while the incident is declared or mitigated."""
        return self.status in OPEN_STATUSES


@dataclass(frozen=True)
class StepOutcome:
    """The last recorded outcome of a workflow step and how many attempts it took."""

    step: str
    status: StepStatus
    attempts: int
    updated_at: dt.datetime
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def finished(self) -> bool:
        """True when the step needs no more work (done or skipped)."""
        return self.status in (StepStatus.DONE, StepStatus.SKIPPED)
