"""``chatops timeline export``: JSONL and Markdown, type filter, unknown incident, against real Postgres."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from pathlib import Path

import asyncpg

from chatops.settings import Settings
from chatops.timeline.export import run_export
from chatops.timeline.store import TimelineStore

from .conftest import INC, ev, make_incident

REPO = Path(__file__).resolve().parents[2]


def settings(dsn: str, tmp_path: Path) -> Settings:
    return Settings.from_env({"DATABASE_URL": dsn, "CHATOPS_DATA_DIR": str(tmp_path)}, require_slack=False)


async def test_jsonl_and_markdown(fresh_database_dsn: str, tmp_path: Path) -> None:
    pool = await asyncpg.create_pool(fresh_database_dsn, min_size=1, max_size=2)
    try:
        await make_incident(pool)
        await TimelineStore(pool).append_many(
            [ev(2, "kubectl", summary="scale deploy/checkout --replicas=0"), ev(1, "alert"), ev(86400, "note")]
        )
    finally:
        await pool.close()
    out = io.StringIO()
    assert await run_export(settings(fresh_database_dsn, tmp_path), INC, "jsonl", None, out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [x["type"] for x in lines] == ["alert", "kubectl", "note"]
    assert lines[0]["occurred_at"] == "2026-04-22T02:47:01+00:00" and lines[0]["payload"] == {"n": 1}

    md = io.StringIO()
    assert await run_export(settings(fresh_database_dsn, tmp_path), INC, "md", ["kubectl", "note"], md) == 0
    text = md.getvalue()
    assert text.startswith(f"# Timeline of {INC}\n")
    assert "## 2026-04-22" in text and "## 2026-04-23" in text
    assert "- 02:47:02 **kubectl** U1 — scale deploy/checkout --replicas=0" in text and "alert" not in text


async def test_cli_unknown_incident_and_bad_type(fresh_database_dsn: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": fresh_database_dsn, "CHATOPS_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "chatops", "timeline", "export"]

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cmd, *extra], env=env, cwd=REPO, capture_output=True, text=True, check=False)

    missing = await asyncio.to_thread(run, "inc-nope")
    assert missing.returncode == 1 and "no incident 'inc-nope'" in missing.stderr
    bad = await asyncio.to_thread(run, INC, "--type", "kubctl")
    assert bad.returncode == 2 and "unknown event type kubctl" in bad.stderr
