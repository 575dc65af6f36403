"""Hold the policy in force and swap in edits as they land.

:class:`PolicyStore` keeps one :class:`~chatops.policy.models.Policy` snapshot. A reload parses and validates off the
event loop, then either swaps the new snapshot in with one attribute assignment (readers see the old or the new,
never a mix) or, when the edit is invalid, keeps the last good snapshot and reports every problem. Reloads happen
when :meth:`PolicyStore.run` sees the files change (it polls: no inotify dependency), on
:meth:`PolicyStore.request_reload` (wired to SIGHUP) and on :meth:`PolicyStore.reload`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from chatops.errors import ConfigError
from chatops.policy.grants import describe_grants_change
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy, Service, Severity

__all__ = ["OnApplied", "OnRefused", "PolicyStore", "describe_change"]

log = logging.getLogger("chatops.policy")

OnRefused = Callable[[list[str]], Awaitable[None]]
"""Called with the problems when an edit is refused (e.g. to post them to the platform channel)."""
OnApplied = Callable[[Policy, Policy], Awaitable[None]]
"""Called with ``(old, new)`` after a new policy is swapped in."""

_Fingerprint = tuple[tuple[str, int, int], ...]


def _fingerprint(directory: Path) -> _Fingerprint:
    """Name, mtime and size of every YAML file in ``directory`` (empty if it cannot be listed)."""
    entries = []
    try:
        for path in directory.iterdir():
            if path.suffix in (".yaml", ".yml"):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                entries.append((path.name, stat.st_mtime_ns, stat.st_size))
    except OSError:
        return ()
    return tuple(sorted(entries))


class PolicyStore:
    """The policy in force, reloaded on change without a restart.

    ``poll_interval`` is how often :meth:`run` looks at the files; a change is applied once the files have been
    stable for one interval, so an editor's half-written save is not reported as a refused edit.
    """

    def __init__(
        self,
        directory: Path,
        *,
        poll_interval: float = 1.0,
        on_refused: OnRefused | None = None,
        on_applied: OnApplied | None = None,
    ) -> None:
        self.directory = directory
        self.poll_interval = poll_interval
        self._on_refused = on_refused
        self._on_applied = on_applied
        self._policy: Policy | None = None
        self._seen: _Fingerprint | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[bool]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def load_initial(self) -> Policy:
        """Load the policy at start-up; raises :class:`~chatops.errors.ConfigError` listing every problem."""
        seen = _fingerprint(self.directory)
        policy = load_policy(self.directory)
        self._policy, self._seen = policy, seen
        log.info("policy loaded", extra={"digest": policy.digest, "policy_dir": str(self.directory)})
        return policy

    @property
    def current(self) -> Policy:
        """The snapshot in force. Read it once per unit of work; it never changes under you."""
        policy = self._policy
        if policy is None:
            raise RuntimeError("PolicyStore.load_initial() has not been called")
        return policy

    async def reload(self, reason: str) -> bool:
        """Re-read the directory; return True if a new policy was swapped in.

        An invalid edit keeps the old policy, logs every problem at WARNING and calls ``on_refused``; an edit that
        leaves the policy files byte-for-byte identical (same digest) is a no-op.
        """
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            old = self._policy
            new, problems = await self._read()
            if new is not None and (old is None or new.digest != old.digest):
                self._policy = new
            else:
                new = None
        if problems is not None:
            await self._refused(reason, problems)
            return False
        if new is None:
            log.debug("policy unchanged", extra={"reason": reason, "digest": old.digest if old else None})
            return False
        changes = describe_change(old, new) if old is not None else []
        log.info(
            "policy applied (%s): %s",
            reason,
            "; ".join(changes) or "no effective change",
            extra={"digest": new.digest, "previous_digest": old.digest if old else None, "changes": changes},
        )
        if old is not None and self._on_applied is not None:
            await self._call(self._on_applied(old, new))
        return True

    async def _read(self) -> tuple[Policy | None, list[str] | None]:
        """Parse the directory off the loop: ``(policy, None)`` or ``(None, problems)``."""
        self._seen = await asyncio.to_thread(_fingerprint, self.directory)
        try:
            return await asyncio.to_thread(load_policy, self.directory), None
        except ConfigError as exc:
            return None, exc.problems
        except Exception as exc:  # a loader bug must not take the daemon's policy down with it
            log.exception("policy reload crashed; keeping the policy in force")
            return None, [f"internal error while loading policy: {exc!r}"]

    async def _refused(self, reason: str, problems: list[str]) -> None:
        kept = self._policy.digest if self._policy else None
        log.warning(
            "policy reload (%s) refused, keeping the policy in force; %d problem(s):\n%s",
            reason,
            len(problems),
            "\n".join(problems),
            extra={"digest": kept, "problems": problems},
        )
        if self._on_refused is not None:
            await self._call(self._on_refused(list(problems)))

    @staticmethod
    async def _call(callback: Awaitable[None]) -> None:
        try:
            await callback
        except Exception:
            log.exception("policy reload callback failed")

    def request_reload(self, reason: str = "reload requested") -> None:
        """Schedule a reload soon; safe from a signal handler (``loop.add_signal_handler``) or another thread.

        From another thread it needs :meth:`run` (or an earlier :meth:`reload`) to have bound the store to its loop.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError("request_reload() needs the store's event loop: call it while run() runs") from None
        loop.call_soon_threadsafe(self._spawn, reason)

    def _spawn(self, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        """Poll the directory every ``poll_interval`` seconds and reload when it changed. Runs until cancelled."""
        self._loop = asyncio.get_running_loop()
        pending: _Fingerprint | None = None
        try:
            while True:
                await asyncio.sleep(self.poll_interval)
                now = await asyncio.to_thread(_fingerprint, self.directory)
                if now == self._seen:
                    pending = None
                elif now != pending:
                    pending = now  # changed: wait one more interval for the writer to finish
                else:
                    pending = None
                    await self.reload("policy files changed")
        finally:
            for task in list(self._tasks):
                task.cancel()


def _was_now(prefix: str, old: object, new: object) -> list[str]:
    def show(value: object) -> str:
        return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return [] if old == new else [f"{prefix}: {show(old)} → {show(new)}"]


def _added_removed(prefix: str, old: tuple[str, ...], new: tuple[str, ...], verbs: tuple[str, str]) -> list[str]:
    added = [x for x in new if x not in old]
    removed = [x for x in old if x not in new]
    out = [f"{prefix} {verbs[0]} {', '.join(added)}"] if added else []
    return out + ([f"{prefix} {verbs[1]} {', '.join(removed)}"] if removed else [])


def _severity_change(a: Severity, b: Severity) -> list[str]:
    n = a.name
    out = _added_removed(n, a.page, b.page, ("now also pages", "no longer pages"))
    if not out and a.page != b.page:
        out.append(f"{n} now pages in this order: {', '.join(b.page)}")
    out += _was_now(f"{n} label", a.label, b.label)
    out += _was_now(f"{n} urgency", a.urgency, b.urgency)
    out += _was_now(f"{n} war room required", a.war_room_required, b.war_room_required)
    out += [f"{n} description changed"] if a.description != b.description else []
    if a.comms.draft_template != b.comms.draft_template:
        out.append(f"{n} comms draft template changed")
    out += _was_now(f"{n} comms", a.comms.summary(), b.comms.summary())
    out += _was_now(f"{n} post-mortem", a.post_mortem.summary(), b.post_mortem.summary())
    if a.post_mortem.note != b.post_mortem.note:
        out.append(f"{n} post-mortem note changed")
    old_triggers = tuple(t.summary() for t in a.triggers)
    new_triggers = tuple(t.summary() for t in b.triggers)
    out += _added_removed(f"{n} trigger", old_triggers, new_triggers, ("added:", "removed:"))
    if old_triggers == new_triggers and a.triggers != b.triggers:
        out.append(f"{n} trigger descriptions changed")
    return out


def _service_change(a: Service, b: Service) -> list[str]:
    n = a.name
    out = []
    for role, pd_id in b.pagerduty.items():
        if role not in a.pagerduty:
            out.append(f"{n} now routes {role} to {pd_id}")
        elif a.pagerduty[role] != pd_id:
            out.append(f"{n} {role} now pages {pd_id} (was {a.pagerduty[role]})")
    out += [f"{n} no longer routes {role}" for role in a.pagerduty if role not in b.pagerduty]
    for field in ("tier", "owner_team", "runbook_url", "bridge_url"):
        out += _was_now(f"{n} {field}", getattr(a, field), getattr(b, field))
    old_dash = tuple(f"{d.title} <{d.url}>" for d in a.dashboards)
    new_dash = tuple(f"{d.title} <{d.url}>" for d in b.dashboards)
    out += _added_removed(f"{n} dashboard", old_dash, new_dash, ("added:", "removed:"))
    if set(old_dash) == set(new_dash) and old_dash != new_dash:
        out.append(f"{n} dashboards reordered")
    out += _added_removed(f"{n}", a.namespaces, b.namespaces, ("now owns namespace", "no longer owns namespace"))
    return out


def describe_change(old: Policy, new: Policy) -> list[str]:
    """What changed from ``old`` to ``new``, one line each (``"sev2 now also pages db_sme"``, ``"service payments
    added"``); empty when the two are equivalent."""
    out = [f"role {r} added" for r in new.roles if r not in old.roles]
    out += [f"role {r} removed" for r in old.roles if r not in new.roles]
    out += [f"role {r} description changed" for r in new.roles if r in old.roles and old.roles[r] != new.roles[r]]
    out += _was_now("draft channel", old.draft_channel, new.draft_channel)
    out += _was_now("platform channel", old.platform_channel, new.platform_channel)
    for name, severity in new.severities.items():
        out += (
            _severity_change(old.severities[name], severity) if name in old.severities else [f"severity {name} added"]
        )
    out += [f"severity {name} removed" for name in old.severities if name not in new.severities]
    for name, service in new.services.items():
        out += _service_change(old.services[name], service) if name in old.services else [f"service {name} added"]
    out += [f"service {name} removed" for name in old.services if name not in new.services]
    out += describe_grants_change(old.grants, new.grants)
    return out
