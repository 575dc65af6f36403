"""An in-process stand-in for the PagerDuty REST API v2, served over HTTPS.

It implements the slice of the API the daemon uses (PROTOCOLS §3) with PagerDuty's rules and error shapes:

* ``Authorization: Token token=<key>`` on every request, else ``401`` ``{"error":{"message":"Authentication
  failed","code":2006}}``.
* Writes (POST/PUT/PATCH/DELETE) need a ``From`` header naming a known user's email, else ``400``: code
  ``2001`` when the header is missing, ``1008`` ("Requester User Not Found") when it names nobody.
* ``POST /incidents`` validates the body shape; unknown service → ``400``; a second create with the same
  ``incident_key`` while one is open (triggered or acknowledged) on that service → ``400``
  ``{"error":{"message":"Arguments Caused Error","code":2002,"errors":["Open incident with matching dedup key
  already exists on this service"]}}``. That is the body seen from the real API in public client code;
  PagerDuty does not document it, so clients should not depend on the exact text (``chatops`` does not).
* ``GET /incidents`` filters ``statuses[]``, ``service_ids[]``, ``user_ids[]``, ``urgencies[]``,
  ``incident_key`` and pages with ``limit``/``offset``/``more`` (``total`` only with ``total=true``);
  ``date_range`` is accepted.
* ``GET /incidents/{id}``; ``PUT /incidents/{id}`` (acknowledge/resolve, change ``urgency`` to ``high``/``low``
  (other values ``400`` code ``2001``); ``1002`` "Incident Already Acknowledged", ``1001`` "Incident Already
  Resolved" for any update of a resolved incident); ``GET /users?query=``;
  ``POST /incidents/{id}/responder_requests`` (``402`` when
  :attr:`PagerDutySandbox.responder_requests_enabled` is false).

Test controls: :meth:`~PagerDutySandbox.inject` (canned error statuses; 429 bodies carry code 2020),
:meth:`~PagerDutySandbox.set_latency`, and the :attr:`~PagerDutySandbox.calls` log. Not covered: bulk
``PUT /incidents``, ``/oncalls``, escalation, webhooks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from chatops.sandbox.recording import BODY_KEY, Handler, RecordedCall, RecordingSandbox
from chatops.sandbox.tls import SandboxTLS

__all__ = ["Call", "PagerDutySandbox"]

JSON = dict[str, Any]

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OPEN_STATUSES = frozenset({"triggered", "acknowledged"})
_ALL_STATUSES = frozenset({"triggered", "acknowledged", "resolved"})
_FIRST_INCIDENT_NUMBER = 871234
_DUPLICATE_KEY_ERROR = "Open incident with matching dedup key already exists on this service"
_HTML_BASE = "https://sandbox.pagerduty.com"
_REQUESTER_KEY = web.RequestKey("pd_sandbox_requester", dict)
_REASONS = {
    429: "Rate Limit Exceeded",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


Call = RecordedCall
"""One request as the stand-in saw it; ``headers`` keys are lower-cased, ``body`` is JSON or None."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(
    status: int,
    message: str,
    code: int | None = None,
    errors: list[str] | None = None,
) -> web.Response:
    err: JSON = {"message": message}
    if code is not None:
        err["code"] = code
    if errors:
        err["errors"] = errors
    return web.json_response({"error": err}, status=status)


def _invalid(*errors: str) -> web.Response:
    return _error(400, "Invalid Input Provided", 2001, list(errors))


class PagerDutySandbox(RecordingSandbox):
    """PagerDuty REST v2 stand-in, run on the test's loop: ``async with PagerDutySandbox(tls) as pd``."""

    def __init__(self, tls: SandboxTLS, *, api_key: str = "pd-sandbox-key") -> None:
        super().__init__(tls)
        self._api_key = api_key
        self._users: dict[str, JSON] = {}
        self._services: dict[str, JSON] = {}
        self._on_call: dict[str, str] = {}
        self._next_number = _FIRST_INCIDENT_NUMBER
        self.incidents: list[JSON] = []
        self.responder_requests: list[JSON] = []
        self.responder_requests_enabled = True

    # ----------------------------------------------------------------------- app

    def _add_routes(self, app: web.Application) -> None:
        app.router.add_get("/incidents", self._list_incidents)
        app.router.add_post("/incidents", self._create_incident)
        app.router.add_get("/incidents/{id}", self._get_incident)
        app.router.add_put("/incidents/{id}", self._update_incident)
        app.router.add_post("/incidents/{id}/responder_requests", self._responder_request)
        app.router.add_get("/users", self._list_users)

    # ------------------------------------------------------------------ controls

    def add_user(self, user_id: str, email: str, name: str) -> None:
        """Register a user; the first one added is on call for every service without :meth:`set_on_call`."""
        self._users[user_id] = {
            "id": user_id,
            "type": "user",
            "summary": name,
            "name": name,
            "email": email,
            "self": f"{self.url}/users/{user_id}",
            "html_url": f"{_HTML_BASE}/users/{user_id}",
        }

    def add_service(self, service_id: str, name: str) -> None:
        """Register a service that incidents can be opened on."""
        self._services[service_id] = {
            "id": service_id,
            "type": "service_reference",
            "summary": name,
            "self": f"{self.url}/services/{service_id}",
            "html_url": f"{_HTML_BASE}/service-directory/{service_id}",
        }

    def set_on_call(self, service_id: str, user_id: str) -> None:
        """Make ``user_id`` the assignee of new incidents on ``service_id``."""
        self._on_call[service_id] = user_id

    def add_incident(
        self,
        *,
        service_id: str,
        title: str,
        assigned_to: str | None,
        status: str = "triggered",
        incident_key: str | None = None,
        urgency: str = "high",
    ) -> JSON:
        """Insert a pre-existing incident (no rules checked) and return its JSON."""
        if service_id not in self._services:
            raise KeyError(f"unknown service {service_id!r}: add_service() first")
        if status not in _ALL_STATUSES:
            raise ValueError(f"bad status {status!r}")
        assignee = assigned_to if assigned_to is not None else self._assignee_for(service_id)
        return self._new_incident(
            service_id=service_id,
            title=title,
            urgency=urgency,
            incident_key=incident_key,
            details=None,
            assignee_ids=[assignee] if assignee else [],
            status=status,
        )

    def incident(self, incident_id: str) -> JSON:
        """The stored incident with ``incident_id`` (KeyError when unknown)."""
        for inc in self.incidents:
            if inc["id"] == incident_id:
                return inc
        raise KeyError(incident_id)

    # ---------------------------------------------------------- request handling

    async def _respond(self, request: web.Request, handler: Handler, malformed: bool) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Token token={self._api_key}":
            return _error(401, "Authentication failed", 2006)
        if request.method in _WRITE_METHODS:
            sender = request.headers.get("From", "").strip()
            if not sender:
                return _invalid(
                    'The "From" header is missing: write requests must name a valid user\'s email in "From"',
                )
            requester = self._user_by_email(sender)
            if requester is None:
                return _error(
                    400,
                    "Requester User Not Found",
                    1008,
                    [f'The "From" header ({sender}) is not the email of a valid user'],
                )
            request[_REQUESTER_KEY] = requester
        if malformed:
            return _invalid("Request body is not valid JSON")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _error(404, "Not Found", 2100)
        except web.HTTPMethodNotAllowed:
            return _error(405, "Method Not Allowed")

    def _injected_body(self, status: int) -> JSON:
        """PagerDuty's error shape; 429 is its rate-limit error (code 2020), 5xx code 2000, others 2001."""
        code = 2020 if status == 429 else 2000 if status >= 500 else 2001
        return {"error": {"message": _REASONS.get(status, "Injected error"), "code": code}}

    # ----------------------------------------------------------------- helpers

    def _user_by_email(self, email: str) -> JSON | None:
        for user in self._users.values():
            if str(user["email"]).lower() == email.lower():
                return user
        return None

    def _assignee_for(self, service_id: str) -> str | None:
        if service_id in self._on_call:
            return self._on_call[service_id]
        return next(iter(self._users), None)

    def _user_ref(self, user_id: str) -> JSON:
        user = self._users[user_id]
        return {
            "id": user_id,
            "type": "user_reference",
            "summary": user["summary"],
            "self": user["self"],
            "html_url": user["html_url"],
        }

    def _new_incident(
        self,
        *,
        service_id: str,
        title: str,
        urgency: str,
        incident_key: str | None,
        details: str | None,
        assignee_ids: list[str],
        status: str,
    ) -> JSON:
        number = self._next_number
        self._next_number += 1
        incident_id = "Q" + format(number, "X").rjust(13, "0")
        now = _now()
        incident: JSON = {
            "id": incident_id,
            "type": "incident",
            "summary": f"[#{number}] {title}",
            "self": f"{self.url}/incidents/{incident_id}",
            "html_url": f"{_HTML_BASE}/incidents/{incident_id}",
            "incident_number": number,
            "title": title,
            "description": title,
            "created_at": now,
            "updated_at": now,
            "last_status_change_at": now,
            "status": status,
            "urgency": urgency,
            "incident_key": incident_key,
            "service": dict(self._services[service_id]),
            "assignments": [{"at": now, "assignee": self._user_ref(uid)} for uid in assignee_ids],
            "acknowledgements": [],
            "body": {"type": "incident_body", "details": details},
        }
        self.incidents.append(incident)
        return incident

    # ----------------------------------------------------------------- routes

    async def _create_incident(self, request: web.Request) -> web.Response:
        body = request[BODY_KEY]
        if not isinstance(body, dict) or not isinstance(body.get("incident"), dict):
            return _invalid('Body must be {"incident": {...}}')
        inc: JSON = body["incident"]
        problems: list[str] = []
        if inc.get("type") != "incident":
            problems.append('incident.type must be "incident"')
        title = inc.get("title")
        if not isinstance(title, str) or not title.strip():
            problems.append("incident.title is required")
        service = inc.get("service")
        service_id: str | None = None
        if not isinstance(service, dict) or service.get("type") != "service_reference":
            problems.append('incident.service must be {"id": ..., "type": "service_reference"}')
        elif not isinstance(service.get("id"), str):
            problems.append("incident.service.id is required")
        else:
            service_id = service["id"]
        urgency = inc.get("urgency", "high")
        if urgency not in ("high", "low"):
            problems.append('incident.urgency must be "high" or "low"')
        key = inc.get("incident_key")
        if key is not None and not isinstance(key, str):
            problems.append("incident.incident_key must be a string")
        details: str | None = None
        if "body" in inc:
            ib = inc["body"]
            if (
                not isinstance(ib, dict)
                or ib.get("type") != "incident_body"
                or not isinstance(ib.get("details", ""), str)
            ):
                problems.append('incident.body must be {"type": "incident_body", "details": "<text>"}')
            else:
                details = ib.get("details")
        assignee_ids: list[str] = []
        if "assignments" in inc:
            for a in inc["assignments"] if isinstance(inc["assignments"], list) else [None]:
                ref = a.get("assignee") if isinstance(a, dict) else None
                is_user = isinstance(ref, dict) and ref.get("type") == "user_reference"
                ref_id = ref.get("id") if is_user and isinstance(ref, dict) else None
                if ref_id not in self._users:
                    problems.append("incident.assignments must reference known users")
                    break
                assignee_ids.append(str(ref_id))
        if problems:
            return _invalid(*problems)
        assert service_id is not None and isinstance(title, str)
        if service_id not in self._services:
            return _invalid("Service Not Found")
        if key is not None and any(
            i["incident_key"] == key and i["service"]["id"] == service_id and i["status"] in _OPEN_STATUSES
            for i in self.incidents
        ):
            return _error(400, "Arguments Caused Error", 2002, [_DUPLICATE_KEY_ERROR])
        if not assignee_ids:
            on_call = self._assignee_for(service_id)
            assignee_ids = [on_call] if on_call else []
        incident = self._new_incident(
            service_id=service_id,
            title=title,
            urgency=urgency,
            incident_key=key,
            details=details,
            assignee_ids=assignee_ids,
            status="triggered",
        )
        return web.json_response({"incident": incident}, status=201)

    async def _list_incidents(self, request: web.Request) -> web.Response:
        q = request.query
        statuses = q.getall("statuses[]", [])
        if any(s not in _ALL_STATUSES for s in statuses):
            return _invalid("statuses[] must be triggered, acknowledged or resolved")
        service_ids = set(q.getall("service_ids[]", []))
        user_ids = set(q.getall("user_ids[]", []))
        urgencies = set(q.getall("urgencies[]", []))
        key = q.get("incident_key")
        try:
            limit = int(q.get("limit", "25"))
            offset = int(q.get("offset", "0"))
        except ValueError:
            return _invalid("limit and offset must be integers")
        if limit < 1 or offset < 0:
            return _invalid("limit must be positive and offset non-negative")
        limit = min(limit, 100)
        matching = [
            i
            for i in self.incidents
            if (not statuses or i["status"] in statuses)
            and (not service_ids or i["service"]["id"] in service_ids)
            and (not user_ids or any(a["assignee"]["id"] in user_ids for a in i["assignments"]))
            and (not urgencies or i["urgency"] in urgencies)
            and (key is None or i["incident_key"] == key)
        ]
        page = matching[offset : offset + limit]
        return web.json_response(
            {
                "incidents": page,
                "limit": limit,
                "offset": offset,
                "total": len(matching) if q.get("total") == "true" else None,
                "more": offset + len(page) < len(matching),
            }
        )

    async def _get_incident(self, request: web.Request) -> web.Response:
        try:
            incident = self.incident(request.match_info["id"])
        except KeyError:
            return _error(404, "Not Found", 2100)
        return web.json_response({"incident": incident})

    async def _update_incident(self, request: web.Request) -> web.Response:
        try:
            incident = self.incident(request.match_info["id"])
        except KeyError:
            return _error(404, "Not Found", 2100)
        body = request[BODY_KEY]
        inc = body.get("incident") if isinstance(body, dict) else None
        if not isinstance(inc, dict) or inc.get("type") not in ("incident", "incident_reference"):
            return _invalid('Body must be {"incident": {"type": "incident_reference", ...}}')
        new_status = inc.get("status")
        if new_status is not None and new_status not in ("acknowledged", "resolved"):
            return _error(400, "Invalid Status Provided", 1003, [f"Cannot change status to {new_status!r}"])
        new_urgency = inc.get("urgency")
        if new_urgency is not None and new_urgency not in ("high", "low"):
            return _invalid('incident.urgency must be "high" or "low"')
        if incident["status"] == "resolved":
            return _error(400, "Incident Already Resolved", 1001, ["Incident Already Resolved"])
        if new_status == "acknowledged" and incident["status"] == "acknowledged":
            return _error(400, "Incident Already Acknowledged", 1002, ["Incident Already Acknowledged"])
        now = _now()
        if new_status is not None:
            incident["status"] = new_status
            incident["last_status_change_at"] = now
            if new_status == "acknowledged":
                incident["acknowledgements"].append(
                    {"at": now, "acknowledger": self._user_ref(request[_REQUESTER_KEY]["id"])},
                )
        if new_urgency is not None:
            incident["urgency"] = new_urgency
        if isinstance(inc.get("title"), str):
            incident["title"] = inc["title"]
        incident["updated_at"] = now
        return web.json_response({"incident": incident})

    async def _responder_request(self, request: web.Request) -> web.Response:
        try:
            incident = self.incident(request.match_info["id"])
        except KeyError:
            return _error(404, "Not Found", 2100)
        if not self.responder_requests_enabled:
            return _error(402, "Payment Required: the account does not have the responder requests feature")
        body = request[BODY_KEY]
        if not isinstance(body, dict):
            return _invalid("Body must be a JSON object")
        requester_id = body.get("requester_id")
        if requester_id not in self._users:
            return _invalid("requester_id must be a known user")
        message = body.get("message")
        if not isinstance(message, str) or not message:
            return _invalid("message is required")
        targets = body.get("responder_request_targets")
        if not isinstance(targets, list) or not targets:
            return _invalid("responder_request_targets must be a non-empty list")
        resolved_targets: list[JSON] = []
        for t in targets:
            target = t.get("responder_request_target") if isinstance(t, dict) else None
            if not isinstance(target, dict) or target.get("type") not in (
                "user_reference",
                "escalation_policy_reference",
            ):
                return _invalid("each target must be a user_reference or escalation_policy_reference")
            if target["type"] == "user_reference" and target.get("id") not in self._users:
                return _invalid(f"User Not Found: {target.get('id')}")
            resolved_targets.append(
                {"responder_request_target": {"id": target.get("id"), "type": target["type"]}},
            )
        record: JSON = {
            "incident": {"id": incident["id"], "type": "incident_reference", "summary": incident["summary"]},
            "requester": self._user_ref(requester_id),
            "requested_at": _now(),
            "message": message,
            "responder_request_targets": resolved_targets,
        }
        self.responder_requests.append(record)
        return web.json_response({"responder_request": record})

    async def _list_users(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").lower()
        users = [
            u
            for u in self._users.values()
            if not query or query in str(u["email"]).lower() or query in str(u["name"]).lower()
        ]
        return web.json_response({"users": users, "limit": 25, "offset": 0, "total": None, "more": False})
