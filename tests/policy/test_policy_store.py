"""PolicyStore: atomic swaps, refused edits, polling, request_reload, and the change description."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
from pathlib import Path

import pytest

from chatops.errors import ConfigError
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy
from chatops.policy.store import PolicyStore, describe_change

SHIPPED = Path(__file__).resolve().parents[2] / "policy"
PAYMENTS = """
  payments:
    tier: P0
    owner_team: payments-core
    pagerduty:
      primary: PPAY001
    runbook_url: https://playbooks.example.com/payments
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    for name in ("severity.yaml", "services.yaml"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` and move the mtime forward, so coarse file-system clocks still show a change."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    before = path.stat().st_mtime_ns
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


class Recorder:
    """Collects on_applied / on_refused calls and lets a test wait for the next one."""

    def __init__(self) -> None:
        self.applied: list[tuple[Policy, Policy]] = []
        self.refused: list[list[str]] = []
        self.event = asyncio.Event()

    async def on_applied(self, old: Policy, new: Policy) -> None:
        self.applied.append((old, new))
        self.event.set()

    async def on_refused(self, problems: list[str]) -> None:
        self.refused.append(problems)
        self.event.set()

    async def next(self) -> None:
        await asyncio.wait_for(self.event.wait(), timeout=5)
        self.event.clear()


def make_store(directory: Path, recorder: Recorder, poll_interval: float = 0.05) -> PolicyStore:
    store = PolicyStore(
        directory, poll_interval=poll_interval, on_applied=recorder.on_applied, on_refused=recorder.on_refused
    )
    store.load_initial()
    return store


def test_current_before_load_initial_is_an_error(policy_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="load_initial"):
        _ = PolicyStore(policy_dir).current


def test_load_initial_raises_config_error(policy_dir: Path) -> None:
    edit(policy_dir / "severity.yaml", "urgency: low", "urgency: urgent")
    with pytest.raises(ConfigError) as caught:
        PolicyStore(policy_dir).load_initial()
    assert any("severities.sev3.urgency" in p for p in caught.value.problems)


async def test_valid_edit_is_swapped_in_by_polling(policy_dir: Path) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder)
    before = store.current
    runner = asyncio.create_task(store.run())
    try:
        edit(policy_dir / "services.yaml", "\n  rider-pos:", PAYMENTS + "\n  rider-pos:")
        await recorder.next()
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert "payments" in store.current.services
    assert recorder.applied == [(before, store.current)]
    assert store.current.digest != before.digest
    assert "payments" not in before.services  # the old snapshot is untouched


async def test_invalid_edit_is_refused_once_and_old_policy_kept(
    policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder)
    before = store.current
    runner = asyncio.create_task(store.run())
    try:
        with caplog.at_level(logging.WARNING, logger="chatops.policy"):
            edit(policy_dir / "severity.yaml", "urgency: low", "urgency: urgent")
            edit(policy_dir / "services.yaml", "P5AUTH1", "P5AUTH")
            await recorder.next()
            await asyncio.sleep(0.2)  # several more polls: the same bad files are not reported again
        assert store.current is before
        assert len(recorder.refused) == 1
        problems = recorder.refused[0]
        assert len(problems) == 2
        assert problems[0].endswith("severities.sev3.urgency: expected one of high, low, got 'urgent'")
        assert "services.auth.pagerduty.primary" in problems[1]
        [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert all(problem in record.getMessage() for problem in problems)

        edit(policy_dir / "severity.yaml", "urgency: urgent", "urgency: low")
        edit(policy_dir / "services.yaml", "P5AUTH\n", "P5AUTH1\n")
        assert await store.reload("fixed") is False  # back to identical bytes: nothing to apply
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert recorder.applied == [] and len(recorder.refused) == 1
    assert store.current is before
    edit(policy_dir / "services.yaml", "P5AUTH1\n", "P5AUTH9\n")
    assert await store.reload("test") is True
    assert store.current.services["auth"].pagerduty["primary"] == "P5AUTH9"


async def test_reload_unchanged_is_a_no_op(policy_dir: Path) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder)
    before = store.current
    (policy_dir / "notes.yaml").write_text("not: ours\n", encoding="utf-8")
    assert await store.reload("manual") is False
    assert store.current is before
    assert recorder.applied == []
    assert recorder.refused == []


async def test_reload_applies_and_logs_digest_and_changes(policy_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder)
    edit(
        policy_dir / "severity.yaml",
        "page: [primary, secondary, cs_lead]",
        "page: [primary, secondary, cs_lead, db_sme]",
    )
    with caplog.at_level(logging.INFO, logger="chatops.policy"):
        assert await store.reload("manual") is True
    [record] = [r for r in caplog.records if r.levelno == logging.INFO]
    assert record.getMessage() == "policy applied (manual): sev2 now also pages db_sme"
    assert record.__dict__["digest"] == store.current.digest
    assert store.current.severities["sev2"].page[-1] == "db_sme"


async def test_request_reload_from_the_loop(policy_dir: Path) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder, poll_interval=60)  # no polling in this test
    edit(policy_dir / "services.yaml", "\n  auth:", PAYMENTS + "\n  auth:")
    store.request_reload()
    await recorder.next()
    assert "payments" in store.current.services


async def test_request_reload_from_another_thread_while_running(policy_dir: Path) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder, poll_interval=60)
    runner = asyncio.create_task(store.run())
    try:
        await asyncio.sleep(0)  # let run() bind the loop
        edit(policy_dir / "severity.yaml", "urgency: low", "urgency: lowest")
        thread = threading.Thread(target=store.request_reload, args=("SIGHUP",))
        thread.start()
        await asyncio.to_thread(thread.join)
        await recorder.next()
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert len(recorder.refused) == 1


def test_request_reload_without_a_loop_is_an_error(policy_dir: Path) -> None:
    store = PolicyStore(policy_dir)
    with pytest.raises(RuntimeError, match="event loop"):
        store.request_reload()


async def test_a_failing_callback_does_not_break_reload(policy_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def boom(problems: list[str]) -> None:
        raise RuntimeError("slack is down")

    store = PolicyStore(policy_dir, on_refused=boom)
    before = store.load_initial()
    edit(policy_dir / "severity.yaml", "urgency: low", "urgency: urgent")
    with caplog.at_level(logging.ERROR, logger="chatops.policy"):
        assert await store.reload("manual") is False
    assert store.current is before
    assert any("callback failed" in r.getMessage() for r in caplog.records)


def test_describe_change(policy_dir: Path) -> None:
    old = load_policy(policy_dir)
    edit(policy_dir / "severity.yaml", "page: [primary, secondary, cs_lead]", "page: [primary, db_sme]")
    edit(policy_dir / "severity.yaml", "urgency: low", "urgency: high")
    edit(policy_dir / "severity.yaml", "within_business_days: 5", "within_business_days: 4")
    edit(policy_dir / "severity.yaml", "threshold: 6,", "threshold: 7,")
    edit(policy_dir / "severity.yaml", "platform_channel: chatops-platform", "platform_channel: platform-alerts")
    edit(policy_dir / "services.yaml", "P4CHKO2", "P4CHKO9")
    edit(
        policy_dir / "services.yaml",
        "      cs_lead: PCS1234\n    runbook_url: https://playbooks.example.com/auth",
        "    runbook_url: https://playbooks.example.com/auth",
    )
    edit(policy_dir / "services.yaml", "tier: P1", "tier: P0")
    edit(policy_dir / "services.yaml", "namespaces: [auth]", "namespaces: [auth, identity]")
    edit(policy_dir / "services.yaml", "\n  rider-pos:", PAYMENTS + "\n  rider-pos:")
    new = load_policy(policy_dir)
    assert describe_change(old, new) == [
        "platform channel: chatops-platform → platform-alerts",
        "sev2 now also pages db_sme",
        "sev2 no longer pages secondary, cs_lead",
        "sev2 post-mortem: required within 5 business days → required within 4 business days",
        "sev2 trigger added: burn-rate > 7 over 1h on a P0 SLO",
        "sev2 trigger removed: burn-rate > 6 over 1h on a P0 SLO",
        "sev3 urgency: low → high",
        "checkout secondary now pages P4CHKO9 (was P4CHKO2)",
        "service payments added",
        "rider-pos tier: P1 → P0",
        "auth no longer routes cs_lead",
        "auth now owns namespace identity",
    ]
    assert describe_change(old, old) == []


def test_describe_change_removals(policy_dir: Path) -> None:
    old = load_policy(policy_dir)
    text = (policy_dir / "services.yaml").read_text(encoding="utf-8")
    (policy_dir / "services.yaml").write_text(text[: text.index("\n  rider-pos:")] + "\n", encoding="utf-8")
    edit(policy_dir / "severity.yaml", "  db_sme: Database subject-matter expert (paged by hand with /escalate)\n", "")
    new = load_policy(policy_dir)
    assert describe_change(old, new) == ["role db_sme removed", "service rider-pos removed", "service auth removed"]


async def test_a_half_written_save_is_not_reported(policy_dir: Path) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder)
    runner = asyncio.create_task(store.run())
    try:
        path = policy_dir / "services.yaml"
        complete = path.read_text(encoding="utf-8").replace("\n  rider-pos:", PAYMENTS + "\n  rider-pos:")
        path.write_text(complete[: complete.index("PPAY001")], encoding="utf-8")  # the editor is mid-write...
        path.write_text(complete, encoding="utf-8")  # ...and finishes well within one poll interval
        await recorder.next()
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    assert recorder.refused == []
    assert len(recorder.applied) == 1


async def test_a_loader_crash_is_refused_not_raised(policy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    store = make_store(policy_dir, recorder)
    before = store.current

    def crash(directory: Path) -> Policy:
        raise ValueError("bug")

    monkeypatch.setattr("chatops.policy.store.load_policy", crash)
    assert await store.reload("manual") is False
    assert store.current is before
    assert recorder.refused == [["internal error while loading policy: ValueError('bug')"]]
