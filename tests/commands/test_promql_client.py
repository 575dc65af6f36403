"""The async Prometheus client against a real Prometheus (Debian's, data backfilled by promtool) and, for the error
types a healthy server rarely produces on demand, a stub speaking the same envelope."""

from __future__ import annotations

import asyncio
import inspect
import math
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from chatops.integrations.prometheus import PrometheusClient, PrometheusError, _error_from_status, http_timeout
from chatops.testing_prometheus import INCIDENT_MINUTES, PrometheusServer


@pytest.fixture
async def client(prometheus: PrometheusServer) -> AsyncIterator[PrometheusClient]:
    c = PrometheusClient(prometheus.url, query_timeout=10)
    yield c
    c.close()


async def test_instant_vector(client: PrometheusClient) -> None:
    result = await client.instant("deploy_replicas")
    assert result.kind == "vector"
    assert {s.labels["service"]: s.value for s in result.samples} == {"checkout": 3.0, "rider-pos": 2.0, "auth": 2.0}


async def test_instant_keeps_nan_and_infinities(client: PrometheusClient) -> None:
    result = await client.instant("chatops_fixture_special")
    values = {s.labels["kind"]: s.value for s in result.samples}
    assert values["normal"] == 1.5 and values["inf"] == math.inf and values["neg_inf"] == -math.inf
    assert math.isnan(values["nan"])


async def test_instant_scalar_and_at(client: PrometheusClient, prometheus: PrometheusServer) -> None:
    scalar = await client.instant("scalar(sum(deploy_replicas))")
    assert scalar.kind == "scalar" and scalar.scalar == 7.0
    before = prometheus.incident_start - timedelta(minutes=10)
    ratio = (
        'sum(rate(http_requests_total{service="checkout",code="500"}[5m]))'
        ' / sum(rate(http_requests_total{service="checkout"}[5m]))'
    )
    early = await client.instant(ratio, at=before)
    late = await client.instant(ratio, at=prometheus.anchor)
    assert early.samples[0].value == pytest.approx(0.004, rel=0.01)
    assert late.samples[0].value == pytest.approx(0.06, rel=0.01)


async def test_range_query(client: PrometheusClient, prometheus: PrometheusServer) -> None:
    end = prometheus.anchor
    result = await client.range(
        'sum by (service) (rate(http_requests_total{code="200"}[5m]))',
        start=end - timedelta(hours=6),
        end=end,
        step=timedelta(seconds=30),
    )
    assert {s.labels["service"] for s in result.series} == {"checkout", "rider-pos", "auth"}
    for series in result.series:
        assert len(series.times) == 721
        assert series.times[1] - series.times[0] == 30
    checkout = next(s for s in result.series if s.labels["service"] == "checkout")
    assert checkout.values[-1] == pytest.approx(126 * 0.94, rel=0.2), "the incident's error share is taken off 2xx"
    assert INCIDENT_MINUTES == 40


async def test_bad_data_says_the_query_is_invalid(client: PrometheusClient) -> None:
    with pytest.raises(PrometheusError) as caught:
        await client.instant("sum(rate(http_requests_total[5m])")
    assert caught.value.kind == "bad_data" and caught.value.status == 400
    assert str(caught.value).startswith("your query is invalid: ")
    assert "parse error" in str(caught.value)


async def test_execution_error(client: PrometheusClient) -> None:
    # many-to-many matching is refused when the query runs, not when it is parsed
    with pytest.raises(PrometheusError) as caught:
        await client.instant("http_requests_total / on(service) group_left http_requests_total")
    assert caught.value.kind == "execution" and caught.value.status == 422
    assert str(caught.value).startswith("Prometheus could not run the query: ")


async def test_the_server_refuses_more_than_11000_points_and_so_do_we(
    client: PrometheusClient, prometheus: PrometheusServer
) -> None:
    end = prometheus.anchor
    with pytest.raises(PrometheusError) as caught:
        await client.range("deploy_replicas", start=end - timedelta(hours=4), end=end, step=timedelta(seconds=1))
    assert caught.value.kind == "bad_data" and "11,000" in str(caught.value)
    assert caught.value.status is None, "refused before sending"


HEAVY = "histogram_quantile(0.99, sum by (le, service) (rate(http_request_duration_seconds_bucket[5m])))"


async def test_a_query_over_the_limit_is_a_timeout_that_says_the_limit_and_how_to_ask_for_less(
    prometheus: PrometheusServer,
) -> None:
    # 1 ms cannot evaluate 6,480 steps of a histogram quantile: Prometheus answers 503, errorType timeout — or,
    # when the deadline passes while it still selects series, 422 execution "context deadline exceeded".
    client = PrometheusClient(prometheus.url, query_timeout=0.001)
    end = prometheus.anchor
    try:
        with pytest.raises(PrometheusError) as caught:
            await client.range(HEAVY, start=end - timedelta(hours=9), end=end, step=timedelta(seconds=5))
    finally:
        client.close()
    assert caught.value.kind == "timeout" and caught.value.status in (503, 422)
    assert str(caught.value).startswith(
        "the query timed out in Prometheus (limit 1ms, PROMETHEUS_TIMEOUT): try a shorter range, a larger step or a "
        "simpler query"
    )


async def test_a_fractional_limit_is_sent_as_milliseconds_which_prometheus_accepts(
    prometheus: PrometheusServer,
) -> None:
    client = PrometheusClient(prometheus.url, query_timeout=2.5)  # "2.5s" would be refused as bad_data
    try:
        result = await client.instant("deploy_replicas")
    finally:
        client.close()
    assert len(result.samples) == 3


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf])
def test_the_limit_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="query_timeout must be a positive number of seconds"):
        PrometheusClient("http://127.0.0.1:9", query_timeout=seconds)


def test_the_answer_is_awaited_a_little_longer_than_the_limit() -> None:
    assert [http_timeout(t) for t in (15, 30, 2, 0.2)] == [20, 35, 4, 1.2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_unreachable() -> None:
    client = PrometheusClient(f"http://127.0.0.1:{_free_port()}", query_timeout=2)
    try:
        with pytest.raises(PrometheusError) as caught:
            await client.instant("up")
    finally:
        client.close()
    assert caught.value.kind == "unreachable" and "is unreachable" in str(caught.value)


Answer = Callable[[web.Request], web.Response | Awaitable[web.Response]]


@pytest.fixture
async def stub() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[Answer]]]:
    seen: list[dict[str, Any]] = []
    answers: list[Answer] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        answer = answers[0](request)
        return await answer if inspect.isawaitable(answer) else answer

    app = web.Application()
    app.router.add_route("*", "/api/v1/{endpoint}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen, answers
    await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "error_type", "kind", "starts"),
    [
        (503, "timeout", "timeout", "the query timed out in Prometheus (limit 7s, PROMETHEUS_TIMEOUT): try a shorter"),
        (499, "canceled", "canceled", "Prometheus canceled the query: "),
        (500, "internal", "internal", "Prometheus failed internally: "),
        (422, "execution", "execution", "Prometheus could not run the query: "),
    ],
)
async def test_error_types_by_envelope(
    stub: tuple[str, list[dict[str, Any]], list[Answer]], status: int, error_type: str, kind: str, starts: str
) -> None:
    url, seen, answers = stub
    body = {"status": "error", "errorType": error_type, "error": "query processing would load too many samples"}
    answers.append(lambda _request: web.json_response(body, status=status))
    client = PrometheusClient(url, query_timeout=7)
    try:
        with pytest.raises(PrometheusError) as caught:
            await client.instant("up", at=datetime(2026, 12, 3, 2, 47, tzinfo=UTC))
    finally:
        client.close()
    assert caught.value.kind == kind and str(caught.value).startswith(starts)
    assert len(seen) == 1, "no retries on error answers (a 503 is Prometheus' timeout, not a blip)"
    assert seen[0]["timeout"] == "7s", "every query carries the server-side timeout"
    assert seen[0]["time"] == "1796266020.000"


async def test_no_answer_in_time_is_a_timeout_not_unreachable(
    stub: tuple[str, list[dict[str, Any]], list[Answer]],
) -> None:
    url, seen, answers = stub

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(2.5)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    answers.append(slow)
    client = PrometheusClient(url, query_timeout=0.25)
    started = time.monotonic()
    try:
        with pytest.raises(PrometheusError) as caught:
            await client.instant("up")
    finally:
        client.close()
    assert 1.25 <= time.monotonic() - started < 2.5, "the limit plus a grace of at least a second"
    assert caught.value.kind == "timeout", str(caught.value)
    assert str(caught.value) == (
        "the query timed out: Prometheus did not answer within 1.25s (query limit 250ms, PROMETHEUS_TIMEOUT): try a "
        "shorter range, a larger step or a simpler query (fewer series: aggregate with `sum by (…)`, match fewer "
        "labels)"
    )
    assert len(seen) == 1 and seen[0]["timeout"] == "250ms", "sent once, with the limit in Prometheus' syntax"


async def test_a_gateway_error_is_retried(stub: tuple[str, list[dict[str, Any]], list[Answer]]) -> None:
    url, seen, answers = stub
    ok = {"status": "success", "data": {"resultType": "vector", "result": []}}

    def answer(_request: web.Request) -> web.Response:
        if len(seen) == 1:
            return web.Response(status=502, text="bad gateway")
        return web.json_response(ok)

    answers.append(answer)
    client = PrometheusClient(url)
    try:
        result = await client.instant("up")
    finally:
        client.close()
    assert result.samples == () and len(seen) == 2


async def test_a_range_vector_from_an_instant_query_is_explained(client: PrometheusClient) -> None:
    with pytest.raises(Exception, match="range vector"):
        await client.instant("deploy_replicas[5m]")


def test_a_deadline_hit_while_selecting_series_is_a_timeout_too() -> None:
    body = b'{"status":"error","errorType":"execution","error":"expanding series: context deadline exceeded"}'
    error = _error_from_status(422, body, 2.0)
    assert error.kind == "timeout" and error.status == 422
    assert "limit 2s, PROMETHEUS_TIMEOUT" in str(error)
    other = _error_from_status(422, b'{"status":"error","errorType":"execution","error":"many-to-many matching"}', 2.0)
    assert other.kind == "execution"
