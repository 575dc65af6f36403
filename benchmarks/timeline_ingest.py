"""Benchmark timeline ingest through the real kubectl audit webhook (``make bench``; not a test).

Set-up: a dedicated embedded Postgres (default durability: ``fsync`` and ``synchronous_commit`` on) with
``track_commit_timestamp = on``, so every row's commit time is known exactly; the sandbox Slack/PagerDuty/Zoom
world; an open incident for ``checkout``; and the daemon as a real subprocess (``python -m chatops run``) with
``K8S_AUDIT_TOKEN`` set.

* **ingest**: ``--connections`` clients POST ``audit.k8s.io/v1`` EventLists of ``--batch`` events (every one kept by
  the shipped audit policy: patches, scales, exec, logs in the ``checkout`` namespace) to
  ``/webhooks/k8s-audit`` as fast as the daemon accepts them for ``--seconds``; a 429 (writer queue full) is
  retried after 20 ms. Sustained events/s = events committed / (last commit − first request).
* **latency**: per event, commit time (``pg_xact_commit_timestamp(xmin)``) minus (a) the moment the client sent the
  request that was accepted and (b) ``received_at`` (stamped by the writer when the webhook handed the event over).
* **writer alone**: the same rows offered in-process to a :class:`TimelineWriter` (no HTTP, no audit parsing):
  what the storage side sustains by itself.
* **baseline**, same run, same Postgres, same rows: one ``INSERT`` per event (``TimelineStore.append``), for
  ``--baseline-seconds``.

Targets (issue 3): ≥ 20,000 events/s on a 2-core machine, p99 receive → committed < 1 s, ≥ 10× the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from chatops.db.embedded import EmbeddedPostgres
from chatops.db.migrate import migrate
from chatops.db.pool import create_pool
from chatops.incidents.store import IncidentStore
from chatops.policy.store import PolicyStore
from chatops.sandbox.world import SandboxWorld
from chatops.sources.audit_events import parse_event_list
from chatops.timeline.events import EventType, TimelineEvent
from chatops.timeline.spool import Spool
from chatops.timeline.store import TimelineStore
from chatops.timeline.writer import TimelineWriter

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-audit-token"
PLACEHOLDER = b"B0000000"


def audit_item(batch: str, i: int, when: str) -> dict[str, Any]:
    """One kept audit event; varied like real traffic (patch, scale, exec, logs)."""
    kind = i % 4
    verb, resource, sub, name = [
        ("patch", "deployments", None, "api"),
        ("update", "deployments", "scale", "api"),
        ("create", "pods", "exec", f"api-7d9f-{i % 13}"),
        ("get", "pods", "log", f"worker-{i % 7}"),
    ][kind]
    ref: dict[str, Any] = {"resource": resource, "namespace": "checkout", "name": name, "apiVersion": "v1"}
    if resource == "deployments":
        ref |= {"apiGroup": "apps"}
    if sub:
        ref["subresource"] = sub
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": f"{batch}-{i:03d}",
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/checkout/{resource}/{name}" + (f"/{sub}" if sub else ""),
        "verb": verb,
        "user": {"username": f"user{i % 9}@example.com", "groups": ["system:authenticated", "sre"]},
        "sourceIPs": [f"10.0.{i % 255}.{(i * 7) % 255}"],
        "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3f7a50f",
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": 200 if kind != 2 else 101},
        "requestReceivedTimestamp": when,
        "stageTimestamp": when,
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC"},
    }


def template(batch_size: int) -> bytes:
    """An EventList body whose auditIDs start with :data:`PLACEHOLDER` (replaced per request)."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    items = [audit_item(PLACEHOLDER.decode(), i, when) for i in range(batch_size)]
    return json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def start_postgres(base: Path) -> EmbeddedPostgres:
    pg = EmbeddedPostgres(base / "pg", database="chatops")
    await pg.start()
    assert pg.admin_dsn is not None
    conn = await asyncpg.connect(pg.admin_dsn)
    try:
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
    finally:
        await conn.close()
    await pg.stop()  # the setting needs a restart
    await pg.start()
    return pg


async def baseline(pool: asyncpg.Pool, events: list[TimelineEvent], seconds: float) -> float:
    """Events/s with one INSERT (and commit) per event."""
    store = TimelineStore(pool)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await store.append(events[done % len(events)])
        done += 1
    rate = done / (time.perf_counter() - started)
    await pool.execute("TRUNCATE timeline_events")
    return rate


async def writer_only(pool: asyncpg.Pool, events: list[TimelineEvent], base: Path) -> tuple[float, float]:
    """The daemon's writer alone, fed in-process with ``offer`` batches of 400: (events/s, p99 accepted → committed)."""
    writer = TimelineWriter(TimelineStore(pool), Spool(base / "writer-only-spool"))
    await writer.start()
    started = time.perf_counter()
    for i in range(0, len(events), 400):
        for _ in itertools.count():  # offer never waits: when full, back off like the webhook's client would
            if writer.offer(events[i : i + 400]):
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0)
    await writer.flush()
    rate = len(events) / (time.perf_counter() - started)
    await writer.close()
    await pool.execute("TRUNCATE timeline_events")
    return rate, writer.stats.latency.quantile(0.99)


async def post_loop(
    session: aiohttp.ClientSession, url: str, body: bytes, counter: list[int], until: float, sent: dict[str, float]
) -> tuple[int, int]:
    refused = accepted = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    while time.time() < until:
        counter[0] += 1
        batch = f"B{counter[0]:07d}"
        data = body.replace(PLACEHOLDER, batch.encode())
        while True:
            attempt = time.time()
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    sent[batch] = attempt  # the request the daemon received (retries after 429 are not counted)
                    accepted += 1
                    break
                if response.status in (429, 503):
                    refused += 1
                    await asyncio.sleep(0.02)
                    continue
                raise RuntimeError(f"webhook answered {response.status}: {await response.text()}")
    return accepted, refused


async def wait_log(path: Path, message: str, proc: asyncio.subprocess.Process, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in (await asyncio.to_thread(path.read_text, errors="replace")).splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                entry = json.loads(line)
                if str(entry.get("message", "")).startswith(message):
                    return dict(entry)
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    tail = (await asyncio.to_thread(path.read_text, errors="replace"))[-3000:]
    raise RuntimeError(f"daemon did not log {message!r}:\n{tail}")


async def run(args: argparse.Namespace) -> None:
    base = Path(tempfile.mkdtemp(prefix="chatops-bench-ingest-", dir="/tmp"))
    policy_dir = base / "policy"
    shutil.copytree(REPO / "policy", policy_dir)
    pg = await start_postgres(base)
    proc: asyncio.subprocess.Process | None = None
    try:
        assert pg.dsn is not None
        pool = await create_pool(pg.dsn, min_size=1, max_size=4)
        await migrate(pool)
        claim = await IncidentStore(pool).claim_declaration(
            dedup_key="bench",
            incident_id="inc-bench-checkout",
            severity="sev2",
            service="checkout",
            ic_user_id="U0AAAAAAA",
            declared_by="U0AAAAAAA",
            declared_at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            policy_digest="bench",
        )
        incident = claim.incident.id
        body = template(args.batch)

        policy = PolicyStore(policy_dir).load_initial()
        _, records = parse_event_list(body.replace(PLACEHOLDER, b"Z0000000"), policy.audit)
        assert len(records) == args.batch, f"the audit policy kept {len(records)} of {args.batch} events"
        rows = [
            TimelineEvent(incident, EventType.KUBECTL, r.occurred_at, r.actor, "bench", r.summary, r.payload, f"x{i}")
            for i, r in enumerate(records)
        ]
        events = [
            TimelineEvent(e.incident_id, e.type, e.occurred_at, e.actor, e.source, e.summary, e.payload, f"base-{n}")
            for n in range(20_000)
            for e in (rows[n % len(rows)],)
        ]
        print(f"baseline: one INSERT per event for {args.baseline_seconds:g} s …", flush=True)
        base_rate = await baseline(pool, events, args.baseline_seconds)
        print(f"  {base_rate:,.0f} events/s", flush=True)
        many = [
            TimelineEvent(e.incident_id, e.type, e.occurred_at, e.actor, e.source, e.summary, e.payload, f"w-{n}")
            for n in range(200_000)
            for e in (rows[n % len(rows)],)
        ]
        print("writer only: 200,000 events offered in-process (no HTTP, no audit parsing) …", flush=True)
        direct_rate, direct_p99 = await writer_only(pool, many, base)
        print(f"  {direct_rate:,.0f} events/s, p99 accepted → committed {direct_p99 * 1000:.0f} ms", flush=True)
        del many

        async with SandboxWorld(policy_dir) as world:
            port = free_port()
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PAGERDUTY_", "ZOOM_", "CHATOPS_"))
            }
            env |= world.env(
                DATABASE_URL=pg.dsn,
                CHATOPS_DATA_DIR=str(base / "data"),
                CHATOPS_HTTP_ADDR=f"127.0.0.1:{port}",
                K8S_AUDIT_TOKEN=TOKEN,
                CHATOPS_ARCHIVE_INTERVAL="0",
            )
            log_path = base / "daemon.log"
            with log_path.open("wb") as log:
                profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, *profile, "-m", "chatops", "run", cwd=str(REPO), env=env, stdout=log, stderr=log
                )
            await wait_log(log_path, "chatops is running", proc, 60)
            url = f"http://127.0.0.1:{port}/webhooks/k8s-audit"

            print(
                f"ingest: {args.connections} connections posting EventLists of {args.batch} for {args.seconds:g} s …",
                flush=True,
            )
            sent: dict[str, float] = {}
            counter = [0]
            first = time.time()
            connector = aiohttp.TCPConnector(limit=args.connections)
            async with aiohttp.ClientSession(connector=connector) as session:
                results = await asyncio.gather(
                    *(
                        post_loop(session, url, body, counter, first + args.seconds, sent)
                        for _ in range(args.connections)
                    )
                )
            posted = sum(a for a, _ in results) * args.batch
            refused = sum(r for _, r in results)
            deadline = time.monotonic() + 120
            while await pool.fetchval("SELECT count(*) FROM timeline_events WHERE source = 'k8s-audit'") < posted:
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon did not commit everything it accepted within 120 s")
                await asyncio.sleep(0.25)

            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
            stopped = await wait_log(log_path, "timeline writer stopped", proc, 5)

        stats = await pool.fetch(
            "SELECT split_part(dedup_key, '-', 1) AS batch, "
            "extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS committed, "
            "extract(epoch FROM received_at)::float8 AS received "
            "FROM timeline_events WHERE source = 'k8s-audit'"
        )
        count, distinct = await pool.fetchrow(
            "SELECT count(*), count(DISTINCT dedup_key) FROM timeline_events WHERE source = 'k8s-audit'"
        )
        await pool.close()
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await pg.stop()
        shutil.rmtree(base, ignore_errors=True)

    client = [r["committed"] - sent[r["batch"]] for r in stats]
    writer = [r["committed"] - r["received"] for r in stats]
    last_commit = max(r["committed"] for r in stats)
    rate = count / (last_commit - first)
    print()
    print(f"events committed        {count:,} ({distinct:,} distinct; accepted {posted:,}; 429/503 answers {refused})")
    print(f"sustained ingest        {rate:,.0f} events/s over {last_commit - first:.1f} s (target ≥ 20,000)")
    print(f"per-row INSERT baseline {base_rate:,.0f} events/s")
    print(f"ratio                   {rate / base_rate:.1f}× the baseline (target ≥ 10×)")
    print(
        f"request sent → committed  p50 {pct(client, 0.5) * 1000:.0f} ms, p99 {pct(client, 0.99) * 1000:.0f} ms, "
        f"max {max(client) * 1000:.0f} ms (target p99 < 1 s)"
    )
    print(
        f"received_at → committed   p50 {pct(writer, 0.5) * 1000:.0f} ms, p99 {pct(writer, 0.99) * 1000:.0f} ms, "
        f"max {max(writer) * 1000:.0f} ms"
    )
    alone = f"{direct_rate:,.0f} events/s ({direct_rate / base_rate:.0f}× the baseline)"
    print(f"writer alone            {alone}, p99 accepted → committed {direct_p99 * 1000:.0f} ms")
    print(f"writer                  {json.dumps({k: stopped.get(k) for k in ('committed', 'spooled', 'rejected')})}")
    ok = rate >= 20_000 and pct(client, 0.99) < 1.0 and rate / base_rate >= 10 and count == distinct == posted
    print("RESULT", "PASS" if ok else "BELOW TARGET")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--baseline-seconds", type=float, default=10.0)
    parser.add_argument("--profile", help="run the daemon under cProfile, writing the stats to this file")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
