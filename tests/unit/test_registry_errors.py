"""Registry start-up errors: duplicate names name both places, import failures carry their error and line."""

from __future__ import annotations

import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from chatops import registry as registry_module
from chatops.errors import ConfigError
from chatops.registry import Registry
from chatops.spec import command

MODULE = """
from chatops import Arg, Context, command


@command("{name}", summary="s", examples=["{name}"])
async def handler(ctx: Context) -> None:
    return None
"""


def write(directory: Path, filename: str, body: str) -> Path:
    path = directory / filename
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def problems(directory: Path, **kwargs: bool) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        Registry.discover(directory, use_entry_points=kwargs.get("entry_points", False))
    return caught.value.problems


def test_duplicate_names_across_files_name_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.py", MODULE.format(name="/restart-consumer"))
    write(tmp_path, "b.py", MODULE.format(name="/restart-consumer"))
    [problem] = problems(tmp_path)
    assert problem.startswith("command /restart-consumer is defined twice: ")
    assert f"{tmp_path / 'a.py'}:5" in problem and f"{tmp_path / 'b.py'}:5" in problem


def test_import_failure_fails_start_up_with_its_error_and_line(tmp_path: Path) -> None:
    write(tmp_path, "ok.py", MODULE.format(name="/ok"))
    write(tmp_path, "broken.py", "import os\n\nraise RuntimeError('no kubeconfig')\n")
    write(tmp_path, "syntax.py", "def broken(:\n")
    found = problems(tmp_path)
    assert f"{tmp_path / 'broken.py'}: failed to import: RuntimeError: no kubeconfig (line 3)" in found
    [syntax] = [p for p in found if p.startswith(f"{tmp_path / 'syntax.py'}: failed to import: SyntaxError")]
    assert syntax.endswith("(line 1)")


def test_bad_declaration_is_an_import_failure(tmp_path: Path) -> None:
    write(tmp_path, "bad.py", MODULE.replace('examples=["{name}"]', 'args=[Arg("x", kind="number")]').format(name="/x"))
    [problem] = problems(tmp_path)
    assert "ValueError: argument 'x': unknown kind 'number'" in problem
    assert problem.endswith("(line 5)"), "the module's own line, not the library frame that raised"


def test_missing_directory(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope") == [f"CHATOPS_COMMANDS_DIR {tmp_path / 'nope'} is not a directory"]


def test_underscore_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "_helpers.py", "raise RuntimeError('not a command module')\n")
    write(tmp_path, "ok.py", MODULE.format(name="/ok"))
    assert [s.name for s in Registry.discover(tmp_path, use_entry_points=False)] == ["/ok"]


def test_entry_point_duplicate_and_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "ok.py", MODULE.format(name="/ok"))
    pack = tmp_path / "pack"
    pack.mkdir()
    write(pack, "chatops_test_pack.py", MODULE.format(name="/ok"))
    monkeypatch.syspath_prepend(str(pack))
    points = [
        EntryPoint("pack", "chatops_test_pack", "chatops.commands"),
        EntryPoint("missing", "chatops_no_such_pack", "chatops.commands"),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: points)
    found = problems(tmp_path, entry_points=True)
    assert any("command /ok is defined twice" in p and "entry point pack (chatops_test_pack)" in p for p in found)
    assert any(p.startswith("entry point missing (chatops_no_such_pack): failed to import") for p in found)


@pytest.mark.parametrize("name", ["restart", "/a b c", ""])
def test_command_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="command name"):
        command(name, summary="s")


def test_resolve_prefers_the_subcommand(tmp_path: Path) -> None:
    write(tmp_path, "a.py", MODULE.format(name="/x"))
    write(tmp_path, "b.py", MODULE.format(name="/x sub"))
    registry = Registry.discover(tmp_path, use_entry_points=False)
    spec, rest = registry.resolve("/x", "SUB  one two")
    assert spec is not None and spec.name == "/x sub" and rest == "one two"
    spec, rest = registry.resolve("/x", "other words")
    assert spec is not None and spec.name == "/x" and rest == "other words"
