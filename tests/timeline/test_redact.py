"""Each redaction pattern, in text and in payloads, and Kubernetes Secret objects in audit events."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from chatops.timeline import redact
from chatops.timeline.events import TimelineEvent
from chatops.timeline.redact import MASK, redact_text
from chatops.timeline.rows import Row, to_row

NOW = dt.datetime(2026, 4, 22, 3, 0, tzinfo=dt.UTC)


def row(summary: str = "s", payload: dict[str, Any] | None = None) -> Row:
    event = TimelineEvent("inc-1", "kubectl", NOW, "ravi", "k8s-audit", summary, payload or {}, "a1")
    return to_row(event, NOW)


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("bot token xoxb-1234-5678-AbCdEf here", "1234-5678-AbCdEf", "xoxb-***"),
        ("user token xoxp-99-88-77-aa", "99-88-77-aa", "xoxp-***"),
        ("app token xapp-1-A0123-456-ffff", "1-A0123-456-ffff", "xapp-***"),
        ("curl -H 'Authorization: Bearer eyJhbGciOi.abc.def'", "eyJhbGciOi", "Authorization: ***"),
        ("token: Bearer abcdef0123456789", "abcdef0123456789", "Bearer ***"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Authorization: ***"),
        ("key AKIAIOSFODNN7EXAMPLE used", "IOSFODNN7EXAMPLE", "AKIA***"),
        ("session ASIAY34FZKBOKMUTVV7A expired", "Y34FZKBOKMUTVV7A", "ASIA***"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "wJalrXUtnFEMI", "aws_secret_access_key=***"),
        ("AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI", "AWS_SECRET_ACCESS_KEY: ***"),
        ("db postgres://app:hunter2@db.internal:5432/x", "hunter2", "postgres://app:***@db.internal"),
        ("see https://bob:pa55w0rd@git.example.com/repo", "pa55w0rd", "https://bob:***@git.example.com"),
        ("kubectl --token=abc123def get pods", "abc123def", "--token=***"),
        ("helm --token abc123def upgrade", "abc123def", "--token ***"),
        ("vault login --client-secret='s3cr3t value'", "s3cr3t", "--client-secret=***"),
        ("psql --password=hunter2", "hunter2", "--password=***"),
    ],
)
def test_text_patterns(text: str, secret: str, kept: str) -> None:
    out = redact_text(text)
    assert secret not in out, out
    assert kept in out, out


def test_plain_text_is_untouched() -> None:
    text = "scaled deploy/checkout to 0 replicas; see https://grafana.example.com/d/x?from=now-1h"
    assert redact_text(text) == text


def test_redaction_is_idempotent() -> None:
    once = redact_text("Authorization: Bearer abcdefgh xoxb-1-2 postgres://u:p@h")
    assert redact_text(once) == once


def test_summary_and_nested_payload_strings_are_redacted() -> None:
    r = row(
        summary="ran kubectl --token=t0k3n123",
        payload={
            "argv": ["kubectl", "--token=t0k3n123", "get", "pods"],
            "env": {"deep": [{"url": "redis://default:r3d1s@cache:6379"}]},
            "note": "slack xoxb-111-222-333",
        },
    )
    assert "t0k3n123" not in r.summary
    payload = json.loads(r.payload)
    assert payload["argv"][1] == f"--token={MASK}"
    assert payload["env"]["deep"][0]["url"] == f"redis://default:{MASK}@cache:6379"
    assert payload["note"] == f"slack xoxb-{MASK}"


def test_authorization_header_values_in_payload_dicts() -> None:
    r = row(
        payload={
            "headers": {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "application/json"},
            "requestHeaders": {"authorization": ["Bearer abcdefgh"], "proxy-authorization": "Negotiate YII"},
        }
    )
    payload = json.loads(r.payload)
    assert payload["headers"] == {"Authorization": MASK, "Accept": "application/json"}
    assert payload["requestHeaders"] == {"authorization": MASK, "proxy-authorization": MASK}


def test_escaped_quotes_inside_payload_strings_keep_the_json_valid() -> None:
    r = row(payload={"msg": 'token="xoxb-1-2-3" and "Authorization": "Bearer zzzzzzzz"'})
    text = json.loads(r.payload)["msg"]
    assert "xoxb-1-2-3" not in text and "zzzzzzzz" not in text


def _audit(verb: str, request: Any, response: Any = None, resource: str = "secrets") -> dict[str, Any]:
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "auditID": "a1",
        "stage": "ResponseComplete",
        "verb": verb,
        "objectRef": {"resource": resource, "namespace": "payments", "name": "db-creds"},
        "requestObject": request,
        "responseObject": response,
    }


def test_kubernetes_secret_objects_in_audit_bodies() -> None:
    secret = {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": "db-creds",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"data":{"password":"aHVudGVyMg=="}}'},
        },
        "data": {"password": "aHVudGVyMg==", "user": "YXBw"},
        "stringData": {"token": "plain-secret"},
        "type": "Opaque",
    }
    r = row(payload={"audit": _audit("update", secret, secret)})
    audit = json.loads(r.payload)["audit"]
    for body in (audit["requestObject"], audit["responseObject"]):
        assert body["data"] == {"password": MASK, "user": MASK}
        assert body["stringData"] == {"token": MASK}
        assert body["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == MASK
        assert body["metadata"]["name"] == "db-creds" and body["type"] == "Opaque"
    assert "aHVudGVyMg" not in r.payload and "plain-secret" not in r.payload


def test_secret_patches_and_lists_without_kind() -> None:
    merge_patch = _audit("patch", {"data": {"password": "bmV3"}})
    json_patch = _audit("patch", [{"op": "replace", "path": "/data/password", "value": "bmV3"}])
    listed = _audit("list", None, {"kind": "SecretList", "items": [{"kind": "Secret", "data": {"k": "djE="}}]})
    r = row(payload={"events": [merge_patch, json_patch, listed]})
    events = json.loads(r.payload)["events"]
    assert events[0]["requestObject"] == {"data": {"password": MASK}}
    assert events[1]["requestObject"] == [{"op": "replace", "path": "/data/password", "value": MASK}]
    assert events[2]["responseObject"]["items"][0]["data"] == {"k": MASK}
    assert "bmV3" not in r.payload and "djE=" not in r.payload


def test_configmaps_are_not_masked() -> None:
    cm = {"kind": "ConfigMap", "data": {"LOG_LEVEL": "debug"}}
    r = row(payload=_audit("update", cm, resource="configmaps"))
    assert json.loads(r.payload)["requestObject"]["data"] == {"LOG_LEVEL": "debug"}


def test_payload_serialisation_matches_the_pool_codec() -> None:
    import enum

    from chatops.db.pool import json_dumps
    from chatops.timeline.rows import _dumps

    class Colour(enum.Enum):
        RED = "red"

    value = {
        "when": NOW,
        "naive": dt.datetime(2026, 4, 22, 3, 0, 0, 5),
        "day": NOW.date(),
        "colour": Colour.RED,
        "tags": {"b", "a"},
        "text": "héllo ✓",
        "n": [1, 2.5, None, True],
        "keys": {1: "one"},  # non-text keys: the second orjson attempt
        "big": 2**70,
    }
    assert json.loads(_dumps(value)) == json.loads(json_dumps(value))
    small = {k: v for k, v in value.items() if k != "big"}
    assert _dumps(small) == json_dumps(small)


def test_clean_texts_are_remembered_and_secrets_never_are() -> None:
    clean = "exec: ravi@example.com create pods/exec checkout/api-7d9 → 101"
    secret = "ran kubectl --token=abc123def456 get pods"
    for _ in range(3):  # the second and later calls answer from the memory of clean texts
        assert redact_text(clean) == clean
        assert redact_text(secret) == "ran kubectl --token=*** get pods"
    assert clean in redact._CLEAN
    assert not any("abc123" in text for text in redact._CLEAN)


def test_lone_surrogates_become_replacement_characters_not_a_refused_batch() -> None:
    event = TimelineEvent(
        "inc-1",
        "chat",
        NOW,
        "U1\ud83d",
        "slack",
        "half an emoji \ud83d here",
        {"text": "half \ud83d", "ok": "✓"},
        "k\ud83d",
    )
    row = to_row(event, NOW)
    for text in (row.actor, row.summary, row.payload, row.dedup_key):
        assert text is not None
        text.encode()  # valid UTF-8 now
    assert row.summary == "half an emoji \ufffd\ufffd\ufffd here"  # the surrogate's three bytes, each replaced
    assert json.loads(row.payload) == {"text": "half \ufffd\ufffd\ufffd", "ok": "✓"}
    from chatops.timeline.journal import decode_batch, encode_batch

    assert decode_batch(encode_batch([row])) == [row]  # the journal can hold it too
