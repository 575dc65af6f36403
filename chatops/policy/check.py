"""``chatops policy check``: validate a policy directory the way the daemon would, for CI on policy PRs."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from chatops.errors import ConfigError
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy
from chatops.policy.store import describe_change

__all__ = ["routing_gaps", "run_check"]


def routing_gaps(policy: Policy) -> list[str]:
    """Roles a severity pages that some services do not route (reported, not refused: declare says so too)."""
    notes = []
    for severity in policy.severities.values():
        for role in severity.page:
            lacking = [name for name, service in policy.services.items() if role not in service.pagerduty]
            if len(lacking) == len(policy.services):
                notes.append(f"note: {severity.name} pages {role}, but no service routes it")
            elif lacking:
                verb = "does" if len(lacking) == 1 else "do"
                notes.append(f"note: {severity.name} pages {role}, but {', '.join(lacking)} {verb} not route it")
    return notes


def run_check(directory: Path, out: TextIO, err: TextIO, *, baseline: Path | None = None) -> int:
    """Validate ``directory``; print a summary to ``out`` and return 0, or every problem to ``err`` and return 1.

    On success the summary is followed by routing-gap notes and, with ``baseline`` (another policy directory,
    e.g. a checkout of the target branch), by the changes from it, one per line.
    """
    try:
        policy = load_policy(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=err)
        count = len(exc.problems)
        print(f"policy check failed: {count} problem{'s' if count != 1 else ''} in {directory}", file=err)
        return 1
    severities, services = len(policy.severities), len(policy.services)
    print(f"policy OK: {severities} severities, {services} services (digest {policy.digest[:12]})", file=out)
    for note in routing_gaps(policy):
        print(note, file=out)
    if baseline is not None:
        try:
            before = load_policy(baseline)
        except ConfigError as exc:
            print(f"cannot diff: the baseline policy in {baseline} is invalid ({len(exc.problems)} problems)", file=err)
            return 0
        changes = describe_change(before, policy)
        print(f"changes from {baseline}:" if changes else f"no changes from {baseline}", file=out)
        for change in changes:
            print(f"  {change}", file=out)
    return 0
