"""Discover command modules and index their specs.

Sources: every ``*.py`` file in the commands folder (``CHATOPS_COMMANDS_DIR``; files starting with ``_`` are
skipped) and every module named by the ``chatops.commands`` entry-point group (external command packs).
A module that fails to import, or two commands with the same name, fail start-up with a message naming the places.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from chatops.errors import ConfigError
from chatops.spec import CommandSpec, spec_of

__all__ = ["Registry"]

ENTRY_POINT_GROUP = "chatops.commands"


def _specs_in(module: ModuleType) -> Iterator[CommandSpec]:
    for value in vars(module).values():
        spec = spec_of(value)
        if spec is not None and spec.origin.startswith(module.__name__ + "."):
            yield spec


def _import_file(path: Path) -> ModuleType:
    name = f"chatops_commands.{path.stem}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def _line_in(path: Path, exc: BaseException) -> int | None:
    """The line of ``path`` an import failure points at: a syntax error's own line, else the module's deepest frame."""
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        return exc.lineno
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if Path(f.filename) == path]
    return (own or frames)[-1].lineno if frames else None


class Registry:
    """All commands by name (``"/incident declare"``)."""

    def __init__(self, specs: Iterable[CommandSpec] = ()) -> None:
        self._specs: dict[str, CommandSpec] = {}
        self._where: dict[str, str] = {}
        problems: list[str] = []
        for spec in specs:
            self._add(spec, spec.origin, problems)
        if problems:
            raise ConfigError(problems)

    def _add(self, spec: CommandSpec, where: str, problems: list[str]) -> None:
        if spec.name in self._specs:
            problems.append(f"command {spec.name} is defined twice: in {self._where[spec.name]} and in {where}")
            return
        self._specs[spec.name] = spec
        self._where[spec.name] = where

    @classmethod
    def discover(cls, commands_dir: Path, *, use_entry_points: bool = True) -> Registry:
        """Import every command module; raise ConfigError listing import failures and duplicate names."""
        registry = cls()
        problems: list[str] = []
        if not commands_dir.is_dir():
            raise ConfigError([f"CHATOPS_COMMANDS_DIR {commands_dir} is not a directory"])
        for path in sorted(commands_dir.glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                module = _import_file(path)
            except Exception as exc:  # any import-time failure must stop start-up, with its cause
                problems.append(f"{path}: failed to import: {type(exc).__name__}: {exc} (line {_line_in(path, exc)})")
                continue
            for spec in _specs_in(module):
                registry._add(spec, f"{path}:{spec.handler.__code__.co_firstlineno}", problems)
        if use_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                try:
                    module = importlib.import_module(ep.value.split(":")[0])
                except Exception as exc:
                    problems.append(f"entry point {ep.name} ({ep.value}): failed to import: {exc}")
                    continue
                for spec in _specs_in(module):
                    registry._add(spec, f"entry point {ep.name} ({module.__name__})", problems)
        if problems:
            raise ConfigError(problems)
        return registry

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> CommandSpec | None:
        """The spec with exactly this name."""
        return self._specs.get(name)

    def slash_commands(self) -> list[str]:
        """Distinct slash commands, e.g. ``["/incident", "/promql"]`` (for the app manifest)."""
        return sorted({s.slash for s in self._specs.values()})

    def subcommands(self, slash: str) -> list[CommandSpec]:
        """Specs under one slash command."""
        return [s for s in self if s.slash == slash]

    def resolve(self, slash: str, text: str) -> tuple[CommandSpec | None, str]:
        """Find the spec for ``slash`` + ``text``: a subcommand named by the first word wins, else the bare command.

        Returns the spec (or None) and the argument text left for the parser.
        """
        first, _, rest = text.strip().partition(" ")
        sub = self._specs.get(f"{slash} {first.lower()}") if first else None
        if sub is not None:
            return sub, rest.strip()
        return self._specs.get(slash), text.strip()
