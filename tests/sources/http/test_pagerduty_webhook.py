"""``POST /webhooks/pagerduty`` over a real socket: signatures, rotation, dedup in Postgres, owners, the mirror line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import aiohttp
import pytest

from chatops.incidents.model import Incident
from chatops.sources.pagerduty_webhook import SOURCE, PagerDutyWebhook, sign, signature_valid
from chatops.timeline.events import EventType, TimelineEvent

from .conftest import ServerFactory, Stack, utcnow

OLD, NEW = "old-signing-secret", "new-signing-secret"
RAVI = {"id": "PRAVI01", "type": "user_reference", "summary": "Ravi Menon", "html_url": "https://x/users/PRAVI01"}


def webhook(
    event_type: str = "incident.acknowledged",
    *,
    pd_id: str = "Q0PAGE1",
    number: int = 871235,
    incident_key: str | None = None,
    service: str = "P3CHKO1",
    agent: dict[str, Any] | None = RAVI,
    **data: Any,
) -> dict[str, Any]:
    incident = {
        "id": pd_id,
        "type": "incident",
        "html_url": f"https://sandbox.pagerduty.com/incidents/{pd_id}",
        "number": number,
        "status": event_type.removeprefix("incident."),
        "incident_key": incident_key,
        "title": "SEV2 checkout — IC aditi.r",
        "urgency": "high",
        "service": {"id": service, "type": "service_reference"},
        "assignees": [{"id": "PKARAN1", "type": "user_reference", "summary": "Karan Shah"}],
    } | data
    return {
        "event": {
            "id": str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": "2026-04-22T02:49:13.123Z",
            "agent": agent,
            "client": None,
            "data": incident,
        }
    }


@pytest.fixture
def secrets() -> list[str]:
    return [NEW, OLD]


@pytest.fixture
async def url(stack: Stack, serve: ServerFactory, secrets: list[str]) -> str:
    handler = PagerDutyWebhook(
        secrets=secrets,
        incidents=stack.incidents,
        policy=stack.policy,
        sink=stack.writer,
        chat=stack.chat,  # type: ignore[arg-type]
        tasks=stack.tasks,
        clock=utcnow,
    )
    return await serve(handler.routes()) + "/webhooks/pagerduty"


async def post(
    client: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any] | bytes,
    *,
    secret: str | None = NEW,
    signature: str | None = None,
    webhook_id: str | None = None,
) -> tuple[int, dict[str, Any]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Id": webhook_id or str(uuid.uuid4())}
    if signature is not None:
        headers["X-PagerDuty-Signature"] = signature
    elif secret is not None:
        headers["X-PagerDuty-Signature"] = sign(raw, secret)
    async with client.post(url, data=raw, headers=headers) as response:
        return response.status, await response.json()


async def settled(stack: Stack) -> None:
    """Wait for the background processing of accepted webhooks."""
    for _ in range(200):
        if not stack.tasks.in_flight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("webhook processing did not finish")


async def page(stack: Stack, incident: Incident, pd_id: str, role: str = "secondary") -> None:
    """What the declare workflow records when it pages a role."""
    await stack.writer.record(
        TimelineEvent(
            incident_id=incident.id,
            type=EventType.PAGE,
            occurred_at=utcnow(),
            actor="chatops",
            source="chatops",
            summary=f"paged {role}",
            payload={"role": role, "pd_incident": pd_id, "number": 871236},
            dedup_key=f"{incident.id}:page:{role}",
        )
    )


def test_signature_header_forms() -> None:
    body = b'{"event":{}}'
    assert signature_valid(body, sign(body, NEW), [NEW])
    assert signature_valid(body, f"{sign(body, OLD)}, {sign(body, NEW)}", [NEW])
    assert signature_valid(body, sign(body, NEW).upper().replace("V1=", "v1="), [NEW])
    assert not signature_valid(body, sign(body, NEW), [OLD])
    assert not signature_valid(body, sign(body + b" ", NEW), [NEW])
    assert not signature_valid(body, "v0=" + sign(body, NEW)[3:], [NEW])
    assert not signature_valid(body, None, [NEW])
    assert not signature_valid(body, sign(body, NEW), [])


async def test_bad_or_missing_signature_is_401(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    await stack.declare("checkout")
    assert (await post(client, url, webhook(), secret=None))[0] == 401
    status, answer = await post(client, url, webhook(), secret="someone-else")
    assert status == 401 and "X-PagerDuty-Signature" in answer["error"]
    assert (await post(client, url, webhook(), signature="v1=zz"))[0] == 401
    await settled(stack)
    assert stack.chat.posts == []


@pytest.mark.parametrize("secrets", [[NEW], [NEW, OLD]])
async def test_rotation_any_configured_secret_any_signature(
    url: str, client: aiohttp.ClientSession, stack: Stack, secrets: list[str]
) -> None:
    await stack.declare("checkout")
    raw = json.dumps(webhook()).encode()
    # PagerDuty signs with every secret of the subscription while it is rotated.
    assert (await post(client, url, raw, signature=f"{sign(raw, OLD)},{sign(raw, NEW)}"))[0] == 202
    status, _ = await post(client, url, raw, secret=OLD)
    assert status == (202 if OLD in secrets else 401)


async def test_unconfigured_secrets_refuse_everything(
    stack: Stack, serve: ServerFactory, client: aiohttp.ClientSession
) -> None:
    handler = PagerDutyWebhook(
        secrets=[],
        incidents=stack.incidents,
        policy=stack.policy,
        sink=stack.writer,
        chat=stack.chat,  # type: ignore[arg-type]
        tasks=stack.tasks,
        clock=utcnow,
    )
    url = await serve(handler.routes()) + "/webhooks/pagerduty"
    status, answer = await post(client, url, webhook())
    assert status == 503 and "PAGERDUTY_WEBHOOK_SECRETS is not set" in answer["error"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"nope", "body is not JSON"),
        (b'{"messages": []}', 'expected a webhooks v3 body {"event": {...}}'),
        (b'{"event": {"data": {}}}', "event.event_type is missing"),
        (b'{"event": {"event_type": "incident.triggered", "data": []}}', "event.data must be an object"),
    ],
)
async def test_malformed_is_400(url: str, client: aiohttp.ClientSession, body: bytes, problem: str) -> None:
    status, answer = await post(client, url, body)
    assert status == 400 and problem in answer["error"]


async def test_our_page_by_incident_key_is_recorded_and_mirrored_once(
    url: str, client: aiohttp.ClientSession, stack: Stack
) -> None:
    incident = await stack.declare("checkout")
    body = webhook(incident_key=f"{incident.id}/secondary")
    status, answer = await post(client, url, body, webhook_id="WH-0001")
    assert (status, answer) == (202, {"accepted": True})
    # At-least-once delivery: the same webhook id again (even re-signed, with a new event id) is a no-op.
    body["event"]["id"] = "another"
    assert await post(client, url, body, webhook_id="WH-0001") == (202, {"duplicate": True})
    await settled(stack)
    assert stack.chat.posts == [
        (incident.channel_id, "<https://sandbox.pagerduty.com/incidents/Q0PAGE1|PD #871235> acknowledged by Ravi Menon")
    ]
    [event] = await stack.events(incident.id, "alert")
    assert (event.source, event.actor, event.summary) == (SOURCE, "Ravi Menon", "PD #871235 acknowledged by Ravi Menon")
    assert event.occurred_at == dt.datetime(2026, 4, 22, 2, 49, 13, 123000, tzinfo=dt.UTC)
    assert event.dedup_key == f"WH-0001/{incident.id}"
    assert event.payload["pd_incident"] == "Q0PAGE1" and event.payload["event_type"] == "incident.acknowledged"
    assert event.payload["webhook_id"] == "WH-0001"


async def test_owner_found_through_the_page_event(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    incident = await stack.declare("auth")
    await page(stack, incident, "Q0AUTHPAGE")
    # No incident key of ours (e.g. a page merged in PagerDuty), and a service that routes nothing of auth's.
    body = webhook("incident.escalated", pd_id="Q0AUTHPAGE", number=9, service="PUNKNWN")
    assert (await post(client, url, body))[0] == 202
    await settled(stack)
    link = "<https://sandbox.pagerduty.com/incidents/Q0AUTHPAGE|PD #9>"
    assert stack.chat.posts == [(incident.channel_id, f"{link} escalated to Karan Shah by Ravi Menon")]


async def test_owner_by_service_routing_unless_the_pd_service_is_shared(
    url: str, client: aiohttp.ClientSession, stack: Stack
) -> None:
    incident = await stack.declare("checkout")
    # Someone else's alert on checkout's primary service: the open checkout incident owns it.
    assert (await post(client, url, webhook("incident.triggered", pd_id="Q0ALERT", number=77)))[0] == 202
    # PCS1234 (the customer-support lead) is routed by every service: ambiguous, so not ours.
    assert (await post(client, url, webhook("incident.triggered", pd_id="Q0CS", service="PCS1234")))[0] == 202
    # A service nobody routes, and non-incident events: not ours either.
    assert (await post(client, url, webhook("incident.resolved", pd_id="Q0OTHER", service="PNOBODY")))[0] == 202
    ping = {"event": {"id": "p1", "event_type": "pagey.ping", "resource_type": "pagey", "data": {"message": "hi"}}}
    assert (await post(client, url, ping))[0] == 202
    await settled(stack)
    link = "<https://sandbox.pagerduty.com/incidents/Q0ALERT|PD #77>"
    assert stack.chat.posts == [(incident.channel_id, f"{link} triggered: SEV2 checkout — IC aditi.r")]
    assert [e.payload["pd_incident"] for e in await stack.events(incident.id, "alert")] == ["Q0ALERT"]


async def test_mirror_lines_for_each_event_type(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    incident = await stack.declare("checkout")
    key = f"{incident.id}/primary"
    bodies = [
        webhook("incident.triggered", incident_key=key),
        webhook("incident.acknowledged", incident_key=key),
        webhook("incident.unacknowledged", incident_key=key, agent=None),
        webhook("incident.reassigned", incident_key=key),
        webhook("incident.priority_updated", incident_key=key, priority={"summary": "P1"}),
        webhook("incident.resolved", incident_key=key, agent={"type": "service_reference", "summary": "Datadog"}),
        webhook("incident.reopened", incident_key=key),
    ]
    note = webhook(incident_key=key)
    note["event"] |= {
        "event_type": "incident.annotated",
        "data": {"incident": note["event"]["data"], "content": "rolled back 4.12.0", "type": "incident_note"},
    }
    for body in [*bodies, note]:
        assert (await post(client, url, body))[0] == 202
    await settled(stack)
    lines = [text.split("> ", 1)[1] for _, text in stack.chat.posts]
    assert lines == [
        "triggered: SEV2 checkout — IC aditi.r",
        "acknowledged by Ravi Menon",
        "unacknowledged",
        "reassigned to Karan Shah by Ravi Menon",
        "priority set to P1 by Ravi Menon",
        "resolved by Datadog",
        "reopened by Ravi Menon",
        "note by Ravi Menon: rolled back 4.12.0",
    ], "webhooks about one PagerDuty incident are handled in arrival order"
    assert len(await stack.events(incident.id, "alert")) == 8
