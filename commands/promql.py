"""``/promql``: ask Prometheus from the channel — a compact table now, or a chart over a range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatops import Arg, Context, UserError, command
from chatops.integrations.prometheus import InstantResult, PrometheusClient, choose_step, format_duration
from chatops.promql_format import format_value, instant_table
from chatops.render import Chart, render_chart
from chatops.render.from_prometheus import panel_from_range

_MAX_EXPR_SHOWN = 300


def _client(ctx: Context) -> PrometheusClient:
    client = ctx.services.prometheus
    if client is None:
        raise UserError("Prometheus is not configured for chatops: set PROMETHEUS_URL and restart it.")
    return client


def _expression(ctx: Context) -> str:
    expr = str(ctx.args.get("expr", "")).strip().strip("`").strip()
    if not expr:
        raise UserError(f"give a PromQL expression.\nUsage: `{ctx.spec.usage}`\nExample: `{ctx.spec.examples[0]}`")
    return expr


def _shown(expr: str) -> str:
    text = expr.replace("`", "'")
    return text if len(text) <= _MAX_EXPR_SHOWN else text[: _MAX_EXPR_SHOWN - 1] + "…"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def instant_message(expr: str, result: InstantResult) -> str:
    """The channel message for an instant query's answer."""
    head = f"`{_shown(expr)}` at {_utc(result.at)}"
    if result.kind == "scalar" and result.scalar is not None:
        return f"{head}\nscalar: *{format_value(result.scalar)}*"
    if result.kind == "string":
        return f"{head}\nstring: `{result.text}`"
    if not result.samples:
        return f"{head}\nno series matched (instant queries look back 5 minutes: try `range=1h`)."
    table = instant_table([(s.labels, s.value) for s in result.samples])
    count = f"{table.total} series" if table.total != 1 else "1 series"
    shared = f" · all with `{table.header}`" if table.header else ""
    return f"{head} — {count}{shared}\n```\n{table.text}\n```"


@command(
    "/promql",
    summary="Query Prometheus: a table of the top series now, or a chart with range=",
    args=[
        Arg("expr", kind="rest", help="a PromQL expression, as you would type it in Prometheus"),
        Arg("range", kind="duration", required=False, help="chart the last 1h, 30m, 6h… instead of a table"),
        Arg("step", kind="duration", required=False, help="resolution of the chart (default: about 720 points)"),
        Arg("at", kind="timestamp", required=False, help="evaluate at (or, with range, end at) 02:47 UTC or ISO"),
    ],
    examples=[
        "/promql sum by (service) (rate(http_requests_total[5m]))",
        '/promql sum(rate(http_requests_total{code="500"}[5m])) range=1h',
        "/promql histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) range=6h",
        "/promql deploy_replicas at=02:47",
        "/promql sum by (pod) (rate(container_cpu_usage_seconds_total[5m])) range=2h step=1m",
    ],
    timeout=45.0,
)
async def promql(ctx: Context) -> None:
    """Instant query → table in the channel; ``range=`` → a PNG chart uploaded to the channel."""
    client = _client(ctx)
    expr = _expression(ctx)
    at: datetime | None = ctx.args.get("at")
    span: timedelta | None = ctx.args.get("range")
    step: timedelta | None = ctx.args.get("step")
    if span is None:
        if step is not None:
            raise UserError("`step=` only applies to a chart: add `range=1h` (or another duration).")
        result = await client.instant(expr, at=at)
        await ctx.reply(instant_message(expr, result))
        return
    end = at or ctx.services.clock()
    choice = choose_step(span, step)
    data = await client.range(expr, start=end - span, end=end, step=choice.step)
    window = f"{format_duration(span)} to {end.astimezone(UTC):%H:%M} UTC, step {format_duration(choice.step)}"
    if not data.series:
        await ctx.reply(f"`{_shown(expr)}` · {window}\nno series matched in that range.")
        return
    panel = panel_from_range(data, title=_shown(expr)[:90])
    chart = Chart(
        title="PromQL",
        subtitle=f"{end.astimezone(UTC) - span:%Y-%m-%d %H:%M} → {end.astimezone(UTC):%H:%M} UTC · "
        f"step {format_duration(choice.step)} · {len(data.series)} series",
        start=(end - span).timestamp(),
        end=end.timestamp(),
        panels=(panel,),
        marker=ctx.incident.declared_at.timestamp() if ctx.incident is not None else None,
    )
    png = await render_chart(chart)
    comment = f"`{_shown(expr)}` · {window}" + (f"\n_{choice.note}_" if choice.note else "")
    await ctx.upload(
        f"promql-{end.astimezone(UTC):%Y%m%d-%H%M%S}.png", png, title="PromQL chart", initial_comment=comment
    )
