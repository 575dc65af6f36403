"""An in-process stand-in for Zoom's Server-to-Server OAuth and the "create a meeting" API (PROTOCOLS §6).

* ``POST {oauth_url}``: HTTP Basic ``client_id:client_secret`` and ``grant_type=account_credentials`` plus
  ``account_id`` (form body or query string, as Zoom accepts both) → ``200`` ``{"access_token", "token_type":
  "bearer", "expires_in", "scope", "api_url"}``. Wrong or missing client credentials → ``400``
  ``{"reason":"Invalid client_id or client_secret","error":"invalid_client"}`` (what Zoom answers); a wrong
  grant type → ``400`` ``unsupported_grant_type``; a wrong account id → ``400`` ``invalid_request``.
  No refresh token: clients fetch a new token.
* ``POST {api_url}/users/me/meetings`` with ``Authorization: Bearer <token>`` → ``201`` with ``id``, ``uuid``,
  ``join_url``, ``start_url`` (host link), ``password``, ``topic``, ``type``, ... An unknown token →
  ``401`` ``{"code":124,"message":"Invalid access token."}``; an expired one → ``401`` code 124
  ``"Access token is expired."``. Validation failures → ``400`` code 300. After ``meetings_per_day`` creations
  for the user in one UTC day → ``429`` with Zoom's daily-limit body and headers (``X-RateLimit-Type:
  Daily-limit``, ``Retry-After`` as an ISO date-time of the next UTC midnight).

Test controls: :meth:`~ZoomSandbox.expire_tokens`, :meth:`~ZoomSandbox.inject` (Zoom-style ``{"code","message"}``
bodies), :meth:`~ZoomSandbox.set_latency`, the ``calls`` log, ``meetings`` and ``token_requests``. Plain HTTP by
default; pass a :class:`~chatops.sandbox.tls.SandboxTLS` to serve HTTPS.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from chatops.sandbox.recording import BODY_KEY, Handler, RecordedCall, RecordingSandbox
from chatops.sandbox.tls import SandboxTLS

__all__ = ["ZoomCall", "ZoomSandbox"]

JSON = dict[str, Any]

_FIRST_MEETING_ID = 85746065432
_MEETING_TYPES = frozenset({1, 2, 3, 8, 10})
_TOPIC_MAX = 200
_INVALID_TOKEN = {"code": 124, "message": "Invalid access token."}
_EXPIRED_TOKEN = {"code": 124, "message": "Access token is expired."}
_INVALID_CLIENT = {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}


ZoomCall = RecordedCall
"""One request as the stand-in saw it; ``headers`` keys are lower-cased, ``body`` is JSON/form/None."""


@dataclass
class _Token:
    value: str
    expires_at: float
    revoked: bool = False


class ZoomSandbox(RecordingSandbox):
    """Zoom OAuth + meetings stand-in: ``async with ZoomSandbox() as zoom``, then use its URLs."""

    def __init__(
        self,
        *,
        account_id: str = "zoom-sandbox-account",
        client_id: str = "zoom-sandbox-client",
        client_secret: str = "zoom-sandbox-secret",
        token_ttl: float = 3600.0,
        meetings_per_day: int = 100,
        host_email: str = "incident-bot@example.com",
        tls: SandboxTLS | None = None,
    ) -> None:
        super().__init__(tls)
        self.account_id = account_id
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl = token_ttl
        self.meetings_per_day = meetings_per_day
        self.host_email = host_email
        self._host_id = "zS4ndb0xH0stUser1"
        self._tokens: dict[str, _Token] = {}
        self._created_today: dict[str, int] = {}
        self._next_id = _FIRST_MEETING_ID
        self.meetings: list[JSON] = []
        self.token_requests = 0

    # ----------------------------------------------------------------------- app

    @property
    def oauth_url(self) -> str:
        """The token endpoint (``https://zoom.us/oauth/token`` in production)."""
        return f"{self.url}/oauth/token"

    @property
    def api_url(self) -> str:
        """The API base (``https://api.zoom.us/v2`` in production)."""
        return f"{self.url}/v2"

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_post("/oauth/token", self._token)
        app.router.add_post("/v2/users/{user_id}/meetings", self._create_meeting)

    # ------------------------------------------------------------------ controls

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far: the API answers 401 code 124 "Invalid access token."."""
        for token in self._tokens.values():
            token.revoked = True

    # ---------------------------------------------------------- request handling

    async def _decode_body(self, request: web.Request, raw: bytes) -> tuple[Any, bool]:
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            return {k: str(v) for k, v in form.items()}, False
        return await super()._decode_body(request, raw)

    async def _respond(self, request: web.Request, handler: Handler, malformed: bool) -> web.StreamResponse:
        if malformed:
            return web.json_response(
                {"code": 300, "message": "Request Body should be a valid JSON object."},
                status=400,
            )
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return web.json_response({"code": exc.status, "message": exc.reason}, status=exc.status)

    def _injected_body(self, status: int) -> JSON:
        """Zoom's ``{"code","message"}`` shape; 429 carries its per-second rate-limit message."""
        message = (
            "You have reached the maximum per-second rate limit for this API. Try again later."
            if status == 429
            else "Injected error"
        )
        return {"code": status, "message": message}

    # ----------------------------------------------------------------- routes

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if not self._basic_auth_ok(request.headers.get("Authorization", "")):
            return web.json_response(_INVALID_CLIENT, status=400)
        body = request[BODY_KEY]
        params: dict[str, str] = dict(request.query)
        if isinstance(body, dict):
            params.update({k: str(v) for k, v in body.items()})
        if params.get("grant_type") != "account_credentials":
            return web.json_response(
                {"reason": "Unsupported grant type", "error": "unsupported_grant_type"},
                status=400,
            )
        if params.get("account_id") != self.account_id:
            return web.json_response({"reason": "Invalid account_id", "error": "invalid_request"}, status=400)
        value = secrets.token_urlsafe(32)
        self._tokens[value] = _Token(value, time.monotonic() + self.token_ttl)
        return web.json_response(
            {
                "access_token": value,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl),
                "scope": "meeting:write:meeting:admin",
                "api_url": self.url,
            }
        )

    def _basic_auth_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, sep, client_secret = decoded.partition(":")
        return bool(sep) and secrets.compare_digest(
            f"{client_id}:{client_secret}",
            f"{self.client_id}:{self.client_secret}",
        )

    def _check_bearer(self, request: web.Request) -> web.Response | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        token = self._tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if token is None or token.revoked:
            return web.json_response(_INVALID_TOKEN, status=401)
        if time.monotonic() >= token.expires_at:
            return web.json_response(_EXPIRED_TOKEN, status=401)
        return None

    async def _create_meeting(self, request: web.Request) -> web.Response:
        denied = self._check_bearer(request)
        if denied is not None:
            return denied
        user = request.match_info["user_id"]
        if user not in ("me", self.host_email, self._host_id):
            return web.json_response({"code": 1001, "message": "User does not exist: " + user}, status=404)
        body = request[BODY_KEY]
        errors: list[JSON] = []
        if not isinstance(body, dict):
            return web.json_response(
                {"code": 300, "message": "Request Body should be a valid JSON object."},
                status=400,
            )
        topic = body.get("topic", "Zoom meeting")
        if not isinstance(topic, str) or len(topic) > _TOPIC_MAX:
            errors.append(
                {"field": "topic", "message": f"Topic must be a string of at most {_TOPIC_MAX} characters."},
            )
        meeting_type = body.get("type", 2)
        if meeting_type not in _MEETING_TYPES:
            errors.append({"field": "type", "message": "Invalid field."})
        settings = body.get("settings", {})
        if not isinstance(settings, dict):
            errors.append({"field": "settings", "message": "Invalid field."})
        if errors:
            return web.json_response(
                {"code": 300, "message": "Validation Failed.", "errors": errors},
                status=400,
            )
        now = datetime.now(UTC)
        day_key = f"{self._host_id}:{now.date().isoformat()}"
        if self._created_today.get(day_key, 0) >= self.meetings_per_day:
            midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
            return web.json_response(
                {
                    "code": 429,
                    "message": (
                        f"You have exceeded the daily rate limit ({self.meetings_per_day}) of Meeting "
                        "Create/Update API requests permitted for this particular user. You may resume these "
                        "requests at GMT 00:00:00."
                    ),
                },
                status=429,
                headers={
                    "X-RateLimit-Type": "Daily-limit",
                    "X-RateLimit-Limit": str(self.meetings_per_day),
                    "X-RateLimit-Remaining": "0",
                    "Retry-After": midnight.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            )
        self._created_today[day_key] = self._created_today.get(day_key, 0) + 1
        meeting_id = self._next_id
        self._next_id += 7
        password = secrets.token_hex(3)
        pwd_token = secrets.token_urlsafe(16)
        meeting: JSON = {
            "uuid": base64.b64encode(secrets.token_bytes(16)).decode(),
            "id": meeting_id,
            "host_id": self._host_id,
            "host_email": self.host_email,
            "topic": topic,
            "type": meeting_type,
            "status": "waiting",
            "timezone": "UTC",
            "created_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "start_url": f"{self.url}/s/{meeting_id}?zak={secrets.token_urlsafe(24)}",
            "join_url": f"{self.url}/j/{meeting_id}?pwd={pwd_token}",
            "password": password,
            "h323_password": password,
            "pstn_password": password,
            "encrypted_password": pwd_token,
            "settings": dict(settings),
            "pre_schedule": False,
        }
        self.meetings.append(meeting)
        return web.json_response(meeting, status=201)
