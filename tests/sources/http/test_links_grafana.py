"""``GET /go/<token>`` for ``/dashboard``'s time-ranged Grafana link, and tokens minted before ranged links existed."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import aiohttp
import pytest

from chatops.links import SOURCE, LinkRedirector, Links

from .conftest import ServerFactory, Stack, utcnow

KEY = b"k" * 32
GRAFANA = "https://grafana.example.com/d/checkout-overview"
RUNBOOK = "https://playbooks.example.com/checkout"
START_MS, END_MS = 1_776_800_000_000, 1_776_821_600_000  # 2026-04-21T19:33:20Z, six hours
RANGED = f"{GRAFANA}?from={START_MS}&to={END_MS}"


@pytest.fixture
async def links(stack: Stack, serve: ServerFactory) -> Links:
    base: list[str] = []
    minted = Links(KEY, base_url=lambda: base[0])
    redirector = LinkRedirector(minted, policy=stack.policy, sink=stack.writer, tasks=stack.tasks, clock=utcnow)
    base.append(await serve(redirector.routes()))
    return minted


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, str | None]:
    async with client.get(url, allow_redirects=False) as response:
        await response.read()
        return response.status, response.headers.get("Location")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def old_token(key: bytes, incident_id: str, service: str, url: str, user: str = "") -> str:
    """A token built exactly as before ranged links: four fields, HMAC-SHA256 under the v1 context, 18 bytes."""
    payload = "\x1f".join((incident_id, service, hashlib.sha256(url.encode()).hexdigest()[:16], user)).encode()
    tag = hmac.new(key, b"chatops /go v1\x00" + payload, hashlib.sha256).digest()[:18]
    return f"{_b64(payload)}.{_b64(tag)}"


def base_of(links: Links) -> str:
    return links.mint("inc", "checkout", GRAFANA).rsplit("/go/", 1)[0]


async def test_a_ranged_grafana_link_redirects_over_its_range_and_records_it(
    links: Links, stack: Stack, client: aiohttp.ClientSession
) -> None:
    incident = await stack.declare("checkout")
    url = links.mint(incident.id, "checkout", GRAFANA, grafana_range=(START_MS, END_MS))
    assert "/go/" in url and "grafana" not in url and str(START_MS) not in url
    assert await get(client, url) == (302, RANGED)
    [opened] = await stack.events(incident.id, "dashboard")
    assert (opened.actor, opened.source, opened.summary) == (None, SOURCE, "Grafana checkout opened")
    assert opened.payload["kind"] == "grafana" and opened.payload["title"] == "Grafana checkout"
    assert opened.payload["url"] == RANGED and opened.payload["service"] == "checkout"
    assert opened.payload["range"] == {
        "from_ms": START_MS,
        "to_ms": END_MS,
        "from": "2026-04-21T19:33:20Z",
        "to": "2026-04-22T01:33:20Z",
    }


async def test_a_ranged_link_minted_for_one_person_names_them(
    links: Links, stack: Stack, client: aiohttp.ClientSession
) -> None:
    incident = await stack.declare("checkout")
    url = links.mint(incident.id, "checkout", GRAFANA, user="U0RAVI001", grafana_range=(START_MS, END_MS))
    assert await get(client, url) == (302, RANGED)
    [opened] = await stack.events(incident.id, "dashboard")
    assert (opened.actor, opened.summary) == ("U0RAVI001", "<@U0RAVI001> opened Grafana checkout")


async def test_an_altered_range_or_tag_is_404(links: Links, stack: Stack, client: aiohttp.ClientSession) -> None:
    incident = await stack.declare("checkout")
    url = links.mint(incident.id, "checkout", GRAFANA, grafana_range=(START_MS, END_MS))
    base, token = url.rsplit("/go/", 1)
    payload_text, tag = token.split(".")
    payload = _unb64(payload_text)
    widened = _b64(payload.replace(str(START_MS).encode(), b"0"))
    flipped = tag[:-1] + ("A" if tag[-1] != "A" else "B")
    # A plain token's signed payload with a range appended, and a ranged one with its range cut off, keeping the tag.
    plain_payload, plain_tag = links.token(incident.id, "checkout", GRAFANA).split(".")
    appended = _b64(_unb64(plain_payload) + f"\x1fgrafana\x1f{START_MS}\x1f{END_MS}".encode())
    truncated = _b64(payload.split(b"\x1fgrafana")[0])
    for bad in (f"{widened}.{tag}", f"{payload_text}.{flipped}", f"{appended}.{plain_tag}", f"{truncated}.{tag}"):
        assert (await get(client, f"{base}/go/{bad}"))[0] == 404, bad
    assert await stack.events(incident.id, "dashboard") == []


def test_a_signed_range_that_makes_no_sense_does_not_verify(links: Links) -> None:
    for fields in ("grafana\x1f5\x1f5", "grafana\x1f9\x1f1", "grafana\x1f-1\x1f5", "grafana\x1f1", "other\x1f1\x1f5"):
        payload = f"inc\x1fcheckout\x1f{'0' * 16}\x1f\x1f{fields}".encode()
        tag = hmac.new(KEY, b"chatops /go v1\x00" + payload, hashlib.sha256).digest()[:18]
        assert links.verify(f"{_b64(payload)}.{_b64(tag)}") is None, fields
    for bad_range in ((5, 5), (9, 1), (-1, 5), (0, 10**14)):
        with pytest.raises(ValueError, match="Grafana range"):
            links.token("inc", "checkout", GRAFANA, grafana_range=bad_range)


async def test_a_ranged_link_reaches_only_the_grafana_base_in_force(
    links: Links, stack: Stack, client: aiohttp.ClientSession, policy_dir: Path
) -> None:
    incident = await stack.declare("checkout")
    window = (START_MS, END_MS)
    # A range never turns another policy URL (or one never in policy, or another service's base) into a target.
    for service, url in (
        ("checkout", RUNBOOK),
        ("checkout", "https://evil.example/phish"),
        ("checkout", "https://grafana.example.com/d/auth-overview"),
        ("nope", GRAFANA),
    ):
        assert (await get(client, links.mint(incident.id, service, url, grafana_range=window)))[0] == 410, url
    still = links.mint(incident.id, "checkout", GRAFANA, grafana_range=window)
    assert (await get(client, still))[0] == 302
    # Once the service's Grafana base changes in dashboards.yaml, the old link is gone; the new base works,
    # keeping the base's own query string.
    boards = policy_dir / "dashboards.yaml"
    moved = "https://grafana.example.com/d/checkout-v2?orgId=1"
    boards.write_text(boards.read_text().replace(f"grafana: {GRAFANA}\n", f'grafana: "{moved}"\n'))
    assert await stack.policy.reload("test")
    assert stack.policy.current.dashboards.services["checkout"].grafana == moved
    assert (await get(client, still))[0] == 410
    fresh = links.mint(incident.id, "checkout", moved, grafana_range=window)
    assert await get(client, fresh) == (302, f"{moved}&from={START_MS}&to={END_MS}")
    # The plain summary link to the same Grafana URL (services.yaml) is unaffected by dashboards.yaml.
    assert await get(client, links.mint(incident.id, "checkout", GRAFANA)) == (302, GRAFANA)
    assert len(await stack.events(incident.id, "dashboard")) == 3


async def test_tokens_minted_before_ranged_links_still_verify_and_redirect(
    links: Links, stack: Stack, client: aiohttp.ClientSession
) -> None:
    incident = await stack.declare("checkout")
    shared = old_token(KEY, incident.id, "checkout", GRAFANA)
    personal = old_token(KEY, incident.id, "checkout", RUNBOOK, user="U0RAVI001")
    assert links.token(incident.id, "checkout", GRAFANA) == shared, "plain tokens are minted as before"
    claim = links.verify(personal)
    assert claim is not None and claim.grafana_range is None
    assert (claim.incident_id, claim.service, claim.user) == (incident.id, "checkout", "U0RAVI001")
    base = base_of(links)
    assert await get(client, f"{base}/go/{shared}") == (302, GRAFANA)
    assert await get(client, f"{base}/go/{personal}") == (302, RUNBOOK)
    opened = await stack.events(incident.id, "dashboard")
    assert [(e.summary, e.payload["kind"], e.payload["url"], "range" in e.payload) for e in opened] == [
        ("Grafana overview opened", "dashboard", GRAFANA, False),
        ("<@U0RAVI001> opened Runbook", "runbook", RUNBOOK, False),
    ]
