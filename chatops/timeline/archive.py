"""The timeline archive: ``<prefix>/<incident>/timeline.jsonl.gz`` plus ``manifest.json`` at ``ARCHIVE_URL``.

``ARCHIVE_URL`` is ``s3://bucket/prefix`` (aiobotocore; endpoint, region and credentials come from the standard
AWS variables, ``AWS_ENDPOINT_URL_S3`` included, so any S3-protocol server works) or ``file:///path``.

:func:`archive_incident` is what a resolve calls: it flushes the timeline writer (so everything accepted so far is
in), reads the incident's events in causal order, writes the gzipped JSONL (gzip ``mtime`` 0, so equal content
gives equal bytes and an equal hash) and then the manifest — ``count``, ``first_occurred_at``,
``last_occurred_at``, ``sha256`` and ``gz_bytes`` (size) of the gz. The manifest is written last: when it exists,
the object it describes is complete. Archiving again (the periodic run for long incidents, a second resolve)
overwrites both with a superset. :func:`archive_periodically` re-archives open incidents every
``CHATOPS_ARCHIVE_INTERVAL`` seconds. Compression and hashing run in a worker thread; nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from chatops.timeline.export import jsonl_line
from chatops.timeline.sink import flush_sink
from chatops.timeline.store import TimelineStore

if TYPE_CHECKING:
    from chatops.context import Services

__all__ = [
    "ArchiveTarget",
    "FileTarget",
    "Manifest",
    "S3Target",
    "TimelineArchiver",
    "archive_incident",
    "archive_periodically",
    "target_for",
]

log = logging.getLogger(__name__)

ARCHIVE_OBJECT = "timeline.jsonl.gz"
MANIFEST_OBJECT = "manifest.json"
FORMAT = "chatops.timeline.v1"


class ArchiveTarget(Protocol):
    """Where archive objects go: keys are ``/``-separated paths below the configured prefix."""

    url: str

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key`` (replacing it)."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises FileNotFoundError / KeyError when missing."""
        ...


class FileTarget:
    """``file:///path``: objects are files; each is written to a temp file, fsync'd, then renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Write atomically (readers never see half a file)."""
        await asyncio.to_thread(self._put_blocking, self.root / key, data)

    @staticmethod
    def _put_blocking(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def get(self, key: str) -> bytes:
        """Read a file."""
        return await asyncio.to_thread((self.root / key).read_bytes)


class S3Target:
    """``s3://bucket/prefix`` through aiobotocore (imported on first use: it costs ~0.7 s)."""

    def __init__(self, bucket: str, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _client(self) -> Any:
        from aiobotocore.session import get_session

        return get_session().create_client("s3")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """PutObject."""
        async with self._client() as s3:
            await s3.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content_type)

    async def get(self, key: str) -> bytes:
        """GetObject."""
        async with self._client() as s3:
            response = await s3.get_object(Bucket=self.bucket, Key=self._key(key))
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data


def target_for(url: str) -> ArchiveTarget:
    """The target for an ``ARCHIVE_URL``; ValueError for anything but ``s3://bucket[/prefix]`` or ``file:///path``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Target(parsed.netloc, parsed.path)
    if parsed.scheme == "file" and parsed.path and parsed.netloc in ("", "localhost"):
        return FileTarget(Path(unquote(parsed.path)))
    raise ValueError(f"ARCHIVE_URL must be s3://bucket/prefix or file:///path, got {url!r}")


@dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says about ``timeline.jsonl.gz``."""

    incident_id: str
    count: int
    first_occurred_at: str | None
    last_occurred_at: str | None
    sha256: str
    gz_bytes: int
    archived_at: str
    object: str = ARCHIVE_OBJECT
    format: str = FORMAT

    def to_json(self) -> bytes:
        """The manifest file's content."""
        return json.dumps(asdict(self), indent=2).encode() + b"\n"


class _GzipHasher:
    """Streaming gzip (zlib's gzip wrapper: mtime 0, so equal input gives equal bytes) plus its sha256."""

    def __init__(self) -> None:
        self._zip = zlib.compressobj(6, zlib.DEFLATED, 31)
        self._sha = hashlib.sha256()
        self._out: list[bytes] = []

    def _keep(self, data: bytes) -> None:
        self._sha.update(data)
        self._out.append(data)

    def feed(self, text: str) -> None:
        self._keep(self._zip.compress(text.encode()))

    def finish(self) -> tuple[bytes, str]:
        self._keep(self._zip.flush())
        return b"".join(self._out), self._sha.hexdigest()


class TimelineArchiver:
    """Writes an incident's archive from the store to a target, after waiting for the writer (``flush``)."""

    def __init__(
        self,
        store: TimelineStore,
        target: ArchiveTarget,
        *,
        flush: Callable[[], Awaitable[bool]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.store = store
        self.target = target
        self.flush = flush
        self.clock = clock

    async def archive(self, incident_id: str) -> Manifest:
        """Archive one incident (all its events so far) and return the manifest written."""
        if self.flush is not None and not await self.flush():
            log.warning("archiving while timeline events are still pending", extra={"incident": incident_id})
        gz = _GzipHasher()
        count = 0
        first = last = None
        async for page in self.store.iter_events(incident_id):
            if first is None:
                first = page[0].occurred_at.isoformat()
            last = page[-1].occurred_at.isoformat()
            count += len(page)
            await asyncio.to_thread(gz.feed, "".join(jsonl_line(e) for e in page))
        data, digest = await asyncio.to_thread(gz.finish)
        manifest = Manifest(
            incident_id=incident_id,
            count=count,
            first_occurred_at=first,
            last_occurred_at=last,
            sha256=digest,
            gz_bytes=len(data),
            archived_at=self.clock().isoformat(),
        )
        await self.target.put(f"{incident_id}/{ARCHIVE_OBJECT}", data, "application/gzip")
        await self.target.put(f"{incident_id}/{MANIFEST_OBJECT}", manifest.to_json(), "application/json")
        log.info(
            "timeline archived",
            extra={"incident": incident_id, "events": count, "target": self.target.url, "sha256": digest},
        )
        return manifest


def archiver_for(services: Services, flush_timeout: float = 10.0) -> TimelineArchiver:
    """The archiver the daemon's settings describe (``ARCHIVE_URL``), flushing ``services.sink`` first."""
    return TimelineArchiver(
        services.timeline,
        target_for(services.settings.archive_url),
        flush=lambda: flush_sink(services.sink, flush_timeout),
        clock=services.clock,
    )


async def archive_incident(services: Services, incident_id: str) -> Manifest:
    """Archive an incident's timeline to ``ARCHIVE_URL``: call this when an incident is resolved."""
    return await archiver_for(services).archive(incident_id)


async def archive_periodically(services: Services, interval: float) -> None:
    """Every ``interval`` seconds, re-archive each open incident declared more than ``interval`` ago. Runs forever."""
    archiver = archiver_for(services)
    while True:
        await asyncio.sleep(interval)
        try:
            incidents = await services.incidents.open_incidents()
        except Exception:
            log.exception("periodic archive: could not list open incidents")
            continue
        cutoff = services.clock() - dt.timedelta(seconds=interval)
        for incident in incidents:
            if incident.declared_at > cutoff:
                continue
            try:
                await archiver.archive(incident.id)
            except Exception:
                log.exception("periodic archive failed", extra={"incident": incident.id})
