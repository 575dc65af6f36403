"""The daemon's HTTP-side sources end to end: a real ``chatops run`` subprocess, the sandbox, real Postgres.

Each endpoint is driven over a real socket at the address the daemon logs (``CHATOPS_HTTP_ADDR=127.0.0.1:0``):
the kubectl audit webhook, PagerDuty webhooks v3 (with the mirror line in the war room) and the ``/go/`` redirector
behind the links in the pinned summary.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import re
import signal
import uuid
from typing import Any

import aiohttp
import asyncpg
import pytest

from chatops.sandbox.slack import Channel
from chatops.sandbox.world import SandboxWorld
from chatops.sources.pagerduty_webhook import sign

from .conftest import DaemonFactory, DaemonProcess, eventually

pytestmark = pytest.mark.slow

TOKEN = "e2e-audit-token"
OLD, NEW = "pd-secret-old", "pd-secret-new"


async def declare_checkout(world: SandboxWorld, daemon: DaemonProcess) -> tuple[Channel, str]:
    await world.slack.send_slash_command(
        "/incident", "declare sev2 checkout", user_id=world.ic.slack_id, channel_id=world.ops_channel
    )
    await daemon.wait_log("incident declared", timeout=60)
    [room] = [c for c in world.slack.channels.values() if c.name.startswith("inc-")]
    return room, room.name


async def wait_rows(db: asyncpg.Connection, sql: str, *args: Any, count: int = 1) -> list[asyncpg.Record]:
    """Poll until the writer has committed ``count`` rows (it flushes every ~200 ms)."""
    rows: list[asyncpg.Record] = []
    for _ in range(100):
        rows = await db.fetch(sql, *args)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} rows, found {len(rows)}: {sql}")


def payload_of(row: asyncpg.Record) -> dict[str, Any]:
    value = row["payload"]
    return json.loads(value) if isinstance(value, str) else dict(value)


def audit_event(verb: str, namespace: str, *, subresource: str | None = None) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    ref = {"resource": "pods", "namespace": namespace, "name": "checkout-api-7d9f", "apiVersion": "v1"}
    if subresource:
        ref["subresource"] = subresource
    return {
        "level": "Metadata",
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{namespace}/pods/checkout-api-7d9f",
        "verb": verb,
        "user": {"username": "ravi@paisabridge.example", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        "objectRef": ref,
        "responseStatus": {"code": 101 if subresource == "exec" else 200},
        "requestReceivedTimestamp": now,
        "stageTimestamp": now,
    }


async def test_kubectl_audit_lands_on_the_checkout_incident(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon(K8S_AUDIT_TOKEN=TOKEN)
    _, incident_id = await declare_checkout(world, daemon)
    url = daemon.http_url + "/webhooks/k8s-audit"
    exec_event = audit_event("create", "checkout", subresource="exec")
    items = [exec_event, audit_event("get", "checkout"), audit_event("list", "checkout"), audit_event("delete", "auth")]
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as client:
        async with client.post(url, json=body, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with client.post(url, data=b'{"kind": "EventList"}', headers=auth) as response:
            assert response.status == 400
            assert "apiVersion must be 'audit.k8s.io/v1'" in (await response.json())["error"]
        data = gzip.compress(json.dumps(body).encode())
        for _ in range(2):  # the apiserver retrying the batch changes nothing
            async with client.post(url, data=data, headers=auth | {"Content-Encoding": "gzip"}) as response:
                assert response.status == 200
                assert await response.json() == {"received": 4, "recorded": 1}
    [row] = await wait_rows(
        db, "select * from timeline_events where incident_id = $1 and type = 'kubectl'", incident_id
    )
    payload = payload_of(row)
    assert (row["source"], row["actor"]) == ("k8s-audit", "ravi@paisabridge.example")
    summary = (payload["kind"], payload["verb"], payload["subresource"], payload["code"])
    assert summary == ("exec", "create", "exec", 101)
    assert payload["audit_id"] == exec_event["auditID"]
    assert row["occurred_at"] == dt.datetime.fromisoformat(exec_event["stageTimestamp"])
    await asyncio.sleep(0.5)
    assert len(await db.fetch("select 1 from timeline_events where type = 'kubectl'")) == 1
    assert not daemon.errors()


async def test_pagerduty_acknowledgement_is_mirrored_into_the_war_room(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon(PAGERDUTY_WEBHOOK_SECRETS=f"{NEW},{OLD}")
    room, incident_id = await declare_checkout(world, daemon)
    assert world.pagerduty is not None
    [paged] = [i for i in world.pagerduty.incidents if i.get("incident_key") == f"{incident_id}/secondary"]
    number = paged["incident_number"]
    body = {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": "incident.acknowledged",
            "resource_type": "incident",
            "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
            "agent": {"id": "PRAVI01", "type": "user_reference", "summary": "Ravi Menon"},
            "data": {
                "id": paged["id"],
                "type": "incident",
                "number": number,
                "status": "acknowledged",
                "incident_key": paged["incident_key"],
                "title": paged["title"],
                "html_url": paged["html_url"],
                "service": {"id": paged["service"]["id"], "type": "service_reference"},
            },
        }
    }
    raw = json.dumps(body).encode()
    url = daemon.http_url + "/webhooks/pagerduty"
    headers = {"Content-Type": "application/json", "X-Webhook-Id": "WH-e2e-1"}
    async with aiohttp.ClientSession() as client:
        async with client.post(url, data=raw, headers=headers | {"X-PagerDuty-Signature": sign(raw, "x")}) as r:
            assert r.status == 401
        # Signed with the old secret only (mid-rotation): still valid.
        async with client.post(url, data=raw, headers=headers | {"X-PagerDuty-Signature": sign(raw, OLD)}) as r:
            assert r.status == 202 and await r.json() == {"accepted": True}
        signature = f"{sign(raw, OLD)},{sign(raw, NEW)}"
        async with client.post(url, data=raw, headers=headers | {"X-PagerDuty-Signature": signature}) as r:
            assert r.status == 202 and await r.json() == {"duplicate": True}
    line = f"PD #{number}> acknowledged by Ravi Menon"
    await world.slack.wait_for(lambda: any(line in m.text for m in room.messages), timeout=15, what=line)
    rows = await wait_rows(
        db, "select * from timeline_events where incident_id = $1 and source = 'pagerduty'", incident_id
    )
    assert [(r["type"], r["summary"]) for r in rows] == [("alert", f"PD #{number} acknowledged by Ravi Menon")]
    await asyncio.sleep(0.5)
    assert sum(line in m.text for m in room.messages) == 1
    assert not daemon.errors()


async def test_summary_links_go_through_the_redirector(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection
) -> None:
    daemon = await start_daemon()
    room, incident_id = await declare_checkout(world, daemon)
    [summary] = [m for m in room.messages if m.ts == room.pins[0]]
    text = json.dumps(summary.blocks)
    grafana = "https://grafana.example.com/d/checkout-overview"
    match = re.search(r"<(http://127\.0\.0\.1:\d+/go/[A-Za-z0-9_.-]+)\|" + re.escape(grafana) + ">", text)
    assert match, text
    link = match.group(1)
    assert link.startswith(daemon.http_url + "/go/")
    assert f"<{grafana}|" not in text and "<https://playbooks.example.com/checkout|" not in text
    async with aiohttp.ClientSession() as client:
        async with client.get(link, allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == grafana
        async with client.get(link[:-3] + "AAA", allow_redirects=False) as response:
            assert response.status == 404
        async with client.get(daemon.http_url + "/go/https%3A%2F%2Fevil.example", allow_redirects=False) as r:
            assert r.status == 404
    [row] = await wait_rows(
        db, "select * from timeline_events where incident_id = $1 and type = 'dashboard'", incident_id
    )
    assert payload_of(row)["url"] == grafana and row["summary"] == "Grafana overview opened"
    assert not daemon.errors()


async def test_audit_events_accepted_before_a_sigkill_are_stored_after_the_restart(
    world: SandboxWorld, start_daemon: DaemonFactory, db: asyncpg.Connection, fresh_database_dsn: str
) -> None:
    """The webhook answers 200 before Postgres commits; the daemon dying in between must not lose the events."""
    daemon = await start_daemon(K8S_AUDIT_TOKEN=TOKEN)
    _, incident_id = await declare_checkout(world, daemon)
    url = daemon.http_url + "/webhooks/k8s-audit"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    locker = await asyncpg.connect(fresh_database_dsn)  # Postgres stalls the timeline: its writes wait on a lock
    stall = locker.transaction()
    await stall.start()
    await locker.execute("LOCK TABLE timeline_events IN EXCLUSIVE MODE")
    audit_ids: list[str] = []
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(5):
                items = [audit_event("delete", "checkout") for _ in range(20)]
                audit_ids += [item["auditID"] for item in items]
                body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}
                async with client.post(url, json=body, headers=auth) as response:
                    assert response.status == 200
                    assert (await response.json())["recorded"] == 20
        assert await daemon.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        await stall.rollback()
        await locker.close()
    assert await db.fetchval("SELECT count(*) FROM timeline_events WHERE type = 'kubectl'") == 0

    restarted = await start_daemon(K8S_AUDIT_TOKEN=TOKEN)
    [found] = await restarted.wait_log("timeline journal of a run that did not stop cleanly")
    assert found["rows"] >= 100

    async def all_stored() -> list[asyncpg.Record]:
        rows = await db.fetch(
            "SELECT payload->>'audit_id' AS audit_id FROM timeline_events WHERE incident_id = $1 AND type = 'kubectl'",
            incident_id,
        )
        assert len(rows) == 100
        return rows

    rows = await eventually(all_stored, timeout=20)
    assert sorted(r["audit_id"] for r in rows) == sorted(audit_ids)  # every one, none twice
    assert not restarted.errors()
