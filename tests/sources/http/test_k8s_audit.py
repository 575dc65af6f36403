"""``POST /webhooks/k8s-audit`` over a real socket, into the real timeline writer and Postgres."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import pytest

from chatops.sources.k8s_audit import SOURCE, AuditWebhook
from chatops.sources.open_incidents import IncidentsUnavailable, OpenIncidents

from .conftest import ServerFactory, Stack

TOKEN = "audit-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_ids = itertools.count(1)


def stamp(delta_s: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delta_s)).isoformat().replace("+00:00", "Z")


def audit_event(
    verb: str = "create",
    *,
    namespace: str | None = "checkout",
    resource: str = "pods",
    name: str | None = "checkout-api-7d9f",
    subresource: str | None = None,
    stage: str = "ResponseComplete",
    user: str = "ravi@paisabridge.example",
    groups: tuple[str, ...] = ("system:authenticated",),
    audit_id: str | None = None,
    code: int = 200,
    request_object: Mapping[str, Any] | None = None,
    when: str | None = None,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": resource, "apiVersion": "v1"}
    if namespace is not None:
        ref["namespace"] = namespace
    if name is not None:
        ref["name"] = name
    if subresource is not None:
        ref["subresource"] = subresource
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request",
        "auditID": audit_id or f"a1b2c3d4-{next(_ids):04d}",
        "stage": stage,
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}/{name}",
        "verb": verb,
        "user": {"username": user, "groups": list(groups)},
        "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": when or stamp(),
        "stageTimestamp": when or stamp(),
    }
    if request_object is not None:
        event["requestObject"] = request_object
    return event


def event_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": list(items)}


@pytest.fixture
async def url(stack: Stack, serve: ServerFactory) -> str:
    webhook = AuditWebhook(
        token=TOKEN, policy=stack.policy, incidents=OpenIncidents(stack.incidents), sink=stack.writer, max_body=65536
    )
    return await serve(webhook.routes()) + "/webhooks/k8s-audit"


async def post(client: aiohttp.ClientSession, url: str, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    headers = kwargs.pop("headers", AUTH)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with client.post(url, data=data, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def test_missing_or_wrong_token_is_401(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    incident = await stack.declare("checkout")
    body = event_list(audit_event())
    assert (await post(client, url, body, headers={}))[0] == 401
    assert (await post(client, url, body, headers={"Authorization": "Bearer nope"}))[0] == 401
    assert (await post(client, url, body, headers={"Authorization": f"Basic {TOKEN}"}))[0] == 401
    status, answer = await post(client, url, body, headers={"Authorization": f"Bearer {TOKEN}x"})
    assert status == 401 and "token" in answer["error"]
    assert await stack.events(incident.id) == []


async def test_unset_token_refuses_everything_and_says_why(
    stack: Stack, serve: ServerFactory, client: aiohttp.ClientSession
) -> None:
    webhook = AuditWebhook(token=None, policy=stack.policy, incidents=OpenIncidents(stack.incidents), sink=stack.writer)
    url = await serve(webhook.routes()) + "/webhooks/k8s-audit"
    status, answer = await post(client, url, event_list(audit_event()), headers={"Authorization": "Bearer "})
    assert status == 503 and "K8S_AUDIT_TOKEN is not set" in answer["error"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "body is not JSON"),
        (b"[]", "expected an audit.k8s.io/v1 EventList object, got a list"),
        ({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "items": []}, "kind must be 'EventList', got 'Event'"),
        (
            {"kind": "EventList", "apiVersion": "audit.k8s.io/v1beta1", "items": []},
            "apiVersion must be 'audit.k8s.io/v1', got 'audit.k8s.io/v1beta1'",
        ),
        ({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {}}, "items must be a list, got an object"),
        ({"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}, "items must be a list, got null"),
        (event_list(audit_event(), {"stage": "ResponseComplete", "verb": "get"}), "items[1]: missing auditID"),
        (event_list("x"), "items[0]: expected an audit Event object, got 'x'"),  # type: ignore[arg-type]
        (event_list(audit_event() | {"stage": "Done"}), "items[0]: stage must be one of"),
        (event_list(audit_event() | {"verb": None}), "items[0]: missing verb"),
        (
            event_list(audit_event() | {"stageTimestamp": "yesterday", "requestReceivedTimestamp": None}),
            "items[0]: stageTimestamp must be an RFC 3339 time with a zone, got 'yesterday'",
        ),
    ],
)
async def test_malformed_bodies_are_400_naming_the_problem(
    url: str, client: aiohttp.ClientSession, body: Any, problem: str
) -> None:
    status, answer = await post(client, url, body)
    assert status == 400
    assert problem in answer["error"]


async def test_body_over_the_limit_is_413(url: str, client: aiohttp.ClientSession) -> None:
    big = event_list(*[audit_event() for _ in range(200)])
    assert (await post(client, url, big))[0] == 413
    # The limit applies to the decoded bytes: a small gzip that expands past it is refused too.
    bomb = gzip.compress(json.dumps(big).encode())
    assert len(bomb) < 65536
    assert (await post(client, url, bomb, headers=AUTH | {"Content-Encoding": "gzip"}))[0] == 413


async def test_gzip_bodies_with_or_without_the_header(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    incident = await stack.declare("checkout")
    first, second = audit_event("delete"), audit_event("patch", resource="deployments", name="checkout-api")
    status, answer = await post(
        client, url, gzip.compress(json.dumps(event_list(first)).encode()), headers=AUTH | {"Content-Encoding": "gzip"}
    )
    assert (status, answer) == (200, {"received": 1, "recorded": 1})
    status, _ = await post(client, url, gzip.compress(json.dumps(event_list(second)).encode()))
    assert status == 200
    corrupt = gzip.compress(b"x" * 100)[:-8] + b"garbage!"
    status, answer = await post(client, url, corrupt, headers=AUTH | {"Content-Encoding": "gzip"})
    assert status == 400
    assert {e.payload["audit_id"] for e in await stack.events(incident.id)} == {first["auditID"], second["auditID"]}


async def test_filter_and_namespace_mapping(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    checkout = await stack.declare("checkout")
    exec_event = audit_event("create", subresource="exec")
    annotations = {"kubectl.kubernetes.io/restartedAt": "2026-04-22T02:51Z"}
    restart = audit_event(
        "patch",
        resource="deployments",
        name="checkout-api",
        request_object={"spec": {"template": {"metadata": {"annotations": annotations}}}},
    )
    scale = audit_event("patch", resource="deployments", name="checkout-api", subresource="scale")
    scale["requestObject"] = {"spec": {"replicas": 12}}
    logs = audit_event("get", subresource="log")
    ignored = [
        audit_event("get"),
        audit_event("list", name=None),
        audit_event("watch", name=None),
        audit_event("create", stage="RequestReceived"),
        audit_event("update", resource="leases"),
        audit_event("patch", subresource="status", user="system:node:ip-10-0-0-1", groups=("system:nodes",)),
        audit_event("delete", namespace="auth"),  # auth has no open incident
        audit_event("delete", namespace="kube-system"),  # no service owns it
        audit_event("create", namespace=None, resource="clusterroles"),
    ]
    status, answer = await post(client, url, event_list(exec_event, restart, scale, logs, *ignored))
    assert status == 200 and answer == {"received": 13, "recorded": 4}
    events = await stack.events(checkout.id)
    kinds = {e.payload["audit_id"]: e.payload["kind"] for e in events}
    assert kinds == {
        exec_event["auditID"]: "exec",
        restart["auditID"]: "rollout_restart",
        scale["auditID"]: "scale",
        logs["auditID"]: "logs",
    }
    [ex] = [e for e in events if e.payload["kind"] == "exec"]
    assert (ex.type, ex.source, ex.actor) == ("kubectl", SOURCE, "ravi@paisabridge.example")
    assert ex.occurred_at == dt.datetime.fromisoformat(exec_event["stageTimestamp"])
    assert ex.dedup_key == f"{exec_event['auditID']}/ResponseComplete/{checkout.id}"
    p = ex.payload
    assert (p["verb"], p["resource"], p["namespace"], p["name"], p["subresource"], p["code"]) == (
        "create",
        "pods",
        "checkout",
        "checkout-api-7d9f",
        "exec",
        200,
    )
    assert p["user_agent"].startswith("kubectl/v1.29.2") and p["stage_timestamp"] == exec_event["stageTimestamp"]
    assert "requestObject" not in json.dumps(p)
    assert ex.summary == "exec: ravi@paisabridge.example create pods/exec checkout/checkout-api-7d9f → 200"
    [sc] = [e for e in events if e.payload["kind"] == "scale"]
    assert sc.payload["replicas"] == 12 and "to 12 replicas" in sc.summary
    [rr] = [e for e in events if e.payload["kind"] == "rollout_restart"]
    assert rr.payload["restarted_at"] == "2026-04-22T02:51Z"


async def test_duplicates_are_stored_once(url: str, client: aiohttp.ClientSession, stack: Stack) -> None:
    incident = await stack.declare("checkout")
    event = audit_event("delete")
    assert (await post(client, url, event_list(event, event)))[1] == {"received": 2, "recorded": 1}
    assert (await post(client, url, event_list(event)))[0] == 200  # the apiserver retried the batch
    # Same auditID, another stage the policy keeps would be a separate row; here Panic is not kept.
    assert (await post(client, url, event_list(event | {"stage": "Panic"})))[1]["recorded"] == 0
    assert len(await stack.events(incident.id, "kubectl")) == 1


async def test_events_go_to_every_open_incident_of_the_service(
    url: str, client: aiohttp.ClientSession, stack: Stack
) -> None:
    first = await stack.declare("checkout")
    status, _ = await post(client, url, event_list(audit_event("delete", name="before-second")))
    assert status == 200
    # A second, separate incident declared a moment ago (after the webhook's snapshot) is not missed.
    second = await stack.declare("checkout", separate=True)
    event = audit_event("delete")
    assert (await post(client, url, event_list(event)))[1]["recorded"] == 2
    for incident in (first, second):
        assert event["auditID"] in {e.payload["audit_id"] for e in await stack.events(incident.id)}


async def test_an_incident_resolved_or_none_means_nothing_recorded(
    url: str, client: aiohttp.ClientSession, stack: Stack
) -> None:
    assert (await post(client, url, event_list(audit_event("delete"))))[1] == {"received": 1, "recorded": 0}


@pytest.mark.parametrize("writer_capacity", [3])
async def test_a_full_buffer_answers_429_and_takes_nothing(
    url: str, client: aiohttp.ClientSession, stack: Stack
) -> None:
    incident = await stack.declare("checkout")
    batch = [audit_event("delete") for _ in range(4)]
    async with client.post(url, data=json.dumps(event_list(*batch)), headers=AUTH) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert "nothing was taken" in (await response.json())["error"]
    assert await stack.events(incident.id) == []
    # The apiserver splits or retries; what fits is taken and stored.
    assert (await post(client, url, event_list(*batch[:3])))[0] == 200
    assert (await post(client, url, event_list(batch[3])))[0] == 200
    assert len(await stack.events(incident.id)) == 4


async def test_unknown_open_incidents_are_503_not_dropped(
    stack: Stack, serve: ServerFactory, client: aiohttp.ClientSession
) -> None:
    class Down:
        async def open_incidents(self) -> list[Any]:
            raise OSError("connection refused")

    incidents = OpenIncidents(Down(), timeout=0.2)  # type: ignore[arg-type]
    webhook = AuditWebhook(token=TOKEN, policy=stack.policy, incidents=incidents, sink=stack.writer)
    url = await serve(webhook.routes()) + "/webhooks/k8s-audit"
    async with client.post(url, data=json.dumps(event_list(audit_event("delete"))), headers=AUTH) as response:
        assert response.status == 503 and response.headers["Retry-After"] == "5"
    # Events in namespaces nobody owns need no incident lookup at all.
    assert (await post(client, url, event_list(audit_event("delete", namespace="kube-system"))))[0] == 200
    with pytest.raises(IncidentsUnavailable):
        await incidents.refresh()


async def test_open_incidents_fall_back_to_a_recent_snapshot_when_postgres_fails(stack: Stack) -> None:
    incident = await stack.declare("checkout")

    class Flaky:
        calls = 0

        async def open_incidents(self) -> list[Any]:
            self.calls += 1
            if self.calls > 1:
                raise OSError("connection refused")
            return await stack.incidents.open_incidents()

    store = Flaky()
    incidents = OpenIncidents(store, ttl=0, timeout=0.2)  # type: ignore[arg-type]
    first = await incidents.covering(dt.datetime.now(dt.UTC))
    assert first.incidents_of("checkout") == (incident.id,)
    again = await incidents.covering(dt.datetime.now(dt.UTC))  # refresh fails: the last snapshot serves
    assert again is first and store.calls == 2
    await incidents.close()
