"""Runbooks: front matter, Block Kit rendering with Run buttons, and the shipped runbooks against the registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatops.args import parse_args
from chatops.policy.loader import load_policy
from chatops.registry import Registry
from chatops.runbooks import load_runbooks, parse_runbook, render_list, render_runbook
from chatops.testing import Bot, Reply, buttons_in

REPO = Path(__file__).resolve().parents[2]
POLICY = load_policy(REPO / "policy")
REGISTRY = Registry.discover(REPO / "commands", use_entry_points=False)
SHIPPED = load_runbooks(REPO / "runbooks", services=list(POLICY.services), slash_commands=REGISTRY.slash_commands())
STEPS = [(rb.name, step.number, c) for rb in SHIPPED.runbooks.values() for step in rb.steps for c in step.commands]


def test_shipped_runbooks_parse_and_cover_every_service() -> None:
    assert SHIPPED.problems == ()
    assert {rb.service for rb in SHIPPED.runbooks.values()} == set(POLICY.services)
    assert "checkout-restart-consumer" in SHIPPED.runbooks


@pytest.mark.parametrize(("runbook", "step", "line"), STEPS, ids=[f"{r}:{s}" for r, s, _ in STEPS])
def test_every_command_a_shipped_runbook_names_exists_and_parses(runbook: str, step: int, line: str) -> None:
    slash, _, text = line.partition(" ")
    spec, rest = REGISTRY.resolve(slash, text)
    assert spec is not None, f"{runbook} step {step} names {slash}, which is not a command"
    parse_args(spec, rest, POLICY)


def test_every_slash_looking_code_in_a_step_is_a_registered_command() -> None:
    everything = load_runbooks(REPO / "runbooks", services=list(POLICY.services))
    for runbook in everything.runbooks.values():
        for step in runbook.steps:
            for command in step.commands:
                assert command.split()[0] in REGISTRY.slash_commands(), f"{runbook.name}: {command}"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_rendering(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "demo.md",
        "---\ntitle: Demo\nservice: checkout\ntags: [a, b]\n---\nIntro with **bold** and [a link](https://x.example).\n"
        "\n## Steps\n1. Look: `/runbook demo`\n2. Shell only: `kubectl get pods`\n   continued here\n"
        "3. Two commands: `/escalate secondary` then `/incident note done`\n- a bullet\n",
    )
    runbook, problems = parse_runbook(
        path, services=["checkout"], slash_commands={"/runbook", "/escalate", "/incident"}
    )
    assert problems == [] and runbook is not None
    assert [s.commands for s in runbook.steps] == [
        ("/runbook demo",),
        (),
        ("/escalate secondary", "/incident note done"),
    ]
    assert runbook.steps[1].text.endswith("\ncontinued here")
    blocks = render_runbook(runbook)
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "Demo"}}
    assert "tags: a, b" in blocks[1]["elements"][0]["text"]
    assert "*bold*" in blocks[2]["text"]["text"] and "<https://x.example|a link>" in blocks[2]["text"]["text"]
    buttons = buttons_in(Reply("C1", "", blocks, False))
    assert [b.value for b in buttons] == ["/runbook demo", "/escalate secondary", "/incident note done"]
    assert len({b.action_id for b in buttons}) == 3, "action ids are unique within a message"
    assert "• a bullet" in blocks[-1]["text"]["text"]


def test_long_runbooks_stay_within_slack_limits(tmp_path: Path) -> None:
    steps = "\n".join(f"{i}. step `/runbook x{i}`" for i in range(1, 80))
    path = write(tmp_path, "long.md", f"---\ntitle: Long\nservice: auth\n---\n{steps}\n")
    runbook, _ = parse_runbook(path, slash_commands={"/runbook"})
    assert runbook is not None
    blocks = render_runbook(runbook)
    assert len(blocks) == 50 and "more blocks" in blocks[-1]["text"]["text"]
    assert len(render_list([runbook] * 80, "*x*")) == 50


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no front matter\n", "bad.md:1: a runbook starts with front matter"),
        ("---\ntitle: x\n", "bad.md:1: the front matter is not closed"),
        ("---\ntitle: [x\n---\n", "bad.md:2: front matter is not valid YAML"),
        ("---\ntitle: T\nservice: payments\n---\n", "bad.md: service 'payments' is not in policy/services.yaml"),
        ("---\ntitle: T\nservice: auth\nowner: me\n---\n", "bad.md:4: unknown front matter key 'owner'"),
        ("---\nservice: auth\n---\n", "bad.md:1: front matter needs title"),
        ("---\ntitle: T\nservice: auth\ntags: a\n---\n", "bad.md:4: tags must be a list"),
    ],
)
def test_problems_have_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    _, problems = parse_runbook(write(tmp_path, "bad.md", text), services=list(POLICY.services))
    assert any(p.startswith(f"runbooks/{problem}") for p in problems), problems


# ------------------------------------------------------------------ /runbook through the daemon


async def test_in_a_war_room_it_lists_the_services_runbooks_for_everyone(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    run = await bot.run("/runbook", channel=room)
    assert run.outcome == "ok"
    [posted] = [r for r in run.replies if not r.ephemeral]
    assert "checkout-restart-consumer" in posted.content and "auth-login-errors" not in posted.content
    opened = await bot.click(run.button("/runbook checkout-restart-consumer"))
    assert opened.outcome == "ok" and "Restart the checkout order consumer" in opened.text


async def test_short_names_and_suggestions(bot: Bot) -> None:
    room = await bot.declare("sev2 checkout")
    assert "Restart the checkout order consumer" in (await bot.run("/runbook restart-consumer", channel=room)).text
    typo = await bot.run("/runbook restart-consmer", channel=room)
    assert typo.outcome == "user_error" and "did you mean `/runbook restart-consumer`?" in typo.text


async def test_outside_a_war_room_only_you_see_it(bot: Bot) -> None:
    run = await bot.run("/runbook auth")
    assert run.outcome == "ok"
    assert all(r.ephemeral for r in run.replies) and "Login errors on auth" in run.text
    assert "All runbooks" in (await bot.run("/runbook")).text
    assert "/runbook" in (await bot.run("/runbook help")).text
