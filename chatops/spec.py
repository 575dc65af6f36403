"""Command specs: what a command module declares about each command.

The :func:`command` decorator only attaches a frozen :class:`CommandSpec` to the function; nothing is registered
at import time. :mod:`chatops.registry` collects the specs.

A command name is the slash command, optionally followed by a subcommand word: ``"/incident declare"``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from chatops.context import Context

__all__ = ["ARG_KINDS", "SPEC_ATTRIBUTE", "Arg", "ArgKind", "CommandSpec", "Handler", "command"]

ArgKind = Literal["string", "int", "duration", "timestamp", "choice", "severity", "service", "user", "flag", "rest"]
ARG_KINDS: tuple[str, ...] = (
    "string",
    "int",
    "duration",
    "timestamp",
    "choice",
    "severity",
    "service",
    "user",
    "flag",
    "rest",
)
Handler = Callable[["Context"], Awaitable[None]]
F = TypeVar("F", bound=Callable[..., Awaitable[None]])
SPEC_ATTRIBUTE = "__chatops_spec__"


@dataclass(frozen=True)
class Arg:
    """One declared argument.

    ``kind`` drives parsing and coercion (:mod:`chatops.args`): ``int``; ``duration`` (``30m``, ``1h30m``, ``90s``
    → :class:`~datetime.timedelta`); ``timestamp`` (``02:47`` — the latest such UTC time not in the future — or
    ISO 8601 → aware :class:`~datetime.datetime`); ``choice`` (one of ``choices``, case-insensitive); ``user`` (a
    Slack mention ``<@U123|name>`` or a bare ``U123`` → the user id); ``severity`` and ``service`` (resolved
    against the policy in force, with did-you-mean suggestions); ``flag`` (a ``--name`` switch); ``rest`` (the
    remainder of the line, as typed); ``string`` (one word, or a quoted phrase).
    """

    name: str
    kind: ArgKind = "string"
    help: str = ""
    required: bool = True
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ARG_KINDS:
            raise ValueError(f"argument {self.name!r}: unknown kind {self.kind!r} (one of {', '.join(ARG_KINDS)})")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"argument {self.name!r}: a choice needs choices=(...)")
        if not self.name.isidentifier():
            raise ValueError(f"argument name {self.name!r} must be a Python identifier")
        object.__setattr__(self, "choices", tuple(str(c).lower() for c in self.choices))

    @property
    def usage(self) -> str:
        """How the argument appears in a usage line."""
        if self.kind == "flag":
            return f"[--{self.name}]"
        label = f"<{self.name}>" if self.required else f"[{self.name}]"
        return label + ("…" if self.kind == "rest" else "")


@dataclass(frozen=True)
class CommandSpec:
    """Everything the dispatcher, help and the Slack manifest need to know about a command."""

    name: str
    summary: str
    handler: Handler
    args: tuple[Arg, ...] = ()
    requires: str = "incident.read"
    side_effects: bool = False
    examples: tuple[str, ...] = ()
    timeout: float = 60.0
    origin: str = ""

    @property
    def slash(self) -> str:
        """The slash command, e.g. ``/incident``."""
        return self.name.split()[0]

    @property
    def subcommand(self) -> str | None:
        """The subcommand word, e.g. ``declare``, or None for a bare slash command."""
        parts = self.name.split(maxsplit=1)
        return parts[1] if len(parts) > 1 else None

    @property
    def usage(self) -> str:
        """``/incident declare <severity> <service> [--new]``."""
        return " ".join([self.name, *(a.usage for a in self.args)])


def command(
    name: str,
    *,
    summary: str,
    args: Sequence[Arg] = (),
    requires: str = "incident.read",
    side_effects: bool = False,
    examples: Sequence[str] = (),
    timeout: float = 60.0,
) -> Callable[[F], F]:
    """Declare an async function ``handler(ctx)`` as a chat command. Only attaches a spec; registers nothing."""
    if not name.startswith("/") or len(name.split()) > 2:
        raise ValueError(f"command name must be '/cmd' or '/cmd sub', got {name!r}")

    def decorate(func: F) -> F:
        spec = CommandSpec(
            name=name,
            summary=summary,
            handler=func,
            args=tuple(args),
            requires=requires,
            side_effects=side_effects,
            examples=tuple(examples),
            timeout=timeout,
            origin=f"{func.__module__}.{func.__qualname__}",
        )
        setattr(func, SPEC_ATTRIBUTE, spec)
        return func

    return decorate


def spec_of(obj: Any) -> CommandSpec | None:
    """The spec attached to ``obj`` by :func:`command`, if any."""
    spec = getattr(obj, SPEC_ATTRIBUTE, None)
    return spec if isinstance(spec, CommandSpec) else None
