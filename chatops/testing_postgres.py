"""pytest plugin: one Postgres per test session, a fresh migrated database per test.

Register it with ``pytest_plugins = ["chatops.testing_postgres"]``. Fixtures:

``postgres_dsn`` (session)
    ``$DATABASE_URL`` when set (its role needs CREATEDB), otherwise one :class:`~chatops.db.embedded.EmbeddedPostgres`
    started for the session in ``<tmp>/chatops-test-pg-<pid>-*`` (never under ``/root``: as root the library opens
    every parent directory) with durability off (``fsync``, ``full_page_writes``, ``synchronous_commit``), stopped
    and deleted at the end.
``fresh_database_dsn`` (function)
    DSN of a new database with every migration applied, cloned from a template migrated once per session; dropped
    (``WITH (FORCE)``, so a daemon subprocess still connected does not block it) after the test. ~0.2 s each
    (``CREATE DATABASE`` copies the catalogs): meant for end-to-end tests that start the daemon.
``fresh_schema_dsn`` (function)
    DSN of a new migrated *schema* in a session database, selected with ``options=-c search_path=<schema>`` in
    the DSN (libpq and asyncpg both honour it): ~0.05 s. Use it to open several pools on one isolated schema.
``db_pool`` (function)
    An asyncpg pool (:func:`~chatops.db.pool.create_pool`) on ``fresh_schema_dsn``.

The session fixtures are synchronous and run their async parts on a private event loop in a worker thread, so
they do not depend on pytest-asyncio loop scopes; the function fixtures run on the test's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from chatops.db.embedded import EmbeddedPostgres
from chatops.db.migrate import migrate
from chatops.db.pool import create_pool, dsn_with_database

__all__ = ["db_pool", "dsn_with_search_path", "fresh_database_dsn", "fresh_schema_dsn", "postgres_dsn"]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_TEST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh loop in another thread (safe whatever loop pytest-asyncio runs)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chatops-pg") as ex:
        return ex.submit(asyncio.run, coro).result()


def _scratch_root() -> Path:
    base = Path(tempfile.gettempdir()).resolve()
    if base == Path("/root") or Path("/root") in base.parents:
        base = Path("/tmp")
    return base


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


async def _tune_for_tests(dsn: str) -> None:
    await _admin(dsn, *(f"ALTER SYSTEM SET {k} = {v}" for k, v in _TEST_SETTINGS.items()), "SELECT pg_reload_conf()")


async def _make_template(dsn: str, name: str) -> None:
    await _admin(dsn, f"CREATE DATABASE {_quote(name)}")
    pool = await create_pool(dsn_with_database(dsn, name), min_size=1, max_size=1)
    try:
        await migrate(pool)
    finally:
        await pool.close()


async def _drop(dsn: str, statement: str) -> None:
    try:
        await _admin(dsn, statement)
    except (asyncpg.PostgresError, OSError) as err:
        _log.warning("test clean-up failed (%s): %s", statement, err)


def dsn_with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` with ``options=-c search_path=<schema>`` (understood by libpq and asyncpg alike)."""
    parts = urlsplit(dsn)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    query.append(("options", f"-c search_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a Postgres server for the session: ``$DATABASE_URL`` or an embedded one."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix=f"chatops-test-pg-{os.getpid()}-", dir=_scratch_root()))
    pg = EmbeddedPostgres(base, database="postgres")
    try:
        dsn = _run(pg.start())
        _run(_tune_for_tests(dsn))
        _log.info("test Postgres at %s (start %s)", dsn, pg.last_start)
        yield dsn
    finally:
        _run(pg.stop())
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def _chatops_template_db(postgres_dsn: str) -> Iterator[str]:
    """Name of a database migrated once per session; ``fresh_database_dsn`` clones it. Nobody connects to it."""
    name = f"chatops_tpl_{uuid.uuid4().hex[:12]}"
    _run(_make_template(postgres_dsn, name))
    try:
        yield name
    finally:
        _run(_admin(postgres_dsn, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"))


@pytest.fixture(scope="session")
def _chatops_schemas_db(postgres_dsn: str) -> Iterator[str]:
    """DSN of a database holding one schema per test (``fresh_schema_dsn``)."""
    name = f"chatops_test_{uuid.uuid4().hex[:12]}"
    _run(_admin(postgres_dsn, f"CREATE DATABASE {_quote(name)}"))
    try:
        yield dsn_with_database(postgres_dsn, name)
    finally:
        _run(_admin(postgres_dsn, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)"))


@pytest.fixture
async def fresh_database_dsn(postgres_dsn: str, _chatops_template_db: str) -> AsyncIterator[str]:
    """DSN of a new, migrated, empty database, dropped after the test (~0.2 s: use it for daemon subprocesses)."""
    name = f"t_{uuid.uuid4().hex}"
    await _admin(postgres_dsn, f"CREATE DATABASE {_quote(name)} TEMPLATE {_quote(_chatops_template_db)}")
    try:
        yield dsn_with_database(postgres_dsn, name)
    finally:
        await _drop(postgres_dsn, f"DROP DATABASE IF EXISTS {_quote(name)} WITH (FORCE)")


@pytest.fixture
async def fresh_schema_dsn(_chatops_schemas_db: str) -> AsyncIterator[str]:
    """DSN (with ``options=-c search_path=<schema>``) of a new migrated schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex}"
    await _admin(_chatops_schemas_db, f"CREATE SCHEMA {_quote(schema)}")
    try:
        dsn = dsn_with_search_path(_chatops_schemas_db, schema)
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            await migrate(pool)
        finally:
            await pool.close()
        yield dsn
    finally:
        await _drop(_chatops_schemas_db, f"DROP SCHEMA IF EXISTS {_quote(schema)} CASCADE")


@pytest.fixture
async def db_pool(fresh_schema_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool (:func:`~chatops.db.pool.create_pool`) on a fresh migrated schema."""
    pool = await create_pool(fresh_schema_dsn, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()
