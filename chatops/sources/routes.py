"""The HTTP-side sources, built from the daemon's :class:`~chatops.context.Services` in one call.

The composition root does ``sources = http_sources(services)``, ``http.add_routes(sources.routes())`` before the
HTTP server starts, and ``await sources.close()`` when it stops.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from chatops.context import Services
from chatops.links import LinkRedirector
from chatops.sources.k8s_audit import AuditWebhook
from chatops.sources.open_incidents import OpenIncidents
from chatops.sources.pagerduty_webhook import PagerDutyWebhook

__all__ = ["HttpSources", "http_sources"]


@dataclass
class HttpSources:
    """The audit webhook, the PagerDuty webhook and the ``/go/`` redirector (when links are configured)."""

    audit: AuditWebhook
    pagerduty: PagerDutyWebhook
    redirector: LinkRedirector | None
    open_incidents: OpenIncidents

    def routes(self) -> list[web.RouteDef]:
        """Every route they serve."""
        routes = self.audit.routes() + self.pagerduty.routes()
        return routes + (self.redirector.routes() if self.redirector is not None else [])

    async def close(self) -> None:
        """Stop background refreshes."""
        await self.open_incidents.close()


def http_sources(services: Services) -> HttpSources:
    """Build the HTTP-side sources from the settings and services."""
    s = services.settings
    open_incidents = OpenIncidents(services.incidents, clock=services.clock)
    # A resolve in this process takes the incident out of the audit webhook's view at once.
    services.incidents.status_listeners.append(lambda incident: open_incidents.invalidate(incident.id))
    audit = AuditWebhook(
        token=s.k8s_audit_token.value if s.k8s_audit_token else None,
        policy=services.policy,
        incidents=open_incidents,
        sink=services.sink,
    )
    pagerduty = PagerDutyWebhook(
        secrets=[secret.value for secret in s.pagerduty_webhook_secrets],
        incidents=services.incidents,
        policy=services.policy,
        sink=services.sink,
        chat=services.chat,
        tasks=services.tasks,
        clock=services.clock,
    )
    redirector = None
    if services.links is not None:
        redirector = LinkRedirector(
            services.links, policy=services.policy, sink=services.sink, tasks=services.tasks, clock=services.clock
        )
    return HttpSources(audit, pagerduty, redirector, open_incidents)
