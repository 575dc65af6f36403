"""The on-disk spool: where timeline rows go while Postgres is unreachable.

One append-only file, one row per line::

    <crc32 of the JSON, 8 hex digits> <JSON object>\\n

Every append is written and ``fsync``'d (in a worker thread) before :meth:`Spool.append` returns, so a row the
writer has handed to the spool survives a crash. Reading (in chunks from a byte offset) verifies each line's
checksum: a line that fails (torn by a crash mid-write, or damaged) is copied to ``<file>.corrupt`` and skipped,
never silently; the first append after a crash terminates a torn line so it cannot swallow the next row. Rows are
read back in the order they were written. :meth:`Spool.clear` truncates the file
once every row has been committed to Postgres (replay is idempotent: each row carries a dedup key).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from chatops.db.pool import JsonText
from chatops.timeline.rows import Row

__all__ = ["Spool", "SpoolError", "decode_line", "encode_line"]

log = logging.getLogger(__name__)


class SpoolError(OSError):
    """The spool file could not be written or read."""


def encode_line(row: Row) -> bytes:
    """One spool line for ``row``: checksum, space, JSON, newline. The payload is embedded as raw JSON."""
    head = orjson.dumps(
        {
            "i": row.incident_id,
            "t": row.type,
            "o": row.occurred_at.isoformat(),
            "r": row.received_at.isoformat(),
            "a": row.actor,
            "s": row.source,
            "m": row.summary,
            "k": row.dedup_key,
        }
    )
    text = head[:-1] + b',"p":' + row.payload.encode() + b"}"
    return b"%08x %s\n" % (zlib.crc32(text), text)


def decode_line(line: bytes) -> Row:
    """Parse a spool line; raises ValueError when the checksum or the JSON is wrong."""
    crc, sep, text = line.rstrip(b"\n").partition(b" ")
    if not sep or len(crc) != 8 or int(crc, 16) != zlib.crc32(text):
        raise ValueError("checksum mismatch")
    obj: dict[str, Any] = json.loads(text)
    return Row(
        incident_id=obj["i"],
        type=obj["t"],
        occurred_at=dt.datetime.fromisoformat(obj["o"]),
        received_at=dt.datetime.fromisoformat(obj["r"]),
        actor=obj["a"],
        source=obj["s"],
        summary=obj["m"],
        payload=JsonText(json.dumps(obj["p"], ensure_ascii=False, separators=(",", ":"))),
        dedup_key=obj["k"],
    )


class Spool:
    """An fsync'd append-only file of :class:`Row` lines under ``directory``."""

    def __init__(self, directory: Path, name: str = "timeline-spool.jsonl") -> None:
        self.path = Path(directory) / name
        self._lock = asyncio.Lock()
        self._size: int | None = None

    @property
    def pending(self) -> bool:
        """True when the spool holds rows not yet known to be in Postgres."""
        if self._size is None:
            try:
                self._size = self.path.stat().st_size
            except FileNotFoundError:
                self._size = 0
        return self._size > 0

    async def append(self, rows: Sequence[Row]) -> None:
        """Append and fsync ``rows`` (in a worker thread); raises :class:`SpoolError` when the disk refuses."""
        if not rows:
            return
        data = b"".join(encode_line(r) for r in rows)
        async with self._lock:
            try:
                size = await asyncio.to_thread(self._append_blocking, data)
            except OSError as exc:
                raise SpoolError(f"cannot write the timeline spool {self.path}: {exc}") from exc
            self._size = size

    def _append_blocking(self, data: bytes) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            end = os.fstat(fd).st_size
            if end and os.pread(fd, 1, end - 1) != b"\n":  # a torn line from a crash: end it so it stays alone
                data = b"\n" + data
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if fresh:  # make the new directory entry durable too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return size

    async def read_chunk(self, offset: int, max_rows: int = 5000) -> tuple[list[Row], int]:
        """Up to ``max_rows`` valid rows starting at byte ``offset``, and the offset after them (worker thread)."""
        async with self._lock:
            return await asyncio.to_thread(self._read_blocking, offset, max_rows)

    def _read_blocking(self, offset: int, max_rows: int) -> tuple[list[Row], int]:
        rows: list[Row] = []
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return rows, offset
        with handle:
            handle.seek(offset)
            while len(rows) < max_rows:
                line = handle.readline()
                if not line:
                    break
                offset += len(line)
                try:
                    if not line.endswith(b"\n"):  # appends hold the lock, so this is a crash's torn write
                        raise ValueError("torn line (no newline)")
                    rows.append(decode_line(line))
                except (ValueError, KeyError, TypeError) as exc:
                    log.error(
                        "corrupt line in the timeline spool, kept aside",
                        extra={"spool": str(self.path), "offset": offset - len(line), "error": str(exc)},
                    )
                    with (self.path.parent / (self.path.name + ".corrupt")).open("ab") as bad:
                        bad.write(line if line.endswith(b"\n") else line + b"\n")
        return rows, offset

    async def clear(self, expected_size: int | None = None) -> bool:
        """Truncate the spool (every row is committed). With ``expected_size``, only if nothing was appended since."""
        async with self._lock:
            if expected_size is not None and self._size != expected_size:
                return False
            await asyncio.to_thread(self._truncate_blocking)
            self._size = 0
            return True

    def _truncate_blocking(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY)
        except FileNotFoundError:
            return
        try:
            os.ftruncate(fd, 0)
            os.fsync(fd)
        finally:
            os.close(fd)

    @property
    def size(self) -> int:
        """Bytes in the spool file (0 when empty or missing)."""
        return self._size or 0 if self.pending else 0
