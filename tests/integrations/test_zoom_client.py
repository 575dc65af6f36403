"""ZoomClient against the Zoom stand-in over real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from chatops.errors import IntegrationError
from chatops.integrations.zoom import Meeting, ZoomClient
from chatops.retry import Backoff
from chatops.sandbox.zoom import ZoomSandbox

ACCOUNT, CLIENT, SECRET = "acct-1", "client-1", "s3cr3t-zoom-secret"
FAST = Backoff(attempts=4, base=0.001, cap=0.01)


@pytest.fixture
async def zoom() -> AsyncIterator[ZoomSandbox]:
    async with ZoomSandbox(account_id=ACCOUNT, client_id=CLIENT, client_secret=SECRET) as z:
        yield z


def make_client(zoom: ZoomSandbox, **kw: object) -> ZoomClient:
    args: dict[str, object] = {
        "account_id": ACCOUNT,
        "client_id": CLIENT,
        "client_secret": SECRET,
        "api_url": zoom.api_url,
        "oauth_url": zoom.oauth_url,
        "backoff": FAST,
    }
    args.update(kw)
    return ZoomClient(**args)  # type: ignore[arg-type]


@pytest.fixture
async def client(zoom: ZoomSandbox) -> AsyncIterator[ZoomClient]:
    c = make_client(zoom)
    yield c
    await c.aclose()


def meeting_posts(zoom: ZoomSandbox) -> list[int]:
    return [c.status for c in zoom.calls if c.path == "/v2/users/me/meetings"]


async def test_create_meeting(client: ZoomClient, zoom: ZoomSandbox) -> None:
    meeting = await client.create_meeting("INC-42: checkout down")
    (stored,) = zoom.meetings
    assert meeting == Meeting(id=stored["id"], join_url=stored["join_url"], password=stored["password"])
    sent = zoom.calls[-1].body
    assert sent["type"] == 1
    assert sent["topic"] == "INC-42: checkout down"


async def test_start_url_is_never_exposed(client: ZoomClient, zoom: ZoomSandbox) -> None:
    meeting = await client.create_meeting("bridge")
    start_url = zoom.meetings[0]["start_url"]
    assert [f.name for f in dataclasses.fields(Meeting)] == ["id", "join_url", "password"]
    assert not hasattr(meeting, "start_url")
    assert start_url not in repr(meeting)
    assert "zak=" not in repr(meeting)
    assert start_url not in repr(vars(client))


async def test_topic_is_cut_to_zooms_limit(client: ZoomClient, zoom: ZoomSandbox) -> None:
    await client.create_meeting("x" * 300)
    assert len(zoom.meetings[0]["topic"]) == 200


async def test_token_is_cached(client: ZoomClient, zoom: ZoomSandbox) -> None:
    await client.create_meeting("one")
    await client.create_meeting("two")
    assert zoom.token_requests == 1
    assert len(zoom.meetings) == 2


async def test_concurrent_callers_share_one_token_fetch(client: ZoomClient, zoom: ZoomSandbox) -> None:
    zoom.set_latency(0.05)
    meetings = await asyncio.gather(*(client.create_meeting(f"m{n}") for n in range(5)))
    assert len({m.id for m in meetings}) == 5
    assert zoom.token_requests == 1


async def test_revoked_token_is_refetched_once(client: ZoomClient, zoom: ZoomSandbox) -> None:
    await client.create_meeting("one")
    zoom.expire_tokens()
    await client.create_meeting("two")
    assert zoom.token_requests == 2
    assert meeting_posts(zoom) == [201, 401, 201]


async def test_token_is_renewed_before_it_expires(zoom: ZoomSandbox) -> None:
    zoom.token_ttl = 1.0  # the client renews 10% (0.1 s) before expiry
    client = make_client(zoom)
    try:
        await client.create_meeting("one")
        await asyncio.sleep(0.95)
        await client.create_meeting("two")
    finally:
        await client.aclose()
    assert zoom.token_requests == 2
    assert meeting_posts(zoom) == [201, 201]  # no 401 on the way


async def test_persistent_401_fails_after_one_refetch(client: ZoomClient, zoom: ZoomSandbox) -> None:
    zoom.inject(401, times=5, path_prefix="/v2")
    with pytest.raises(IntegrationError) as info:
        await client.create_meeting("bridge")
    assert info.value.status == 401
    assert info.value.service == "Zoom"
    assert meeting_posts(zoom) == [401, 401]
    assert zoom.token_requests == 2


async def test_5xx_is_retried(client: ZoomClient, zoom: ZoomSandbox) -> None:
    zoom.inject(503, times=2, path_prefix="/v2")
    await client.create_meeting("bridge")
    assert meeting_posts(zoom) == [503, 503, 201]


async def test_5xx_forever_gives_up(client: ZoomClient, zoom: ZoomSandbox) -> None:
    zoom.inject(502, times=100, path_prefix="/v2")
    with pytest.raises(IntegrationError, match="502 after 4 tries") as info:
        await client.create_meeting("bridge")
    assert info.value.attempts == 4
    assert len(meeting_posts(zoom)) == 4


async def test_oauth_5xx_is_retried(client: ZoomClient, zoom: ZoomSandbox) -> None:
    zoom.inject(500, times=1, path_prefix="/oauth")
    await client.create_meeting("bridge")
    assert zoom.token_requests == 1  # the injected answer never reached the token route
    assert [c.status for c in zoom.calls] == [500, 200, 201]


async def test_429_retry_after_is_honoured(client: ZoomClient, zoom: ZoomSandbox) -> None:
    zoom.inject(429, times=1, path_prefix="/v2", retry_after=1)
    t0 = time.monotonic()
    await client.create_meeting("bridge")
    assert 0.9 <= time.monotonic() - t0 < 3.0
    assert meeting_posts(zoom) == [429, 201]


async def test_daily_limit_is_not_retried(zoom: ZoomSandbox) -> None:
    zoom.meetings_per_day = 1
    client = make_client(zoom)
    try:
        await client.create_meeting("first")
        with pytest.raises(IntegrationError, match="daily meeting limit") as info:
            await client.create_meeting("second")
    finally:
        await client.aclose()
    assert info.value.status == 429
    assert meeting_posts(zoom) == [201, 429]


async def test_bad_credentials(zoom: ZoomSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = make_client(zoom, client_secret="wrong-secret-value")
    try:
        with pytest.raises(IntegrationError) as info:
            await client.create_meeting("bridge")
    finally:
        await client.aclose()
    message = str(info.value)
    assert "invalid_client" in message
    assert "wrong-secret-value" not in message
    assert "wrong-secret-value" not in repr(client)
    assert zoom.token_requests == 1  # not retried
    assert meeting_posts(zoom) == []
    assert all("wrong-secret-value" not in r.getMessage() for r in caplog.records)


async def test_unreachable(zoom: ZoomSandbox) -> None:
    url = zoom.url
    await zoom.stop()
    client = ZoomClient(
        account_id=ACCOUNT,
        client_id=CLIENT,
        client_secret=SECRET,
        api_url=url + "/v2",
        oauth_url=url + "/oauth/token",
        backoff=FAST,
    )
    try:
        with pytest.raises(IntegrationError, match="after 4 tries") as info:
            await client.create_meeting("bridge")
    finally:
        await client.aclose()
    assert info.value.status is None


async def test_a_shared_session_is_left_open(zoom: ZoomSandbox) -> None:
    async with aiohttp.ClientSession() as session:
        client = make_client(zoom, session=session)
        await client.create_meeting("bridge")
        await client.aclose()
        assert not session.closed
