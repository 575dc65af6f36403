"""Kubernetes audit ``EventList`` bodies → the audit events worth recording (pure: no I/O).

:func:`parse_event_list` checks the envelope (``kind: EventList``, ``apiVersion: audit.k8s.io/v1``, ``items`` a
list) and every item's identity (``auditID``, ``stage``, ``verb``), then keeps what the policy's
:class:`~chatops.sources.audit_filter.AuditFilter` records, as :class:`AuditRecord` values carrying the timeline
payload: user, verb, resource, namespace/name, subresource, response code, user agent and the source time
(``stageTimestamp``). Anything malformed raises :class:`AuditBatchError` naming the problem (the webhook answers
400 with it). Request and response bodies are never copied into the payload; only the two facts the summary needs
(a rollout restart's ``restartedAt``, a scale's replica count) are picked out of the request body.

Two decoders, one result. The fast one (msgspec, typed: only the fields used are materialised, the request body
is kept raw until a rule needs it) handles well-formed batches, which is nearly all traffic; anything it does not
accept as is (a field of an unexpected type, a missing ``auditID``, a bad timestamp, …) sends the whole body to the
checking decoder (orjson into plain objects), which is lenient where the format allows and names every problem.
Both build records through :func:`_record_of`, so they agree (a test checks they do on generated batches).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from typing import Annotated, Any, NamedTuple

import msgspec
import orjson

from chatops.sources.audit_filter import AUDIT_STAGES, RESTART_ANNOTATION, AuditFactFields, AuditFilter

__all__ = ["API_VERSION", "AuditBatchError", "AuditRecord", "parse_event_list"]

API_VERSION = "audit.k8s.io/v1"
_NONE: frozenset[str] = frozenset()
_EMPTY: Mapping[str, Any] = {}
_MAX_REPORTED = 5


class AuditBatchError(ValueError):
    """The body is not a usable ``audit.k8s.io/v1`` EventList; the message says why (one line per problem)."""


class AuditRecord(NamedTuple):
    """One audit event the filter keeps, before it is attached to incidents."""

    audit_id: str
    stage: str
    kind: str
    namespace: str | None
    occurred_at: dt.datetime
    actor: str
    summary: str
    payload: Mapping[str, Any]


def _what(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def _timestamp(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _text(mapping: Mapping[str, Any], key: str) -> str | None:
    value = mapping.get(key)
    return value if isinstance(value, str) and value else None


def _dict(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, dict) else {}


def _template_annotations(request_object: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = _dict(request_object, "spec")
    return _dict(_dict(_dict(spec, "template"), "metadata"), "annotations")


class _Ref(msgspec.Struct, rename="camel", gc=False):
    resource: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    api_group: str | None = None


class _User(msgspec.Struct, gc=False):
    username: str | None = None
    groups: list[str] | None = None


class _Status(msgspec.Struct, gc=False):
    code: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None  # int64: bigger ones go the checked way


class _Event(msgspec.Struct, rename="camel", gc=False):
    audit_id: str = msgspec.field(name="auditID")
    stage: str
    verb: str
    user: _User | None = None
    impersonated_user: _User | None = None
    object_ref: _Ref | None = None
    response_status: _Status | None = None
    user_agent: str | None = None
    request_uri: str | None = msgspec.field(default=None, name="requestURI")
    source_ips: list[str] | None = msgspec.field(default=None, name="sourceIPs")
    stage_timestamp: str | None = None
    request_received_timestamp: str | None = None
    request_object: msgspec.Raw = msgspec.Raw()  # decoded only when a record needs it; empty when absent


class _EventList(msgspec.Struct, rename="camel", gc=False):
    kind: str
    api_version: str
    items: list[_Event]


_FAST = msgspec.json.Decoder(_EventList)
_NO_REF = _Ref()
_NO_USER = _User()
_NO_STATUS = _Status()


class _Irregular(Exception):
    """The fast decoder does not take this body as is; the checking decoder decides."""


def parse_event_list(body: bytes, audit_filter: AuditFilter) -> tuple[int, list[AuditRecord]]:
    """``(items received, records kept)``; raises :class:`AuditBatchError` for a malformed body."""
    try:
        return _parse_fast(body, audit_filter)
    except (_Irregular, msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _parse_checked(body, audit_filter)


def _parse_fast(body: bytes, audit_filter: AuditFilter) -> tuple[int, list[AuditRecord]]:
    if not body.isascii():  # msgspec does not look inside what it skips; the checking decoder refuses bad UTF-8
        try:
            body.decode()
        except UnicodeDecodeError:
            raise _Irregular from None
    document = _FAST.decode(body)
    if document.kind != "EventList" or document.api_version != API_VERSION:
        raise _Irregular
    kept: list[AuditRecord] = []
    seen: set[tuple[str, str]] = set()
    stages = audit_filter.stages
    classify = audit_filter.classify_fields
    for item in document.items:
        audit_id, stage, verb = item.audit_id, item.stage, item.verb
        if not audit_id or not verb or stage not in AUDIT_STAGES:
            raise _Irregular
        if stage not in stages:
            continue
        ref = item.object_ref or _NO_REF
        user = item.user or _NO_USER
        resource, name, namespace = ref.resource or None, ref.name or None, ref.namespace or None
        if namespace is None and resource == "namespaces":
            namespace = name
        request_object: Mapping[str, Any] = _EMPTY
        if item.request_object:
            try:
                decoded = orjson.loads(memoryview(item.request_object))
            except orjson.JSONDecodeError:  # e.g. nested too deep: the checking decoder says what is wrong
                raise _Irregular from None
            if isinstance(decoded, dict):
                request_object = decoded
        annotations = _template_annotations(request_object) if request_object else _EMPTY
        facts = (
            stage,
            verb,
            resource,
            ref.subresource or None,
            namespace,
            user.username or "system:unknown",
            tuple(user.groups) if user.groups else (),
            frozenset(annotations) if annotations else _NONE,
        )
        kind = classify(facts)
        if kind is None:
            continue
        occurred_at = _timestamp(item.stage_timestamp) or _timestamp(item.request_received_timestamp)
        if occurred_at is None:
            raise _Irregular
        if (audit_id, stage) in seen:
            continue
        seen.add((audit_id, stage))
        impersonated = item.impersonated_user
        kept.append(
            _record_of(
                audit_id,
                facts,
                kind,
                name,
                occurred_at,
                annotations,
                request_object,
                code=(item.response_status or _NO_STATUS).code,
                api_group=ref.api_group or None,
                user_agent=item.user_agent or None,
                source_ips=item.source_ips or [],
                request_uri=item.request_uri or None,
                stage_timestamp=item.stage_timestamp,
                impersonated=impersonated.username or None if impersonated is not None else None,
            )
        )
    return len(document.items), kept


def _parse_checked(body: bytes, audit_filter: AuditFilter) -> tuple[int, list[AuditRecord]]:
    """The checking decoder: plain objects, lenient where the format allows, every problem named."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AuditBatchError(f"body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise AuditBatchError(f"expected an {API_VERSION} EventList object, got {_what(document)}")
    problems = []
    if document.get("kind") != "EventList":
        problems.append(f"kind must be 'EventList', got {_what(document.get('kind'))}")
    if document.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion must be {API_VERSION!r}, got {_what(document.get('apiVersion'))}")
    items = document.get("items")
    if not isinstance(items, list):
        problems.append(f"items must be a list, got {_what(items)}")
    if problems:
        raise AuditBatchError("; ".join(problems))
    assert isinstance(items, list)
    kept: list[AuditRecord] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(items):
        try:
            record = _record(item, audit_filter)
        except AuditBatchError as exc:
            problems.append(f"items[{index}]: {exc}")
            if len(problems) >= _MAX_REPORTED:
                break
            continue
        if record is not None and (record.audit_id, record.stage) not in seen:
            seen.add((record.audit_id, record.stage))
            kept.append(record)
    if problems:
        more = " (and maybe more)" if len(problems) >= _MAX_REPORTED else ""
        raise AuditBatchError("; ".join(problems) + more)
    return len(items), kept


def _record(item: object, audit_filter: AuditFilter) -> AuditRecord | None:
    if not isinstance(item, dict):
        raise AuditBatchError(f"expected an audit Event object, got {_what(item)}")
    get = item.get
    audit_id, stage, verb = get("auditID"), get("stage"), get("verb")
    if not isinstance(audit_id, str) or not audit_id:
        raise AuditBatchError("missing auditID" if audit_id is None else f"auditID must be text, got {_what(audit_id)}")
    if stage not in AUDIT_STAGES:
        raise AuditBatchError(f"stage must be one of {', '.join(AUDIT_STAGES)}, got {_what(stage)}")
    if not isinstance(verb, str) or not verb:
        raise AuditBatchError("missing verb" if verb is None else f"verb must be text, got {_what(verb)}")
    assert isinstance(stage, str)
    if stage not in audit_filter.stages:
        return None
    ref, user = _dict(item, "objectRef"), _dict(item, "user")
    resource, name, namespace = _text(ref, "resource"), _text(ref, "name"), _text(ref, "namespace")
    if namespace is None and resource == "namespaces":
        namespace = name
    groups = user.get("groups")
    request_object = _dict(item, "requestObject")  # present at the Request level and above only
    annotations = _template_annotations(request_object) if request_object else _EMPTY
    facts = (
        stage,
        verb,
        resource,
        _text(ref, "subresource"),
        namespace,
        _text(user, "username") or "system:unknown",
        tuple(g for g in groups if isinstance(g, str)) if isinstance(groups, list) else (),
        frozenset(annotations) if annotations else _NONE,
    )
    kind = audit_filter.classify_fields(facts)
    if kind is None:
        return None
    occurred_at = _timestamp(get("stageTimestamp")) or _timestamp(get("requestReceivedTimestamp"))
    if occurred_at is None:
        got = _what(get("stageTimestamp"))
        raise AuditBatchError(f"stageTimestamp must be an RFC 3339 time with a zone, got {got}")
    code = _dict(item, "responseStatus").get("code")
    ips = get("sourceIPs")
    return _record_of(
        audit_id,
        facts,
        kind,
        name,
        occurred_at,
        annotations,
        request_object,
        code=code if isinstance(code, int) else None,
        api_group=_text(ref, "apiGroup"),
        user_agent=_text(item, "userAgent"),
        source_ips=[ip for ip in ips if isinstance(ip, str)] if isinstance(ips, list) else [],
        request_uri=_text(item, "requestURI"),
        stage_timestamp=get("stageTimestamp"),
        impersonated=_text(_dict(item, "impersonatedUser"), "username"),
    )


def _record_of(
    audit_id: str,
    facts: AuditFactFields,
    kind: str,
    name: str | None,
    occurred_at: dt.datetime,
    annotations: Mapping[str, Any],
    request_object: Mapping[str, Any],
    *,
    code: int | None,
    api_group: str | None,
    user_agent: str | None,
    source_ips: list[str],
    request_uri: str | None,
    stage_timestamp: object,
    impersonated: str | None,
) -> AuditRecord:
    stage, verb, resource, subresource, namespace, user, groups, _ = facts
    payload: dict[str, Any] = {
        "audit_id": audit_id,
        "stage": stage,
        "kind": kind,
        "user": user,
        "groups": list(groups),
        "verb": verb,
        "resource": resource,
        "api_group": api_group,
        "namespace": namespace,
        "name": name,
        "subresource": subresource,
        "code": code,
        "user_agent": user_agent,
        "source_ips": source_ips,
        "request_uri": request_uri,
        "stage_timestamp": stage_timestamp,
    }
    if impersonated:
        payload["impersonated_user"] = impersonated
    replicas = None
    if request_object:
        if isinstance(annotations.get(RESTART_ANNOTATION), str):
            payload["restarted_at"] = annotations[RESTART_ANNOTATION]
        replicas = _dict(request_object, "spec").get("replicas")
        if subresource == "scale" and isinstance(replicas, int):
            payload["replicas"] = replicas
        else:
            replicas = None
    summary = _summary(kind, user, verb, resource, subresource, namespace, name, replicas, code, request_uri)
    return AuditRecord(audit_id, stage, kind, namespace, occurred_at, user, summary, payload)


@functools.lru_cache(maxsize=4096)  # audit traffic repeats: the same people, verbs and objects
def _summary(
    kind: str,
    user: str,
    verb: str,
    resource: str | None,
    subresource: str | None,
    namespace: str | None,
    name: str | None,
    replicas: int | None,
    code: int | None,
    request_uri: str | None,
) -> str:
    """``exec: ravi@example.com create pods/exec checkout/api-7d9 → 101``."""
    target = resource or request_uri or "?"
    if subresource:
        target += f"/{subresource}"
    where = "/".join(x for x in (namespace, name) if x) if resource != "namespaces" else name
    extra = f" to {replicas} replicas" if replicas is not None else ""
    status = f" → {code}" if code is not None else ""
    return f"{kind}: {user} {verb} {target} {where or ''}{extra}{status}".replace("  ", " ")
