"""The archive round-trips through a real S3-protocol server (SeaweedFS over HTTP) and through file://."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
from pathlib import Path

import pytest

from chatops.timeline.archive import FileTarget, S3Target, TimelineArchiver, target_for
from chatops.timeline.store import TimelineStore

from .conftest import INC, WeedS3, ev


async def _fill(timeline: TimelineStore) -> None:
    # stored out of causal order on purpose: the archive must be in occurred_at order
    events = [ev(i, "kubectl" if i % 2 else "chat", seconds=(i * 7) % 50) for i in range(50)]
    assert await timeline.append_many(events) == 50


async def _round_trip(timeline: TimelineStore, archiver: TimelineArchiver) -> None:
    await _fill(timeline)
    manifest = await archiver.archive(INC)
    data = await archiver.target.get(f"{INC}/timeline.jsonl.gz")
    stored = json.loads(await archiver.target.get(f"{INC}/manifest.json"))
    assert stored["sha256"] == manifest.sha256 == hashlib.sha256(data).hexdigest()
    assert stored["count"] == manifest.count == 50 and stored["gz_bytes"] == len(data)
    lines = [json.loads(line) for line in gzip.decompress(data).decode().splitlines()]
    assert len(lines) == 50
    times = [line["occurred_at"] for line in lines]
    assert times == sorted(times)
    assert stored["first_occurred_at"] == times[0] and stored["last_occurred_at"] == times[-1]
    assert {line["type"] for line in lines} == {"chat", "kubectl"}
    assert lines[0]["payload"] == {"n": 0} and lines[0]["incident_id"] == INC

    again = await archiver.archive(INC)  # same content → same bytes → same hash
    assert again.sha256 == manifest.sha256


async def test_s3_round_trip(timeline: TimelineStore, s3_env: WeedS3) -> None:
    target = target_for(f"s3://{s3_env.bucket}/timelines/prod")
    assert isinstance(target, S3Target) and target.prefix == "timelines/prod"
    await _round_trip(timeline, TimelineArchiver(timeline, target))
    # the objects really are where the layout says, in the bucket, over HTTP
    from aiobotocore.session import get_session

    async with get_session().create_client("s3") as s3:
        listed = await s3.list_objects_v2(Bucket=s3_env.bucket, Prefix="timelines/prod/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    assert keys == [f"timelines/prod/{INC}/manifest.json", f"timelines/prod/{INC}/timeline.jsonl.gz"]


async def test_file_round_trip(timeline: TimelineStore, tmp_path: Path) -> None:
    target = target_for(f"file://{tmp_path}/archive")
    assert isinstance(target, FileTarget)
    flushed: list[bool] = []

    async def flush() -> bool:
        flushed.append(True)
        return True

    await _round_trip(timeline, TimelineArchiver(timeline, target, flush=flush))
    assert flushed, "the writer is flushed before reading"
    assert sorted(p.name for p in (tmp_path / "archive" / INC).iterdir()) == ["manifest.json", "timeline.jsonl.gz"]


async def test_empty_incident_archives_an_empty_timeline(timeline: TimelineStore, tmp_path: Path) -> None:
    manifest = await TimelineArchiver(timeline, FileTarget(tmp_path)).archive(INC)
    assert manifest.count == 0 and manifest.first_occurred_at is None
    assert gzip.decompress((tmp_path / INC / "timeline.jsonl.gz").read_bytes()) == b""


@pytest.mark.parametrize("url", ["http://x/y", "s3://", "file://host/path", "ftp://a"])
def test_bad_archive_urls(url: str) -> None:
    with pytest.raises(ValueError, match="ARCHIVE_URL"):
        target_for(url)


async def test_archive_incident_flushes_the_daemon_sink_and_uses_archive_url(
    timeline: TimelineStore, tmp_path: Path
) -> None:
    """What resolve will call: ``archive_incident(services, id)`` — events still in the writer's queue are included."""
    import datetime as dt
    from types import SimpleNamespace

    from chatops.incidents.store import IncidentStore
    from chatops.timeline.archive import archive_incident, archive_periodically
    from chatops.timeline.spool import Spool
    from chatops.timeline.writer import TimelineWriter

    writer = TimelineWriter(timeline, Spool(tmp_path / "spool"), flush_interval=5.0)  # only a flush sends them
    await writer.start()
    assert writer.offer([ev(i) for i in range(7)])
    services = SimpleNamespace(
        timeline=timeline,
        sink=writer,
        settings=SimpleNamespace(archive_url=f"file://{tmp_path}/archive"),
        clock=lambda: dt.datetime.now(dt.UTC),
        incidents=IncidentStore(timeline._pool),
    )
    manifest = await archive_incident(services, INC)  # type: ignore[arg-type]
    assert manifest.count == 7

    assert writer.offer([ev(i) for i in range(7, 9)])
    periodic = asyncio.create_task(archive_periodically(services, 0.05))  # type: ignore[arg-type]
    manifest_path = tmp_path / "archive" / INC / "manifest.json"
    for _ in range(100):
        await asyncio.sleep(0.05)
        if json.loads(manifest_path.read_text())["count"] == 9:
            break
    periodic.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await periodic
    await writer.close()
    assert json.loads(manifest_path.read_text())["count"] == 9, "long open incidents are re-archived"
