"""Secret redaction, applied to every timeline event before it is stored, spooled or archived.

Two layers:

* **Text patterns** (:func:`redact_text`), run over the summary and over the payload's JSON text (so every string
  in the payload, at any depth, keys included, is covered by one scan):

  ============================  =====================================================  ===========================
  what                          looks like                                             becomes
  ============================  =====================================================  ===========================
  Slack tokens                  ``xoxb-…`` ``xoxp-…`` ``xoxa-…`` ``xoxr-…`` ``xapp-…``   ``xoxb-***``
  bearer tokens                 ``Bearer eyJ…``                                        ``Bearer ***``
  Authorization headers         ``Authorization: Basic dXNl…`` / ``"authorization":…``  value ``***``
  AWS access key ids            ``AKIA…`` / ``ASIA…`` (16 more characters)             ``AKIA***``
  AWS secret keys               ``aws_secret_access_key = …``                          ``aws_secret_access_key=***``
  passwords in URLs             ``scheme://user:pass@host``                            ``scheme://user:***@host``
  ``--token`` style flags       ``--token=…`` ``--token …`` (also --password, --secret)  ``--token=***``
  ============================  =====================================================  ===========================

* **Kubernetes Secrets** (:func:`redact_payload`): in any object of ``kind: Secret`` the values of ``data`` and
  ``stringData`` (and the ``kubectl.kubernetes.io/last-applied-configuration`` annotation, which repeats them)
  become ``***``, keys kept so the post-mortem still shows *which* key changed. In an audit event whose
  ``objectRef.resource`` is ``secrets``, the ``requestObject`` / ``responseObject`` are treated the same way even
  without a ``kind`` (patches), and JSON-patch operations lose their ``value``.

Each pattern is guarded by a cheap substring test, so the common case (nothing secret-looking) costs one
lower-casing and a few ``in`` checks.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["MASK", "redact_payload", "redact_text"]

#: What a secret is replaced with.
MASK = "***"

_Rule = tuple[tuple[str, ...], re.Pattern[str], str | Callable[[re.Match[str]], str]]

_RULES: tuple[_Rule, ...] = (
    # Authorization headers: JSON form ("authorization": "…" or a list of strings), then header/kv text form.
    (
        ("authorization",),
        re.compile(
            r'("(?:proxy-)?authorization"\s*:\s*)(?:"(?:[^"\\]|\\.)*"|\[(?:\s*"(?:[^"\\]|\\.)*"\s*,?)*\])', re.I
        ),
        r'\1"' + MASK + '"',
    ),
    (
        ("authorization",),
        re.compile(
            r"(\b(?:proxy-)?authorization\b\s*[:=]\s*)(?!\"\*)(?:(?:bearer|basic|token|digest)\s+)?[^\s\"',;]+", re.I
        ),
        r"\1" + MASK,
    ),
    (("bearer",), re.compile(r"(\bbearer\s+)(?!\*\*\*)[A-Za-z0-9._~+/=-]{4,}", re.I), r"\1" + MASK),
    (("xox", "xapp-"), re.compile(r"\b(xox[abposre]|xapp)-[A-Za-z0-9-]+"), r"\1-" + MASK),
    (("akia", "asia"), re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"), r"\1" + MASK),
    (
        ("aws_secret_access_key", "secret_access_key", "secretaccesskey"),
        re.compile(r"((?:aws_)?secret_?access_?key[\"']?\s*[:=]\s*[\"']?)(?!\*\*\*)[A-Za-z0-9/+=]{8,}", re.I),
        r"\1" + MASK,
    ),
    (("://",), re.compile(r"([a-z][a-z0-9+.-]*://[^\s:/@\"'<>]+:)(?!\*\*\*@)[^\s/@\"'<>]+@", re.I), r"\1" + MASK + "@"),
    (
        ("--",),
        re.compile(
            r"(--(?:[a-z0-9-]*-)?(?:token|password|passwd|secret|api-key|apikey|client-secret)(?:=|\s+))"
            r"(?!\*\*\*)(?:\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s\"']+)",
            re.I,
        ),
        r"\1" + MASK,
    ),
)

_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_SECRET_FIELDS = ("data", "stringData")


_TRIGGERS = {t for triggers, _, _ in _RULES for t in triggers}
# Every trigger, less those containing another (``aws_secret_access_key`` holds ``secret_access_key``): one of
# these is in a text exactly when one of all the triggers is.
_ALL_TRIGGERS = tuple(sorted(t for t in _TRIGGERS if not any(o != t and o in t for o in _TRIGGERS)))


# Short texts already found clean (summaries repeat: the same person running the same kubectl against the same
# object). Only clean texts are remembered, so no secret is kept here.
_CLEAN: set[str] = set()
_CLEAN_MAX = 8192
_CLEAN_LEN = 320


def redact_text(text: str) -> str:
    """``text`` with every secret-looking token masked (see the module docstring for the patterns)."""
    if len(text) <= _CLEAN_LEN and text in _CLEAN:
        return text
    low = text.lower()
    if not any(map(low.__contains__, _ALL_TRIGGERS)):  # the common case: a few µs, no regex at all
        if len(text) <= _CLEAN_LEN:
            if len(_CLEAN) >= _CLEAN_MAX:
                _CLEAN.clear()
            _CLEAN.add(text)
        return text
    for triggers, pattern, replacement in _RULES:
        if any(map(low.__contains__, triggers)):
            text = pattern.sub(replacement, text)
    return text


def _mask_secret_fields(obj: dict[str, Any]) -> dict[str, Any]:
    out = dict(obj)
    for name in _SECRET_FIELDS:
        values = out.get(name)
        if isinstance(values, Mapping):
            out[name] = {k: MASK for k in values}
        elif values is not None:
            out[name] = MASK
    metadata = out.get("metadata")
    if isinstance(metadata, Mapping):
        annotations = metadata.get("annotations")
        if isinstance(annotations, Mapping) and _LAST_APPLIED in annotations:
            out["metadata"] = {**metadata, "annotations": {**annotations, _LAST_APPLIED: MASK}}
    return out


def _mask_audit_body(body: Any) -> Any:
    """A request/response body of an audit event about ``secrets``: a Secret, a patch, or a JSON patch list."""
    if isinstance(body, Mapping):
        if body.get("kind") == "SecretList" or isinstance(body.get("items"), list):
            return {**body, "items": [_mask_audit_body(i) for i in body.get("items") or []]}
        return _mask_secret_fields(dict(body))
    if isinstance(body, list):
        return [{**op, "value": MASK} if isinstance(op, Mapping) and "value" in op else op for op in body]
    return body


def _walk(value: Any) -> Any:
    if isinstance(value, Mapping):
        obj = {k: _walk(v) for k, v in value.items()}
        if obj.get("kind") == "Secret":
            obj = _mask_secret_fields(obj)
        ref = obj.get("objectRef")
        if isinstance(ref, Mapping) and ref.get("resource") == "secrets":
            for name in ("requestObject", "responseObject"):
                if name in obj:
                    obj[name] = _mask_audit_body(obj[name])
        return obj
    if isinstance(value, list | tuple):
        return [_walk(v) for v in value]
    return value


def redact_payload(payload: Mapping[str, Any], payload_json: str) -> Mapping[str, Any] | None:
    """Structurally redacted copy of ``payload`` when it holds Kubernetes Secrets, else ``None`` (nothing to do).

    ``payload_json`` is the payload's compact JSON text, used to decide cheaply whether a walk is needed.
    """
    if '"Secret' not in payload_json and '"secrets"' not in payload_json:
        return None
    redacted: Mapping[str, Any] = _walk(payload)
    return redacted
