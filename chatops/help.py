"""Help text generated from command specs (never written by hand, so it cannot drift).

``/incident help`` lists every command under ``/incident`` with its one-line summary; ``/incident declare help``
(and ``/runbook help`` for a command without subcommands) shows one command's usage, arguments and examples.
"""

from __future__ import annotations

from chatops.registry import Registry
from chatops.spec import CommandSpec

__all__ = ["render_command_help", "render_help"]


def render_command_help(spec: CommandSpec) -> str:
    """One command: summary, usage, what each argument takes, examples."""
    lines = [f"*{spec.name}* — {spec.summary}", f"Usage: `{spec.usage}`"]
    lines += [f"• `{a.name}`: {a.help}" for a in spec.args if a.help]
    lines += [f"Example: `{e}`" for e in spec.examples]
    return "\n".join(lines)


def render_help(registry: Registry, slash: str, spec: CommandSpec | None = None, *, unknown: str | None = None) -> str:
    """Usage and examples of one command, or the list of every command under ``slash`` with its summary.

    ``unknown`` is a subcommand word that matched nothing; the list then starts by saying so.
    """
    if spec is not None:
        return render_command_help(spec)
    specs = registry.subcommands(slash)
    if not specs:
        known = ", ".join(registry.slash_commands()) or "none"
        return f"`{slash}` is not a chatops command here. Known commands: {known}."
    if len(specs) == 1 and specs[0].subcommand is None and unknown is None:
        return render_command_help(specs[0])
    lines = [f"`{slash} {unknown}` is not a command." if unknown else ""]
    lines += [f"*{slash}* commands:"] + [f"• `{s.usage}` — {s.summary}" for s in specs]
    lines.append(f"Type `{slash} <command> help` for details and examples.")
    return "\n".join(line for line in lines if line)
