"""``chatops demo`` — the README's first command — works with no configuration at all."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A scratch dir the embedded server's own system user can reach (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="chatops-demo-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_demo_declares_and_prints_the_war_room(open_tmp: Path) -> None:
    tmp_path = open_tmp
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "PAGERDUTY_", "ZOOM_", "CHATOPS_", "DATABASE_URL", "SSL_CERT"))
    }
    env["CHATOPS_DATA_DIR"] = str(tmp_path / "data")  # embedded Postgres, as on a fresh machine
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatops",
        "demo",
        cwd=str(REPO),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out_bytes, _ = await asyncio.wait_for(proc.communicate(), 120)
    out = out_bytes.decode()
    assert proc.returncode == 0, out
    assert "embedded Postgres in" in out
    assert "/incident declare sev2 checkout" in out and "ack returned to Slack" in out
    assert "War room #inc-" in out and "-checkout" in out
    assert "topic:   SEV2 :: checkout :: IC: <@" in out
    for role in ("primary", "secondary", "cs_lead"):
        assert f"• {role}: <https://" in out and "PD #" in out
    assert "Acknowledged your page" in out
    assert "We are currently investigating an issue affecting checkout" in out
    timeline = out.split("Timeline of", 1)[1]
    rows = [line for line in timeline.splitlines()[1:] if " UTC  " in line]
    assert rows[0].split()[2] == "declaration", "the declaration is the first event in causal order"
    assert sum(" page " in row for row in rows) == 3
    assert "Traceback" not in out
    assert (tmp_path / "data" / "postgres").is_dir()
