"""``chatops.registry``: discovering command modules from a folder and resolving slash commands."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from chatops.context import Context
from chatops.errors import ConfigError
from chatops.registry import Registry
from chatops.spec import CommandSpec

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def module(*commands: str) -> str:
    """Source of a command module defining ``commands`` (each ``"/slash sub"``)."""
    lines = ["from chatops import Arg, command", ""]
    for n, name in enumerate(commands):
        lines += [
            "",
            f"@command({name!r}, summary='{name} does things', args=[Arg('what', required=False)])",
            f"async def handler_{n}(ctx):",
            "    return None",
        ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def commands_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "commands"
    folder.mkdir()
    return folder


def discover(folder: Path) -> Registry:
    return Registry.discover(folder, use_entry_points=False)


def test_discovers_every_command_in_the_folder(commands_dir: Path) -> None:
    write(commands_dir, "incident.py", module("/incident declare", "/incident resolve"))
    write(commands_dir, "promql.py", module("/promql"))
    registry = discover(commands_dir)
    assert [s.name for s in registry] == ["/incident declare", "/incident resolve", "/promql"]
    assert len(registry) == 3
    assert registry.slash_commands() == ["/incident", "/promql"]
    assert [s.name for s in registry.subcommands("/incident")] == ["/incident declare", "/incident resolve"]
    spec = registry.get("/promql")
    assert spec is not None and spec.summary == "/promql does things"


def test_the_shipped_commands_folder_loads(tmp_path: Path) -> None:
    registry = discover(REPO / "commands")
    assert registry.get("/incident declare") is not None


def test_files_starting_with_an_underscore_are_skipped(commands_dir: Path) -> None:
    write(commands_dir, "_helpers.py", "raise RuntimeError('a helper must never be imported as a command module')\n")
    write(commands_dir, "_private.py", module("/hidden"))
    write(commands_dir, "note.py", module("/incident note"))
    registry = discover(commands_dir)
    assert [s.name for s in registry] == ["/incident note"]


def test_non_python_files_are_ignored(commands_dir: Path) -> None:
    write(commands_dir, "README.md", "# not code\n")
    write(commands_dir, "note.py", module("/incident note"))
    assert [s.name for s in discover(commands_dir)] == ["/incident note"]


def test_a_duplicate_name_fails_naming_both_places(commands_dir: Path) -> None:
    first = write(commands_dir, "alpha.py", module("/incident declare"))
    second = write(commands_dir, "beta.py", module("/incident declare"))
    with pytest.raises(ConfigError) as exc:
        discover(commands_dir)
    [problem] = exc.value.problems
    assert "command /incident declare is defined twice" in problem
    assert f"{first}:4" in problem  # the line of the @command decorator
    assert f"{second}:4" in problem


def test_a_duplicate_inside_one_module_is_reported(commands_dir: Path) -> None:
    path = write(commands_dir, "twice.py", module("/x", "/x"))
    with pytest.raises(ConfigError) as exc:
        discover(commands_dir)
    assert exc.value.problems == [f"command /x is defined twice: in {path}:4 and in {path}:8"]


def test_a_handler_imported_from_another_module_is_not_a_duplicate(commands_dir: Path) -> None:
    write(commands_dir, "alpha.py", module("/alpha"))
    write(commands_dir, "beta.py", "from chatops_commands.alpha import handler_0  # noqa: F401\n" + module("/beta"))
    assert [s.name for s in discover(commands_dir)] == ["/alpha", "/beta"]


def test_a_module_that_fails_to_import_fails_start_up_with_its_error(commands_dir: Path) -> None:
    broken = write(
        commands_dir,
        "broken.py",
        """
        x = 1

        raise RuntimeError("PROMETHEUS_URL is not reachable")
        """,
    )
    write(commands_dir, "fine.py", module("/fine"))
    with pytest.raises(ConfigError) as exc:
        discover(commands_dir)
    [problem] = exc.value.problems
    assert problem == f"{broken}: failed to import: RuntimeError: PROMETHEUS_URL is not reachable (line 3)"


def test_a_missing_dependency_names_the_module_and_line(commands_dir: Path) -> None:
    broken = write(commands_dir, "needs.py", "import os\nimport chatops_no_such_module_zz\n")
    with pytest.raises(ConfigError) as exc:
        discover(commands_dir)
    [problem] = exc.value.problems
    assert problem.startswith(f"{broken}: failed to import: ModuleNotFoundError:")
    assert "chatops_no_such_module_zz" in problem and problem.endswith("(line 2)")


def test_every_problem_is_reported_at_once(commands_dir: Path) -> None:
    write(commands_dir, "a_broken.py", "raise ValueError('one')\n")
    write(commands_dir, "b.py", module("/dup"))
    write(commands_dir, "c.py", module("/dup"))
    write(commands_dir, "d_broken.py", "raise KeyError('two')\n")
    with pytest.raises(ConfigError) as exc:
        discover(commands_dir)
    problems = exc.value.problems
    assert len(problems) == 3
    assert "ValueError: one" in problems[0] and "defined twice" in problems[1] and "KeyError" in problems[2]


def test_a_syntax_error_names_the_module_line(commands_dir: Path) -> None:
    broken = write(commands_dir, "syntax.py", "x = 1\ndef f(:\n    pass\n")
    with pytest.raises(ConfigError) as exc:
        discover(commands_dir)
    [problem] = exc.value.problems
    assert problem.startswith(f"{broken}: failed to import: SyntaxError:")
    assert problem.endswith("(line 2)")


def test_a_commands_dir_that_is_not_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        discover(tmp_path / "nope")
    assert exc.value.problems == [f"CHATOPS_COMMANDS_DIR {tmp_path / 'nope'} is not a directory"]


# ------------------------------------------------------------------------------------------------- resolve


async def _handler(ctx: Context) -> None:  # pragma: no cover - never run
    return None


def make(name: str) -> CommandSpec:
    return CommandSpec(name=name, summary=name, handler=_handler, origin=f"tests.{name}")


@pytest.fixture
def registry() -> Registry:
    return Registry([make("/incident"), make("/incident declare"), make("/incident note"), make("/promql")])


def test_a_subcommand_named_by_the_first_word_wins(registry: Registry) -> None:
    spec, rest = registry.resolve("/incident", "declare sev2 checkout")
    assert spec is not None and spec.name == "/incident declare"
    assert rest == "sev2 checkout"


def test_the_subcommand_word_is_case_insensitive_and_whitespace_tolerant(registry: Registry) -> None:
    spec, rest = registry.resolve("/incident", "   DECLARE   sev2 checkout  ")
    assert spec is not None and spec.name == "/incident declare"
    assert rest == "sev2 checkout"


def test_a_first_word_that_is_no_subcommand_goes_to_the_bare_command(registry: Registry) -> None:
    spec, rest = registry.resolve("/incident", "  status of checkout ")
    assert spec is not None and spec.name == "/incident"
    assert rest == "status of checkout"


def test_a_bare_slash_command_gets_the_whole_text(registry: Registry) -> None:
    spec, rest = registry.resolve("/promql", 'rate(http_requests_total{code="500"}[5m])')
    assert spec is not None and spec.name == "/promql"
    assert rest == 'rate(http_requests_total{code="500"}[5m])'


def test_an_empty_text_resolves_to_the_bare_command(registry: Registry) -> None:
    spec, rest = registry.resolve("/incident", "")
    assert spec is not None and spec.name == "/incident" and rest == ""


def test_no_bare_command_and_no_subcommand_resolves_to_nothing() -> None:
    registry = Registry([make("/incident declare")])
    assert registry.resolve("/incident", "bogus words") == (None, "bogus words")
    assert registry.resolve("/unknown", "declare") == (None, "declare")


def test_registry_built_from_specs_refuses_duplicates() -> None:
    with pytest.raises(ConfigError) as exc:
        Registry([make("/promql"), make("/promql")])
    assert exc.value.problems == ["command /promql is defined twice: in tests./promql and in tests./promql"]
