"""Async Prometheus HTTP API client (PROTOCOLS §5) for ``/promql`` and ``/dashboard``.

It wraps the synchronous ``prometheus_api_client.PrometheusConnect`` (requests) and runs every call in a worker
thread with :func:`asyncio.to_thread`, so the event loop never blocks. Every query carries a server-side
``timeout`` (``query_timeout``: ``PROMETHEUS_TIMEOUT``, default 15 s) and the HTTP request a slightly longer
client-side one (:func:`http_timeout`), so that Prometheus' own timeout answer, which says more, comes first. The
library's retry adapter is replaced by a short one: connection failures, 502 and 504 are retried twice; 503 is not
(it is Prometheus' ``timeout`` error), nor is an answer that does not come in time.

Failures become :class:`PrometheusError` (a :class:`~chatops.errors.UserError`, so the dispatcher shows it to the
person who ran the command as written), with ``kind`` taken from Prometheus' ``errorType``: ``bad_data`` → "your
query is invalid: …", ``execution``, ``timeout``, ``canceled``, ``internal``, plus ``unreachable`` (no connection)
and ``unavailable`` (any other HTTP failure). Both ways of timing out (Prometheus' ``timeout`` error, or no answer
within :func:`http_timeout`) are ``timeout`` and say the limit and how to ask for less.

Range queries are checked before they are sent: Prometheus refuses more than :data:`MAX_POINTS` points per
series; :func:`choose_step` picks (or raises) a step that stays under it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from chatops.errors import UserError

__all__ = [
    "MAX_POINTS",
    "InstantResult",
    "PrometheusClient",
    "PrometheusError",
    "RangeResult",
    "RangeSeries",
    "Sample",
    "StepChoice",
    "choose_step",
    "format_duration",
    "http_timeout",
]

log = logging.getLogger(__name__)

MAX_POINTS = 11_000
"""Prometheus refuses range queries with more points per series than this (``exceeded maximum resolution``)."""
DEFAULT_POINTS = 720
"""Points per series an automatic step aims for: enough for a 1200-pixel-wide chart."""
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
_TIMEOUT_ADVICE = (
    "try a shorter range, a larger step or a simpler query (fewer series: aggregate with `sum by (…)`, match fewer "
    "labels)"
)
_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\s*$", re.DOTALL)

ErrorKind = Literal["bad_data", "execution", "timeout", "canceled", "internal", "unreachable", "unavailable"]


class PrometheusError(UserError):
    """A query failed; ``kind`` is Prometheus' ``errorType`` (or ``unreachable`` / ``unavailable``)."""

    def __init__(self, kind: ErrorKind, message: str, *, detail: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector at one time."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class InstantResult:
    """An instant query's answer: a vector (``samples``) or a scalar/string (``scalar`` / ``text``)."""

    kind: Literal["vector", "scalar", "string"]
    at: datetime
    samples: tuple[Sample, ...] = ()
    scalar: float | None = None
    text: str | None = None


@dataclass(frozen=True)
class RangeSeries:
    """One series of a range query: unix-second timestamps and float values (NaN and ±Inf kept)."""

    labels: Mapping[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class RangeResult:
    """A range query's answer."""

    start: datetime
    end: datetime
    step: timedelta
    series: tuple[RangeSeries, ...] = field(default=())


@dataclass(frozen=True)
class StepChoice:
    """The step for a range query; ``note`` says why it differs from the one asked for, if it does."""

    step: timedelta
    points: int
    note: str = ""


def format_duration(value: timedelta) -> str:
    """``timedelta(hours=1, minutes=30)`` → ``"1h30m"`` (Prometheus duration syntax, whole seconds)."""
    seconds = max(0, round(value.total_seconds()))
    if seconds == 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return out


def _points(span: timedelta, step_s: float) -> int:
    return math.floor(span.total_seconds() / step_s) + 1


def choose_step(
    span: timedelta, requested: timedelta | None = None, *, target_points: int = DEFAULT_POINTS, minimum_s: int = 15
) -> StepChoice:
    """The step for a range query over ``span``: never more than :data:`MAX_POINTS` points per series.

    Without ``requested``, the smallest "nice" step (15s, 30s, 1m, 2m, 5m, …; at least ``minimum_s``) that gives
    at most ``target_points`` points. A requested step that would exceed the limit is raised to the smallest
    whole-second step that does not, with a note saying so.
    """
    if span <= timedelta(0):
        raise UserError("the range must be longer than zero")
    if requested is not None:
        step_s = max(1.0, requested.total_seconds())
        if _points(span, step_s) <= MAX_POINTS:
            return StepChoice(timedelta(seconds=step_s), _points(span, step_s))
        raised = math.ceil(span.total_seconds() / (MAX_POINTS - 1))
        note = (
            f"step raised from {format_duration(requested)} to {format_duration(timedelta(seconds=raised))}: "
            f"Prometheus returns at most {MAX_POINTS:,} points per series"
        )
        return StepChoice(timedelta(seconds=raised), _points(span, raised), note)
    wanted = span.total_seconds() / max(1, target_points)
    nice = next((s for s in _NICE_STEPS if s >= max(wanted, minimum_s)), None)
    step_s = nice if nice is not None else math.ceil(wanted / 86400) * 86400
    return StepChoice(timedelta(seconds=step_s), _points(span, step_s))


def http_timeout(query_timeout: float) -> float:
    """How long the HTTP request waits: the query's limit plus a grace of the limit itself, between 1 and 5 s."""
    return query_timeout + min(5.0, max(1.0, query_timeout))


def _param(seconds: float) -> str:
    """``15`` → ``"15s"``, ``0.25`` → ``"250ms"``: the ``timeout`` parameter (Prometheus refuses ``"0.25s"``)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{max(1, round(seconds * 1000))}ms"


def _shown(seconds: float) -> str:
    """``15`` → ``"15s"``, ``1.5`` → ``"1.5s"``, ``0.25`` → ``"250ms"``: a limit as people read it."""
    return f"{round(seconds, 2):g}s" if seconds >= 1 else f"{max(1, round(seconds * 1000))}ms"


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _error_from_status(status: int, body: bytes, timeout_s: float) -> PrometheusError:
    """Turn a non-200 answer into a PrometheusError by its ``errorType`` (status code when there is none)."""
    error_type, message = "", ""
    try:
        envelope = json.loads(body)
        if isinstance(envelope, dict):
            error_type = str(envelope.get("errorType", ""))
            message = str(envelope.get("error", ""))
    except ValueError:
        message = body.decode("utf-8", "replace").strip()[:300]
    if not error_type:
        error_type = {400: "bad_data", 422: "execution", 503: "timeout", 499: "canceled", 500: "internal"}.get(
            status, ""
        )
    message = message or f"HTTP {status}"
    if error_type == "execution" and "context deadline exceeded" in message:
        # The same limit, hit while Prometheus was still selecting series ("expanding series: context deadline
        # exceeded", 422) rather than evaluating ("query timed out in expression evaluation", 503).
        error_type = "timeout"
    if error_type == "bad_data":
        return PrometheusError("bad_data", f"your query is invalid: {message}", detail=message, status=status)
    if error_type == "execution":
        return PrometheusError(
            "execution", f"Prometheus could not run the query: {message}", detail=message, status=status
        )
    if error_type == "timeout":
        text = (
            f"the query timed out in Prometheus (limit {_shown(timeout_s)}, PROMETHEUS_TIMEOUT): {_TIMEOUT_ADVICE} "
            f"({message})"
        )
        return PrometheusError("timeout", text, detail=message, status=status)
    if error_type == "canceled":
        return PrometheusError("canceled", f"Prometheus canceled the query: {message}", detail=message, status=status)
    if error_type == "internal":
        return PrometheusError("internal", f"Prometheus failed internally: {message}", detail=message, status=status)
    return PrometheusError(
        "unavailable", f"Prometheus answered HTTP {status}: {message}", detail=message, status=status
    )


def _parse_library_error(exc: PrometheusApiClientException) -> tuple[int, bytes]:
    """The library raises ``"HTTP Status Code 400 (b'...')"``: recover the status and the body it quotes."""
    match = _STATUS.match(str(exc))
    if match is None:
        return 0, str(exc).encode()
    try:
        body = ast.literal_eval(match.group(2))
    except (ValueError, SyntaxError):
        body = match.group(2).encode()
    return int(match.group(1)), body if isinstance(body, bytes) else str(body).encode()


class PrometheusClient:
    """Queries one Prometheus server. ``query_timeout`` is the server-side limit per query, in seconds (> 0)."""

    def __init__(self, url: str, *, query_timeout: float = 15.0, headers: Mapping[str, str] | None = None) -> None:
        if not 0 < query_timeout < math.inf:
            raise ValueError(f"query_timeout must be a positive number of seconds, got {query_timeout!r}")
        self.url = url.rstrip("/")
        self.query_timeout = query_timeout
        retry = Retry(
            total=2,
            connect=2,
            read=False,  # no retry, and the read timeout itself is raised (0 would wrap it as a ConnectionError)
            status=2,
            status_forcelist=(502, 504),
            backoff_factor=0.2,
            allowed_methods=None,
            raise_on_status=False,
        )
        self._connect = PrometheusConnect(
            url=self.url, headers=dict(headers or {}), retry=retry, timeout=http_timeout(query_timeout)
        )

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._connect.close()

    async def instant(self, expr: str, *, at: datetime | None = None) -> InstantResult:
        """Evaluate ``expr`` at ``at`` (default: now)."""
        moment = at or datetime.now(UTC)
        params = {"time": f"{moment.timestamp():.3f}", "timeout": _param(self.query_timeout)}
        raw = await self._call("query", expr, lambda: self._connect.custom_query(expr, params=params))
        return _instant(raw, moment)

    async def range(self, expr: str, *, start: datetime, end: datetime, step: timedelta) -> RangeResult:
        """Evaluate ``expr`` from ``start`` to ``end`` every ``step``; refuses more than MAX_POINTS points."""
        if _points(end - start, step.total_seconds()) > MAX_POINTS:
            raise PrometheusError(
                "bad_data", f"your query is invalid: more than {MAX_POINTS:,} points per series; use a larger step"
            )
        params = {"timeout": _param(self.query_timeout)}
        step_text = f"{step.total_seconds():g}"
        raw = await self._call(
            "query_range",
            expr,
            lambda: self._connect.custom_query_range(expr, start, end, step_text, params=params),
        )
        return _range(raw, start, end, step)

    async def _call(self, endpoint: str, expr: str, call: Any) -> Any:
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(call)
        except PrometheusApiClientException as exc:
            status, body = _parse_library_error(exc)
            error = _error_from_status(status, body, self.query_timeout)
            level = logging.WARNING if error.kind in ("internal", "unavailable") else logging.INFO
            log.log(
                level, "prometheus query failed", extra={"endpoint": endpoint, "kind": error.kind, "status": status}
            )
            raise error from exc
        except requests.ReadTimeout as exc:
            waited = _shown(http_timeout(self.query_timeout))
            log.warning("prometheus query timed out", extra={"endpoint": endpoint, "url": self.url, "waited": waited})
            raise PrometheusError(
                "timeout",
                f"the query timed out: Prometheus did not answer within {waited} (query limit "
                f"{_shown(self.query_timeout)}, PROMETHEUS_TIMEOUT): {_TIMEOUT_ADVICE}",
                detail=str(exc),
            ) from exc
        except requests.RequestException as exc:  # a connect timeout too: nothing reached Prometheus
            log.warning("prometheus unreachable", extra={"endpoint": endpoint, "url": self.url, "error": str(exc)})
            raise PrometheusError(
                "unreachable",
                f"Prometheus at {self.url} is unreachable ({type(exc).__name__}); check PROMETHEUS_URL",
                detail=str(exc),
            ) from exc
        log.debug(
            "prometheus query",
            extra={"endpoint": endpoint, "chars": len(expr), "seconds": round(time.monotonic() - started, 3)},
        )
        return result


def _instant(raw: Any, at: datetime) -> InstantResult:
    if isinstance(raw, list) and len(raw) == 2 and not isinstance(raw[0], dict):  # scalar or string: [t, "v"]
        value = raw[1]
        number = _float(value)
        if math.isnan(number) and str(value) != "NaN":
            return InstantResult(kind="string", at=at, text=str(value))
        return InstantResult(kind="scalar", at=at, scalar=number)
    items: Sequence[Any] = raw if isinstance(raw, list) else []
    if any(isinstance(item, dict) and "values" in item for item in items):
        raise UserError(
            "that query returns a range vector (e.g. `metric[5m]`): wrap it in a function such as `rate(...)` or "
            "`max_over_time(...)`, or add `range=1h` for a chart"
        )
    samples = tuple(
        Sample(labels=dict(item.get("metric", {})), value=_float(item.get("value", [0, "NaN"])[1]))
        for item in items
        if isinstance(item, dict)
    )
    return InstantResult(kind="vector", at=at, samples=samples)


def _range(raw: Any, start: datetime, end: datetime, step: timedelta) -> RangeResult:
    series = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        values = item.get("values", [])
        series.append(
            RangeSeries(
                labels=dict(item.get("metric", {})),
                times=tuple(float(t) for t, _ in values),
                values=tuple(_float(v) for _, v in values),
            )
        )
    return RangeResult(start=start, end=end, step=step, series=tuple(series))
