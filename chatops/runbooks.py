"""Runbooks: ``runbooks/*.md`` with YAML front matter, rendered as Block Kit for ``/runbook``.

A runbook file::

    ---
    title: Restart the checkout order consumer
    service: checkout            # a service from policy/services.yaml
    tags: [kafka, consumer-lag]  # optional
    ---
    Some context in Markdown.

    ## Steps
    1. Look at the lag: `/promql sum(kafka_consumergroup_lag{group="checkout-orders"})`
    2. Restart it: `kubectl -n checkout rollout restart deployment/checkout-orders-consumer`

Its name is the file name without ``.md``. A numbered step whose inline code starts with a registered slash
command gets a *Run* button that runs that command line through the dispatcher (so permissions and confirmation
apply); other code (``kubectl …``) is shown as is. Problems are reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

__all__ = ["Part", "Runbook", "RunbookSet", "load_runbooks", "parse_runbook", "render_list", "render_runbook"]

RUN_ACTION = "chatops.run"
MAX_BLOCKS = 50
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_STEP = re.compile(r"^\s{0,3}(\d{1,3})[.)]\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_LINK = re.compile(r"\[([^\]\n]+)\]\((\S+?)\)")
_FIELDS = ("title", "service", "tags")


@dataclass(frozen=True)
class Part:
    """One piece of a runbook body: a ``heading``, a ``text`` paragraph or a numbered ``step``."""

    kind: str
    text: str
    number: int = 0
    commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Runbook:
    """A parsed runbook."""

    name: str
    title: str
    service: str
    tags: tuple[str, ...]
    parts: tuple[Part, ...]
    path: Path

    @property
    def steps(self) -> list[Part]:
        """The numbered steps."""
        return [p for p in self.parts if p.kind == "step"]


@dataclass(frozen=True)
class RunbookSet:
    """Every runbook that parsed, by name, and one line per problem with the others."""

    runbooks: Mapping[str, Runbook] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def for_service(self, service: str) -> list[Runbook]:
        """Runbooks of one service, by name."""
        return [r for r in self.runbooks.values() if r.service == service]

    def find(self, name: str, service: str | None = None) -> Runbook | None:
        """``name`` exactly, else ``<service>-<name>`` for the channel's service."""
        key = name.strip().lower().removesuffix(".md")
        found = self.runbooks.get(key)
        if found is None and service is not None:
            found = self.runbooks.get(f"{service}-{key}")
        return found


def _mrkdwn(text: str) -> str:
    """The Markdown people write in runbooks → Slack mrkdwn (bold, links, bullets)."""
    text = _LINK.sub(lambda m: f"<{m[2]}|{m[1]}>", text)
    text = _BOLD.sub(lambda m: f"*{m[1] or m[2]}*", text)
    return "\n".join(_BULLET.sub("• ", line) for line in text.splitlines())


def _front_matter(text: str, where: str) -> tuple[dict[str, Any], str, list[str]]:
    """Split ``---`` front matter from the body: ``(fields, body, problems)``."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text, [f"{where}:1: a runbook starts with front matter: a '---' line, title/service, '---'"]
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        return {}, text, [f"{where}:1: the front matter is not closed with a '---' line"]
    try:
        data = YAML(typ="safe").load("\n".join(lines[1:end]))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else 1
        return {}, "", [f"{where}:{line}: front matter is not valid YAML: {exc.problem or exc.context}"]
    except YAMLError as exc:
        return {}, "", [f"{where}:1: front matter is not valid YAML: {exc}"]
    if not isinstance(data, dict):
        return {}, "", [f"{where}:2: front matter must be a mapping of title, service and tags"]
    line_of = {k: next((i + 1 for i, ln in enumerate(lines[:end]) if ln.startswith(f"{k}:")), 1) for k in data}
    known = ", ".join(_FIELDS)
    problems = [f"{where}:{line_of[k]}: unknown front matter key {k!r} (use {known})" for k in data if k not in _FIELDS]
    for key in ("title", "service"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            problems.append(f"{where}:{line_of.get(key, 1)}: front matter needs {key}: <text>")
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append(f"{where}:{line_of.get('tags', 1)}: tags must be a list of words, e.g. [kafka, lag]")
    return data, "\n".join(lines[end + 1 :]), problems


def _parts(body: str, slash_commands: Collection[str] | None) -> list[Part]:
    parts: list[Part] = []
    paragraph: list[str] = []
    in_fence = False

    def flush() -> None:
        if paragraph and "\n".join(paragraph).strip():
            parts.append(Part("text", _mrkdwn("\n".join(paragraph).strip())))
        paragraph.clear()

    for line in body.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
            paragraph.append(line)
            continue
        step = None if in_fence else _STEP.match(line)
        heading = None if in_fence else _HEADING.match(line)
        if heading:
            flush()
            parts.append(Part("heading", heading[1]))
        elif step:
            flush()
            commands = tuple(
                code.strip()
                for code in _CODE.findall(step[2])
                if code.startswith("/") and (slash_commands is None or code.split()[0] in slash_commands)
            )
            parts.append(Part("step", _mrkdwn(step[2]), int(step[1]), commands))
        elif parts and parts[-1].kind == "step" and line.startswith(("   ", "\t")) and line.strip() and not paragraph:
            last = parts.pop()
            parts.append(Part("step", f"{last.text}\n{_mrkdwn(line.strip())}", last.number, last.commands))
        else:
            paragraph.append(line)
    flush()
    return parts


def parse_runbook(
    path: Path,
    *,
    services: Collection[str] | None = None,
    slash_commands: Collection[str] | None = None,
    text: str | None = None,
) -> tuple[Runbook | None, list[str]]:
    """Parse one file: ``(runbook, [])`` or ``(None, problems)``.

    ``services`` (the policy's) and ``slash_commands`` (the registry's) are checked when given; only steps naming
    one of ``slash_commands`` get a button.
    """
    where = f"runbooks/{path.name}"
    if not _NAME.fullmatch(path.stem):
        return None, [f"{where}: runbook file names are lower-case letters, digits, - and _ (they become its name)"]
    try:
        source = text if text is not None else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [f"{where}: cannot read: {exc}"]
    data, body, problems = _front_matter(source, where)
    service = str(data.get("service", "")).strip()
    if services is not None and service and service not in services:
        problems.append(f"{where}: service {service!r} is not in policy/services.yaml ({', '.join(services)})")
    if problems:
        return None, problems
    runbook = Runbook(
        name=path.stem,
        title=str(data["title"]).strip(),
        service=service,
        tags=tuple(str(t) for t in data.get("tags", [])),
        parts=tuple(_parts(body, slash_commands)),
        path=path,
    )
    return runbook, []


def load_runbooks(
    directory: Path, *, services: Collection[str] | None = None, slash_commands: Collection[str] | None = None
) -> RunbookSet:
    """Every ``*.md`` in ``directory`` (blocking I/O: call it off the event loop)."""
    runbooks: dict[str, Runbook] = {}
    problems: list[str] = []
    paths = sorted(directory.glob("*.md")) if directory.is_dir() else []
    for path in paths:
        runbook, found = parse_runbook(path, services=services, slash_commands=slash_commands)
        problems += found
        if runbook is not None:
            runbooks[runbook.name] = runbook
    return RunbookSet(runbooks, tuple(problems))


def _section(text: str, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def _run_button(number: int, command: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": f"{RUN_ACTION}.{number}",
        "text": {"type": "plain_text", "text": f"Run {command.split(maxsplit=1)[0]}"[:75]},
        "value": command[:2000],
    }


def render_runbook(runbook: Runbook) -> list[dict[str, Any]]:
    """Block Kit for one runbook: title, service and tags, then its text and steps (with Run buttons)."""
    tags = f" · tags: {', '.join(runbook.tags)}" if runbook.tags else ""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": runbook.title[:150]}},
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"runbook `{runbook.name}` · service `{runbook.service}`{tags}"}],
        },
    ]
    body: list[dict[str, Any]] = []
    for part in runbook.parts:
        if part.kind == "heading":
            body.append(_section(f"*{part.text}*"))
        elif part.kind == "text":
            body.append(_section(part.text))
        else:
            text = f"*{part.number}.* {part.text}"
            body.append(_section(text, _run_button(part.number, part.commands[0]) if part.commands else None))
            more = part.commands[1:5]  # a step naming several commands gets a row with the others
            if more:
                buttons = [_run_button(part.number * 100 + i, command) for i, command in enumerate(more, 1)]
                body.append({"type": "actions", "elements": buttons})
    room = MAX_BLOCKS - len(blocks)
    if len(body) > room:
        left = len(body) - room + 1
        body = [*body[: room - 1], _section(f"_…{left} more blocks: see `{runbook.path.name}`_")]
    return blocks + body


def render_list(runbooks: Iterable[Runbook], heading: str) -> list[dict[str, Any]]:
    """A list of runbooks, each with an *Open* button (``/runbook <name>``)."""
    blocks: list[dict[str, Any]] = [_section(heading)]
    for runbook in list(runbooks)[: MAX_BLOCKS - 1]:
        steps = len(runbook.steps)
        text = f"*{runbook.title}*\n`/runbook {runbook.name}` · {runbook.service} · {steps} steps"
        button = {
            "type": "button",
            "action_id": f"{RUN_ACTION}.open.{runbook.name}"[:255],
            "text": {"type": "plain_text", "text": "Open"},
            "value": f"/runbook {runbook.name}",
        }
        blocks.append(_section(text, button))
    return blocks
