"""The policy snapshot: severities, service routing and comms channels, deeply immutable.

A :class:`Policy` is built once by :func:`chatops.policy.loader.load_policy` and then only read. Every dataclass is
frozen, every sequence a ``tuple`` and every mapping a ``types.MappingProxyType``, so a snapshot handed to a command
handler cannot change under it and a reload is a single reference swap.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Literal

from chatops.dashboards import Dashboards
from chatops.policy.grants import Grants
from chatops.policy.names import (
    UnknownName,
    closest,
    normalise_service,
    normalise_severity,
    severity_suggestion,
)
from chatops.sources.audit_filter import DEFAULT_AUDIT_FILTER, AuditFilter

__all__ = [
    "COMMS_POLICIES",
    "DEPLOY_WATCH_MODES",
    "TEMPLATE_FIELDS",
    "URGENCIES",
    "AlertTrigger",
    "BurnRateTrigger",
    "CommsPolicy",
    "CommsRule",
    "Dashboard",
    "DeployWatch",
    "JudgementTrigger",
    "Policy",
    "PostMortemRule",
    "Service",
    "Severity",
    "SupportTicketShareTrigger",
    "TagTrigger",
    "Trigger",
    "UnavailableTrigger",
    "UnknownName",
    "Urgency",
    "format_duration",
]

Urgency = Literal["high", "low"]
CommsPolicy = Literal["public_status_page", "in_app_banner", "internal_only"]
URGENCIES: tuple[Urgency, ...] = ("high", "low")
COMMS_POLICIES: tuple[CommsPolicy, ...] = ("public_status_page", "in_app_banner", "internal_only")
DeployWatch = Literal["open_incidents", "all_mapped"]
DEPLOY_WATCH_MODES: tuple[DeployWatch, ...] = ("open_incidents", "all_mapped")
"""``services.yaml`` ``deploy_watch``: watch Deployments in the namespaces of services with open incidents, or in
every namespace a service maps (warm caches: the first rollout after a declaration already knows the old image)."""
TEMPLATE_FIELDS: tuple[str, ...] = ("service", "severity", "channel", "started_at")
"""The placeholders a comms draft template may use."""


def format_duration(value: timedelta) -> str:
    """``timedelta(hours=1)`` → ``"1h"``, ``timedelta(minutes=30)`` → ``"30m"`` (the policy files' own notation)."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """A mechanical reason to declare a severity. Subclasses carry the data; ``kind`` is the YAML discriminator."""

    kind: ClassVar[str] = ""
    description: str | None = None

    def summary(self) -> str:
        """One line for humans, e.g. ``burn-rate > 14.4 over 1h on a P0 SLO``."""
        return self.kind


@dataclass(frozen=True, kw_only=True)
class BurnRateTrigger(Trigger):
    """Error-budget burn rate above ``threshold`` over ``window`` on an SLO of tier ``slo_tier``."""

    kind: ClassVar[str] = "burn_rate"
    slo_tier: str
    threshold: float
    window: timedelta

    def summary(self) -> str:
        """See :meth:`Trigger.summary`."""
        return f"burn-rate > {self.threshold:g} over {format_duration(self.window)} on a {self.slo_tier} SLO"


@dataclass(frozen=True, kw_only=True)
class AlertTrigger(Trigger):
    """A named alert fired (e.g. ``data-loss-detected``)."""

    kind: ClassVar[str] = "alert"
    name: str

    def summary(self) -> str:
        """See :meth:`Trigger.summary`."""
        return f"alert {self.name} fired"


@dataclass(frozen=True, kw_only=True)
class TagTrigger(Trigger):
    """A tag was applied (e.g. the security team's ``cse-confirmed``)."""

    kind: ClassVar[str] = "tag"
    name: str

    def summary(self) -> str:
        """See :meth:`Trigger.summary`."""
        return f"tag {self.name} applied"


@dataclass(frozen=True, kw_only=True)
class UnavailableTrigger(Trigger):
    """A service of tier ``service_tier`` is fully unavailable."""

    kind: ClassVar[str] = "unavailable"
    service_tier: str

    def summary(self) -> str:
        """See :meth:`Trigger.summary`."""
        return f"full unavailability of a {self.service_tier} service"


@dataclass(frozen=True, kw_only=True)
class SupportTicketShareTrigger(Trigger):
    """More than ``threshold_pct`` percent of support tickets in ``window`` name the service."""

    kind: ClassVar[str] = "support_ticket_share"
    threshold_pct: float
    window: timedelta

    def summary(self) -> str:
        """See :meth:`Trigger.summary`."""
        window = format_duration(self.window)
        return f"> {self.threshold_pct:g}% of support tickets in the last {window} name the service"


@dataclass(frozen=True, kw_only=True)
class JudgementTrigger(Trigger):
    """The IC's judgement: no number, by design the trigger of last resort."""

    kind: ClassVar[str] = "judgement"

    def summary(self) -> str:
        """See :meth:`Trigger.summary`."""
        return "IC judgement"


@dataclass(frozen=True, kw_only=True)
class PostMortemRule:
    """Whether a post-mortem is required, by when, and whether it goes to executive review."""

    required: bool
    within_business_days: int | None = None
    executive_review: bool = False
    note: str | None = None

    def summary(self) -> str:
        """``required within 3 business days, executive review`` / ``optional``."""
        if not self.required:
            text = "optional"
        elif self.within_business_days is None:
            text = "required"
        else:
            text = f"required within {self.within_business_days} business days"
        return f"{text}, executive review" if self.executive_review else text


@dataclass(frozen=True, kw_only=True)
class CommsRule:
    """Customer comms for a severity: where updates go, on what schedule, and the first draft's template."""

    policy: CommsPolicy
    initial_update_minutes: int | None = None
    update_every_minutes: int | None = None
    mitigated_update_every_minutes: int | None = None
    draft_template: str | None = None

    @property
    def customer_facing(self) -> bool:
        """True unless comms are internal only (a customer-facing severity gets a draft in the draft channel)."""
        return self.policy != "internal_only"

    def draft(self, *, service: str, severity: str, channel: str, started_at: str) -> str | None:
        """Render the draft template, or ``None`` when this severity has none (internal-only comms)."""
        if self.draft_template is None:
            return None
        values = {"service": service, "severity": severity, "channel": channel, "started_at": started_at}
        return string.Formatter().vformat(self.draft_template, (), values)

    def summary(self) -> str:
        """``public_status_page: initial update within 15 min, then every 30 min``."""
        parts = []
        if self.initial_update_minutes is not None:
            parts.append(f"initial update within {self.initial_update_minutes} min")
        if self.update_every_minutes is not None:
            parts.append(f"then every {self.update_every_minutes} min")
        if self.mitigated_update_every_minutes is not None:
            parts.append(f"every {self.mitigated_update_every_minutes} min once mitigated")
        return f"{self.policy}: {', '.join(parts)}" if parts else self.policy


@dataclass(frozen=True, kw_only=True)
class Severity:
    """One severity level: who is paged, how urgently, comms, post-mortem and the triggers that demand it."""

    name: str
    label: str
    rank: int
    description: str
    page: tuple[str, ...]
    urgency: Urgency
    comms: CommsRule
    post_mortem: PostMortemRule
    war_room_required: bool
    triggers: tuple[Trigger, ...]


@dataclass(frozen=True, kw_only=True)
class Dashboard:
    """A dashboard link pinned in the war room."""

    title: str
    url: str


@dataclass(frozen=True, kw_only=True)
class Service:
    """A service: its tier, owners, PagerDuty routing (role → PagerDuty service id) and links."""

    name: str
    tier: str
    owner_team: str
    pagerduty: Mapping[str, str]
    runbook_url: str
    dashboards: tuple[Dashboard, ...]
    bridge_url: str | None
    namespaces: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Policy:
    """One validated, immutable snapshot of the policy directory.

    ``severities`` is ordered by rank (sev1 first), ``services`` in file order, ``roles`` maps each known role to a
    description. ``digest`` is the sha256 of the source files; equal digests mean identical policy. ``grants``
    says who may run what (``grants.yaml``, or :meth:`Grants.default` without one); ``audit`` which Kubernetes audit
    events are recorded (``audit.yaml``, or the default filter).
    """

    severities: Mapping[str, Severity]
    services: Mapping[str, Service]
    roles: Mapping[str, str]
    draft_channel: str
    platform_channel: str
    digest: str
    loaded_at: datetime
    grants: Grants = field(default_factory=Grants.default)
    audit: AuditFilter = DEFAULT_AUDIT_FILTER
    dashboards: Dashboards = field(default_factory=Dashboards.empty)
    deploy_watch: DeployWatch = "open_incidents"

    def severity(self, text: str) -> Severity:
        """Look up a severity by any accepted spelling (``sev2``, ``SEV-2``, ``sev_2``, ``2``).

        Raises :class:`UnknownName` listing the valid severities and, for a typo, the likely one.
        """
        name = normalise_severity(text)
        if name is not None and name in self.severities:
            return self.severities[name]
        raise UnknownName("severity", text, self.severities, severity_suggestion(text, self.severities))

    def service(self, text: str) -> Service:
        """Look up a service case-insensitively, ignoring surrounding ``#`` and whitespace.

        Raises :class:`UnknownName` listing the valid services and the closest one, if any is close.
        """
        name = normalise_service(text)
        if name in self.services:
            return self.services[name]
        valid = sorted(self.services)
        raise UnknownName("service", text, valid, closest(name, valid) if name else None)

    def roles_for(self, severity: Severity | str, service: Service | str) -> tuple[list[tuple[str, str]], list[str]]:
        """The roles ``severity`` pages for ``service``: ``([(role, pagerduty_id), ...], [roles with no routing])``.

        Both lists follow the severity's ``page`` order. Names are looked up as by :meth:`severity` and
        :meth:`service` (and may raise :class:`UnknownName`).
        """
        sev = self.severity(severity) if isinstance(severity, str) else severity
        svc = self.service(service) if isinstance(service, str) else service
        routed = [(role, svc.pagerduty[role]) for role in sev.page if role in svc.pagerduty]
        missing = [role for role in sev.page if role not in svc.pagerduty]
        return routed, missing

    def service_for_namespace(self, namespace: str) -> Service | None:
        """The service that owns Kubernetes ``namespace``, if any."""
        for service in self.services.values():
            if namespace in service.namespaces:
                return service
        return None
