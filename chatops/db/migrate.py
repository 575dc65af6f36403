"""Versioned schema migrations, applied at start-up.

Migrations are the files ``chatops/db/migrations/NNNN_name.sql`` (read with :mod:`importlib.resources`, so they
ship in the wheel). :func:`migrate` applies the missing ones in version order inside **one transaction** holding
``pg_advisory_xact_lock(MIGRATION_LOCK_ID)``: two daemons starting together serialize on the lock, the second sees
the first one's rows in ``schema_migrations`` and applies nothing. A failing migration rolls everything back.

A database that has a version this code does not ship (a newer chatops ran against it) is refused with
:class:`MigrationError` rather than run against a schema we do not understand.

Rules for writing one: never edit a shipped file, add the next number; no ``CONCURRENTLY`` (it cannot run in a
transaction); the file is sent as one simple-protocol script, so several statements per file are fine.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from chatops.errors import ChatopsError

__all__ = ["MIGRATION_LOCK_ID", "MIGRATION_TIMEOUT_S", "Migration", "MigrationError", "load_migrations", "migrate"]

_log = logging.getLogger(__name__)

#: Advisory lock key taken by :func:`migrate` (b"chatops" as an integer; outside the int4 range of hashtext()).
MIGRATION_LOCK_ID = int.from_bytes(b"chatops", "big")

#: Bound on each migration statement (and on the wait for the lock), overriding the pool's command_timeout.
MIGRATION_TIMEOUT_S = 600.0

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(ChatopsError):
    """The schema cannot be brought up to date: a newer database than this code, or a bad migration file."""


@dataclass(frozen=True)
class Migration:
    """One migration file: its version number, name (from the file name) and SQL text."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The shipped migrations in version order. Raises :class:`MigrationError` on a badly named or duplicate file."""
    found: dict[int, Migration] = {}
    for entry in resources.files("chatops.db").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILENAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_lowercase_name.sql")
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migrations with version {version}: {found[version].name}, {match['name']}")
        found[version] = Migration(version, match["name"], entry.read_text(encoding="utf-8"))
    if 0 in found:
        raise MigrationError("migration versions start at 0001")
    return [found[v] for v in sorted(found)]


async def migrate(pool: asyncpg.Pool, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations the database lacks; return the versions applied now (empty when up to date).

    Safe to call from several processes at once: exactly one applies each migration.
    """
    known = load_migrations() if migrations is None else migrations
    by_version = {m.version: m for m in known}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_ID, timeout=MIGRATION_TIMEOUT_S)
        await conn.execute(_CREATE_TABLE)
        applied: set[int] = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        unknown = sorted(applied - by_version.keys())
        if unknown:
            newest = max(by_version, default=0)
            if unknown[-1] > newest:
                raise MigrationError(
                    f"the database schema is at version {unknown[-1]} but this chatops only knows up to {newest}: "
                    "a newer chatops has migrated it; upgrade chatops (or point DATABASE_URL elsewhere)"
                )
            raise MigrationError(f"the database has migrations {unknown} that this chatops does not ship")
        done: list[int] = []
        for migration in known:
            if migration.version in applied:
                continue
            _log.info("applying migration %04d_%s", migration.version, migration.name)
            try:
                await conn.execute(migration.sql, timeout=MIGRATION_TIMEOUT_S)
            except asyncpg.PostgresError as err:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {type(err).__name__}: {err}"
                ) from err
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", migration.version, migration.name
            )
            done.append(migration.version)
    if done:
        _log.info("schema migrated to version %d (applied %s)", done[-1], done)
    return done
