"""Help text generated from command specs (never written by hand, so it cannot drift)."""

from __future__ import annotations

from chatops.registry import Registry
from chatops.spec import CommandSpec

__all__ = ["render_help"]


def render_help(registry: Registry, slash: str, spec: CommandSpec | None = None) -> str:
    """Usage and examples of one command, or the list of every command under ``slash`` with its summary."""
    if spec is not None:
        lines = [f"*{spec.name}* — {spec.summary}", f"Usage: `{spec.usage}`"]
        lines += [f"• `{a.name}`: {a.help}" for a in spec.args if a.help]
        lines += [f"Example: `{e}`" for e in spec.examples]
        return "\n".join(lines)
    specs = registry.subcommands(slash)
    if not specs:
        known = ", ".join(registry.slash_commands()) or "none"
        return f"`{slash}` is not a chatops command here. Known commands: {known}."
    lines = [f"*{slash}* commands:"] + [f"• `{s.usage}` — {s.summary}" for s in specs]
    lines.append(f"Type `{slash} <command> help` for details and examples.")
    return "\n".join(lines)
