"""EmbeddedPostgres: restart on an existing data dir, idempotence, recovery after a SIGKILLed owner."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from chatops.db.embedded import EmbeddedPostgres, EmbeddedPostgresError
from chatops.errors import ConfigError

# A separate process owning the server: prints the DSN, then stops cleanly on a line on stdin (or gets killed).
CHILD = """
import asyncio, sys
from pathlib import Path
from chatops.db.embedded import EmbeddedPostgres

async def main():
    pg = EmbeddedPostgres(Path(sys.argv[1]))
    print(await pg.start(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await pg.stop()

asyncio.run(main())
"""


@pytest.fixture
def empty_dir() -> Iterator[Path]:
    """An empty data dir outside /root; any server still running there at the end is stopped."""
    path = Path(tempfile.mkdtemp(prefix="chatops-test-embedded-", dir="/tmp"))
    try:
        yield path
    finally:
        EmbeddedPostgres(path)._force_stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def initialized_dir() -> Iterator[Path]:
    """A data dir after one start and stop (initdb done, ``chatops`` created), to be copied: initdb takes ~1.5 s."""
    path = Path(tempfile.mkdtemp(prefix="chatops-test-embedded-tpl-", dir="/tmp"))
    try:
        pg = EmbeddedPostgres(path)
        # On a private loop in a worker thread: pytest-asyncio owns the loops of this thread.
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            ex.submit(asyncio.run, pg.start()).result()
            ex.submit(asyncio.run, pg.stop()).result()
        yield path
    finally:
        EmbeddedPostgres(path)._force_stop()
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def data_dir(empty_dir: Path, initialized_dir: Path) -> Path:
    """A stopped, initialized data dir of its own (a copy keeping owners and modes)."""
    subprocess.run(["cp", "-a", str(initialized_dir / "postgres"), str(empty_dir)], check=True)
    return empty_dir


def postmaster_pid(data_dir: Path) -> int | None:
    from chatops.db.embedded import _postmaster_pid

    return _postmaster_pid(data_dir / "postgres")


def handles(data_dir: Path) -> list[int]:
    return list(json.loads((data_dir / "postgres" / ".handle_pids.json").read_text()))


async def count_rows(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM kept"))
    finally:
        await conn.close()


class Child:
    """The child process that owns the server."""

    def __init__(self, proc: asyncio.subprocess.Process, dsn: str) -> None:
        self.proc = proc
        self.dsn = dsn

    async def kill(self) -> None:
        self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        assert await asyncio.wait_for(self.proc.wait(), 30) == 0


@pytest.fixture
async def child_owner(data_dir: Path) -> AsyncIterator[Child]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(data_dir),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line:
            pytest.fail("child could not start Postgres:\n" + (await proc.stderr.read()).decode())
        dsn = line.decode().strip()
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1), (2)")
        finally:
            await conn.close()
        yield Child(proc, dsn)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()


async def test_restart_on_existing_data_dir(empty_dir: Path) -> None:
    data_dir = empty_dir
    pg = EmbeddedPostgres(data_dir)
    dsn = await pg.start()
    first = pg.last_start
    assert first is not None and first.initialized and not first.reused
    assert dsn.startswith("postgresql://postgres:@/chatops?host=")
    assert pg.dsn == dsn and pg.admin_dsn is not None and pg.admin_dsn.startswith("postgresql://postgres:@/postgres")
    conn = await asyncpg.connect(dsn)
    await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
    await conn.close()
    await pg.stop()
    assert postmaster_pid(data_dir) is None
    assert pg.dsn is None

    again = EmbeddedPostgres(data_dir)
    assert await again.start() == dsn
    second = again.last_start
    assert second is not None and not second.initialized and not second.reused
    assert second.seconds < first.seconds
    assert await count_rows(dsn) == 1
    await again.stop()
    assert postmaster_pid(data_dir) is None


async def test_start_and_stop_are_idempotent(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir, database="other")
    await pg.stop()  # never started: nothing to do
    dsn = await pg.start()
    assert dsn.startswith("postgresql://postgres:@/other?")
    assert await pg.start() == dsn
    with pytest.raises(EmbeddedPostgresError, match="already started by this process"):
        await EmbeddedPostgres(data_dir).start()
    await pg.stop()
    await pg.stop()
    assert postmaster_pid(data_dir) is None
    async with EmbeddedPostgres(data_dir, database="other") as again:
        assert again.dsn == dsn
    assert postmaster_pid(data_dir) is None


async def test_recovers_when_owner_was_sigkilled(data_dir: Path, child_owner: Child) -> None:
    await child_owner.kill()
    leaked = postmaster_pid(data_dir)
    assert leaked is not None, "the server outlives its SIGKILLed owner"
    assert handles(data_dir) == [child_owner.proc.pid]  # stale handle of a dead process

    pg = EmbeddedPostgres(data_dir)
    dsn = await pg.start()
    assert pg.last_start is not None and pg.last_start.reused
    assert postmaster_pid(data_dir) == leaked
    assert await count_rows(dsn) == 2
    assert handles(data_dir) == [os.getpid()]
    await pg.stop()  # without the stale-handle clean-up, this would leave the server running
    assert postmaster_pid(data_dir) is None
    assert handles(data_dir) == []


async def test_recovers_when_owner_and_server_were_sigkilled(data_dir: Path, child_owner: Child) -> None:
    leaked = postmaster_pid(data_dir)
    assert leaked is not None
    await child_owner.kill()
    os.kill(leaked, signal.SIGKILL)  # e.g. the OOM killer or a container restart took both

    pg = EmbeddedPostgres(data_dir)
    dsn = await pg.start()
    assert pg.last_start is not None and not pg.last_start.reused
    assert postmaster_pid(data_dir) not in (None, leaked)
    assert await count_rows(dsn) == 2  # crash recovery kept the committed rows
    await pg.stop()
    assert postmaster_pid(data_dir) is None


async def test_stop_leaves_the_server_to_another_live_holder(data_dir: Path, child_owner: Child) -> None:
    pg = EmbeddedPostgres(data_dir)
    dsn = await pg.start()
    assert pg.last_start is not None and pg.last_start.reused
    await pg.stop()
    assert postmaster_pid(data_dir) is not None, "the child still holds it"
    assert await count_rows(child_owner.dsn) == 2
    assert dsn == child_owner.dsn
    await child_owner.stop()
    assert postmaster_pid(data_dir) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only root makes the library chmod parent directories")
async def test_refuses_to_open_a_private_home_directory_as_root(
    empty_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = empty_dir / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(private))
    target = private / "deeper" / "data"
    with pytest.raises(ConfigError, match=r"would open the home directory .*/private to everyone"):
        await EmbeddedPostgres(target).start()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not (private / "deeper").exists()
