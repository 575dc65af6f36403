"""A real Prometheus for tests and benchmarks, filled with deterministic data backfilled by ``promtool``.

Register it with ``pytest_plugins = ["chatops.testing_prometheus"]``. Fixture:

``prometheus`` (session)
    A :class:`PrometheusServer`: Debian's ``prometheus`` 2.x listening on 127.0.0.1 (a free port) on a TSDB made by
    ``promtool tsdb create-blocks-from openmetrics`` from :func:`openmetrics`. Stopped at the end of the session.

The binaries come from ``$CHATOPS_PROMETHEUS_BIN`` (a folder holding ``prometheus`` and ``promtool``) or from
``scripts/fetch-prometheus``, which caches Debian's package in ``.cache/prometheus``.

The data (every 30 s, from 7 h before the start of the session to 2 h after it, so instant queries at "now" keep
finding samples in a long session) describes the sandbox services during an incident that began
:data:`INCIDENT_MINUTES` minutes before the anchor: checkout's error ratio jumps from 0.4 % to 6 % and its latency
rises; rider-pos's consumer lag grows. Exact values for assertions: ``deploy_replicas{service}`` is the pod count
(3, 2, 2) and ``chatops_fixture_special{kind}`` holds ``1.5``, ``NaN``, ``+Inf`` and ``-Inf``.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

__all__ = [
    "INCIDENT_MINUTES",
    "STEP_SECONDS",
    "PrometheusServer",
    "find_binaries",
    "openmetrics",
    "prometheus",
    "start_prometheus",
]

STEP_SECONDS = 30
HISTORY = timedelta(hours=7)
FUTURE = timedelta(hours=2)
INCIDENT_MINUTES = 40
_BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
_NORMAL_LATENCY = (0.55, 0.85, 0.97, 0.992, 0.998, 0.9995, 1.0)
_INCIDENT_LATENCY = (0.2, 0.45, 0.7, 0.85, 0.95, 0.995, 1.0)
_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Shape:
    service: str
    pods: tuple[str, ...]
    rps_per_pod: float
    error_ratio: float
    incident_error_ratio: float
    cores: float
    affected: bool


_SHAPES = (
    _Shape("checkout", ("checkout-7d4b9c-2xkqp", "checkout-7d4b9c-9fzlw", "checkout-7d4b9c-tq8mn"), 42.0, 0.004, 0.06,
           0.45, True),
    _Shape("rider-pos", ("rider-pos-5c8f7-hj2sd", "rider-pos-5c8f7-lp4ze"), 18.0, 0.002, 0.002, 0.3, False),
    _Shape("auth", ("auth-6b9d8-m2c7x", "auth-6b9d8-w9q4r"), 65.0, 0.001, 0.001, 0.25, False),
)  # fmt: skip


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _wave(t: float, period: float, phase: float) -> float:
    return math.sin(2 * math.pi * t / period + phase)


def openmetrics(start: float, end: float, incident_start: float, *, step: int = STEP_SECONDS) -> str:
    """The fixture's data set, from ``start`` to ``end`` (unix seconds) every ``step`` seconds, as OpenMetrics."""
    times = [float(t) for t in range(int(start), int(end) + 1, step)]
    out: list[str] = ["# TYPE http_requests counter"]
    for shape in _SHAPES:
        ns = shape.service
        for index, pod in enumerate(shape.pods):
            for code in ("200", "500"):
                total = 0.0
                series = _labels(service=shape.service, namespace=ns, pod=pod, code=code)
                for t in times:
                    rps = shape.rps_per_pod * (1 + 0.15 * _wave(t, 3 * 3600, index))
                    bad = shape.incident_error_ratio if shape.affected and t >= incident_start else shape.error_ratio
                    total += rps * step * (bad if code == "500" else 1 - bad)
                    out.append(f"http_requests_total{series} {total:.3f} {t:.0f}")
    out.append("# TYPE http_request_duration_seconds histogram")
    for shape in _SHAPES:
        base = _labels(service=shape.service, namespace=shape.service)[:-1]
        counts = [0.0] * len(_BUCKETS)
        seconds = 0.0
        for t in times:
            requests = shape.rps_per_pod * len(shape.pods) * step
            profile = _INCIDENT_LATENCY if shape.affected and t >= incident_start else _NORMAL_LATENCY
            for i, fraction in enumerate(profile):
                counts[i] += requests * fraction
                out.append(f'http_request_duration_seconds_bucket{base},le="{_BUCKETS[i]}"}} {counts[i]:.3f} {t:.0f}')
            seconds += requests * (0.09 if profile is _NORMAL_LATENCY else 0.32)
            out.append(f"http_request_duration_seconds_count{base}}} {counts[-1]:.3f} {t:.0f}")
            out.append(f"http_request_duration_seconds_sum{base}}} {seconds:.3f} {t:.0f}")
    out.append("# TYPE container_cpu_usage_seconds counter")
    for shape in _SHAPES:
        for index, pod in enumerate(shape.pods):
            total = 0.0
            series = _labels(namespace=shape.service, pod=pod, container="app")
            for t in times:
                bump = 0.35 if shape.affected and t >= incident_start else 0.0
                total += (shape.cores * (1 + 0.2 * _wave(t, 5400, index * 1.7)) + bump) * step
                out.append(f"container_cpu_usage_seconds_total{series} {total:.3f} {t:.0f}")
    out.append("# TYPE kafka_consumergroup_lag gauge")
    series = _labels(namespace="rider-pos", consumergroup="pos-settlement", topic="payments")
    for t in times:
        lag = 120 + 40 * _wave(t, 1800, 0) + max(0.0, t - incident_start) * 2.5
        out.append(f"kafka_consumergroup_lag{series} {lag:.0f} {t:.0f}")
    out.append("# TYPE deploy_replicas gauge")
    for shape in _SHAPES:
        series = _labels(service=shape.service, namespace=shape.service)
        out.extend(f"deploy_replicas{series} {len(shape.pods)} {t:.0f}" for t in times)
    out.append("# TYPE chatops_fixture_special gauge")
    for kind, value in (("normal", "1.5"), ("nan", "NaN"), ("inf", "+Inf"), ("neg_inf", "-Inf")):
        out.extend(f'chatops_fixture_special{{kind="{kind}"}} {value} {t:.0f}' for t in times)
    out.append("# EOF")
    return "\n".join(out) + "\n"


def find_binaries() -> Path:
    """The folder holding ``prometheus`` and ``promtool``: ``$CHATOPS_PROMETHEUS_BIN``, else fetch-prometheus's."""
    configured = os.environ.get("CHATOPS_PROMETHEUS_BIN")
    if configured:
        return Path(configured)
    script = _REPO / "scripts" / "fetch-prometheus"
    if not script.is_file():
        raise RuntimeError("set CHATOPS_PROMETHEUS_BIN to a folder holding prometheus and promtool")
    done = subprocess.run([str(script)], capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/fetch-prometheus failed ({done.returncode}):\n{done.stderr}")
    return Path(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrometheusServer:
    """A running Prometheus; ``anchor`` is when its data was generated, ``incident_start`` when the bad data begins."""

    url: str
    anchor: datetime
    incident_start: datetime
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    startup_seconds: float = 0.0

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_prometheus(workdir: Path, *, now: datetime | None = None, timeout: float = 30.0) -> PrometheusServer:
    """Backfill the fixture's data into ``workdir`` and start Prometheus on it; returns once it is ready."""
    began = time.monotonic()
    bin_dir = find_binaries()
    anchor_s = math.floor((now or datetime.now(UTC)).timestamp() / STEP_SECONDS) * STEP_SECONDS
    incident_s = anchor_s - INCIDENT_MINUTES * 60
    data, tsdb = workdir / "data.om", workdir / "tsdb"
    data.write_text(openmetrics(anchor_s - HISTORY.total_seconds(), anchor_s + FUTURE.total_seconds(), incident_s))
    subprocess.run(
        [str(bin_dir / "promtool"), "tsdb", "create-blocks-from", "openmetrics", str(data), str(tsdb)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = _free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(bin_dir / "prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tsdb}",
            "--storage.tsdb.retention.time=30d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    server = PrometheusServer(
        url=f"http://127.0.0.1:{port}",
        anchor=datetime.fromtimestamp(anchor_s, UTC),
        incident_start=datetime.fromtimestamp(incident_s, UTC),
        workdir=workdir,
        process=process,
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited ({process.returncode}): {(workdir / 'prometheus.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as answer:
                if answer.status == 200:
                    break
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"prometheus was not ready within {timeout}s")
        time.sleep(0.05)
    server.startup_seconds = time.monotonic() - began
    return server


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """A real Prometheus with the fixture's data, for the whole session."""
    workdir = Path(tempfile.mkdtemp(prefix="chatops-test-prom-"))
    server = start_prometheus(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
