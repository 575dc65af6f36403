"""create_pool: jsonb codec on every connection, DSN helpers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

import asyncpg
import pytest

from chatops.db.pool import dsn_with_database, json_dumps


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


async def test_jsonb_round_trips_on_every_connection(db_pool: asyncpg.Pool) -> None:
    value = {"a": [1, 2.5, None, True], "b": {"c": "ünïcode"}}
    async with db_pool.acquire() as c1, db_pool.acquire() as c2:
        for conn in (c1, c2):
            assert await conn.fetchval("SELECT $1::jsonb", value) == value
            assert await conn.fetchval("SELECT '[1, 2]'::jsonb") == [1, 2]
            assert await conn.fetchval("SELECT '{\"k\": 1}'::json") == {"k": 1}
    assert await db_pool.fetchval("SELECT current_setting('application_name')") == "chatops"


async def test_jsonb_encodes_common_python_values(db_pool: asyncpg.Pool) -> None:
    when = dt.datetime(2026, 4, 22, 2, 47, tzinfo=dt.UTC)
    got = await db_pool.fetchval("SELECT $1::jsonb", {"at": when, "c": Colour.RED, "s": {2, 1}, "p": Point(1, 2)})
    assert got == {"at": "2026-04-22T02:47:00+00:00", "c": "red", "s": [1, 2], "p": {"x": 1, "y": 2}}


def test_json_dumps_refuses_unknown_objects() -> None:
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        json_dumps({"x": object()})


def test_dsn_with_database() -> None:
    assert (
        dsn_with_database("postgresql://postgres:@/postgres?host=/tmp/x/postgres", "chatops")
        == "postgresql://postgres:@/chatops?host=/tmp/x/postgres"
    )
    assert dsn_with_database("postgres://u:p@db.example:5432/app?sslmode=require", "t_1") == (
        "postgres://u:p@db.example:5432/t_1?sslmode=require"
    )
    with pytest.raises(ValueError, match="postgresql://"):
        dsn_with_database("host=/tmp dbname=x", "y")
