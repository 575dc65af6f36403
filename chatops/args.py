"""Tokenise and parse a command line against a command's declared arguments.

Slack clients send typographic quotes (“ ” ‘ ’); they are normalised before tokenising so quoting works as typed.
Positional values, ``key=value`` and ``--flag`` forms are accepted. Severity and service arguments are resolved
against the policy in force, so a typo gets a did-you-mean instead of a silent failure.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from chatops.errors import ArgError, UserError

if TYPE_CHECKING:
    from chatops.policy.models import Policy
    from chatops.spec import Arg, CommandSpec

__all__ = ["normalise_quotes", "parse_args", "tokenise"]

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'"})


def normalise_quotes(text: str) -> str:
    """Replace typographic quotes with ASCII ones."""
    return text.translate(_QUOTES)


def tokenise(text: str) -> list[str]:
    """Split a command line like a shell would, after fixing smart quotes."""
    try:
        return shlex.split(normalise_quotes(text))
    except ValueError as exc:  # unbalanced quotes
        raise ArgError(f"could not read the arguments: {exc}") from exc


def _usage_error(spec: CommandSpec, message: str) -> ArgError:
    example = f"\nExample: `{spec.examples[0]}`" if spec.examples else ""
    return ArgError(f"{message}\nUsage: `{spec.usage}`{example}")


def _coerce(spec: CommandSpec, arg: Arg, raw: str, policy: Policy) -> Any:
    try:
        if arg.kind == "severity":
            return policy.severity(raw)
        if arg.kind == "service":
            return policy.service(raw)
        if arg.kind == "int":
            return int(raw)
        if arg.kind == "choice" and raw.lower() not in arg.choices:
            raise UserError(f"{arg.name} must be one of {', '.join(arg.choices)}, got '{raw}'")
    except ValueError as exc:
        raise _usage_error(spec, f"{arg.name} must be a whole number, got '{raw}'") from exc
    except UserError as exc:
        raise _usage_error(spec, str(exc)) from exc
    return raw.lower() if arg.kind == "choice" else raw


def parse_args(spec: CommandSpec, text: str, policy: Policy) -> dict[str, Any]:
    """Parse ``text`` (the part after the command name) into a dict of coerced values keyed by arg name."""
    tokens = tokenise(text)
    by_name = {a.name: a for a in spec.args}
    values: dict[str, Any] = {a.name: False for a in spec.args if a.kind == "flag"}
    positional: list[str] = []
    for index, token in enumerate(tokens):
        key, has_value, raw = token.partition("=")
        if token.startswith("--") and len(token) > 2:
            flag = by_name.get(token[2:].replace("-", "_"))
            if flag is None or flag.kind != "flag":
                raise _usage_error(spec, f"unknown option '{token}'")
            values[flag.name] = True
        elif has_value and key in by_name and by_name[key].kind not in ("flag", "rest"):
            values[key] = _coerce(spec, by_name[key], raw, policy)
        else:
            free = [a for a in spec.args if a.kind != "flag" and a.name not in values]
            slot = len(positional)
            if slot < len(free) and free[slot].kind == "rest":
                positional.append(" ".join(tokens[index:]))
                break
            positional.append(token)
    free = [a for a in spec.args if a.kind != "flag" and a.name not in values]
    if len(positional) > len(free):
        raise _usage_error(spec, f"unexpected '{' '.join(positional[len(free) :])}'")
    for arg, raw in zip(free, positional, strict=False):
        values[arg.name] = raw if arg.kind == "rest" else _coerce(spec, arg, raw, policy)
    missing = [a.name for a in spec.args if a.kind != "flag" and a.required and a.name not in values]
    if missing:
        raise _usage_error(spec, f"missing {', '.join(missing)}")
    return values
