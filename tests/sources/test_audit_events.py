"""The audit EventList parser: the fast (typed) decoder and the checking one must agree on every body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatops.sources import audit_events
from chatops.sources.audit_events import AuditBatchError, parse_event_list
from chatops.sources.audit_filter import DEFAULT_AUDIT_FILTER, RESTART_ANNOTATION

WHEN = "2026-04-22T02:51:07.123456Z"


def item(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "5d0f-0001",
        "stage": "ResponseComplete",
        "requestURI": "/apis/apps/v1/namespaces/checkout/deployments/api",
        "verb": "patch",
        "user": {"username": "ravi@example.com", "groups": ["system:authenticated", "sre"]},
        "sourceIPs": ["10.0.0.7"],
        "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3f7a50f",
        "objectRef": {"resource": "deployments", "namespace": "checkout", "name": "api", "apiGroup": "apps"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": WHEN,
        "stageTimestamp": WHEN,
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not _DROP}


_DROP = object()


def body(*items: Any, **envelope: Any) -> bytes:
    document = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(items), **envelope}
    return json.dumps(document).encode()


def both(data: bytes) -> tuple[Any, Any]:
    """(parse_event_list's outcome, the checking decoder's outcome): a result or the error message."""

    def outcome(parse: Any) -> Any:
        try:
            return parse(data, DEFAULT_AUDIT_FILTER)
        except AuditBatchError as exc:
            return f"error: {exc}"

    return outcome(parse_event_list), outcome(audit_events._parse_checked)


def test_the_fast_decoder_takes_regular_traffic() -> None:
    data = body(
        item(),
        item(
            auditID="5d0f-0002",
            verb="create",
            objectRef={"resource": "pods", "namespace": "checkout", "name": "api-7d9", "subresource": "exec"},
        ),
        item(
            auditID="5d0f-0003",
            level="Request",
            requestObject={"spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: WHEN}}}}},
        ),
        item(
            auditID="5d0f-0004",
            verb="update",
            objectRef={"resource": "deployments", "namespace": "checkout", "name": "api", "subresource": "scale"},
            requestObject={"spec": {"replicas": 6}},
        ),
        item(auditID="5d0f-0005", verb="get"),  # not recorded
    )
    received, records = audit_events._parse_fast(data, DEFAULT_AUDIT_FILTER)  # raises if it gave up
    assert received == 5
    assert [r.payload["kind"] for r in records] == ["mutation", "exec", "rollout_restart", "scale"]
    assert records[2].payload["restarted_at"] == WHEN
    assert records[3].summary == "scale: ravi@example.com update deployments/scale checkout/api to 6 replicas → 200"
    assert (received, records) == audit_events._parse_checked(data, DEFAULT_AUDIT_FILTER)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auditID": _DROP}, "items[0]: missing auditID"),
        ({"auditID": ""}, "items[0]: auditID must be text, got ''"),
        ({"verb": 7}, "items[0]: verb must be text, got int 7"),
        ({"stage": "Done"}, "items[0]: stage must be one of"),
        ({"stageTimestamp": "02:51", "requestReceivedTimestamp": _DROP}, "stageTimestamp must be an RFC 3339"),
    ],
)
def test_irregular_items_get_the_checking_decoders_message(overrides: dict[str, Any], message: str) -> None:
    fast, checked = both(body(item(**overrides)))
    assert fast == checked
    assert isinstance(fast, str) and message in fast


def test_lenient_shapes_are_read_like_the_checking_decoder_does() -> None:
    data = body(
        item(user={"username": "", "groups": ["sre", 3]}),  # non-text group: the fast decoder gives up
        item(auditID="b", objectRef=["not", "an", "object"]),
        item(auditID="c", responseStatus={"code": True}, sourceIPs="10.0.0.1"),
        item(auditID="d", requestObject=[{"op": "replace", "path": "/spec/replicas", "value": 3}]),
    )
    fast, checked = both(data)
    assert fast == checked
    assert not isinstance(fast, str)


_text = st.one_of(
    st.none(), st.sampled_from(["", "api", "checkout", "namespaces", "pods", "scale", "exec"]), st.integers(0, 3)
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.text(max_size=5)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


@st.composite
def audit_items(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(_json)
    event = item(auditID=draw(st.sampled_from(["a", "b", "c", ""])))
    for key, values in {
        "stage": st.sampled_from(["ResponseComplete", "RequestReceived", "Panic", "Nope"]),
        "verb": st.one_of(st.sampled_from(["create", "patch", "update", "get", "delete", ""]), st.integers()),
        "user": st.one_of(
            st.fixed_dictionaries({"username": _text}, optional={"groups": st.lists(_text, max_size=3)}), _json
        ),
        "impersonatedUser": st.one_of(st.fixed_dictionaries({"username": _text}), _json),
        "objectRef": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={k: _text for k in ("resource", "namespace", "name", "subresource", "apiGroup")},
            ),
            _json,
        ),
        "responseStatus": st.one_of(st.fixed_dictionaries({"code": st.one_of(st.integers(100, 599), _json)}), _json),
        "sourceIPs": st.one_of(st.lists(_text, max_size=2), _json),
        "userAgent": _text,
        "requestURI": _text,
        "stageTimestamp": st.one_of(st.sampled_from([WHEN, "2026-04-22T02:51:07+02:00", "yesterday", ""]), _json),
        "requestObject": st.one_of(
            st.fixed_dictionaries(
                {
                    "spec": st.fixed_dictionaries(
                        {},
                        optional={
                            "replicas": st.one_of(st.integers(0, 9), _json),
                            "template": st.just({"metadata": {"annotations": {RESTART_ANNOTATION: WHEN}}}),
                        },
                    )
                }
            ),
            _json,
        ),
    }.items():
        choice = draw(st.integers(0, 3))
        if choice == 0:
            event.pop(key, None)
        elif choice == 1:
            event[key] = draw(values)
    return event


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(audit_items(), max_size=6))
def test_both_decoders_agree_on_generated_batches(items: list[Any]) -> None:
    fast, checked = both(body(*items))
    assert fast == checked


@pytest.mark.parametrize(
    "data",
    [
        body(item(responseObject={"x": "ok"})).replace(b'"ok"', b'"\xff"'),  # bad UTF-8 where nothing reads it
        body(item(stage="RequestReceived", userAgent="ok")).replace(b'"ok"', b'"\xff"'),  # in a dropped item
        body(item(responseStatus={"code": 10**30})),  # beyond 64 bits
        body(item(responseStatus={"code": 2**63 + 5})),
        body(item(requestObject={"spec": "ok"})).replace(b'"ok"', b"[" * 5000 + b"]" * 5000),  # too deep
        body(item(requestObject={"spec": "ok"})).replace(b'"ok"', b'"\xff"'),  # bad UTF-8 in the raw body
    ],
)
def test_edge_bodies_get_the_checking_decoders_answer(data: bytes) -> None:
    fast, checked = both(data)  # either may only raise AuditBatchError (a 400), never anything else (a 500)
    assert fast == checked
