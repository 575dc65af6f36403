"""The spool file: round trip, order, checksums, torn and corrupt lines, chunked reads, truncation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from chatops.db.pool import JsonText
from chatops.timeline.rows import Row
from chatops.timeline.spool import Spool, decode_line, encode_line

T = dt.datetime(2026, 4, 22, 2, 47, 1, 123456, tzinfo=dt.UTC)


def r(n: int) -> Row:
    payload = '{"n":' + str(n) + ',"text":"héllo \\"quoted\\"","nested":{"a":[1,2]}}'
    return Row("inc-1", "chat", T, T, "U1" if n % 2 else None, "slack", f"event {n}", JsonText(payload), f"k{n}")


def test_line_round_trip() -> None:
    line = encode_line(r(1))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line) == r(1)


def test_checksum_mismatch_is_refused() -> None:
    line = bytearray(encode_line(r(1)))
    line[20] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        decode_line(bytes(line))


async def test_append_read_in_order_and_clear(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    assert not spool.pending
    await spool.append([r(i) for i in range(3)])
    await spool.append([r(i) for i in range(3, 7)])
    assert spool.pending and spool.size > 0
    first, offset = await spool.read_chunk(0, 4)
    rest, end = await spool.read_chunk(offset, 100)
    assert [x.dedup_key for x in first + rest] == [f"k{i}" for i in range(7)]
    assert await spool.read_chunk(end, 100) == ([], end)
    await spool.clear()
    assert not spool.pending and spool.path.stat().st_size == 0
    assert not Spool(tmp_path).pending  # a fresh instance sees the same


async def test_corrupt_and_torn_lines_are_kept_aside_not_lost_silently(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    await spool.append([r(0), r(1)])
    with spool.path.open("ab") as f:  # a damaged line, then a crash mid-write
        f.write(b"deadbeef {not json}\n")
        f.write(encode_line(r(2))[:25])
    # the next run appends: the torn line must not swallow the new row
    again = Spool(tmp_path)
    await again.append([r(3)])
    rows, _ = await again.read_chunk(0, 100)
    assert [x.dedup_key for x in rows] == ["k0", "k1", "k3"]
    corrupt = (tmp_path / (spool.path.name + ".corrupt")).read_bytes().splitlines()
    assert len(corrupt) == 2 and corrupt[0].startswith(b"deadbeef")
