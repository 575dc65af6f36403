"""IncidentStore: declaration claims (created / duplicate / open_exists / concurrency / id suffixes), steps, keys."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import pytest

from chatops.db.pool import create_pool
from chatops.incidents.model import Incident, IncidentNotFoundError, IncidentStatus, StepStatus
from chatops.incidents.store import Claim, IncidentStore

T0 = dt.datetime(2026, 4, 22, 2, 47, tzinfo=dt.UTC)


async def claim(store: IncidentStore, key: str, service: str = "checkout", **kw: object) -> Claim:
    args: dict[str, object] = {
        "dedup_key": key,
        "incident_id": f"inc-2026-04-22-0247-{service}",
        "severity": "sev2",
        "service": service,
        "ic_user_id": "U_IC",
        "declared_by": "U_DECLARER",
        "declared_at": T0,
        "policy_digest": "sha256:abc",
    }
    args.update(kw)
    return await store.claim_declaration(**args)  # type: ignore[arg-type]


async def resolve(pool: asyncpg.Pool, incident_id: str) -> None:
    await pool.execute("UPDATE incidents SET status = 'resolved', resolved_at = now() WHERE id = $1", incident_id)


@pytest.fixture
def store(db_pool: asyncpg.Pool) -> IncidentStore:
    return IncidentStore(db_pool)


async def test_created_records_incident_and_key(store: IncidentStore, db_pool: asyncpg.Pool) -> None:
    c = await claim(store, "trigger-1")
    assert c.outcome == "created"
    inc = c.incident
    assert inc.id == "inc-2026-04-22-0247-checkout"
    assert (inc.severity, inc.service, inc.ic_user_id, inc.declared_by) == ("sev2", "checkout", "U_IC", "U_DECLARER")
    assert inc.status is IncidentStatus.DECLARED and inc.is_open
    assert inc.declared_at == T0 and inc.policy_digest == "sha256:abc"
    assert inc.channel_id is None and inc.summary_ts is None and inc.resolved_at is None
    assert inc.created_at is not None and inc.created_at.tzinfo is not None
    assert await store.get(inc.id) == inc
    key = await db_pool.fetchrow("SELECT scope, incident_id FROM dedup_keys WHERE key = 'trigger-1'")
    assert dict(key) == {"scope": "declare", "incident_id": inc.id}


async def test_same_key_twice_is_duplicate_of_the_same_incident(store: IncidentStore, db_pool: asyncpg.Pool) -> None:
    first = await claim(store, "trigger-1")
    # A redelivery may carry a different computed id/time: the key decides.
    again = await claim(store, "trigger-1", incident_id="inc-2026-04-22-0248-checkout")
    assert again == Claim("duplicate", first.incident)
    assert await db_pool.fetchval("SELECT count(*) FROM incidents") == 1
    # Even after it is resolved, the key still points at the incident it created.
    await resolve(db_pool, first.incident.id)
    later = await claim(store, "trigger-1")
    assert later.outcome == "duplicate" and later.incident.id == first.incident.id
    assert later.incident.status is IncidentStatus.RESOLVED


async def test_open_incident_on_service_blocks_a_second(store: IncidentStore, db_pool: asyncpg.Pool) -> None:
    first = await claim(store, "trigger-1")
    second = await claim(store, "trigger-2", incident_id="inc-2026-04-22-0300-checkout")
    assert second == Claim("open_exists", first.incident)
    # Nothing recorded: neither an incident nor the key (a later retry of trigger-2 is judged afresh).
    assert await db_pool.fetchval("SELECT count(*) FROM incidents") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM dedup_keys WHERE key = 'trigger-2'") == 0
    # Another service is not affected.
    assert (await claim(store, "trigger-3", service="payments")).outcome == "created"


async def test_mitigated_still_counts_as_open(store: IncidentStore, db_pool: asyncpg.Pool) -> None:
    first = await claim(store, "trigger-1")
    await db_pool.execute("UPDATE incidents SET status = 'mitigated' WHERE id = $1", first.incident.id)
    assert (await claim(store, "trigger-2")).outcome == "open_exists"


async def test_allow_concurrent_creates_a_second_open_incident(store: IncidentStore) -> None:
    first = await claim(store, "trigger-1")
    second = await claim(store, "trigger-2", incident_id="inc-2026-04-22-0301-checkout", allow_concurrent=True)
    assert second.outcome == "created"
    assert [i.id for i in await store.open_for_service("checkout")] == [first.incident.id, second.incident.id]


async def test_taken_id_gets_the_next_free_suffix(store: IncidentStore, db_pool: asyncpg.Pool) -> None:
    base = "inc-2026-04-22-0247-checkout"
    ids = []
    for n in range(4):
        c = await claim(store, f"trigger-{n}")
        assert c.outcome == "created"
        ids.append(c.incident.id)
        await resolve(db_pool, c.incident.id)
    assert ids == [base, f"{base}-2", f"{base}-3", f"{base}-4"]
    # A service whose name extends ours does not confuse the suffix search.
    other = await claim(store, "trigger-x", service="checkout-2", incident_id=f"{base}-5")
    assert other.incident.id == f"{base}-5"
    assert (await claim(store, "trigger-y")).incident.id == f"{base}-6"


async def test_allow_concurrent_with_the_same_id_gets_a_suffix(store: IncidentStore) -> None:
    first = await claim(store, "trigger-1")
    second = await claim(store, "trigger-2", allow_concurrent=True)
    assert second.incident.id == first.incident.id + "-2"


async def test_ten_concurrent_claims_create_exactly_one(fresh_schema_dsn: str) -> None:
    # Ten tasks, each on its own pool (as if in ten processes), declaring for the same service at once.
    pools = [await create_pool(fresh_schema_dsn, max_size=1) for _ in range(10)]
    try:
        stores = [IncidentStore(p) for p in pools]
        claims = await asyncio.gather(*(claim(s, f"trigger-{n}") for n, s in enumerate(stores)))
        outcomes = sorted(c.outcome for c in claims)
        assert outcomes == ["created"] + ["open_exists"] * 9
        created = next(c.incident for c in claims if c.outcome == "created")
        assert all(c.incident == created for c in claims)
        assert await pools[0].fetchval("SELECT count(*) FROM incidents") == 1
        # And ten redeliveries of one trigger at once: one created, nine duplicates of it.
        await resolve(pools[0], created.id)
        again = await asyncio.gather(*(claim(s, "same-trigger") for s in stores))
        assert sorted(c.outcome for c in again) == ["created"] + ["duplicate"] * 9
        assert len({c.incident.id for c in again}) == 1
    finally:
        for p in pools:
            await p.close()


async def test_summary_lock_serialises_processes_per_incident(fresh_schema_dsn: str) -> None:
    # Two pools, as if two replicas: the second holder of one incident's lock waits for the first; another
    # incident's lock does not. The ts is read inside the lock, so a waiter sees what the holder recorded.
    pools = [await create_pool(fresh_schema_dsn, max_size=2) for _ in range(2)]
    try:
        one, two = (IncidentStore(p) for p in pools)
        inc = (await claim(one, "trigger-1")).incident
        other = (await claim(one, "trigger-2", service="payments")).incident
        order: list[str] = []

        async def second() -> None:
            async with two.summary_lock(inc.id) as held:
                order.append(f"second saw {held.ts}")

        async with one.summary_lock(inc.id) as held:
            assert held.ts is None
            waiter = asyncio.create_task(second())
            async with asyncio.timeout(5), two.summary_lock(other.id):
                pass
            await asyncio.sleep(0.2)
            assert not waiter.done(), "the same incident's lock is held by the other process"
            await one.set_summary_ts(inc.id, "1776826020.000100")
            order.append("first")
        await asyncio.wait_for(waiter, 5)
        assert order == ["first", "second saw 1776826020.000100"]
        with pytest.raises(IncidentNotFoundError):
            async with one.summary_lock("nope"):
                pass
    finally:
        for p in pools:
            await p.close()


async def test_summary_edits_are_counted_under_the_lock_per_incident(fresh_schema_dsn: str) -> None:
    # The declaration's final refresh reads the summary back from Slack only when this count is above 0, so a bump
    # must be seen by the next holder (even in another process) and a failed edit must not count.
    pools = [await create_pool(fresh_schema_dsn, max_size=2) for _ in range(2)]
    try:
        one, two = (IncidentStore(p) for p in pools)
        inc = (await claim(one, "trigger-1")).incident
        other = (await claim(one, "trigger-2", service="payments")).incident
        await one.set_summary_ts(inc.id, "1776826020.000100")
        async with one.summary_lock(inc.id) as held:
            assert (held.ts, held.edits) == ("1776826020.000100", 0), "the post itself is not an edit"
        seen: list[int] = []

        async def second() -> None:
            async with two.summary_lock(inc.id) as held:
                seen.append(held.edits)
                await held.bump()

        async with one.summary_lock(inc.id) as held:
            waiter = asyncio.create_task(second())
            await asyncio.sleep(0.2)
            await held.bump()
            assert held.edits == 1
            assert not waiter.done() and seen == []
        await asyncio.wait_for(waiter, 5)
        assert seen == [1], "the waiter read the count the holder committed with the lock's release"

        with pytest.raises(RuntimeError, match="the update failed"):
            async with one.summary_lock(inc.id) as held:
                await held.bump()
                raise RuntimeError("the update failed")
        async with two.summary_lock(inc.id) as held, one.summary_lock(other.id) as untouched:
            assert held.edits == 2, "a body that raised rolled its bump back"
            assert (untouched.ts, untouched.edits) == (None, 0)
    finally:
        for p in pools:
            await p.close()


async def test_key_claimed_outside_declarations_is_an_error(store: IncidentStore) -> None:
    assert await store.claim_key("trigger-1", "slack_event")
    with pytest.raises(ValueError, match="already used in scope 'slack_event'"):
        await claim(store, "trigger-1")


async def test_naive_declared_at_is_rejected(store: IncidentStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await claim(store, "trigger-1", declared_at=dt.datetime(2026, 4, 22, 2, 47))


async def test_lookups_and_setters(store: IncidentStore) -> None:
    inc = (await claim(store, "trigger-1")).incident
    assert await store.get("nope") is None
    assert await store.by_channel("C1") is None
    await store.set_channel(inc.id, "C1", "inc-checkout-0247")
    await store.set_summary_ts(inc.id, "1776826020.000100")
    got = await store.by_channel("C1")
    assert isinstance(got, Incident)
    assert (got.id, got.channel_id, got.channel_name, got.summary_ts) == (
        inc.id,
        "C1",
        "inc-checkout-0247",
        "1776826020.000100",
    )
    assert got.updated_at is not None and inc.updated_at is not None and got.updated_at >= inc.updated_at
    with pytest.raises(IncidentNotFoundError):
        await store.set_channel("nope", "C2", "x")
    with pytest.raises(IncidentNotFoundError):
        await store.set_summary_ts("nope", "1.2")
    other = (await claim(store, "trigger-2", service="payments")).incident
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.set_channel(other.id, "C1", "dup")


async def test_open_for_service_excludes_closed(store: IncidentStore, db_pool: asyncpg.Pool) -> None:
    inc = (await claim(store, "trigger-1")).incident
    assert [i.id for i in await store.open_for_service("checkout")] == [inc.id]
    await resolve(db_pool, inc.id)
    assert await store.open_for_service("checkout") == []
    resolved = await store.get(inc.id)
    assert resolved is not None and not resolved.is_open and resolved.resolved_at is not None


async def test_record_step_upserts_and_counts_attempts(store: IncidentStore) -> None:
    inc = (await claim(store, "trigger-1")).incident
    assert await store.steps(inc.id) == {}
    await store.record_step(inc.id, "create_channel", "pending", {"name": "inc-checkout"})
    await store.record_step(inc.id, "create_channel", "done", {"channel_id": "C1"})
    await store.record_step(inc.id, "page", "failed", {"error": "503"})
    await store.record_step(inc.id, "page", "failed")
    await store.record_step(inc.id, "page", "done")
    await store.record_step(inc.id, "bridge", "pending")
    await store.record_step(inc.id, "bridge", "pending")  # crashed mid-step, retried
    await store.record_step(inc.id, "statuspage", StepStatus.SKIPPED, {"why": "not configured"})
    steps = await store.steps(inc.id)
    assert set(steps) == {"create_channel", "page", "bridge", "statuspage"}
    cc = steps["create_channel"]
    assert (cc.status, cc.attempts, dict(cc.detail)) == (StepStatus.DONE, 1, {"channel_id": "C1"})
    assert cc.finished and cc.updated_at.tzinfo is not None
    page = steps["page"]
    assert (page.status, page.attempts, dict(page.detail)) == (StepStatus.DONE, 3, {"error": "503"})
    assert (steps["bridge"].status, steps["bridge"].attempts, steps["bridge"].finished) == ("pending", 2, False)
    assert steps["statuspage"].finished and steps["statuspage"].attempts == 1
    with pytest.raises(ValueError, match="'exploded' is not a valid StepStatus"):
        await store.record_step(inc.id, "page", "exploded")


async def test_claim_key_is_true_once(store: IncidentStore) -> None:
    inc = (await claim(store, "trigger-1")).incident
    assert await store.claim_key("Ev123", "slack_event")
    assert not await store.claim_key("Ev123", "slack_event")
    assert await store.claim_key("Ev124", "slack_event", inc.id)
    results = await asyncio.gather(*(store.claim_key("Ev999", "slack_event") for _ in range(10)))
    assert sorted(results) == [False] * 9 + [True]
