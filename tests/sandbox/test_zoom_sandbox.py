"""Conformance of the Zoom stand-in (Server-to-Server OAuth + create meeting) with PROTOCOLS §6."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from chatops.sandbox.tls import SandboxTLS
from chatops.sandbox.zoom import ZoomSandbox

ACCOUNT, CLIENT, SECRET = "acct-1", "client-1", "secret-1"


@pytest.fixture
async def zoom() -> AsyncIterator[ZoomSandbox]:
    async with ZoomSandbox(
        account_id=ACCOUNT,
        client_id=CLIENT,
        client_secret=SECRET,
        meetings_per_day=3,
    ) as z:
        yield z


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_token(
    http: aiohttp.ClientSession,
    zoom: ZoomSandbox,
    *,
    user: str = CLIENT,
    password: str = SECRET,
    form: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = {"grant_type": "account_credentials", "account_id": ACCOUNT} if form is None else form
    async with http.post(
        zoom.oauth_url,
        data=data or None,
        params=params,
        headers={"Authorization": aiohttp.encode_basic_auth(user, password)},
    ) as resp:
        return resp.status, await resp.json()


async def create(
    http: aiohttp.ClientSession,
    zoom: ZoomSandbox,
    token: str | None,
    body: Any = None,
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    payload = {"topic": "INC-42 bridge", "type": 1} if body is None else body
    async with http.post(f"{zoom.api_url}/users/me/meetings", json=payload, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_token_grant(http: aiohttp.ClientSession, zoom: ZoomSandbox) -> None:
    status, body = await get_token(http, zoom)
    assert status == 200
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20
    assert "refresh_token" not in body
    assert zoom.token_requests == 1
    call = zoom.calls[0]
    assert call.body == {"grant_type": "account_credentials", "account_id": ACCOUNT}
    assert call.headers["authorization"].startswith("Basic ")


async def test_token_grant_accepts_query_parameters(http: aiohttp.ClientSession, zoom: ZoomSandbox) -> None:
    status, _ = await get_token(
        http,
        zoom,
        form={},
        params={"grant_type": "account_credentials", "account_id": ACCOUNT},
    )
    assert status == 200


async def test_wrong_credentials_are_refused_like_zoom(
    http: aiohttp.ClientSession,
    zoom: ZoomSandbox,
) -> None:
    invalid_client = {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}
    assert await get_token(http, zoom, password="nope") == (400, invalid_client)
    assert await get_token(http, zoom, user="someone-else") == (400, invalid_client)
    async with http.post(
        zoom.oauth_url,
        data={"grant_type": "account_credentials", "account_id": ACCOUNT},
    ) as r:
        assert (r.status, await r.json()) == (400, invalid_client)  # no Basic auth at all
    status, body = await get_token(
        http,
        zoom,
        form={"grant_type": "client_credentials", "account_id": ACCOUNT},
    )
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, body = await get_token(
        http,
        zoom,
        form={"grant_type": "account_credentials", "account_id": "other"},
    )
    assert (status, body["error"]) == (400, "invalid_request")


async def test_create_meeting(http: aiohttp.ClientSession, zoom: ZoomSandbox) -> None:
    _, tok = await get_token(http, zoom)
    status, body, _ = await create(http, zoom, tok["access_token"])
    assert status == 201
    assert isinstance(body["id"], int)
    assert body["topic"] == "INC-42 bridge"
    assert body["type"] == 1
    assert body["join_url"].startswith(zoom.url + "/j/")
    assert "zak=" in body["start_url"]
    assert body["password"]
    assert zoom.meetings == [body]


async def test_api_needs_a_valid_token(http: aiohttp.ClientSession, zoom: ZoomSandbox) -> None:
    invalid = {"code": 124, "message": "Invalid access token."}
    status, body, _ = await create(http, zoom, None)
    assert (status, body) == (401, invalid)
    status, body, _ = await create(http, zoom, "made-up")
    assert (status, body) == (401, invalid)


async def test_expire_tokens_invalidates_issued_tokens(
    http: aiohttp.ClientSession,
    zoom: ZoomSandbox,
) -> None:
    _, tok = await get_token(http, zoom)
    zoom.expire_tokens()
    status, body, _ = await create(http, zoom, tok["access_token"])
    assert (status, body) == (401, {"code": 124, "message": "Invalid access token."})
    _, fresh = await get_token(http, zoom)
    assert (await create(http, zoom, fresh["access_token"]))[0] == 201


async def test_tokens_expire_after_their_ttl(http: aiohttp.ClientSession) -> None:
    async with ZoomSandbox(account_id=ACCOUNT, client_id=CLIENT, client_secret=SECRET, token_ttl=0.2) as zoom:
        _, tok = await get_token(http, zoom)
        assert tok["expires_in"] == 0  # int(0.2): Zoom reports whole seconds
        assert (await create(http, zoom, tok["access_token"]))[0] == 201
        await asyncio.sleep(0.25)
        status, body, _ = await create(http, zoom, tok["access_token"])
        assert (status, body) == (401, {"code": 124, "message": "Access token is expired."})


async def test_daily_meeting_limit(http: aiohttp.ClientSession, zoom: ZoomSandbox) -> None:
    _, tok = await get_token(http, zoom)
    for _ in range(3):
        assert (await create(http, zoom, tok["access_token"]))[0] == 201
    status, body, headers = await create(http, zoom, tok["access_token"])
    assert status == 429
    assert body["code"] == 429
    assert "daily rate limit (3)" in body["message"]
    assert headers["X-RateLimit-Type"] == "Daily-limit"
    assert headers["Retry-After"].endswith("T00:00:00Z")
    assert len(zoom.meetings) == 3


def test_default_daily_limit_is_100() -> None:
    assert ZoomSandbox().meetings_per_day == 100


@pytest.mark.parametrize(
    "body",
    [
        {"topic": "x", "type": 99},
        {"topic": "x" * 201, "type": 1},
        {"topic": "x", "type": 1, "settings": []},
        [],
    ],
)
async def test_meeting_body_is_validated(http: aiohttp.ClientSession, zoom: ZoomSandbox, body: Any) -> None:
    _, tok = await get_token(http, zoom)
    status, data, _ = await create(http, zoom, tok["access_token"], body)
    assert status == 400
    assert data["code"] == 300


async def test_inject_and_latency(http: aiohttp.ClientSession, zoom: ZoomSandbox) -> None:
    zoom.inject(503, times=1, path_prefix="/oauth")
    zoom.inject(429, times=1, method="POST", path_prefix="/v2", retry_after=2)
    assert (await get_token(http, zoom))[0] == 503
    _, tok = await get_token(http, zoom)
    status, body, headers = await create(http, zoom, tok["access_token"])
    assert (status, body["code"], headers["Retry-After"]) == (429, 429, "2")
    zoom.set_latency(0.2)
    t0 = time.monotonic()
    assert (await create(http, zoom, tok["access_token"]))[0] == 201
    assert time.monotonic() - t0 >= 0.2
    assert [c.status for c in zoom.calls] == [503, 200, 429, 201]


async def test_can_serve_https(http: aiohttp.ClientSession) -> None:
    with SandboxTLS() as tls:
        async with ZoomSandbox(client_id=CLIENT, client_secret=SECRET, tls=tls) as zoom:
            assert zoom.url.startswith("https://")
            async with http.post(
                zoom.oauth_url,
                data={"grant_type": "account_credentials", "account_id": zoom.account_id},
                headers={"Authorization": aiohttp.encode_basic_auth(CLIENT, SECRET)},
                ssl=tls.client_ssl_context(),
            ) as resp:
                assert resp.status == 200
