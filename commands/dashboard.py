"""``/dashboard``: a service's panels (``policy/dashboards.yaml``) as one PNG in the channel, plus the Grafana link.

In a war room the Grafana link is a signed ``/go/`` link (:mod:`chatops.links`) over the chart's range, so opening
it lands on the incident's timeline like the pinned summary's links; elsewhere there is no timeline to record on,
and the Grafana URL is posted as it is. ``/dashboard 1h`` in a war room is ``range=1h`` on the room's service (a
token that is no service but a duration goes to ``range``, see :mod:`chatops.args`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from chatops import Arg, Context, UserError, command
from chatops.dashboards import PanelSpec, ServiceDashboard, grafana_link
from chatops.integrations.prometheus import PrometheusClient, PrometheusError, choose_step, format_duration
from chatops.policy.models import Service
from chatops.render import Chart, Panel, render_chart
from chatops.render.from_prometheus import panel_from_range

_STEP_MINIMUM_S = 30


def _dashboard_for(ctx: Context) -> tuple[Service, ServiceDashboard]:
    service = ctx.args.get("service")
    name = service.name if service is not None else (ctx.incident.service if ctx.incident is not None else None)
    if name is None or name not in ctx.policy.services:
        raise UserError(_which_service(ctx, name))
    dashboards = ctx.policy.dashboards
    found = dashboards.services.get(name)
    if found is None or not found.panels:
        listed = ", ".join(dashboards.services) or "none yet"
        raise UserError(f"{name} has no dashboard in policy/dashboards.yaml (services with one: {listed}).")
    return ctx.policy.services[name], found


def _which_service(ctx: Context, room_service: str | None) -> str:
    """The refusal when no service is named and the channel implies none (or one no longer in policy)."""
    names = [n for n, board in ctx.policy.dashboards.services.items() if board.panels and n in ctx.policy.services]
    if room_service is None:
        head = "Which service? Outside a war room `/dashboard` needs one"
    else:
        head = f"Which service? This war room's service, {room_service}, is no longer in policy/services.yaml"
    if not names:
        return f"{head}, and no service has a dashboard yet: add one to policy/dashboards.yaml."
    span = ctx.args.get("range")
    example = f"/dashboard {names[0]}" + (f" {format_duration(span)}" if span is not None else "")
    return f"{head}: name one of {', '.join(names)}.\nUsage: `{ctx.spec.usage}`\nExample: `{example}`"


def _grafana_href(ctx: Context, service: str, base: str, start_ms: int, end_ms: int) -> str:
    """A ``/go/`` link recorded on the incident's timeline when opened; outside a war room, the Grafana URL."""
    links = ctx.services.links
    if links is None or ctx.incident is None:
        return grafana_link(base, start_ms, end_ms)
    return links.mint(ctx.incident.id, service, base, grafana_range=(start_ms, end_ms))


async def _panel(
    client: PrometheusClient, service: Service, spec: PanelSpec, start: datetime, end: datetime, step: timedelta
) -> tuple[Panel, PrometheusError | None]:
    """One panel's data as a chart panel; a failed query becomes an empty panel and its error."""
    try:
        data = await client.range(spec.query_for(service), start=start, end=end, step=step)
    except PrometheusError as exc:
        return Panel(
            title=spec.title, unit=spec.unit, thresholds=spec.thresholds, note=f"query failed: {exc.kind}"
        ), exc
    panel = panel_from_range(data, title=spec.title, unit=spec.unit, thresholds=spec.thresholds, legend=spec.legend_for)
    return panel, None


@command(
    "/dashboard",
    summary="Post a service's dashboard: one chart of its key panels, and the Grafana link",
    args=[
        Arg("service", kind="service", required=False, help="a service (default: the war room's service)"),
        Arg("range", kind="duration", required=False, help="how far back (default 6h; e.g. 1h, 12h, 2d)"),
    ],
    examples=[
        "/dashboard checkout",
        "/dashboard rider-pos range=12h",
        "/dashboard auth 1h",
        "/dashboard range=2h",
        "/dashboard 2h",
    ],
    timeout=45.0,
)
async def dashboard(ctx: Context) -> None:
    """Query every panel concurrently, render one PNG grid off the event loop, upload it with the Grafana link."""
    service, board = _dashboard_for(ctx)
    client = ctx.services.prometheus
    if client is None:
        raise UserError("Prometheus is not configured for chatops: set PROMETHEUS_URL and restart it.")
    span: timedelta = ctx.args.get("range") or ctx.policy.dashboards.default_range
    end = ctx.services.clock().astimezone(UTC).replace(microsecond=0)
    start = end - span
    choice = choose_step(span, minimum_s=_STEP_MINIMUM_S)
    results = await asyncio.gather(*(_panel(client, service, spec, start, end, choice.step) for spec in board.panels))
    failures = [(spec, exc) for spec, (_, exc) in zip(board.panels, results, strict=True) if exc is not None]
    if failures and len(failures) == len(results) and failures[0][1].kind == "unreachable":
        raise failures[0][1]
    marker = ctx.incident.declared_at.timestamp() if ctx.incident is not None else None
    chart = Chart(
        title=f"{board.service} — last {format_duration(span)}",
        subtitle=f"{start:%Y-%m-%d %H:%M} → {end:%H:%M} UTC · step {format_duration(choice.step)}",
        start=start.timestamp(),
        end=end.timestamp(),
        panels=tuple(panel for panel, _ in results),
        marker=marker,
    )
    png = await render_chart(chart)
    lines = [f"*{board.service}* dashboard · last {format_duration(span)} to {end:%H:%M} UTC"]
    if board.grafana:
        start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
        link = _grafana_href(ctx, board.service, board.grafana, start_ms, end_ms)
        lines[0] += f" · <{link}|Open in Grafana>"
    lines += [f":warning: {spec.title}: {exc}" for spec, exc in failures]
    await ctx.upload(
        f"dashboard-{board.service}-{end:%Y%m%d-%H%M}.png",
        png,
        title=f"{board.service} dashboard, last {format_duration(span)}",
        initial_comment="\n".join(lines),
    )
