"""The asyncpg connection pool every store shares.

Each connection gets a JSON codec for ``jsonb`` and ``json`` (Python dicts and lists in, out; a :class:`JsonText`
goes in as the JSON it already is), ``jsonb`` in binary form so that binary ``COPY`` can write it, a statement
timeout on the client side (``command_timeout``) and ``application_name`` so ``pg_stat_activity`` shows who we are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

__all__ = ["JsonText", "create_pool", "dsn_with_database", "json_dumps"]


def _json_default(value: object) -> Any:
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: object) -> str:
    """Serialize for a ``jsonb`` column: datetimes as ISO 8601, enums by value, sets sorted, dataclasses as dicts."""
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


class JsonText(str):
    """Text that is JSON already (e.g. a redacted timeline payload): written to ``json``/``jsonb`` as it is."""

    __slots__ = ()


_JSONB_VERSION = b"\x01"


def _json_text(value: object) -> str:
    return value if type(value) is JsonText else json_dumps(value)


def _jsonb_encode(value: object) -> bytes:
    return _JSONB_VERSION + _json_text(value).encode()


def _jsonb_decode(data: bytes) -> Any:
    if data[:1] != _JSONB_VERSION:
        raise ValueError(f"unknown jsonb binary format version {data[:1]!r}")
    return json.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=_jsonb_encode, decoder=_jsonb_decode, format="binary"
    )
    await conn.set_type_codec("json", schema="pg_catalog", encoder=_json_text, decoder=json.loads)


async def create_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    command_timeout: float | None = 30.0,
    application_name: str = "chatops",
) -> asyncpg.Pool:
    """Open a pool on ``dsn`` whose connections encode and decode ``jsonb`` as Python objects.

    ``command_timeout`` (seconds) bounds every statement on the client side; ``None`` means no bound.
    """
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=command_timeout,
        init=_init_connection,
        server_settings={"application_name": application_name},
    )


def dsn_with_database(dsn: str, database: str) -> str:
    """The same DSN naming another database (``postgresql://u:p@h/db?host=/sock`` keeps its query)."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("expected a postgresql:// URL")
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))
