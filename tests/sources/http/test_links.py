"""``GET /go/<token>``: signed, tamper-evident, policy-bound redirects that record a ``dashboard`` event."""

from __future__ import annotations

import stat
from pathlib import Path

import aiohttp
import pytest

from chatops.links import SOURCE, LinkRedirector, Links, load_link_key

from .conftest import ServerFactory, Stack, utcnow

GRAFANA = "https://grafana.example.com/d/checkout-overview"
RUNBOOK = "https://playbooks.example.com/checkout"


@pytest.fixture
async def links(stack: Stack, serve: ServerFactory) -> Links:
    base: list[str] = []
    minted = Links(b"k" * 32, base_url=lambda: base[0])
    redirector = LinkRedirector(minted, policy=stack.policy, sink=stack.writer, tasks=stack.tasks, clock=utcnow)
    base.append(await serve(redirector.routes()))
    return minted


async def get(client: aiohttp.ClientSession, url: str, **headers: str) -> tuple[int, str | None]:
    async with client.get(url, allow_redirects=False, headers=headers) as response:
        await response.read()
        return response.status, response.headers.get("Location")


async def test_a_minted_link_redirects_and_records_who_opened_what(
    links: Links, stack: Stack, client: aiohttp.ClientSession
) -> None:
    incident = await stack.declare("checkout")
    shared = links.mint(incident.id, "checkout", GRAFANA)
    personal = links.mint(incident.id, "checkout", RUNBOOK, user="U0RAVI001")
    assert "/go/" in shared and GRAFANA not in shared and "grafana" not in shared
    assert await get(client, shared) == (302, GRAFANA)
    assert await get(client, personal) == (302, RUNBOOK)
    opened = await stack.events(incident.id, "dashboard")
    assert [(e.actor, e.source, e.payload["url"], e.payload["kind"]) for e in opened] == [
        (None, SOURCE, GRAFANA, "dashboard"),
        ("U0RAVI001", SOURCE, RUNBOOK, "runbook"),
    ]
    assert opened[0].summary == "Grafana overview opened"
    assert opened[1].summary == "<@U0RAVI001> opened Runbook"


async def test_unfurlers_and_head_are_redirected_but_not_recorded(
    links: Links, stack: Stack, client: aiohttp.ClientSession
) -> None:
    incident = await stack.declare("checkout")
    url = links.mint(incident.id, "checkout", GRAFANA)
    assert await get(client, url, **{"User-Agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"}) == (
        302,
        GRAFANA,
    )
    async with client.head(url, allow_redirects=False) as response:
        assert response.status == 302
    assert await stack.events(incident.id, "dashboard") == []


async def test_tampered_or_foreign_tokens_are_404(links: Links, stack: Stack, client: aiohttp.ClientSession) -> None:
    incident = await stack.declare("checkout")
    url = links.mint(incident.id, "checkout", GRAFANA)
    base, token = url.rsplit("/go/", 1)
    payload, tag = token.split(".")
    flipped = tag[:-1] + ("A" if tag[-1] != "A" else "B")
    forged = Links(b"x" * 32, base_url=lambda: base).token(incident.id, "checkout", GRAFANA)
    other_service = links.token(incident.id, "checkout", GRAFANA)
    for bad in (f"{payload}.{flipped}", f"{payload[:-2]}.{tag}", forged, "nonsense", ".", f"{payload}.", "%00"):
        assert (await get(client, f"{base}/go/{bad}"))[0] == 404, bad
    assert (await get(client, f"{base}/go/{other_service}"))[0] == 302
    assert len(await stack.events(incident.id, "dashboard")) == 1


async def test_no_open_redirect_only_urls_in_the_policy_in_force(
    links: Links, stack: Stack, client: aiohttp.ClientSession, policy_dir: Path
) -> None:
    incident = await stack.declare("checkout")
    # A correctly signed token for a URL the policy never had does not redirect.
    evil = links.mint(incident.id, "checkout", "https://evil.example/phish")
    assert await get(client, evil) == (410, None)
    # Nor does a token naming another service's URL under this service, or a service that does not exist.
    assert (await get(client, links.mint(incident.id, "checkout", "https://playbooks.example.com/auth")))[0] == 410
    assert (await get(client, links.mint(incident.id, "nope", GRAFANA)))[0] == 410
    # A dashboard removed from the policy stops redirecting once the edit is in force.
    still = links.mint(incident.id, "checkout", GRAFANA)
    assert (await get(client, still))[0] == 302
    services = policy_dir / "services.yaml"
    services.write_text(services.read_text().replace(GRAFANA, "https://grafana.example.com/d/checkout-v2"))
    assert await stack.policy.reload("test")
    assert (await get(client, still))[0] == 410
    assert len(await stack.events(incident.id, "dashboard")) == 1


def test_link_key_is_persisted_private_and_stable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = load_link_key(None, data)
    assert load_link_key(None, data) == first and len(first) == 32
    assert stat.S_IMODE((data / "link-secret").stat().st_mode) == 0o600
    configured = load_link_key("from-the-environment", data)
    assert configured == load_link_key("from-the-environment", tmp_path / "elsewhere") != first
    (data / "link-secret").write_text("garbage")
    assert load_link_key(None, data) != first


def test_tokens_are_deterministic_per_key_and_verify(tmp_path: Path) -> None:
    links = Links(b"k" * 32, base_url=lambda: "https://chatops.example.com/")
    url = links.mint("inc-1", "checkout", GRAFANA, user="U1")
    assert url.startswith("https://chatops.example.com/go/")
    claim = links.verify(url.rsplit("/", 1)[1])
    assert claim is not None and (claim.incident_id, claim.service, claim.user) == ("inc-1", "checkout", "U1")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Links(b"short", base_url=lambda: "")
