"""Signed dashboard and runbook links: ``GET /go/<token>`` records a ``dashboard`` event, then redirects (302).

Every dashboard or runbook link the bot posts is minted here (:meth:`Links.mint`) instead of posting the raw URL,
so the timeline shows who opened which dashboard when ("02:51 Grafana overview opened"). A token is
``<payload>.<tag>``, both base64url: the payload names the incident, the service, a hash of the target URL and,
for links minted for one person (an ephemeral reply), their Slack user id; the tag is HMAC-SHA256 over the payload
with the link secret (``CHATOPS_LINK_SECRET``, else a random key kept in ``<CHATOPS_DATA_DIR>/link-secret`` so
links survive restarts), cut to 144 bits. So tokens cannot be forged or altered, and there is no open redirect:
the token holds no URL, only a hash, and the redirect goes to the URL of the service's runbook or dashboard *in
the policy in force* whose hash matches. A link whose target has since left the policy answers 410; anything
that does not verify answers 404. Link unfurlers (Slackbot) and ``HEAD`` requests are redirected, not recorded.

``/dashboard``'s Grafana link is time-ranged, so its exact URL is in no policy: its token (``grafana_range=``)
carries the hash of the service's Grafana base (``dashboards.yaml``) and a signed ``from``/``to`` in epoch
milliseconds, and the redirect rebuilds the URL from the base in force with
:func:`~chatops.dashboards.grafana_link`. Its payload has three more fields (``grafana``, from, to) after the
four above; a token without them is read exactly as before, so links posted before ranged links existed still
redirect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from chatops.dashboards import grafana_link
from chatops.policy.models import Service
from chatops.policy.store import PolicyStore
from chatops.tasks import TaskTracker, TrackerClosed
from chatops.timeline.events import EventType, TimelineEvent
from chatops.timeline.sink import TimelineSink

__all__ = ["PATH", "SOURCE", "LinkClaim", "LinkRedirector", "Links", "load_link_key", "policy_links"]

log = logging.getLogger(__name__)

PATH = "/go/{token}"
SOURCE = "chatops-links"
_CONTEXT = b"chatops /go v1\x00"
_TAG_BYTES = 18
_SEP = "\x1f"
_KEY_FILE = "link-secret"
_UNFURLERS = ("Slackbot", "Slack-ImgProxy", "facebookexternalhit", "Twitterbot")
_GRAFANA = "grafana"
"""The marker field of a time-ranged Grafana link's payload."""
_MILLIS = re.compile(r"[0-9]{1,13}")  # epoch milliseconds up to the year 2286


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def url_hash(url: str) -> str:
    """The short hash of a target URL a token carries."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")


def policy_links(service: Service) -> list[tuple[str, str, str]]:
    """``(kind, title, url)`` of every link policy gives ``service``: its runbook, then its dashboards."""
    out = [("runbook", "Runbook", service.runbook_url)] if service.runbook_url else []
    return out + [("dashboard", d.title, d.url) for d in service.dashboards if d.url]


def load_link_key(secret: str | None, data_dir: Path) -> bytes:
    """The signing key: ``secret`` when configured, else the one persisted under ``data_dir`` (created once)."""
    if secret:
        return hashlib.sha256(b"chatops link key\x00" + secret.encode()).digest()
    path = data_dir / _KEY_FILE
    try:
        key = bytes.fromhex(path.read_text().strip())
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        log.warning("link secret file unreadable; making a new one (older /go links stop working)")
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return key


@dataclass(frozen=True)
class LinkClaim:
    """What a verified token says."""

    incident_id: str
    service: str
    url_hash: str
    user: str | None
    grafana_range: tuple[int, int] | None = None
    """``(from_ms, to_ms)`` of a time-ranged Grafana link; ``url_hash`` is then that of the service's Grafana base."""


class Links:
    """Mints and verifies ``/go/`` tokens. ``base_url`` is read at mint time (the bound port may come late)."""

    def __init__(self, key: bytes, base_url: Callable[[], str]) -> None:
        if len(key) < 16:
            raise ValueError("the link key must be at least 16 bytes")
        self._key = key
        self._base_url = base_url

    def _tag(self, payload: bytes) -> bytes:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).digest()[:_TAG_BYTES]

    def token(
        self,
        incident_id: str,
        service: str,
        url: str,
        *,
        user: str | None = None,
        grafana_range: tuple[int, int] | None = None,
    ) -> str:
        """The signed token for one link.

        With ``grafana_range=(from_ms, to_ms)``, ``url`` is the service's Grafana base from ``dashboards.yaml`` and
        the link opens it over that range (epoch milliseconds, ``from_ms < to_ms``).
        """
        fields: tuple[str, ...] = (incident_id, service, url_hash(url), user or "")
        if any(_SEP in f for f in fields):
            raise ValueError("link fields must not contain the separator")
        if grafana_range is not None:
            start_ms, end_ms = grafana_range
            if not 0 <= start_ms < end_ms or not _MILLIS.fullmatch(str(end_ms)):
                raise ValueError(f"a Grafana range is 0 <= from < to in epoch milliseconds, got {grafana_range}")
            fields += (_GRAFANA, str(start_ms), str(end_ms))
        payload = _SEP.join(fields).encode()
        return f"{_b64(payload)}.{_b64(self._tag(payload))}"

    def mint(
        self,
        incident_id: str,
        service: str,
        url: str,
        *,
        user: str | None = None,
        grafana_range: tuple[int, int] | None = None,
    ) -> str:
        """The full ``<public url>/go/<token>`` URL to post instead of ``url`` (see :meth:`token`)."""
        token = self.token(incident_id, service, url, user=user, grafana_range=grafana_range)
        return f"{self._base_url().rstrip('/')}/go/{token}"

    def verify(self, token: str) -> LinkClaim | None:
        """The claim of a genuine token, else ``None`` (malformed, tampered or signed with another key)."""
        payload_text, dot, tag_text = token.partition(".")
        if not dot or not payload_text or not tag_text or len(token) > 1024:
            return None
        try:
            payload, tag = _unb64(payload_text), _unb64(tag_text)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(tag, self._tag(payload)):
            return None
        try:
            fields = payload.decode().split(_SEP)
        except UnicodeDecodeError:
            return None
        if len(fields) == 4:  # a runbook or dashboard of the policy (the only kind before ranged Grafana links)
            incident_id, service, hashed, user = fields
            return LinkClaim(incident_id, service, hashed, user or None)
        if len(fields) == 7 and fields[4] == _GRAFANA and all(_MILLIS.fullmatch(f) for f in fields[5:]):
            incident_id, service, hashed, user = fields[:4]
            start_ms, end_ms = int(fields[5]), int(fields[6])
            if start_ms < end_ms:
                return LinkClaim(incident_id, service, hashed, user or None, grafana_range=(start_ms, end_ms))
        return None


class LinkRedirector:
    """``GET /go/<token>``; register :meth:`routes` on the HTTP server."""

    def __init__(
        self,
        links: Links,
        *,
        policy: PolicyStore,
        sink: TimelineSink,
        tasks: TaskTracker,
        clock: Callable[[], datetime],
    ) -> None:
        self.links = links
        self.policy = policy
        self.sink = sink
        self.tasks = tasks
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp routes the redirector serves."""
        return [web.get(PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Verify, look the target up in the policy in force, record, redirect."""
        claim = self.links.verify(request.match_info["token"])
        if claim is None:
            raise web.HTTPNotFound(text="unknown link\n")
        target = self._target(claim)
        if target is None:
            raise web.HTTPGone(text="this link's target is no longer in the policy; see the pinned summary\n")
        kind, title, url = target
        agent = request.headers.get("User-Agent", "")
        if request.method == "GET" and not any(bot in agent for bot in _UNFURLERS):
            self._record(claim, kind, title, url, agent)
        raise web.HTTPFound(url, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    def _target(self, claim: LinkClaim) -> tuple[str, str, str] | None:
        """``(kind, title, url)`` of the link in the policy in force whose hash the claim carries, if any."""
        policy = self.policy.current
        if claim.grafana_range is not None:
            board = policy.dashboards.services.get(claim.service)
            base = board.grafana if board is not None else None
            if base is None or url_hash(base) != claim.url_hash:
                return None
            return _GRAFANA, f"Grafana {claim.service}", grafana_link(base, *claim.grafana_range)
        service = policy.services.get(claim.service)
        candidates = policy_links(service) if service is not None else []
        return next((link for link in candidates if url_hash(link[2]) == claim.url_hash), None)

    def _record(self, claim: LinkClaim, kind: str, title: str, url: str, agent: str) -> None:
        who = f"<@{claim.user}> opened" if claim.user else "opened"
        payload: dict[str, object] = {
            "kind": kind,
            "title": title,
            "url": url,
            "service": claim.service,
            "user_agent": agent,
        }
        if claim.grafana_range is not None:
            start_ms, end_ms = claim.grafana_range
            payload["range"] = {"from_ms": start_ms, "to_ms": end_ms, "from": _iso(start_ms), "to": _iso(end_ms)}
        event = TimelineEvent(
            incident_id=claim.incident_id,
            type=EventType.DASHBOARD,
            occurred_at=self.clock(),
            actor=claim.user,
            source=SOURCE,
            summary=f"{title} {who}" if not claim.user else f"{who} {title}",
            payload=payload,
        )
        try:
            if self.sink.offer([event]):
                return
        except RuntimeError:  # the writer is closing
            log.warning("shutting down: link click not recorded", extra={"incident": claim.incident_id})
            return
        try:  # the queue is full: wait for room in the background rather than delay the person clicking
            self.tasks.spawn(self.sink.record(event), name="record link click")
        except TrackerClosed:
            log.warning("shutting down: link click not recorded", extra={"incident": claim.incident_id})
