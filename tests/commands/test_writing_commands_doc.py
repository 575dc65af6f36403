"""docs/writing-commands.md shows the real files: its worked example cannot drift from what ships and is tested."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "writing-commands.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```python (\S+)\n(.*?)^```$", DOC, flags=re.MULTILINE | re.DOTALL)


def test_the_doc_shows_whole_files() -> None:
    assert [path for path, _ in BLOCKS] == ["commands/note.py", "tests/commands/test_note.py"]


@pytest.mark.parametrize(("path", "body"), BLOCKS, ids=[p for p, _ in BLOCKS])
def test_each_file_in_the_doc_is_the_real_file(path: str, body: str) -> None:
    assert (REPO / path).read_text(encoding="utf-8") == body
