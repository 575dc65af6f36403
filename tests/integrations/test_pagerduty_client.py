"""PagerDutyClient (the real ``pagerduty`` library, in threads) against the stand-in over real TLS sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chatops.errors import ConfigError, IntegrationError
from chatops.integrations.pagerduty import PagerDutyClient, PDIncident
from chatops.retry import Backoff
from chatops.sandbox.pagerduty import PagerDutySandbox
from chatops.sandbox.tls import SandboxTLS

KEY = "pd-secret-key-0123456789"
FROM = "incident-bot@example.com"
FAST = Backoff(attempts=4, base=0.001, cap=0.01)


@pytest.fixture
def tls() -> Iterator[SandboxTLS]:
    with SandboxTLS() as t:
        yield t


@pytest.fixture
async def pd(tls: SandboxTLS) -> AsyncIterator[PagerDutySandbox]:
    async with PagerDutySandbox(tls, api_key=KEY) as sandbox:
        sandbox.add_user("PBOT001", FROM, "Incident Bot")
        sandbox.add_user("PALICE1", "alice@example.com", "Alice Adams")
        sandbox.add_service("PSVC001", "checkout-api")
        sandbox.set_on_call("PSVC001", "PALICE1")
        yield sandbox


def make_client(pd: PagerDutySandbox, tls: SandboxTLS, **kw: object) -> PagerDutyClient:
    args: dict[str, object] = {
        "api_key": KEY,
        "from_email": FROM,
        "base_url": pd.url,
        "verify": str(tls.ca_bundle_path),
        "backoff": FAST,
    }
    args.update(kw)
    return PagerDutyClient(**args)  # type: ignore[arg-type]


@pytest.fixture
async def client(pd: PagerDutySandbox, tls: SandboxTLS) -> AsyncIterator[PagerDutyClient]:
    c = make_client(pd, tls)
    yield c
    await c.aclose()


async def create(client: PagerDutyClient, key: str = "chatops:inc-42:page") -> tuple[PDIncident, bool]:
    return await client.create_incident(
        service_id="PSVC001",
        title="Checkout is down",
        urgency="high",
        incident_key=key,
        details="5xx on /pay",
    )


def posts(pd: PagerDutySandbox, path: str = "/incidents") -> int:
    return sum(1 for c in pd.calls if c.method == "POST" and c.path == path)


async def test_create_then_duplicate_returns_the_same_incident(
    client: PagerDutyClient,
    pd: PagerDutySandbox,
) -> None:
    first, created = await create(client)
    assert created is True
    assert first.number == 871234
    assert first.status == "triggered"
    assert first.service_id == "PSVC001"
    assert first.incident_key == "chatops:inc-42:page"
    assert first.html_url.endswith(first.id)
    again, created_again = await create(client)
    assert created_again is False
    assert again == first
    assert len(pd.incidents) == 1
    assert posts(pd) == 2
    lookup = pd.calls[-1]
    assert lookup.method == "GET"
    assert lookup.query["incident_key"] == ["chatops:inc-42:page"]
    assert lookup.query["service_ids[]"] == ["PSVC001"]
    assert lookup.query["statuses[]"] == ["triggered", "acknowledged"]
    # The request body had the PROTOCOLS §3 shape and the From header.
    body = pd.calls[0].body["incident"]
    assert body["type"] == "incident"
    assert body["service"] == {"id": "PSVC001", "type": "service_reference"}
    assert body["body"] == {"type": "incident_body", "details": "5xx on /pay"}
    assert pd.calls[0].headers["from"] == FROM
    assert pd.calls[0].headers["accept"] == "application/vnd.pagerduty+json;version=2"


async def test_create_finds_a_page_opened_elsewhere(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    existing = pd.add_incident(
        service_id="PSVC001",
        title="paged by hand",
        assigned_to="PALICE1",
        incident_key="k",
        status="acknowledged",
    )
    incident, created = await create(client, key="k")
    assert created is False
    assert incident.id == existing["id"]
    assert incident.status == "acknowledged"


async def test_503_twice_then_success_is_retried(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    pd.inject(503, times=2, method="POST", path_prefix="/incidents")
    incident, created = await create(client)
    assert created is True
    assert posts(pd) >= 3
    assert [c.status for c in pd.calls if c.method == "POST"] == [503, 503, 201]
    assert incident.number == 871234


async def test_503_forever_gives_up_after_4_tries(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    pd.inject(503, times=100)
    with pytest.raises(IntegrationError) as info:
        await create(client)
    assert "503 after 4 tries" in str(info.value)
    assert info.value.service == "PagerDuty"
    assert (info.value.attempts, info.value.status) == (4, 503)
    assert posts(pd) == 4  # the library itself made no extra attempts


async def test_429_retry_after_is_honoured(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    pd.inject(429, times=1, retry_after=1)
    t0 = time.monotonic()
    assert await client.find_user_id("alice@example.com") == "PALICE1"
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 3.0
    assert [c.status for c in pd.calls] == [429, 200]


async def test_429_without_retry_after_uses_our_backoff_not_the_librarys(
    client: PagerDutyClient,
    pd: PagerDutySandbox,
) -> None:
    pd.inject(429, times=100)
    t0 = time.monotonic()
    with pytest.raises(IntegrationError, match="429 after 4 tries"):
        await client.find_user_id("alice@example.com")
    assert time.monotonic() - t0 < 1.0  # the library's own cooldown starts at 1.5 s
    assert len(pd.calls) == 4


async def test_other_4xx_are_not_retried(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    with pytest.raises(IntegrationError) as info:
        await client.create_incident(
            service_id="PNOPE00",
            title="t",
            urgency="low",
            incident_key="k",
            details="d",
        )
    assert info.value.status == 400
    assert "Service Not Found" in str(info.value)
    assert posts(pd) == 1


async def test_bad_key_is_401_without_retries(pd: PagerDutySandbox, tls: SandboxTLS) -> None:
    c = make_client(pd, tls, api_key="wrong-key")
    try:
        with pytest.raises(IntegrationError) as info:
            await c.open_incidents(service_ids=["PSVC001"])
    finally:
        c.close()
    assert info.value.status == 401
    assert "wrong-key" not in str(info.value)
    assert len(pd.calls) == 1


async def test_acknowledge_is_idempotent(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    incident, _ = await create(client)
    assert await client.acknowledge(incident.id) == "acknowledged"
    assert pd.incident(incident.id)["status"] == "acknowledged"
    assert await client.acknowledge(incident.id) == "already_acknowledged"
    resolved = pd.add_incident(service_id="PSVC001", title="old", assigned_to=None, status="resolved")
    assert await client.acknowledge(resolved["id"]) == "already_resolved"
    put = next(c for c in pd.calls if c.method == "PUT")
    assert put.body == {"incident": {"type": "incident_reference", "status": "acknowledged"}}
    with pytest.raises(IntegrationError) as info:
        await client.acknowledge("QNOTTHERE00000")
    assert info.value.status == 404


async def test_set_urgency_and_get_incident(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    low = pd.add_incident(service_id="PSVC001", title="slow", assigned_to="PALICE1", urgency="low")
    assert (await client.get_incident(low["id"])).urgency == "low"
    assert await client.set_urgency(low["id"], "high") == "updated"
    assert pd.incident(low["id"])["urgency"] == "high"
    fetched = await client.get_incident(low["id"])
    assert fetched.urgency == "high" and fetched.number == low["incident_number"]
    put = next(c for c in pd.calls if c.method == "PUT")
    assert put.body == {"incident": {"type": "incident_reference", "urgency": "high"}}
    resolved = pd.add_incident(service_id="PSVC001", title="old", assigned_to=None, status="resolved", urgency="low")
    assert await client.set_urgency(resolved["id"], "high") == "already_resolved"
    assert pd.incident(resolved["id"])["urgency"] == "low"
    pd.inject(503, times=1000, method="PUT")
    with pytest.raises(IntegrationError) as info:
        await client.set_urgency(low["id"], "low")
    assert info.value.status == 503
    assert pd.incident(low["id"])["urgency"] == "high"


async def test_open_incidents_filters_and_pages(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    pd.add_service("PSVC002", "search-api")
    mine = [pd.add_incident(service_id="PSVC001", title=f"i{n}", assigned_to="PALICE1") for n in range(105)]
    mine_ids = [i["id"] for i in mine]
    pd.add_incident(service_id="PSVC001", title="bot's", assigned_to="PBOT001")
    acked = pd.add_incident(service_id="PSVC001", title="acked", assigned_to="PALICE1", status="acknowledged")
    pd.add_incident(service_id="PSVC002", title="other service", assigned_to="PALICE1")
    found = await client.open_incidents(service_ids=["PSVC001"], user_id="PALICE1")
    assert [i.id for i in found] == mine_ids  # 105 triggered ones, over two pages of 100
    assert sum(1 for c in pd.calls if c.path == "/incidents") == 2
    both = await client.open_incidents(service_ids=["PSVC001"], statuses=("triggered", "acknowledged"))
    assert len(both) == 107
    assert acked["id"] in {i.id for i in both}
    assert pd.calls[-1].query["date_range"] == ["all"]


async def test_find_user_id(client: PagerDutyClient) -> None:
    assert await client.find_user_id("Alice@Example.com") == "PALICE1"
    assert await client.find_user_id("nobody@example.com") is None


async def test_add_responders(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    incident, _ = await create(client)
    await client.add_responders(
        incident.id,
        requester_id="PBOT001",
        message="Join the bridge",
        user_ids=["PALICE1"],
    )
    (req,) = pd.responder_requests
    assert req["message"] == "Join the bridge"
    assert req["responder_request_targets"] == [
        {"responder_request_target": {"id": "PALICE1", "type": "user_reference"}},
    ]
    pd.responder_requests_enabled = False
    with pytest.raises(IntegrationError) as info:
        await client.add_responders(
            incident.id,
            requester_id="PBOT001",
            message="m",
            escalation_policy_ids=["PEP1"],
        )
    assert info.value.status == 402
    with pytest.raises(ValueError, match="at least one"):
        await client.add_responders(incident.id, requester_id="PBOT001", message="m")


async def test_calls_do_not_block_the_event_loop(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    pd.set_latency(0.3)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await client.find_user_id("alice@example.com")
    finally:
        task.cancel()
    assert ticks >= 5  # a blocked loop would manage at most one


async def test_concurrent_calls(client: PagerDutyClient, pd: PagerDutySandbox) -> None:
    pd.set_latency(0.05)
    made = [pd.add_incident(service_id="PSVC001", title=f"i{n}", assigned_to=None) for n in range(6)]
    results = await asyncio.gather(*(client.acknowledge(i["id"]) for i in made))
    assert results == ["acknowledged"] * 6
    assert all(pd.incident(i["id"])["status"] == "acknowledged" for i in made)


async def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = PagerDutyClient(api_key=KEY, from_email=FROM, base_url=f"https://127.0.0.1:{port}", backoff=FAST)
    try:
        with pytest.raises(IntegrationError) as info:
            await c.find_user_id("a@example.com")
    finally:
        c.close()
    assert "after 4 tries" in str(info.value)
    assert "unreachable" in str(info.value)
    assert (info.value.attempts, info.value.status) == (4, None)


async def test_untrusted_certificate_fails_fast(
    pd: PagerDutySandbox,
    tls: SandboxTLS,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    c = make_client(pd, tls, verify=True)  # system trust store: the sandbox CA is unknown
    try:
        with pytest.raises(IntegrationError, match="TLS certificate verification failed") as info:
            await c.find_user_id("alice@example.com")
    finally:
        c.close()
    assert info.value.attempts == 1
    assert pd.calls == []


async def test_https_is_required() -> None:
    with pytest.raises(ConfigError, match="https"):
        PagerDutyClient(api_key=KEY, from_email=FROM, base_url="http://127.0.0.1:1")


async def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        PagerDutyClient(api_key=KEY, from_email=FROM, verify=str(tmp_path / "nope.pem"))


async def test_the_key_never_reaches_the_logs(
    client: PagerDutyClient,
    pd: PagerDutySandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("chatops.integrations.pagerduty.library").setLevel(logging.DEBUG)
    try:
        pd.inject(503, times=1)
        pd.inject(429, times=1, retry_after=0)
        await create(client)
        await create(client)
        with pytest.raises(IntegrationError):
            await client.acknowledge("QNOTTHERE00000")
    finally:
        logging.getLogger("chatops.integrations.pagerduty.library").setLevel(logging.CRITICAL)
    assert caplog.records  # the retries were logged ...
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in text  # ... without the key or the auth header
    assert "Token token" not in text
