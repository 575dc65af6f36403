"""Async PagerDuty REST v2 client for the daemon.

It wraps the official, synchronous ``pagerduty.RestApiV2Client`` (python-pagerduty, built on ``httpx2``) and
runs every call in a worker thread, so the event loop never blocks. The threads are the client's own
(``workers``, default 16), not the loop's default executor: that one has ``min(32, CPUs + 4)`` threads (6 on two
cores) shared with everything else that uses :func:`asyncio.to_thread`, and a declare fans out one PagerDuty call
per paged role plus the acknowledgement chain — three concurrent SEV-1 declares are 15 calls in flight.

Retries are ours, not the library's: the library is configured to return 429/5xx at once and to give up on the
first network error (it would otherwise retry 429 without limit, ignore ``Retry-After`` and ``time.sleep``
inside the worker thread). :func:`chatops.retry.retry_async` then retries 429 (honouring ``Retry-After``), 5xx
and connection failures with the configured :class:`~chatops.retry.Backoff`; other 4xx are answered at once.
A final failure is :class:`~chatops.errors.IntegrationError` with a Slack-ready message such as
``"503 after 4 tries"``.

PagerDuty semantics handled here (PROTOCOLS §3):

* acknowledging an already acknowledged (1002) or resolved (1001) incident is an idempotent success, and so is
  resolving an already resolved one (1001); changing the urgency of a resolved one (1001) answers
  ``"already_resolved"``;
* creating an incident whose ``incident_key`` is already open on the service answers 400: any 400 to a create
  is checked by looking the open incident up by key, and if there is one it is returned with
  ``created=False``.

The API key and request headers are never logged.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import ssl
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import pagerduty

from chatops.errors import ConfigError, IntegrationError
from chatops.retry import Backoff, Retryable, parse_retry_after, retry_async

__all__ = ["PDIncident", "PagerDutyClient"]

T = TypeVar("T")

log = logging.getLogger(__name__)
_library_log = logging.getLogger(f"{__name__}.library")
if _library_log.level == logging.NOTSET:
    # The library logs every 5xx and every 429 we ask it not to retry at ERROR; our IntegrationError reports
    # the outcome, so keep its chatter quiet unless an operator lowers this logger's level.
    _library_log.setLevel(logging.CRITICAL)

SERVICE = "PagerDuty"
_REQUEST_TIMEOUT_S = 30
_OPEN_STATUSES = ("triggered", "acknowledged")
_ALREADY_RESOLVED = 1001
_ALREADY_ACKNOWLEDGED = 1002
_WORKERS = 16


@dataclass(frozen=True)
class PDIncident:
    """The fields of a PagerDuty incident the daemon uses."""

    id: str
    number: int
    status: str
    title: str
    html_url: str
    service_id: str
    incident_key: str | None
    assignee_ids: tuple[str, ...] = ()
    urgency: str = "high"

    @classmethod
    def from_json(cls, data: Any) -> PDIncident:
        """Build from a REST API incident object; IntegrationError when it lacks the expected fields."""
        try:
            key = data.get("incident_key")
            return cls(
                id=str(data["id"]),
                number=int(data["incident_number"]),
                status=str(data["status"]),
                title=str(data["title"]),
                html_url=str(data["html_url"]),
                service_id=str(data["service"]["id"]),
                incident_key=None if key is None else str(key),
                assignee_ids=tuple(
                    str(a["assignee"]["id"]) for a in data.get("assignments") or () if a.get("assignee", {}).get("id")
                ),
                urgency=str(data.get("urgency") or "high"),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise IntegrationError(SERVICE, "unexpected incident object in response") from exc


class _ClientError(Exception):
    """A 4xx answer other than 429: not retried; the caller decides what it means."""

    def __init__(self, status: int, code: int | None, message: str, errors: list[str], attempts: int) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.attempts = attempts

    @classmethod
    def from_response(cls, response: Any, attempts: int) -> _ClientError:
        status = int(response.status_code)
        code: int | None = None
        message = str(getattr(response, "reason_phrase", "") or "client error")
        errors: list[str] = []
        try:
            body = response.json()
        except ValueError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            if isinstance(err.get("code"), int):
                code = err["code"]
            if isinstance(err.get("message"), str):
                message = err["message"]
            if isinstance(err.get("errors"), list):
                errors = [str(e) for e in err["errors"]]
        return cls(status, code, message, errors, attempts)

    def to_integration_error(self) -> IntegrationError:
        detail = f": {'; '.join(self.errors)}" if self.errors and self.errors != [self.message] else ""
        return IntegrationError(
            SERVICE,
            f"{self.status} {self.message}{detail}",
            attempts=self.attempts,
            status=self.status,
        )


def _tls_verification_failed(exc: BaseException) -> bool:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def _give_up(exc: Retryable, attempts: int) -> Exception:
    what = str(exc.status) if exc.status is not None else exc.detail
    return IntegrationError(SERVICE, f"{what} after {attempts} tries", attempts=attempts, status=exc.status)


class PagerDutyClient:
    """Async facade over ``pagerduty.RestApiV2Client``.

    ``from_email`` is sent as ``From`` on every request (PagerDuty requires it on writes made with an account
    key). ``base_url`` must be ``https://``. ``verify`` is ``True`` (system trust store, or ``SSL_CERT_FILE``
    / ``SSL_CERT_DIR`` when set), ``False`` (no verification: never in production) or the path of a CA bundle.
    Call :meth:`aclose` (or :meth:`close`) when done.
    """

    def __init__(
        self,
        *,
        api_key: str,
        from_email: str,
        base_url: str = "https://api.pagerduty.com",
        verify: bool | str = True,
        backoff: Backoff = Backoff(),  # noqa: B008 - frozen dataclass, safe as a default
        workers: int = _WORKERS,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        client_kw: dict[str, Any] = {}
        if isinstance(verify, str):
            # httpx2 deprecates verify=<path>; an SSLContext is its supported form.
            try:
                client_kw["verify"] = ssl.create_default_context(cafile=verify)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError([f"PagerDuty CA bundle {verify!r} cannot be loaded: {exc}"]) from exc
        elif verify is False:
            client_kw["verify"] = False
        self._backoff = backoff
        self._pd = pagerduty.RestApiV2Client(api_key, default_from=from_email, **client_kw)
        try:
            self._pd.url = base_url
        except pagerduty.UrlError as exc:
            self._pd.close()
            raise ConfigError([f"PagerDuty base URL must use https:// (got {base_url!r})"]) from exc
        # Hand all retrying to retry_async: a 429 is returned after zero library retries (retry budget of one
        # status, but a total budget below zero), 5xx are returned by default, and the first network error
        # raises pagerduty.Error instead of sleeping in this thread.
        self._pd.retry = {429: 1}
        self._pd.max_http_attempts = -1
        self._pd.max_network_attempts = 0
        self._pd.timeout = _REQUEST_TIMEOUT_S
        self._pd.log = _library_log
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pagerduty")

    # ------------------------------------------------------------------ public

    async def find_user_id(self, email: str) -> str | None:
        """The id of the PagerDuty user whose email is ``email`` (case-insensitive), or None."""
        users = await self._call(lambda: self._pd.rget("/users", params={"query": email}))
        for user in users if isinstance(users, list) else []:
            if isinstance(user, dict) and str(user.get("email", "")).lower() == email.lower():
                return str(user["id"])
        return None

    async def open_incidents(
        self,
        *,
        service_ids: Sequence[str],
        user_id: str | None = None,
        statuses: Sequence[str] = ("triggered",),
    ) -> list[PDIncident]:
        """Incidents on ``service_ids`` in ``statuses`` (all pages), optionally only ``user_id``'s.

        An empty ``service_ids`` means every service. ``date_range=all`` is sent so old open incidents are
        found.
        """
        params: dict[str, Any] = {"statuses[]": list(statuses), "date_range": "all"}
        if service_ids:
            params["service_ids[]"] = list(service_ids)
        if user_id is not None:
            params["user_ids[]"] = [user_id]
        items = await self._call(lambda: self._pd.list_all("/incidents", params=params))
        return [PDIncident.from_json(item) for item in items]

    async def _update(self, incident_id: str, change: dict[str, str], *, accept: tuple[int, ...]) -> int | None:
        """``PUT /incidents/{id}`` as ``from_email``: ``None``, or the PagerDuty error code in ``accept`` it answered
        (e.g. 1001 "already resolved"); any other refusal raises :class:`IntegrationError`."""
        path = f"/incidents/{quote(incident_id, safe='')}"
        body = {"type": "incident_reference", **change}
        try:
            await self._call(lambda: self._pd.rput(path, json=body), client_errors=True)
        except _ClientError as err:
            if err.code in accept:
                return err.code
            raise err.to_integration_error() from err
        return None

    async def acknowledge(
        self,
        incident_id: str,
    ) -> Literal["acknowledged", "already_acknowledged", "already_resolved"]:
        """Acknowledge an incident; PagerDuty's 1002 and 1001 answers are successes too."""
        code = await self._update(
            incident_id, {"status": "acknowledged"}, accept=(_ALREADY_ACKNOWLEDGED, _ALREADY_RESOLVED)
        )
        if code == _ALREADY_ACKNOWLEDGED:
            return "already_acknowledged"
        return "already_resolved" if code == _ALREADY_RESOLVED else "acknowledged"

    async def resolve(self, incident_id: str) -> Literal["resolved", "already_resolved"]:
        """Resolve an incident; PagerDuty's 1001 (already resolved) answer is a success too."""
        code = await self._update(incident_id, {"status": "resolved"}, accept=(_ALREADY_RESOLVED,))
        return "already_resolved" if code == _ALREADY_RESOLVED else "resolved"

    async def get_incident(self, incident_id: str) -> PDIncident:
        """The incident ``incident_id`` as PagerDuty has it now (status, urgency, ...)."""
        path = f"/incidents/{quote(incident_id, safe='')}"
        data = await self._call(lambda: self._pd.rget(path))
        return PDIncident.from_json(data)

    async def set_urgency(
        self, incident_id: str, urgency: Literal["high", "low"]
    ) -> Literal["updated", "already_resolved"]:
        """Change an incident's urgency; a resolved incident (PagerDuty's 1001) is reported."""
        code = await self._update(incident_id, {"urgency": urgency}, accept=(_ALREADY_RESOLVED,))
        return "already_resolved" if code == _ALREADY_RESOLVED else "updated"

    async def create_incident(
        self,
        *,
        service_id: str,
        title: str,
        urgency: Literal["high", "low"],
        incident_key: str,
        details: str,
    ) -> tuple[PDIncident, bool]:
        """Open an incident: ``(incident, True)`` if created now, ``(open_incident, False)`` if already paged.

        ``incident_key`` should be deterministic for the event being paged: PagerDuty refuses a second open
        incident with the same key on a service, which is how a retried or repeated page becomes a no-op. If a
        create that timed out on our side did reach PagerDuty, the retry reports ``False`` for our own
        incident.
        """
        body = {
            "type": "incident",
            "title": title,
            "service": {"id": service_id, "type": "service_reference"},
            "urgency": urgency,
            "incident_key": incident_key,
            "body": {"type": "incident_body", "details": details},
        }
        try:
            created = await self._call(lambda: self._pd.rpost("/incidents", json=body), client_errors=True)
        except _ClientError as err:
            if err.status != 400:
                raise err.to_integration_error() from err
            # The duplicate-key refusal is a 400 whose wording PagerDuty does not document; the open incident
            # with our key is the authoritative sign that the page already exists.
            existing = await self._open_incident_with_key(service_id, incident_key)
            if existing is None:
                raise err.to_integration_error() from err
            return existing, False
        return PDIncident.from_json(created), True

    async def add_responders(
        self,
        incident_id: str,
        *,
        requester_id: str,
        message: str,
        user_ids: Sequence[str] = (),
        escalation_policy_ids: Sequence[str] = (),
    ) -> None:
        """Ask more users and/or escalation policies to join an incident (a responder request)."""
        refs = [(uid, "user_reference") for uid in user_ids]
        refs += [(pid, "escalation_policy_reference") for pid in escalation_policy_ids]
        targets = [{"responder_request_target": {"id": ref_id, "type": kind}} for ref_id, kind in refs]
        if not targets:
            raise ValueError("add_responders needs at least one user id or escalation policy id")
        path = f"/incidents/{quote(incident_id, safe='')}/responder_requests"
        body = {"requester_id": requester_id, "message": message, "responder_request_targets": targets}
        try:
            await self._call(lambda: self._pd.rpost(path, json=body), client_errors=True)
        except _ClientError as err:
            if err.status == 402:
                raise IntegrationError(
                    SERVICE,
                    "402 responder requests are not available on this PagerDuty account",
                    attempts=err.attempts,
                    status=402,
                ) from err
            raise err.to_integration_error() from err

    def close(self) -> None:
        """Close the underlying HTTP connection pool and the worker threads."""
        self._pd.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def aclose(self) -> None:
        """Close the underlying HTTP connection pool and the worker threads without blocking the loop."""
        await asyncio.to_thread(self._pd.close)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        """``asyncio.to_thread`` on this client's own threads (context variables carried over, as there)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(context.run, fn))

    # ----------------------------------------------------------------- private

    async def _open_incident_with_key(self, service_id: str, incident_key: str) -> PDIncident | None:
        params: dict[str, Any] = {
            "incident_key": incident_key,
            "service_ids[]": [service_id],
            "statuses[]": list(_OPEN_STATUSES),
            "date_range": "all",
        }
        items = await self._call(lambda: self._pd.list_all("/incidents", params=params))
        for item in items:
            incident = PDIncident.from_json(item)
            if incident.incident_key == incident_key and incident.status in _OPEN_STATUSES:
                return incident
        return None

    async def _call(self, fn: Callable[[], T], *, client_errors: bool = False) -> T:
        """Run one library call in a thread, retrying 429/5xx/network failures.

        Other 4xx raise :class:`_ClientError` when ``client_errors`` (the caller interprets them), else
        IntegrationError.
        """
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            try:
                return await self._in_thread(fn)
            except pagerduty.HttpError as exc:
                response: Any = exc.response
                status = int(response.status_code)
                if status == 429 or status >= 500:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    log.info(
                        "PagerDuty answered %d (attempt %d, retry-after %s)",
                        status,
                        attempts,
                        retry_after,
                    )
                    raise Retryable(str(status), status=status, retry_after=retry_after) from exc
                if 400 <= status < 500:
                    raise _ClientError.from_response(response, attempts) from exc
                raise IntegrationError(
                    SERVICE,
                    f"unexpected response (HTTP {status})",
                    attempts=attempts,
                    status=status,
                ) from exc
            except pagerduty.Error as exc:
                if exc.response is not None or exc.__cause__ is None:
                    raise IntegrationError(SERVICE, "unexpected client error", attempts=attempts) from exc
                if _tls_verification_failed(exc):
                    raise IntegrationError(
                        SERVICE,
                        "TLS certificate verification failed",
                        attempts=attempts,
                    ) from exc
                reason = type(exc.__cause__).__name__
                log.info("PagerDuty unreachable: %s (attempt %d)", reason, attempts)
                raise Retryable(f"unreachable ({reason})") from exc

        try:
            return await retry_async(attempt, self._backoff, on_giveup=_give_up)
        except _ClientError as err:
            if client_errors:
                raise
            raise err.to_integration_error() from err
