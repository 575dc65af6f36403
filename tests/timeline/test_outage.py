"""Postgres stopped mid-stream and started again: every event accepted is stored exactly once.

Uses its own embedded Postgres (not the session server) so it can be stopped and started.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatops.db.embedded import EmbeddedPostgres
from chatops.db.migrate import migrate
from chatops.db.pool import create_pool
from chatops.timeline.spool import Spool
from chatops.timeline.store import TimelineStore
from chatops.timeline.writer import TimelineWriter

from .conftest import INC, ev, make_incident

pytestmark = pytest.mark.slow


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    base = Path(tempfile.mkdtemp(prefix="chatops-outage-", dir="/tmp"))
    pg = EmbeddedPostgres(base, database="chatops")
    try:
        await pg.start()
        yield pg
    finally:
        await pg.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_postgres_outage_loses_nothing_and_duplicates_nothing(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = own_postgres.dsn
    assert dsn is not None
    pool = await create_pool(dsn, min_size=1, max_size=4, command_timeout=5)
    try:
        await migrate(pool)
        await make_incident(pool)
        writer = TimelineWriter(
            TimelineStore(pool), Spool(tmp_path / "spool"), batch_size=200, retry_interval=0.1, write_timeout=3
        )
        await writer.start()
        total = 6000
        stopped = asyncio.Event()
        restarted = asyncio.Event()

        async def produce() -> None:
            for i in range(total):
                await writer.record(ev(i, payload={"n": i, "pad": "x" * 200}))
                if i % 100 == 0:
                    await asyncio.sleep(0.01)
                if i == total // 3:
                    stopped.set()
                if i == 2 * total // 3:
                    await restarted.wait()

        producer = asyncio.create_task(produce())
        await stopped.wait()
        await own_postgres.stop()
        await asyncio.sleep(1.0)
        assert writer.spooling and not writer.ready, "the writer must spool while Postgres is down"
        await own_postgres.start()
        restarted.set()
        await producer
        assert await writer.flush(timeout=30), "the spool must drain once Postgres is back"
        assert writer.ready
        await writer.close()

        stats = writer.stats
        assert stats.accepted == total and stats.spooled > 0 and stats.replayed >= stats.spooled
        count, distinct = await pool.fetchrow(
            "SELECT count(*), count(DISTINCT dedup_key) FROM timeline_events WHERE incident_id = $1", INC
        )
        assert count == distinct == total
        numbers = await pool.fetchval(
            "SELECT array_agg((payload->>'n')::int ORDER BY occurred_at) FROM timeline_events WHERE incident_id = $1",
            INC,
        )
        assert numbers == list(range(total))
    finally:
        await pool.close()
