"""The deploy watcher against the Kubernetes stand-in over real HTTP: rollouts, 410 Gone, disconnects, 5xx."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from chatops.incidents.model import Incident, IncidentStatus
from chatops.policy.loader import load_policy
from chatops.policy.models import Policy
from chatops.retry import Backoff
from chatops.sandbox.kubernetes import KubernetesSandbox
from chatops.sources.k8s_deploys import DeployWatcher, KubernetesConfig
from chatops.timeline.events import TimelineEvent

REPO = Path(__file__).resolve().parents[2]
NS = "checkout"


def incident(incident_id: str, service: str = "checkout") -> Incident:
    now = dt.datetime.now(dt.UTC)
    return Incident(incident_id, "sev2", service, IncidentStatus.DECLARED, "U1", "U1", now, "digest")


class FakeIncidents:
    def __init__(self, *incidents: Incident) -> None:
        self.open = list(incidents)

    async def open_incidents(self) -> list[Incident]:
        return list(self.open)

    async def open_for_service(self, service: str) -> list[Incident]:
        return [i for i in self.open if i.service == service]


class ListSink:
    def __init__(self) -> None:
        self.events: list[TimelineEvent] = []

    async def record(self, event: TimelineEvent) -> None:
        self.events.append(event)

    def offer(self, events: Sequence[TimelineEvent]) -> bool:
        self.events.extend(events)
        return True

    def phases(self, incident_id: str = "inc-1") -> list[str]:
        return [e.payload["phase"] for e in self.events if e.incident_id == incident_id]


class Harness:
    def __init__(self, kube: KubernetesSandbox, policy: Policy, incidents: FakeIncidents) -> None:
        self.kube = kube
        self.policy = policy
        self.incidents = incidents
        self.sink = ListSink()
        self.watcher = DeployWatcher(
            KubernetesConfig(url=kube.url, token=kube.token),
            policy=lambda: self.policy,
            incidents=incidents,
            sink=self.sink,
            clock=lambda: dt.datetime.now(dt.UTC),
            refresh=0.05,
            watch_timeout=30,
            backoff=Backoff(base=0.1, cap=0.4),
        )
        self.task: asyncio.Task[None] | None = None

    async def start(self, namespace: str = NS) -> None:
        self.task = asyncio.create_task(self.watcher.run())
        await self.kube.wait_watching(namespace, timeout=15)

    async def wait(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        await self.kube.wait_for(predicate, timeout, what=what)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await self.task


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with KubernetesSandbox() as kube:
        kube.create_deployment(NS, "api", image="checkout:1.4.1")
        kube.create_deployment("auth", "login", image="auth:7")
        h = Harness(kube, load_policy(REPO / "policy"), FakeIncidents(incident("inc-1")))
        yield h
        await h.stop()


def keys(sink: ListSink) -> list[str]:
    return [str(e.dedup_key) for e in sink.events]


async def test_a_rollout_is_recorded_started_progressing_complete_with_images(harness: Harness) -> None:
    await harness.start()
    assert harness.kube.open_watches("auth") == 0, "only namespaces of services with open incidents"
    harness.kube.rollout(NS, "api", "checkout:1.4.2")
    await harness.wait(lambda: "complete" in harness.sink.phases(), "rollout complete")
    assert harness.sink.phases() == ["started", "progressing", "progressing", "progressing", "complete"]
    started, complete = harness.sink.events[0], harness.sink.events[-1]
    assert started.type == "deploy" and started.source == "kubernetes" and started.actor == "kubectl-set"
    assert started.payload["old_images"] == {"app": "checkout:1.4.1"}
    assert started.payload["new_images"] == {"app": "checkout:1.4.2"}
    assert "checkout:1.4.1 → checkout:1.4.2" in started.summary and "rollout started" in started.summary
    assert "rollout complete (3/3 available)" in complete.summary
    assert complete.payload["old_images"] == {"app": "checkout:1.4.1"}
    assert len(set(keys(harness.sink))) == len(harness.sink.events)
    assert all(k.startswith("deploy:inc-1:") for k in keys(harness.sink))
    assert all(e.occurred_at.tzinfo is not None for e in harness.sink.events)


async def test_a_failed_rollout(harness: Harness) -> None:
    await harness.start()
    harness.kube.set_image(NS, "api", "checkout:broken")
    harness.kube.observe(NS, "api")
    harness.kube.progress(NS, "api", updated=1, available=2)
    harness.kube.fail_rollout(NS, "api")
    await harness.wait(lambda: "failed" in harness.sink.phases(), "rollout failed")
    failed = harness.sink.events[-1]
    assert failed.payload["reason"] == "ProgressDeadlineExceeded"
    assert "rollout failed (ProgressDeadlineExceeded" in failed.summary and "checkout:broken" in failed.summary


async def test_410_gone_relists_without_duplicates_or_gaps(harness: Harness) -> None:
    kube = harness.kube
    await harness.start()
    kube.set_image(NS, "api", "checkout:2")
    await harness.wait(lambda: harness.sink.phases() == ["started"], "the start")
    # While the watch is down, the rollout finishes and the history is compacted (all in one loop step).
    kube.drop_watches()
    kube.observe(NS, "api")
    kube.complete(NS, "api")
    kube.create_deployment(NS, "worker", image="worker:1")
    kube.compact()
    await harness.wait(lambda: "complete" in harness.sink.phases(), "the end of the rollout after the relist")
    await harness.wait(lambda: kube.open_watches(NS) == 1, "a new watch")
    assert harness.sink.phases() == ["started", "complete", "started", "complete"]  # api, then worker created
    assert [e.payload["deployment"] for e in harness.sink.events] == ["api", "api", "worker", "worker"]
    assert harness.sink.events[1].payload["old_images"] == {"app": "checkout:1.4.1"}
    assert len(set(keys(harness.sink))) == 4
    assert len(kube.list_requests(NS)) == 2, "one list at start, one relist after 410"
    # An expiry with nothing missed records nothing, and the watch carries on.
    kube.expire_watches()
    await harness.wait(lambda: len(kube.list_requests(NS)) == 3 and kube.open_watches(NS) == 1, "relist")
    kube.scale(NS, "api", 5)
    await harness.wait(lambda: "scaled" in harness.sink.phases(), "the scale")
    assert len(harness.sink.events) == 5 and len(set(keys(harness.sink))) == 5


async def test_a_disconnect_resumes_from_the_last_version(harness: Harness) -> None:
    kube = harness.kube
    await harness.start()
    kube.set_image(NS, "api", "checkout:2")
    await harness.wait(lambda: harness.sink.phases() == ["started"], "the start")
    watched_from = kube.resource_version
    kube.drop_watches()
    kube.observe(NS, "api")
    await harness.wait(lambda: kube.open_watches(NS) == 1, "a new watch")
    kube.complete(NS, "api")
    await harness.wait(lambda: "complete" in harness.sink.phases(), "complete")
    assert harness.sink.phases() == ["started", "progressing", "complete"]
    assert len(kube.list_requests(NS)) == 1, "a disconnect resumes, it does not relist"
    assert kube.watch_requests(NS)[-1].query["resourceVersion"] == watched_from


async def test_5xx_backs_off_then_recovers(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    kube = harness.kube
    await harness.start()
    with caplog.at_level(logging.WARNING, logger="chatops.sources.k8s_deploys"):
        kube.fail(503, times=3)
        kube.drop_watches()
        kube.set_image(NS, "api", "checkout:2")
        await harness.wait(lambda: harness.sink.phases() == ["started"], "recovery", timeout=15)
    retries = [r for r in caplog.records if r.getMessage() == "deployment watch failed; retrying"]
    assert [r.__dict__["attempt"] for r in retries] == [1, 2, 3, 4]  # the drop, then three 503s
    assert "ClientPayloadError" in retries[0].__dict__["error"]
    assert all("503" in r.__dict__["error"] for r in retries[1:])
    delays = [r.__dict__["delay_s"] for r in retries]
    assert all(0 < d <= 0.4 for d in delays) and delays[2] > delays[0], f"jittered exponential backoff: {delays}"
    statuses = [r.status for r in kube.watch_requests(NS)]
    assert statuses.count(503) == 3 and statuses[-1] == 200
    assert len(kube.list_requests(NS)) == 1, "errors resume the watch, they do not relist"


async def test_watched_namespaces_follow_open_incidents_and_policy(harness: Harness) -> None:
    kube = harness.kube
    await harness.start()
    harness.incidents.open.append(incident("inc-2", "auth"))
    await kube.wait_watching("auth")
    harness.incidents.open = [i for i in harness.incidents.open if i.service != "auth"]
    await harness.wait(lambda: kube.open_watches("auth") == 0, "the auth watch to stop")
    harness.policy = dataclasses.replace(harness.policy, deploy_watch="all_mapped")
    await kube.wait_watching("auth")
    await kube.wait_watching("rider-pos")
    kube.set_image("auth", "login", "auth:8")  # no open incident owns auth: watched, not recorded
    kube.set_image(NS, "api", "checkout:2")
    await harness.wait(lambda: harness.sink.phases() == ["started"], "the checkout start")
    await asyncio.sleep(0.2)
    assert [e.payload["namespace"] for e in harness.sink.events] == [NS]


async def test_every_open_incident_of_the_service_gets_the_event(harness: Harness) -> None:
    harness.incidents.open.append(incident("inc-3"))
    await harness.start()
    harness.kube.set_image(NS, "api", "checkout:2")
    await harness.wait(lambda: len(harness.sink.events) == 2, "two rows")
    assert sorted(e.incident_id for e in harness.sink.events) == ["inc-1", "inc-3"]
    assert len(set(keys(harness.sink))) == 2
