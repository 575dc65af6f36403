"""The writer's journal: accepted rows on disk before the producer is told "accepted", until they are safe.

The audit webhook answers 200 once the writer has *accepted* a batch, long before Postgres commits it (a second
or so under load), and the apiserver then forgets those events. Should the daemon die in between (``SIGKILL``,
the OOM killer, a crash), the rows held in memory would be lost. So :meth:`Journal.append` writes every accepted
row to a journal segment first (one line per accepted batch: a checksum, then the rows as one JSON array; one
``orjson`` call encodes a whole batch), with a plain ``write(2)``: the bytes are in
the kernel's page cache when the call returns, which outlives the process. There is no ``fsync`` per batch —
that would cost a disk flush per request — so the journal covers the daemon's own death, not the machine's;
the fsync'd spool still covers Postgres outages.

Segments are ``journal-<run>-<first seq>.jsonl`` under the journal directory, rotated at ``segment_bytes``.
:meth:`Journal.release` deletes every closed segment whose rows are all durable elsewhere (committed to
Postgres, or in the fsync'd spool) and empties the open one when everything is. A clean stop leaves no segment.
At start-up :meth:`Journal.recover` reads the segments a crashed run left (skipping torn or damaged lines, which
were never acknowledged) so the writer can hand them to the spool, whose replay deduplicates on the rows' keys:
rows that had been committed before the crash are not stored twice.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import orjson

from chatops.db.pool import JsonText
from chatops.timeline.rows import Row

__all__ = ["Journal", "JournalError", "decode_batch", "encode_batch"]

log = logging.getLogger(__name__)

_PREFIX = "journal-"
_SUFFIX = ".jsonl"


class JournalError(OSError):
    """A journal segment could not be written."""


def encode_batch(rows: Sequence[Row]) -> bytes:
    """One journal line: ``<crc32 of the JSON, 8 hex digits> <JSON array of rows>\\n`` (payloads embedded raw)."""
    fragment = orjson.Fragment
    data = orjson.dumps([(r[0], r[1], r[2], r[3], r[4], r[5], r[6], fragment(r[7].encode()), r[8]) for r in rows])
    return b"%08x %s\n" % (zlib.crc32(data), data)


def decode_batch(line: bytes) -> list[Row]:
    """The rows of one journal line; raises ValueError when it is torn or damaged."""
    crc, sep, data = line.rstrip(b"\n").partition(b" ")
    if not line.endswith(b"\n") or not sep or len(crc) != 8 or int(crc, 16) != zlib.crc32(data):
        raise ValueError("torn or damaged journal line")
    return [
        Row(
            incident_id,
            kind,
            dt.datetime.fromisoformat(occurred_at),
            dt.datetime.fromisoformat(received_at),
            actor,
            source,
            summary,
            JsonText(json.dumps(payload, ensure_ascii=False, separators=(",", ":"))),
            dedup_key,
        )
        for incident_id, kind, occurred_at, received_at, actor, source, summary, payload, dedup_key in json.loads(data)
    ]


class Journal:
    """Append-only, segmented, not fsync'd record of accepted rows (see the module docstring)."""

    def __init__(self, directory: Path, *, segment_bytes: int = 8 * 1024 * 1024) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._closed: list[tuple[Path, int]] = []  # (segment, last seq in it), oldest first
        self._path: Path | None = None
        self._fd: int | None = None
        self._size = 0
        self._last_seq = 0
        self._run = f"{time.time_ns():020d}"  # this run's segments never collide with a crashed run's

    @property
    def segments(self) -> list[Path]:
        """Segment files on disk now, oldest first."""
        try:
            names = sorted(p for p in self.directory.iterdir() if p.name.startswith(_PREFIX) and p.suffix == _SUFFIX)
        except FileNotFoundError:
            return []
        return names

    def recover(self) -> list[Row]:
        """The rows of segments left by an earlier run that did not stop cleanly (call before appending).

        Torn or damaged lines are logged and skipped: a producer is only told "accepted" after its write
        returned. The segments stay on disk until :meth:`discard_recovered`, so a crash during recovery loses
        nothing either.
        """
        rows: list[Row] = []
        skipped = 0
        for path in self.segments:
            with path.open("rb") as handle:
                for line in handle:
                    try:
                        rows += decode_batch(line)
                    except (ValueError, KeyError, TypeError):
                        skipped += 1
        if skipped:
            log.warning("skipped torn or damaged batches in the timeline journal", extra={"lines": skipped})
        return rows

    def discard_recovered(self) -> None:
        """Delete the segments :meth:`recover` read, once their rows are safe elsewhere."""
        for path in self.segments:
            path.unlink(missing_ok=True)

    def append(self, rows: Sequence[Row], first_seq: int) -> None:
        """Write ``rows`` (numbered ``first_seq``, ``first_seq + 1``, …); raises :class:`JournalError`."""
        if not rows:
            return
        data = encode_batch(rows)
        last_seq = first_seq + len(rows) - 1
        try:
            if self._fd is None or self._size >= self.segment_bytes:
                self._rotate(first_seq)
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if self._fd is not None:  # a partial line would glue itself to the next batch's and hide it
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
            raise JournalError(f"cannot write the timeline journal in {self.directory}: {exc}") from exc
        self._size += len(data)
        self._last_seq = last_seq

    def release(self, durable_seq: int) -> None:
        """Rows up to ``durable_seq`` are committed or spooled: drop the segments that hold only such rows."""
        while self._closed and self._closed[0][1] <= durable_seq:
            path, _ = self._closed.pop(0)
            path.unlink(missing_ok=True)
        if self._fd is not None and self._size and self._last_seq <= durable_seq:
            os.ftruncate(self._fd, 0)  # everything is safe: start the open segment over (O_APPEND writes at 0)
            self._size = 0

    def detach(self) -> None:
        """Stop writing and keep the segments on disk (their rows are recovered at the next start)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Everything accepted is committed or spooled (a clean stop): remove every segment."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for path, _ in self._closed:
            path.unlink(missing_ok=True)
        self._closed.clear()
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None

    def _rotate(self, first_seq: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            assert self._path is not None
            if self._size:
                self._closed.append((self._path, self._last_seq))
            else:
                self._path.unlink(missing_ok=True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._path = self.directory / f"{_PREFIX}{self._run}-{first_seq:016d}{_SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)
        self._size = 0
