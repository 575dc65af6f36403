"""Conformance of the PagerDuty REST v2 stand-in with PROTOCOLS §3, over real TLS sockets."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import aiohttp
import pytest

from chatops.sandbox.pagerduty import PagerDutySandbox
from chatops.sandbox.tls import SandboxTLS

KEY = "pd-sandbox-key"
ALICE = "alice@example.com"


@pytest.fixture
def tls() -> Iterator[SandboxTLS]:
    with SandboxTLS() as t:
        yield t
    assert not t.ca_bundle_path.exists()


@pytest.fixture
async def pd(tls: SandboxTLS) -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox(tls, api_key=KEY) as sandbox:
        sandbox.add_user("PALICE1", ALICE, "Alice Adams")
        sandbox.add_user("PBOB001", "bob@example.com", "Bob Brown")
        sandbox.add_service("PSVC001", "checkout-api")
        sandbox.add_service("PSVC002", "search-api")
        yield sandbox


class Api:
    """A raw HTTP client for the stand-in, with PagerDuty's headers by default."""

    def __init__(self, session: aiohttp.ClientSession, pd: PagerDutySandbox, tls: SandboxTLS) -> None:
        self.session = session
        self.pd = pd
        self.ssl = tls.client_ssl_context()

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        token: str | None = KEY,
        sender: str | None = ALICE,
    ) -> tuple[int, Any, Mapping[str, str]]:
        headers = {"Accept": "application/vnd.pagerduty+json;version=2"}
        if token is not None:
            headers["Authorization"] = f"Token token={token}"
        if sender is not None:
            headers["From"] = sender
        async with self.session.request(
            method,
            self.pd.url + path,
            json=json,
            params=params,
            headers=headers,
            ssl=self.ssl,
        ) as resp:
            return resp.status, await resp.json(), resp.headers

    async def create(
        self,
        key: str | None = "key-1",
        service: str = "PSVC001",
        **extra: Any,
    ) -> tuple[int, Any]:
        incident: dict[str, Any] = {
            "type": "incident",
            "title": "Checkout is down",
            "service": {"id": service, "type": "service_reference"},
            "urgency": "high",
            "body": {"type": "incident_body", "details": "5xx on /pay"},
        }
        if key is not None:
            incident["incident_key"] = key
        incident.update(extra)
        status, body, _ = await self.call("POST", "/incidents", json={"incident": incident})
        return status, body

    async def set_status(self, incident_id: str, status: str) -> tuple[int, Any]:
        body = {"incident": {"type": "incident_reference", "status": status}}
        code, data, _ = await self.call("PUT", f"/incidents/{incident_id}", json=body)
        return code, data


@pytest.fixture
async def api(pd: PagerDutySandbox, tls: SandboxTLS) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, pd, tls)


async def test_serves_tls_with_a_certificate_from_the_throwaway_ca(
    pd: PagerDutySandbox,
    tls: SandboxTLS,
) -> None:
    assert pd.url.startswith("https://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        # The system trust store does not know the sandbox CA ...
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(pd.url + "/users", ssl=ssl.create_default_context())
        # ... plain HTTP is not served ...
        with pytest.raises(aiohttp.ClientError):
            await session.get(pd.url.replace("https://", "http://") + "/users")
        # ... and a client trusting only the CA bundle gets through, hostname checks on.
        ctx = ssl.create_default_context(cafile=str(tls.ca_bundle_path))
        async with session.get(
            pd.url + "/users",
            ssl=ctx,
            headers={"Authorization": f"Token token={KEY}"},
        ) as r:
            assert r.status == 200


async def test_token_is_required(api: Api) -> None:
    status, body, _ = await api.call("GET", "/incidents", token=None)
    assert status == 401
    assert body == {"error": {"message": "Authentication failed", "code": 2006}}
    status, body, _ = await api.call("GET", "/incidents", token="wrong")
    assert status == 401
    assert body["error"]["code"] == 2006


async def test_writes_need_a_from_header_naming_a_known_user(api: Api) -> None:
    body = {
        "incident": {
            "type": "incident",
            "title": "t",
            "service": {"id": "PSVC001", "type": "service_reference"},
        }
    }
    status, data, _ = await api.call("POST", "/incidents", json=body, sender=None)
    assert status == 400
    assert data["error"]["code"] == 2001
    assert "From" in data["error"]["errors"][0] and "missing" in data["error"]["errors"][0]
    status, data, _ = await api.call("POST", "/incidents", json=body, sender="mallory@example.com")
    assert status == 400
    assert data["error"] == {
        "message": "Requester User Not Found",
        "code": 1008,
        "errors": ['The "From" header (mallory@example.com) is not the email of a valid user'],
    }
    # Reads need no From header.
    status, _, _ = await api.call("GET", "/incidents", sender=None)
    assert status == 200


async def test_create_incident_shape_and_assignment(api: Api, pd: PagerDutySandbox) -> None:
    status, body = await api.create()
    assert status == 201
    inc = body["incident"]
    assert inc["id"].startswith("Q") and len(inc["id"]) == 14
    assert inc["incident_number"] == 871234
    assert inc["status"] == "triggered"
    assert inc["urgency"] == "high"
    assert inc["incident_key"] == "key-1"
    assert inc["title"] == "Checkout is down"
    assert inc["service"]["id"] == "PSVC001"
    assert inc["service"]["type"] == "service_reference"
    assert inc["service"]["summary"] == "checkout-api"
    assert inc["assignments"][0]["assignee"]["id"] == "PALICE1"  # first user added
    assert inc["assignments"][0]["assignee"]["type"] == "user_reference"
    assert inc["html_url"].endswith("/incidents/" + inc["id"])
    assert inc["body"]["details"] == "5xx on /pay"
    assert pd.incidents == [inc]
    status, body = await api.create(key="key-2")
    assert body["incident"]["incident_number"] == 871235


async def test_on_call_mapping_and_explicit_assignments(api: Api, pd: PagerDutySandbox) -> None:
    pd.set_on_call("PSVC002", "PBOB001")
    _, body = await api.create(service="PSVC002")
    assert body["incident"]["assignments"][0]["assignee"]["id"] == "PBOB001"
    _, body = await api.create(
        key="k2",
        assignments=[{"assignee": {"id": "PBOB001", "type": "user_reference"}}],
    )
    assert [a["assignee"]["id"] for a in body["incident"]["assignments"]] == ["PBOB001"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"type": "incident_reference"}, "incident.type"),
        ({"title": ""}, "title"),
        ({"service": {"id": "PSVC001"}}, "service"),
        ({"urgency": "urgent"}, "urgency"),
        ({"body": {"details": "no type"}}, "incident.body"),
    ],
)
async def test_create_validates_the_body(api: Api, override: dict[str, Any], needle: str) -> None:
    status, body = await api.create(**override)
    assert status == 400
    assert body["error"]["code"] == 2001
    assert any(needle in e for e in body["error"]["errors"])


async def test_unknown_service_is_400(api: Api) -> None:
    status, body = await api.create(service="PNOPE00")
    assert status == 400
    assert body["error"]["message"] == "Invalid Input Provided"
    assert body["error"]["errors"] == ["Service Not Found"]


async def test_duplicate_open_incident_key_is_400(api: Api) -> None:
    status, first = await api.create(key="db-down")
    assert status == 201
    status, body = await api.create(key="db-down")
    assert status == 400
    assert body == {
        "error": {
            "message": "Arguments Caused Error",
            "code": 2002,
            "errors": ["Open incident with matching dedup key already exists on this service"],
        }
    }
    # Acknowledged is still open.
    await api.set_status(first["incident"]["id"], "acknowledged")
    assert (await api.create(key="db-down"))[0] == 400
    # The same key on another service is fine, and so is reuse after resolving.
    assert (await api.create(key="db-down", service="PSVC002"))[0] == 201
    await api.set_status(first["incident"]["id"], "resolved")
    assert (await api.create(key="db-down"))[0] == 201
    # No key, no de-duplication.
    assert (await api.create(key=None))[0] == 201
    assert (await api.create(key=None))[0] == 201


async def test_acknowledge_and_resolve_rules(api: Api, pd: PagerDutySandbox) -> None:
    _, body = await api.create()
    inc_id = body["incident"]["id"]
    status, data = await api.set_status(inc_id, "acknowledged")
    assert status == 200
    assert data["incident"]["status"] == "acknowledged"
    assert data["incident"]["acknowledgements"][0]["acknowledger"]["id"] == "PALICE1"
    status, data = await api.set_status(inc_id, "acknowledged")
    assert status == 400
    assert data["error"]["code"] == 1002
    assert data["error"]["message"] == "Incident Already Acknowledged"
    status, data = await api.set_status(inc_id, "resolved")
    assert status == 200
    assert pd.incident(inc_id)["status"] == "resolved"
    for action in ("acknowledged", "resolved"):
        status, data = await api.set_status(inc_id, action)
        assert status == 400
        assert data["error"]["code"] == 1001
        assert data["error"]["message"] == "Incident Already Resolved"
    status, data = await api.set_status(inc_id, "snoozed")
    assert status == 400
    status, data, _ = await api.call("PUT", f"/incidents/{inc_id}", json={"status": "resolved"})
    assert status == 400
    status, data = await api.set_status("QNOTTHERE00000", "acknowledged")
    assert status == 404
    assert data["error"]["code"] == 2100


async def test_urgency_change_rules(api: Api, pd: PagerDutySandbox) -> None:
    inc = pd.add_incident(service_id="PSVC001", title="slow", assigned_to="PALICE1", urgency="low")
    path = f"/incidents/{inc['id']}"
    status, data, _ = await api.call("PUT", path, json={"incident": {"type": "incident_reference", "urgency": "high"}})
    assert status == 200
    assert data["incident"]["urgency"] == "high" and data["incident"]["status"] == "triggered"
    assert pd.incident(inc["id"])["urgency"] == "high"
    status, data, _ = await api.call("PUT", path, json={"incident": {"type": "incident_reference", "urgency": "p1"}})
    assert status == 400
    assert data["error"]["code"] == 2001
    assert pd.incident(inc["id"])["urgency"] == "high"
    resolved = pd.add_incident(service_id="PSVC001", title="old", assigned_to=None, status="resolved", urgency="low")
    body = {"incident": {"type": "incident_reference", "urgency": "high"}}
    status, data, _ = await api.call("PUT", f"/incidents/{resolved['id']}", json=body)
    assert status == 400
    assert data["error"]["code"] == 1001
    assert pd.incident(resolved["id"])["urgency"] == "low"


async def test_get_incident(api: Api) -> None:
    _, body = await api.create()
    status, data, _ = await api.call("GET", f"/incidents/{body['incident']['id']}")
    assert status == 200
    assert data["incident"] == body["incident"]
    status, data, _ = await api.call("GET", "/incidents/QNOTTHERE00000")
    assert status == 404


async def test_list_filters(api: Api, pd: PagerDutySandbox) -> None:
    a = pd.add_incident(service_id="PSVC001", title="a", assigned_to="PALICE1", incident_key="ka")
    b = pd.add_incident(service_id="PSVC001", title="b", assigned_to="PBOB001", status="acknowledged")
    c = pd.add_incident(service_id="PSVC002", title="c", assigned_to="PBOB001")
    d = pd.add_incident(service_id="PSVC002", title="d", assigned_to=None, status="resolved")
    assert d["assignments"][0]["assignee"]["id"] == "PALICE1"

    async def ids(params: list[tuple[str, str]]) -> list[str]:
        status, data, _ = await api.call("GET", "/incidents", params=params)
        assert status == 200
        return [i["id"] for i in data["incidents"]]

    assert await ids([]) == [a["id"], b["id"], c["id"], d["id"]]
    assert await ids([("statuses[]", "triggered")]) == [a["id"], c["id"]]
    assert await ids([("statuses[]", "triggered"), ("statuses[]", "acknowledged")]) == [
        a["id"],
        b["id"],
        c["id"],
    ]
    assert await ids([("service_ids[]", "PSVC002")]) == [c["id"], d["id"]]
    assert await ids([("user_ids[]", "PBOB001"), ("statuses[]", "triggered")]) == [c["id"]]
    assert await ids([("incident_key", "ka")]) == [a["id"]]
    assert await ids([("date_range", "all"), ("service_ids[]", "PSVC001")]) == [a["id"], b["id"]]
    status, _, _ = await api.call("GET", "/incidents", params=[("statuses[]", "bogus")])
    assert status == 400


async def test_list_paging(api: Api, pd: PagerDutySandbox) -> None:
    made = [pd.add_incident(service_id="PSVC001", title=f"i{n}", assigned_to=None)["id"] for n in range(5)]
    status, data, _ = await api.call(
        "GET",
        "/incidents",
        params={"limit": "2", "offset": "0", "total": "true"},
    )
    assert status == 200
    assert [i["id"] for i in data["incidents"]] == made[:2]
    assert (data["limit"], data["offset"], data["more"], data["total"]) == (2, 0, True, 5)
    _, data, _ = await api.call("GET", "/incidents", params={"limit": "2", "offset": "4"})
    assert [i["id"] for i in data["incidents"]] == made[4:]
    assert data["more"] is False
    assert data["total"] is None
    status, _, _ = await api.call("GET", "/incidents", params={"limit": "x"})
    assert status == 400


async def test_users_query(api: Api) -> None:
    status, data, _ = await api.call("GET", "/users", params={"query": "ALICE@example.com"})
    assert status == 200
    assert [u["id"] for u in data["users"]] == ["PALICE1"]
    assert data["users"][0]["email"] == ALICE
    _, data, _ = await api.call("GET", "/users", params={"query": "nobody@example.com"})
    assert data["users"] == []
    assert data["more"] is False


async def test_responder_requests(api: Api, pd: PagerDutySandbox) -> None:
    _, body = await api.create()
    path = f"/incidents/{body['incident']['id']}/responder_requests"
    req = {
        "requester_id": "PALICE1",
        "message": "Please join",
        "responder_request_targets": [
            {"responder_request_target": {"id": "PBOB001", "type": "user_reference"}},
        ],
    }
    status, data, _ = await api.call("POST", path, json=req)
    assert status == 200
    assert data["responder_request"]["requester"]["id"] == "PALICE1"
    (target,) = pd.responder_requests[0]["responder_request_targets"]
    assert target["responder_request_target"]["id"] == "PBOB001"
    bad = dict(
        req,
        responder_request_targets=[{"responder_request_target": {"id": "PX", "type": "user_reference"}}],
    )
    assert (await api.call("POST", path, json=bad))[0] == 400
    assert (await api.call("POST", path, json=dict(req, requester_id="PX")))[0] == 400
    pd.responder_requests_enabled = False
    assert (await api.call("POST", path, json=req))[0] == 402


async def test_inject_matches_method_and_path_and_counts_down(api: Api, pd: PagerDutySandbox) -> None:
    pd.inject(503, times=2, method="POST", path_prefix="/incidents")
    assert (await api.call("GET", "/incidents"))[0] == 200  # other method: untouched
    status, body = await api.create()
    assert status == 503
    assert body["error"]["code"] == 2000
    assert (await api.create())[0] == 503
    assert (await api.create())[0] == 201
    assert [c.status for c in pd.calls] == [200, 503, 503, 201]


async def test_inject_429_carries_code_2020_and_retry_after(api: Api, pd: PagerDutySandbox) -> None:
    pd.inject(429, retry_after=7)
    status, body, headers = await api.call("GET", "/users", token=None)  # injected before auth
    assert status == 429
    assert body == {"error": {"message": "Rate Limit Exceeded", "code": 2020}}
    assert headers["Retry-After"] == "7"
    assert (await api.call("GET", "/users"))[0] == 200


async def test_latency_applies_to_every_route(api: Api, pd: PagerDutySandbox) -> None:
    pd.set_latency(0.2)
    t0 = time.monotonic()
    await api.call("GET", "/users", token=None)
    assert time.monotonic() - t0 >= 0.2
    t0 = time.monotonic()
    await api.create()
    assert time.monotonic() - t0 >= 0.2


async def test_calls_record_requests(api: Api, pd: PagerDutySandbox) -> None:
    await api.call("GET", "/incidents", params=[("statuses[]", "triggered"), ("statuses[]", "acknowledged")])
    await api.create()
    get, post = pd.calls
    assert (get.method, get.path, get.status) == ("GET", "/incidents", 200)
    assert get.query == {"statuses[]": ["triggered", "acknowledged"]}
    assert get.body is None
    assert post.headers["from"] == ALICE
    assert post.headers["authorization"] == f"Token token={KEY}"
    assert post.body["incident"]["incident_key"] == "key-1"
    assert post.status == 201
    assert post.at >= get.at


async def test_unknown_route_is_pd_style_404(api: Api) -> None:
    status, body, _ = await api.call("GET", "/nowhere")
    assert status == 404
    assert body == {"error": {"message": "Not Found", "code": 2100}}
