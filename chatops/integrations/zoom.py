"""Async Zoom client: Server-to-Server OAuth and instant meetings for incident bridges (PROTOCOLS §6).

* The access token (``account_credentials`` grant; no refresh token) is cached until shortly before its
  ``expires_in`` and shared by concurrent callers: one fetch at a time behind an :class:`asyncio.Lock`.
* A 401 from the API drops the token and fetches a new one, once per call.
* 429 (per-second limit) and 5xx, on the token endpoint or the API, and connection failures are retried with
  :func:`chatops.retry.retry_async`; Zoom's per-user daily meeting limit (also 429) is reported at once, since
  retrying cannot succeed before 00:00 UTC.
* The meeting's ``start_url`` is the host link (it starts the meeting as the host account): it is dropped on
  receipt and never stored, logged or returned.

Credentials and tokens are never logged. Failures raise :class:`~chatops.errors.IntegrationError` ("Zoom").
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from chatops.errors import IntegrationError
from chatops.retry import Backoff, Retryable, parse_retry_after, retry_async

__all__ = ["Meeting", "ZoomClient"]

log = logging.getLogger(__name__)

SERVICE = "Zoom"
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=30.0)
_TOPIC_MAX = 200
_EXPIRY_MARGIN_S = 60.0
_TRANSIENT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


@dataclass(frozen=True)
class Meeting:
    """An instant meeting anyone with ``join_url`` can join. The host link is deliberately absent."""

    id: int
    join_url: str
    password: str | None


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # monotonic time after which a new token is fetched

    def fresh(self) -> bool:
        return time.monotonic() < self.refresh_at


class _Refused(Exception):
    """A definitive failure of one attempt (not worth retrying); becomes an IntegrationError."""

    def __init__(self, detail: str, status: int | None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def _give_up(exc: Retryable, attempts: int) -> Exception:
    what = str(exc.status) if exc.status is not None else exc.detail
    return IntegrationError(SERVICE, f"{what} after {attempts} tries", attempts=attempts, status=exc.status)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return None


def _is_daily_limit(resp: aiohttp.ClientResponse, body: Any) -> bool:
    if resp.headers.get("X-RateLimit-Type", "").lower() == "daily-limit":
        return True
    message = body.get("message") if isinstance(body, dict) else None
    return isinstance(message, str) and "daily rate limit" in message.lower()


class ZoomClient:
    """Creates Zoom meetings with a Server-to-Server OAuth app.

    Pass ``session`` to share an :class:`aiohttp.ClientSession` (it is then not closed by :meth:`aclose`);
    otherwise one is created on first use, inside the running loop. Always call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        account_id: str,
        client_id: str,
        client_secret: str,
        api_url: str = "https://api.zoom.us/v2",
        oauth_url: str = "https://zoom.us/oauth/token",
        session: aiohttp.ClientSession | None = None,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen dataclass, safe as a default
    ) -> None:
        self._account_id = account_id
        self._basic_auth = aiohttp.encode_basic_auth(client_id, client_secret)
        self._api_url = api_url.rstrip("/")
        self._oauth_url = oauth_url
        self._session = session
        self._owns_session = session is None
        self._backoff = backoff
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"ZoomClient(account_id={self._account_id!r}, api_url={self._api_url!r})"

    async def create_meeting(self, topic: str) -> Meeting:
        """Create an instant (type 1) meeting for the app's user and return how to join it.

        ``join_before_host`` is requested because the host link is discarded: nobody joins as host.
        """
        payload = {"topic": topic[:_TOPIC_MAX], "type": 1, "settings": {"join_before_host": True}}
        refetched = False
        tries = 0

        async def attempt() -> Meeting:
            nonlocal refetched, tries
            tries += 1
            try:
                return await once()
            except _Refused as exc:
                raise IntegrationError(SERVICE, exc.detail, attempts=tries, status=exc.status) from exc

        async def once() -> Meeting:
            nonlocal refetched
            token = await self._access_token()
            status, body, resp = await self._post_meeting(token, payload)
            if status == 401 and not refetched:
                refetched = True
                log.info("Zoom rejected the access token (401); fetching a new one")
                token = await self._access_token(stale=token)
                status, body, resp = await self._post_meeting(token, payload)
            if status == 201:
                return self._meeting_from(body)
            message = body.get("message") if isinstance(body, dict) else None
            if status == 429 and _is_daily_limit(resp, body):
                raise _Refused("429 daily meeting limit reached for the Zoom user", 429)
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                log.info("Zoom answered %d to create meeting (retry-after %s)", status, retry_after)
                raise Retryable(str(status), status=status, retry_after=retry_after)
            detail = f" {message}" if isinstance(message, str) else ""
            raise _Refused(f"{status}{detail}", status)

        return await retry_async(attempt, self._backoff, on_giveup=_give_up)

    async def aclose(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    # ----------------------------------------------------------------- private

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_REQUEST_TIMEOUT)
            self._owns_session = True
        return self._session

    async def _post_meeting(
        self,
        token: str,
        payload: dict[str, Any],
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        try:
            async with self._http().post(
                f"{self._api_url}/users/me/meetings",
                json=payload,
                headers={"Authorization": f"Bearer {token}"},
                timeout=_REQUEST_TIMEOUT,
            ) as resp:
                return resp.status, await _json(resp), resp
        except _TRANSIENT_ERRORS as exc:
            raise Retryable(f"unreachable ({type(exc).__name__})") from exc

    @staticmethod
    def _meeting_from(body: Any) -> Meeting:
        if not isinstance(body, dict):
            raise _Refused("unexpected create-meeting response", 201)
        body.pop("start_url", None)  # host link: never keep it
        try:
            password = body.get("password")
            return Meeting(
                id=int(body["id"]),
                join_url=str(body["join_url"]),
                password=str(password) if password else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _Refused("unexpected create-meeting response", 201) from exc

    async def _access_token(self, *, stale: str | None = None) -> str:
        """A valid token; ``stale`` names one the API refused: it is replaced unless someone already did."""
        token = self._token
        if token is not None and token.value != stale and token.fresh():
            return token.value
        async with self._token_lock:
            token = self._token
            if token is not None and token.value != stale and token.fresh():
                return token.value
            self._token = None
            token = await self._fetch_token()
            self._token = token
            return token.value

    async def _fetch_token(self) -> _Token:
        form = {"grant_type": "account_credentials", "account_id": self._account_id}
        try:
            async with self._http().post(
                self._oauth_url,
                data=form,
                headers={"Authorization": self._basic_auth},
                timeout=_REQUEST_TIMEOUT,
            ) as resp:
                status = resp.status
                body = await _json(resp)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except _TRANSIENT_ERRORS as exc:
            raise Retryable(f"OAuth unreachable ({type(exc).__name__})") from exc
        if status == 429 or status >= 500:
            log.info("Zoom OAuth answered %d (retry-after %s)", status, retry_after)
            raise Retryable(str(status), status=status, retry_after=retry_after)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            reason = ""
            if isinstance(body, dict):
                parts = [str(body[k]) for k in ("error", "reason") if body.get(k)]
                reason = f" ({': '.join(parts)})" if parts else ""
            raise _Refused(f"OAuth token request refused: {status}{reason}", status)
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        margin = min(_EXPIRY_MARGIN_S, expires_in * 0.1)
        return _Token(value=body["access_token"], refresh_at=time.monotonic() + expires_in - margin)
