"""Name normalisation and closest-match suggestions for severities, services and policy keys.

The on-call at 03:00 types ``SEV-2`` or ``#checkout``; both must work. What is accepted:

- **Severities** (case-insensitive, surrounding whitespace ignored): ``sev2``, ``sev-2``, ``sev_2`` and the bare
  number ``2``. So ``SEV2``, ``Sev-2`` and ``SEV_2`` all mean ``sev2``. Nothing else is accepted: a typo such as
  ``sevv2`` or ``s2`` is refused with a suggestion, and a well-formed name that the policy does not define (``sev4``)
  is refused *without* one, because suggesting a different severity would be dangerous.
- **Services** (case-insensitive): surrounding whitespace and ``#`` are stripped, so ``#Checkout`` is ``checkout``.
  A near miss (``chekout``) is refused with a suggestion.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from chatops.errors import UserError

__all__ = [
    "SEVERITY_FORMS",
    "UnknownName",
    "closest",
    "edit_distance",
    "normalise_service",
    "normalise_severity",
    "severity_suggestion",
]

SEVERITY_FORMS = "any case; sev-1, sev_1 and plain 1 work too"
"""The accepted severity spellings, in the words used by error messages."""

_SEVERITY = re.compile(r"(?:sev[-_]?)?([1-9][0-9]?)")
_DIGITS = re.compile(r"[0-9]+")


class UnknownName(UserError):
    """A severity or service name that the policy does not define.

    ``kind`` is ``"severity"`` or ``"service"``, ``given`` what was typed, ``valid`` the canonical names in the
    policy and ``suggestion`` the closest valid name, if one is close enough to be worth offering.
    """

    def __init__(self, kind: str, given: str, valid: Iterable[str], suggestion: str | None) -> None:
        self.kind = kind
        self.given = given
        self.valid = tuple(valid)
        self.suggestion = suggestion
        super().__init__(self._message())

    def _message(self) -> str:
        plural = "severities" if self.kind == "severity" else f"{self.kind}s"
        head = f"no {self.kind} given" if not self.given.strip() else f"unknown {self.kind} {self.given!r}"
        hint = f" — did you mean {self.suggestion}?" if self.suggestion else "."
        valid = ", ".join(self.valid) if self.valid else "none defined"
        tail = f" ({SEVERITY_FORMS})" if self.kind == "severity" and self.valid else ""
        return f"{head}{hint} Valid {plural}: {valid}{tail}"


def normalise_severity(text: str) -> str | None:
    """Return the canonical ``sevN`` spelling of ``text``, or ``None`` when it is not a severity spelling at all.

    ``"SEV-2"`` → ``"sev2"``, ``"2"`` → ``"sev2"``, ``"sevv2"`` → ``None``. Whether ``sevN`` exists is the policy's
    business, not this function's.
    """
    match = _SEVERITY.fullmatch(text.strip().lower())
    return f"sev{match.group(1)}" if match else None


def severity_suggestion(text: str, valid: Iterable[str]) -> str | None:
    """Suggest a severity for a malformed spelling: the one whose number ``text`` contains, if exactly one does.

    A well-formed spelling of an undefined severity gets no suggestion (``sev4`` must not become ``sev3``).
    """
    if normalise_severity(text) is not None:
        return None
    numbers = {f"sev{int(d)}" for d in _DIGITS.findall(text)}
    hits = [name for name in valid if name in numbers]
    return hits[0] if len(hits) == 1 else None


def normalise_service(text: str) -> str:
    """Lower-case ``text`` and strip surrounding whitespace and ``#`` (``" #Checkout "`` → ``"checkout"``)."""
    return text.strip().strip("#").strip().lower()


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent transpositions."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, start=1):
            cost = 0 if ca == cb else 1
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], previous2[j - 2] + 1)
        previous2, previous = previous, row
    return previous[len(b)]


def _allowed_distance(name: str) -> int:
    if len(name) <= 4:
        return 1
    return 2 if len(name) <= 8 else 3


def closest(given: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``given``, or ``None`` when nothing is close enough to be a plausible typo.

    Close means a small edit distance (1 for names up to 4 characters, 2 up to 8, 3 beyond), else ``given`` is a
    prefix (3+ characters) of exactly one name, else a high ``difflib`` similarity ratio.
    """
    names = list(valid)
    needle = given.strip().lower()
    if not needle or not names:
        return None
    scored = []
    for name in names:
        distance = edit_distance(needle, name.lower())
        if distance <= _allowed_distance(name):
            ratio = difflib.SequenceMatcher(None, needle, name.lower()).ratio()
            scored.append((distance, -ratio, name))
    if scored:
        return min(scored)[2]
    prefixed = [name for name in names if len(needle) >= 3 and name.lower().startswith(needle)]
    if len(prefixed) == 1:
        return prefixed[0]
    lowered = {name.lower(): name for name in names}
    matches = difflib.get_close_matches(needle, list(lowered), n=1, cutoff=0.8)
    return lowered[matches[0]] if matches else None
