"""Tokenise and parse a command line against a command's declared arguments.

Slack clients send typographic quotes (“ ” ‘ ’); they are normalised before tokenising so quoting works as typed.
Positional values, ``key=value`` and ``--flag`` forms are accepted. Values are coerced by the argument's kind
(see :class:`~chatops.spec.Arg`): whole numbers, durations (``30m``, ``1h30m``), timestamps (``02:47`` UTC or ISO
8601), choices, Slack user mentions (``<@U123|name>``), and severities and services resolved against the policy
in force, so a typo gets a did-you-mean instead of a silent failure. Every refusal is an :class:`ArgError` whose
message carries the usage line and an example.

An optional positional argument gives way to the next one when a token is not a valid value for it but is one for
the next, and that next one has a strict shape (a whole number, a duration or a time): ``/dashboard 1h`` (arguments
``[service] [range]``) gives ``range=1h`` and leaves the service to the war room, while ``/dashboard chekout``
still gets the service's did-you-mean. Only when there is a spare slot, so ``/dashboard checkout 1h`` is as typed.

A ``rest`` argument takes the remainder of the line *as typed* (quotes and spacing kept, so PromQL survives, and an
apostrophe in free text — "we can't reproduce" — is not an unbalanced quote), except trailing ``key=value`` /
``--flag`` tokens naming other declared arguments: ``/promql rate(x[5m]) range=1h`` gives ``expr="rate(x[5m])"``
and ``range="1h"``.
"""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chatops.errors import ArgError, UserError

if TYPE_CHECKING:
    from chatops.policy.models import Policy
    from chatops.spec import Arg, CommandSpec

__all__ = [
    "normalise_quotes",
    "parse_args",
    "parse_duration",
    "parse_timestamp",
    "parse_user",
    "tokenise",
]

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'"})
_DURATION = re.compile(r"(?:(\d{1,6})([smhdw]))+")
_DURATION_PART = re.compile(r"(\d{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_DURATION = timedelta(days=400)
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")
_MENTION = re.compile(r"<@([UW][A-Z0-9]{2,})(?:\|[^>]*)?>")
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,}")
_WHITESPACE = " \t\r\n\f\v"
_SHAPED = ("int", "duration", "timestamp")
"""Kinds whose values are recognisable on sight: an optional argument before one may give way to it."""


def normalise_quotes(text: str) -> str:
    """Replace typographic quotes with ASCII ones."""
    return text.translate(_QUOTES)


def tokenise(text: str) -> list[str]:
    """Split a command line like a shell would, after fixing smart quotes."""
    try:
        return shlex.split(normalise_quotes(text))
    except ValueError as exc:  # unbalanced quotes
        raise ArgError(f"could not read the arguments: {exc}") from exc


def _spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each raw token of ``text`` (already normalised), aligned one to one with :func:`tokenise`.

    With whitespace splitting, shlex yields exactly one token per maximal run of characters that is not unquoted
    whitespace, so tracking quotes and backslashes is enough to find where each token sits in the raw text.
    """
    spans: list[tuple[int, int]] = []
    quote = ""
    start = -1
    index = 0
    while index < len(text):
        char = text[index]
        if start < 0 and char not in _WHITESPACE:
            start = index
        if quote:
            if char == quote:
                quote = ""
            elif char == "\\" and quote == '"':
                index += 1
        elif char in "\"'":
            quote = char
        elif char == "\\":
            index += 1
        elif char in _WHITESPACE and start >= 0:
            spans.append((start, index))
            start = -1
        index += 1
    if start >= 0:
        spans.append((start, len(text)))
    return spans


def parse_duration(raw: str) -> timedelta:
    """``"30m"`` → 30 minutes; ``"1h30m"``, ``"90s"``, ``"2d"``, ``"1w"`` work too. Raises ValueError."""
    text = raw.strip().lower()
    if not _DURATION.fullmatch(text):
        raise ValueError(raw)
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    value = timedelta(seconds=seconds)
    if not timedelta(0) < value <= _MAX_DURATION:
        raise ValueError(raw)
    return value


def parse_timestamp(raw: str, now: datetime) -> datetime:
    """``"02:47"`` → the latest 02:47 UTC not after ``now``; ISO 8601 (naive means UTC) → aware UTC. ValueError."""
    text = raw.strip()
    clock = _CLOCK.fullmatch(text)
    if clock:
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        today = now.astimezone(UTC).replace(hour=hour, minute=minute, second=second, microsecond=0)
        return today if today <= now else today - timedelta(days=1)
    if not text[:4].isdigit():  # fromisoformat also takes forms nobody types in chat (e.g. week dates); keep it plain
        raise ValueError(raw)
    value = datetime.fromisoformat(text.upper().replace(" ", "T", 1))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_user(raw: str) -> str:
    """``"<@U123|aditi>"``, ``"<@U123>"`` or ``"U123"`` → ``"U123"``. Raises ValueError otherwise."""
    text = raw.strip()
    match = _MENTION.fullmatch(text)
    if match:
        return match[1]
    if _USER_ID.fullmatch(text):
        return text
    raise ValueError(raw)


def _usage_error(spec: CommandSpec, message: str) -> ArgError:
    example = f"\nExample: `{spec.examples[0]}`" if spec.examples else ""
    return ArgError(f"{message}\nUsage: `{spec.usage}`{example}")


_KIND_HINTS = {
    "int": "a whole number",
    "duration": "a duration like 30m, 1h or 1h30m (s, m, h, d, w; at most 400d)",
    "timestamp": "a time like 02:47 (UTC) or 2026-04-22T02:47Z",
    "user": "a person: type @ and pick them from the list, so Slack sends their id",
}


def _coerce(spec: CommandSpec, arg: Arg, raw: str, policy: Policy, now: datetime) -> Any:
    try:
        if arg.kind == "severity":
            return policy.severity(raw)
        if arg.kind == "service":
            return policy.service(raw)
        if arg.kind == "int":
            return int(raw)
        if arg.kind == "duration":
            return parse_duration(raw)
        if arg.kind == "timestamp":
            return parse_timestamp(raw, now)
        if arg.kind == "user":
            return parse_user(raw)
        if arg.kind == "choice" and raw.lower() not in arg.choices:
            raise UserError(f"{arg.name} must be one of {', '.join(arg.choices)}, got '{raw}'")
    except (ValueError, OverflowError) as exc:
        hint = _KIND_HINTS.get(arg.kind, "a valid value")
        raise _usage_error(spec, f"{arg.name} must be {hint}, got '{raw}'") from exc
    except UserError as exc:
        raise _usage_error(spec, str(exc)) from exc
    return raw.lower() if arg.kind == "choice" else raw


def _accepts(spec: CommandSpec, arg: Arg, raw: str, policy: Policy, now: datetime) -> bool:
    try:
        _coerce(spec, arg, raw, policy, now)
    except UserError:
        return False
    return True


def _gives_way(spec: CommandSpec, arg: Arg, after: Arg, raw: str, policy: Policy, now: datetime) -> bool:
    """Whether ``raw`` should skip optional ``arg`` for ``after`` (see the module docstring)."""
    if arg.required or arg.kind in ("rest", "string") or after.kind not in _SHAPED:
        return False
    return not _accepts(spec, arg, raw, policy, now) and _accepts(spec, after, raw, policy, now)


def _named(spec: CommandSpec, token: str) -> Arg | None:
    """The declared argument a ``key=value`` or ``--flag`` token names, if it does."""
    by_name = {a.name: a for a in spec.args}
    if token.startswith("--") and len(token) > 2:
        flag = by_name.get(token[2:].replace("-", "_"))
        return flag if flag is not None and flag.kind == "flag" else None
    key, has_value, _ = token.partition("=")
    arg = by_name.get(key)
    return arg if has_value and arg is not None and arg.kind not in ("flag", "rest") else None


def _rest_text(text: str, spans: list[tuple[int, int]], tokens: list[str], quoted: bool) -> str:
    """The raw text covered by ``spans``; a remainder that is one quoted string loses its quotes."""
    if quoted and len(tokens) == 1 and text[spans[0][0]] in "\"'":
        return tokens[0]
    return text[spans[0][0] : spans[-1][1]]


def parse_args(spec: CommandSpec, text: str, policy: Policy, *, now: datetime | None = None) -> dict[str, Any]:
    """Parse ``text`` (the part after the command name) into a dict of coerced values keyed by arg name.

    ``now`` anchors clock-only timestamps (default: the current UTC time).
    """
    moment = now or datetime.now(UTC)
    normalised = normalise_quotes(text)
    quoted = True
    try:
        tokens = tokenise(text)
        spans = _spans(normalised)
    except ArgError:
        if not any(a.kind == "rest" for a in spec.args):
            raise
        # "we can't reproduce": an apostrophe in free text is not a quote; split on whitespace alone.
        quoted = False
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", normalised)]
        tokens = [normalised[a:b] for a, b in spans]
    if len(spans) != len(tokens):  # cannot happen for what shlex accepts; fall back to joining tokens
        spans = []
    values: dict[str, Any] = {a.name: False for a in spec.args if a.kind == "flag"}
    positional: list[str] = []
    remainder = False  # whether the last positional is a rest argument's remainder (slots then fixed as typed)

    def take_named(token: str) -> None:
        if token.startswith("--") and len(token) > 2:
            flag = _named(spec, token)
            if flag is None:
                raise _usage_error(spec, f"unknown option '{token}'")
            values[flag.name] = True
            return
        key, _, raw = token.partition("=")
        values[key] = _coerce(spec, next(a for a in spec.args if a.name == key), raw, policy, moment)

    for index, token in enumerate(tokens):
        if (token.startswith("--") and len(token) > 2) or _named(spec, token) is not None:
            take_named(token)
            continue
        free = [a for a in spec.args if a.kind != "flag" and a.name not in values]
        slot = len(positional)
        if slot < len(free) and free[slot].kind == "rest":
            end = len(tokens)
            while end > index + 1 and _named(spec, tokens[end - 1]) is not None:
                end -= 1
            for trailing in tokens[end:]:
                take_named(trailing)
            kept = tokens[index:end]
            positional.append(_rest_text(normalised, spans[index:end], kept, quoted) if spans else " ".join(kept))
            remainder = True
            break
        positional.append(token)
    free = [a for a in spec.args if a.kind != "flag" and a.name not in values]
    if len(positional) > len(free):
        raise _usage_error(spec, f"unexpected '{' '.join(positional[len(free) :])}'")
    spare = 0 if remainder else len(free) - len(positional)
    slot = 0
    for raw in positional:
        if spare and _gives_way(spec, free[slot], free[slot + 1], raw, policy, moment):
            slot, spare = slot + 1, spare - 1
        arg = free[slot]
        values[arg.name] = raw if arg.kind == "rest" else _coerce(spec, arg, raw, policy, moment)
        slot += 1
    missing = [a.name for a in spec.args if a.kind != "flag" and a.required and a.name not in values]
    if missing:
        raise _usage_error(spec, f"missing {', '.join(missing)}")
    return values
