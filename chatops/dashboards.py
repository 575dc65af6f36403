"""``policy/dashboards.yaml``: the panels ``/dashboard <service>`` draws, parsed into an immutable :class:`Dashboards`.

Validated by the policy loader like every policy file (``file:line:col: key.path: what was expected``), so a bad
edit is refused at start-up, on hot reload and by ``chatops policy check``. Schema (``docs/policy.md``)::

    defaults:
      range: 6h                        # /dashboard's default time range
    panels:                            # reusable panel templates, by name
      error_ratio:
        title: Error ratio (5xx)
        query: sum(rate(http_requests_total{namespace=~"$namespaces", code=~"5.."}[5m])) / sum(rate(...[5m]))
        unit: ratio                    # none, percent, ratio, seconds, bytes, reqps, cores
        thresholds: {warning: 0.01, critical: 0.05}
        legend: "{{code}}"             # optional; label values in {{...}}; default: the labels that differ
    services:
      checkout:                        # a service from services.yaml
        grafana: https://grafana.example.com/d/checkout-overview
        panels: [requests, error_ratio, {use: latency_p99, thresholds: {critical: 0.8}}]

Query placeholders: ``$service``, ``$namespace`` (the service's first namespace, else its name) and
``$namespaces`` (all of them as a regex alternation, for ``=~``). Without the file, ``/dashboard`` says so.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from chatops.policy.names import closest
from chatops.promql_format import UNITS
from chatops.render.charts import Threshold

if TYPE_CHECKING:
    from chatops.policy.loader import _Node, _Reader
    from chatops.policy.models import Service

__all__ = [
    "DASHBOARDS_FILE",
    "MAX_PANELS",
    "Dashboards",
    "PanelSpec",
    "ServiceDashboard",
    "grafana_link",
    "read_dashboards",
]

DASHBOARDS_FILE = "dashboards.yaml"
MAX_PANELS = 6
"""More panels than this do not read at Slack preview size."""
PLACEHOLDERS = ("service", "namespace", "namespaces")
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_LEGEND_LABEL = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_TEMPLATE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PANEL_KEYS = ("title", "query", "unit", "thresholds", "legend")
_MAX_RANGE = timedelta(days=31)


@dataclass(frozen=True)
class PanelSpec:
    """One panel: a PromQL template and how to draw it."""

    title: str
    query: str
    unit: str = "none"
    thresholds: tuple[Threshold, ...] = ()
    legend: str | None = None

    def query_for(self, service: Service) -> str:
        """The query with ``$service``, ``$namespace`` and ``$namespaces`` filled in for ``service``."""
        namespaces = service.namespaces or (service.name,)
        values = {
            "service": service.name,
            "namespace": namespaces[0],
            "namespaces": "|".join(re.escape(n) for n in namespaces),
        }
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), self.query)

    def legend_for(self, labels: Mapping[str, str]) -> str | None:
        """The legend template filled with ``labels`` (missing labels become empty), or None without a template."""
        if self.legend is None:
            return None
        return _LEGEND_LABEL.sub(lambda m: labels.get(m.group(1), ""), self.legend).strip() or None


@dataclass(frozen=True)
class ServiceDashboard:
    """The panels and Grafana link for one service."""

    service: str
    panels: tuple[PanelSpec, ...]
    grafana: str | None = None


@dataclass(frozen=True)
class Dashboards:
    """Every service's dashboard, and the default range."""

    services: Mapping[str, ServiceDashboard] = field(default_factory=lambda: MappingProxyType({}))
    default_range: timedelta = timedelta(hours=6)
    configured: bool = False

    @classmethod
    def empty(cls) -> Dashboards:
        """No ``dashboards.yaml``."""
        return cls()


def read_dashboards(directory: Path, reader: _Reader, services: Collection[str]) -> tuple[Dashboards, bytes | None]:
    """Parse ``directory/dashboards.yaml`` (problems go to ``reader``); :meth:`Dashboards.empty` without one.

    ``services`` are the services defined in services.yaml (a dashboard for another name is a problem). Returns the
    dashboards and the file's bytes (``None`` when absent), which are part of the policy digest.
    """
    from chatops.policy.loader import _parse

    if not (directory / DASHBOARDS_FILE).is_file():
        return Dashboards.empty(), None
    raw, document = _parse(directory, DASHBOARDS_FILE, reader)
    if document is None:
        return Dashboards.empty(), raw
    return _DashboardsReader(reader, services).document(document), raw


class _DashboardsReader:
    """Validation of one ``dashboards.yaml`` document, reporting through the policy loader's reader."""

    def __init__(self, reader: _Reader, services: Collection[str]) -> None:
        self.r = reader
        self.known_services = services

    def document(self, node: _Node) -> Dashboards:
        top = self.r.fields(node, ("services",), ("defaults", "panels"))
        defaults = self.r.fields(top["defaults"], (), ("range",)) if "defaults" in top else {}
        default_range = timedelta(hours=6)
        if "range" in defaults:
            default_range = self.r.duration(defaults["range"]) or default_range
            if default_range > _MAX_RANGE:
                self.r.problem(defaults["range"], "at most 31d")
        templates: dict[str, PanelSpec] = {}
        for name, child in self.r.entries(top["panels"]) if "panels" in top else []:
            if not _TEMPLATE_NAME.fullmatch(name):
                self.r.problem(child, "panel names are lower-case letters, digits and _", at_key=True)
                continue
            panel = self.panel(child, None)
            if panel is not None:
                templates[name] = panel
        dashboards: dict[str, ServiceDashboard] = {}
        for name, child in self.r.entries(top["services"]) if "services" in top else []:
            if name not in self.known_services:
                suggestion = closest(name, self.known_services)
                hint = f"did you mean {suggestion}? " if suggestion else ""
                known = ", ".join(self.known_services)
                self.r.problem(
                    child, f"unknown service — {hint}services are defined in services.yaml: {known}", at_key=True
                )
                continue
            dashboards[name] = self.service(name, child, templates)
        return Dashboards(services=MappingProxyType(dashboards), default_range=default_range, configured=True)

    def service(self, name: str, node: _Node, templates: Mapping[str, PanelSpec]) -> ServiceDashboard:
        f = self.r.fields(node, ("panels",), ("grafana",))
        grafana = (self.r.url(f["grafana"]) or None) if "grafana" in f else None
        panels: list[PanelSpec] = []
        items = self.r.items(f["panels"]) if "panels" in f else []
        if "panels" in f and not items and isinstance(f["panels"].value, list):
            self.r.problem(f["panels"], "list at least one panel")
        if len(items) > MAX_PANELS:
            self.r.problem(f["panels"], f"at most {MAX_PANELS} panels (more do not read at Slack preview size)")
        for item in items:
            panel = self.item(item, templates)
            if panel is not None:
                panels.append(panel)
        return ServiceDashboard(service=name, panels=tuple(panels), grafana=grafana)

    def item(self, node: _Node, templates: Mapping[str, PanelSpec]) -> PanelSpec | None:
        if isinstance(node.value, str):
            return self.template(node, templates)
        return self.panel(node, templates)

    def template(self, node: _Node, templates: Mapping[str, PanelSpec]) -> PanelSpec | None:
        name = self.r.text(node, like="a panel name from panels:")
        if not name:
            return None
        if name not in templates:
            suggestion = closest(name, templates)
            hint = f"did you mean {suggestion}? " if suggestion else ""
            self.r.problem(node, f"unknown panel {name!r} — {hint}panels: {', '.join(templates) or 'none defined'}")
            return None
        return templates[name]

    def panel(self, node: _Node, templates: Mapping[str, PanelSpec] | None) -> PanelSpec | None:
        """A panel mapping; with ``templates`` (a service's list) it may start from ``use: <template>``."""
        uses = templates is not None and isinstance(node.value, dict) and "use" in node.value
        required = () if uses else ("title", "query")
        optional = tuple(k for k in _PANEL_KEYS if k not in required) + (("use",) if templates is not None else ())
        f = self.r.fields(node, required, optional)
        base = self.template(f["use"], templates) if uses and templates is not None and "use" in f else None
        if uses and base is None:
            return None
        if base is None and not ("title" in f and "query" in f):
            return None
        spec = base or PanelSpec(title="", query="")
        changes: dict[str, Any] = {}
        if "title" in f:
            changes["title"] = self.r.text(f["title"], like="a panel title")
        if "query" in f:
            changes["query"] = self.query(f["query"])
        if "unit" in f:
            changes["unit"] = self.r.choice(f["unit"], UNITS) or "none"
        if "thresholds" in f:
            changes["thresholds"] = self.thresholds(f["thresholds"])
        if "legend" in f:
            changes["legend"] = self.r.text(f["legend"], like="a legend template like '{{pod}}'")
        return replace(spec, **changes)

    def query(self, node: _Node) -> str:
        text = self.r.text(node, like="a PromQL query")
        for match in _PLACEHOLDER.finditer(text):
            if match.group(1) not in PLACEHOLDERS:
                suggestion = closest(match.group(1), PLACEHOLDERS)
                hint = f"did you mean ${suggestion}? " if suggestion else ""
                known = ", ".join(f"${p}" for p in PLACEHOLDERS)
                self.r.problem(node, f"unknown placeholder ${match.group(1)} — {hint}placeholders: {known}")
        return " ".join(text.split())

    def thresholds(self, node: _Node) -> tuple[Threshold, ...]:
        out = []
        for level, child in self.r.fields(node, (), ("warning", "critical")).items():
            value = child.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.r.problem(child, f"expected a number, got {value!r}")
                continue
            out.append(Threshold(value=float(value), level=cast(Literal["warning", "critical"], level)))
        return tuple(sorted(out, key=lambda t: t.level != "warning"))


def grafana_link(url: str, start_ms: int, end_ms: int) -> str:
    """``url`` with ``from``/``to`` set to the chart's time range (epoch milliseconds, as Grafana takes them)."""
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}from={start_ms}&to={end_ms}"
