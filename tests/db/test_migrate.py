"""Migrations: applied once, idempotent, safe when two daemons start together, newer schemas refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from chatops.db.migrate import Migration, MigrationError, load_migrations, migrate
from chatops.db.pool import create_pool, dsn_with_database


@pytest.fixture
async def empty_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """DSN of a brand-new database without any migration."""
    name = f"m_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield dsn_with_database(postgres_dsn, name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def empty_pool(empty_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(empty_dsn, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


def test_shipped_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "initial"
    assert "CREATE TABLE incidents" in migrations[0].sql


async def test_migrate_applies_everything_once(empty_pool: asyncpg.Pool) -> None:
    versions = [m.version for m in load_migrations()]
    assert await migrate(empty_pool) == versions
    assert await migrate(empty_pool) == []
    rows = await empty_pool.fetch("SELECT version, name, applied_at FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in rows] == versions
    assert rows[0]["name"] == "initial"
    assert all(r["applied_at"].tzinfo is not None for r in rows)
    tables = {
        r["tablename"] for r in await empty_pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert {"incidents", "incident_steps", "dedup_keys", "timeline_events", "schema_migrations"} <= tables


async def test_concurrent_migrations_from_two_daemons_apply_once(empty_dsn: str) -> None:
    # A slow first migration widens the race window: without the advisory lock both would CREATE TABLE.
    slow = [
        Migration(1, "slow", "CREATE TABLE a (x int); SELECT pg_sleep(0.3);"),
        Migration(2, "more", "CREATE TABLE b (y int);"),
    ]
    pools = [await create_pool(empty_dsn, max_size=1) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(p, slow) for p in pools))
        assert sorted(results) == [[], [], [], [1, 2]]
        assert await pools[0].fetchval("SELECT count(*) FROM schema_migrations") == 2
    finally:
        for p in pools:
            await p.close()


async def test_concurrent_real_migrations_apply_once(empty_dsn: str) -> None:
    pools = [await create_pool(empty_dsn, max_size=1) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(p) for p in pools))
        assert sorted(map(len, results)) == [0, len(load_migrations())]
    finally:
        for p in pools:
            await p.close()


async def test_newer_database_is_refused(empty_pool: asyncpg.Pool) -> None:
    await migrate(empty_pool)
    await empty_pool.execute("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
    with pytest.raises(MigrationError, match=r"version 9999 .* only knows up to \d+.*upgrade chatops"):
        await migrate(empty_pool)


async def test_unknown_older_version_is_refused(empty_pool: asyncpg.Pool) -> None:
    await migrate(empty_pool, [Migration(1, "a", "SELECT 1"), Migration(2, "b", "SELECT 1")])
    with pytest.raises(MigrationError, match=r"\[1\] that this chatops does not ship"):
        await migrate(empty_pool, [Migration(2, "b", "SELECT 1")])


async def test_failed_migration_rolls_everything_back(empty_pool: asyncpg.Pool) -> None:
    broken = [Migration(1, "ok", "CREATE TABLE ok (x int);"), Migration(2, "bad", "CREATE TABLE oops (;")]
    with pytest.raises(MigrationError, match="0002_bad failed: PostgresSyntaxError"):
        await migrate(empty_pool, broken)
    assert await empty_pool.fetchval("SELECT to_regclass('ok')") is None
    assert await empty_pool.fetchval("SELECT to_regclass('schema_migrations')") is None
    assert await migrate(empty_pool, broken[:1]) == [1]


async def test_fresh_database_fixture_is_migrated(fresh_database_dsn: str) -> None:
    conn = await asyncpg.connect(fresh_database_dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(load_migrations())
        assert await conn.fetchval("SELECT count(*) FROM incidents") == 0
    finally:
        await conn.close()
