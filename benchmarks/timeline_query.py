"""Benchmark timeline queries: 1 M events across 50 incidents, filtered by type × time window (``make bench``).

A dedicated embedded Postgres is loaded with ``COPY`` (``--events`` rows, ``--incidents`` incidents, ~1 event per
second each over several hours, 10 event types, ~600-byte payloads), ``ANALYZE``d, then ``--queries`` random
``/incident timeline``-style queries run through :meth:`TimelineStore.query` exactly as the command calls it
(no payloads: it prints one line per event; the same queries with payloads are reported too): one
incident, one or two types, a 5–60 minute window. Baseline in the same run: the same queries with index scans
disabled (what the table costs without the ``(incident_id, type, occurred_at)`` / ``(incident_id, occurred_at,
id)`` indexes). Target (issue 3): p50 < 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from chatops.db.embedded import EmbeddedPostgres
from chatops.db.migrate import migrate
from chatops.db.pool import create_pool
from chatops.incidents.store import IncidentStore
from chatops.timeline.store import TimelineStore

TYPES = ["chat", "command", "kubectl", "deploy", "alert", "dashboard", "page", "comms", "note", "chat_edit"]
T0 = dt.datetime(2026, 4, 22, 0, 0, tzinfo=dt.UTC)
COLUMNS = ["incident_id", "type", "occurred_at", "received_at", "actor", "source", "summary", "payload", "dedup_key"]


def incident_id(n: int) -> str:
    return f"inc-2026-04-22-{n:04d}-svc{n}"


async def load(dsn: str, events: int, incidents: int) -> float:
    """COPY the rows in (a plain connection: asyncpg's binary jsonb codec takes str); returns seconds."""
    rng = random.Random(7)
    payload = json.dumps({"text": "x" * 500, "verb": "patch", "namespace": "checkout", "code": 200})
    per = events // incidents
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        chunk: list[tuple[object, ...]] = []
        for n in range(events):
            inc, i = divmod(n, per)
            at = T0 + dt.timedelta(hours=inc % 24, seconds=i + rng.random())
            kind = TYPES[rng.randrange(len(TYPES))]
            chunk.append(
                (incident_id(inc), kind, at, at, f"user{i % 17}", "bench", f"{kind} event {i}", payload, f"{inc}-{i}")
            )
            if len(chunk) == 100_000:
                await conn.copy_records_to_table("timeline_events", records=chunk, columns=COLUMNS)
                chunk = []
        if chunk:
            await conn.copy_records_to_table("timeline_events", records=chunk, columns=COLUMNS)
        await conn.execute("ANALYZE timeline_events")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def run_queries(
    store: TimelineStore, plans: list[tuple[str, list[str], dt.datetime, dt.datetime]], *, with_payload: bool = False
) -> tuple[list[float], int]:
    """Run the plans as ``/incident timeline`` does (no payloads: one line per event), or with payloads."""
    times: list[float] = []
    rows = 0
    for inc, types, since, until in plans:
        started = time.perf_counter()
        found = await store.query(inc, types=types, since=since, until=until, with_payload=with_payload)
        times.append(time.perf_counter() - started)
        rows += len(found)
    return times, rows


async def _json_codec(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="chatops-bench-query-", dir="/tmp"))
    pg = EmbeddedPostgres(base / "pg", database="chatops")
    try:
        dsn = await pg.start()
        pool = await create_pool(dsn, min_size=1, max_size=2)
        await migrate(pool)
        incidents = IncidentStore(pool)
        for n in range(args.incidents):
            await incidents.claim_declaration(
                dedup_key=f"bench-{n}",
                incident_id=incident_id(n),
                severity="sev2",
                service=f"svc{n}",
                ic_user_id="U1",
                declared_by="U1",
                declared_at=T0 + dt.timedelta(hours=n % 24),
                policy_digest="bench",
            )
        print(f"loading {args.events:,} events across {args.incidents} incidents with COPY …", flush=True)
        seconds = await load(dsn, args.events, args.incidents)
        print(f"  {seconds:.1f} s ({args.events / seconds:,.0f} rows/s)", flush=True)

        rng = random.Random(11)
        per = args.events // args.incidents
        plans = []
        for _ in range(args.queries):
            n = rng.randrange(args.incidents)
            start = T0 + dt.timedelta(hours=n % 24, seconds=rng.randrange(max(1, per - 3600)))
            window = dt.timedelta(minutes=rng.choice([5, 15, 24, 30, 60]))
            plans.append((incident_id(n), rng.sample(TYPES, rng.choice([1, 2])), start, start + window))

        store = TimelineStore(pool)
        await run_queries(store, plans[:50])  # warm the cache and the prepared statements
        indexed, rows = await run_queries(store, plans)
        full, _ = await run_queries(store, plans, with_payload=True)

        slow_pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=1,
            init=_json_codec,
            server_settings={"enable_indexscan": "off", "enable_bitmapscan": "off", "enable_indexonlyscan": "off"},
        )
        baseline, _ = await run_queries(TimelineStore(slow_pool), plans[: args.baseline_queries])
        await slow_pool.close()
        await pool.close()
    finally:
        await pg.stop()
        shutil.rmtree(base, ignore_errors=True)

    p50, p99 = pct(indexed, 0.5), pct(indexed, 0.99)
    b50 = pct(baseline, 0.5)
    print()
    print(f"queries                 {len(indexed)} (type × window; {rows / len(indexed):.0f} rows each on average)")
    mean = statistics.mean(indexed) * 1000
    print(f"indexed                 p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, mean {mean:.2f} ms")
    print(f"indexed, with payloads  p50 {pct(full, 0.5) * 1000:.2f} ms, p99 {pct(full, 0.99) * 1000:.2f} ms")
    print(f"baseline (no index)     p50 {b50 * 1000:.1f} ms over {len(baseline)} queries")
    print(f"ratio                   {b50 / p50:.0f}× faster than the baseline at p50")
    print("RESULT", "PASS" if p50 < 0.010 else "BELOW TARGET", "(target p50 < 10 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=50)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--baseline-queries", type=int, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
