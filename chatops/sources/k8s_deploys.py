"""Deploys on the timeline: watch apps/v1 Deployments (kubernetes-asyncio) and record rollouts as ``deploy`` events.

:class:`DeployWatcher` runs for the daemon's whole life. Every ``refresh`` seconds it works out which namespaces
to watch — those of services with open incidents, or every namespace any service maps (policy
``deploy_watch: all_mapped`` in ``services.yaml``) — and keeps one :class:`NamespaceWatch` per namespace
(namespace-scoped RBAC is enough: ``list`` + ``watch`` on ``deployments.apps``).

A namespace watch lists, then watches from the list's ``resourceVersion``, and folds every state it sees into
:func:`chatops.sources.k8s_rollout.advance`, which yields rollout started / progressing / complete / failed
(with old → new images), scaled and deleted. Each becomes one ``deploy`` event on every open incident whose
service owns the namespace, with a dedup key derived from the object (uid, generation, phase), so that a relist,
a restart or a second replica never records the same thing twice.

Failure handling: the stream ending (server timeout) resumes from the last resourceVersion; ``410 Gone`` (an
``ERROR`` event or an HTTP 410: the version was compacted) relists and diffs against what was known, so a
rollout that happened in the gap is still recorded — start and end — without duplicates; anything else (a
dropped connection, 5xx, a malformed line, an ``ERROR`` event) waits a jittered exponential backoff
(:class:`chatops.retry.Backoff`, ``Retry-After`` honoured) and resumes. kubernetes-asyncio costs about a second
to import, so it is imported in a worker thread when the watcher starts, never at module import and never on the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from chatops.incidents.model import Incident
from chatops.policy.models import Policy
from chatops.retry import Backoff, parse_retry_after
from chatops.sources.k8s_rollout import Tracked, Transition, advance, deleted
from chatops.timeline.events import EventType, TimelineEvent
from chatops.timeline.sink import TimelineSink

if TYPE_CHECKING:
    from chatops.context import Services

__all__ = ["DeployWatcher", "KubernetesConfig", "NamespaceWatch", "deploy_event", "deploy_watcher"]

log = logging.getLogger(__name__)

SOURCE = "kubernetes"
_LIST_PAGE = 500


class OpenIncidents(Protocol):
    """The part of :class:`~chatops.incidents.store.IncidentStore` the watcher reads."""

    async def open_incidents(self) -> list[Incident]:
        """Every open incident."""
        ...

    async def open_for_service(self, service: str) -> list[Incident]:
        """Open incidents of one service."""
        ...


@dataclass(frozen=True)
class KubernetesConfig:
    """Where the API is and how to authenticate. ``token_file`` is re-read when it changes (projected tokens)."""

    url: str
    token: str | None = None
    token_file: Path | None = None
    ca_file: Path | None = None

    def client_configuration(self, client: Any) -> Any:
        """A ``kubernetes_asyncio.client.Configuration`` for this API (``client`` is the imported module)."""
        config = client.Configuration(host=self.url.rstrip("/"))
        config.api_key_prefix = {"BearerToken": "Bearer"}
        if self.token:
            config.api_key = {"BearerToken": self.token}
        if self.ca_file is not None:
            config.ssl_ca_cert = str(self.ca_file)
        if self.token_file is not None:
            hook = _TokenFile(self.token_file)
            hook(config)  # kubernetes-asyncio only calls the hook once a BearerToken key exists
            config.refresh_api_key_hook = hook
        return config


class _TokenFile:
    """``refresh_api_key_hook``: put the token file's current content in the configuration (read on change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: float | None = None

    def __call__(self, config: Any) -> None:
        try:
            stamp = self.path.stat().st_mtime
            if stamp != self._stamp:
                config.api_key = {"BearerToken": self.path.read_text().strip()}
                self._stamp = stamp
        except OSError as exc:
            log.warning("cannot read the Kubernetes token file", extra={"path": str(self.path), "error": str(exc)})


class WatchExpired(Exception):
    """The watch's resourceVersion is gone (410): relist."""


class ApiFailure(Exception):
    """A failed API call or stream; ``retry_after`` is the server's hint in seconds, if any."""

    def __init__(self, detail: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


def _images(images: tuple[tuple[str, str], ...] | None) -> str:
    if images is None:
        return "?"
    return ", ".join(image for _, image in images) or "-"


def _summary(t: Transition) -> str:
    v, r = t.view, t.rollout
    target = f"{v.namespace}/{v.name}"
    change = f"{_images(r.old_images)} → {_images(r.new_images)}" if r is not None else _images(v.images)
    counts = f"{v.updated}/{v.replicas} updated, {v.available} available"
    if t.kind == "started":
        return (
            f"{target}: deployment created with {_images(v.images)}"
            if t.detail.get("created")
            else (f"{target}: rollout started {change}" + (f" by {v.manager}" if v.manager else ""))
        )
    if t.kind == "progressing":
        return f"{target}: rollout progressing ({counts}) {change}"
    if t.kind == "complete":
        return f"{target}: rollout complete ({v.available}/{v.replicas} available) {change}"
    if t.kind == "failed":
        return f"{target}: rollout failed ({v.progressing_reason}: {v.progressing_message}) {change}"
    if t.kind == "scaled":
        return f"{target}: scaled {t.detail.get('from')} → {t.detail.get('to')} replicas"
    return f"{target}: deployment deleted"


def deploy_event(t: Transition, incident_id: str, *, now: datetime) -> TimelineEvent:
    """The timeline row for one transition on one incident."""
    v, r = t.view, t.rollout
    payload: dict[str, Any] = {
        "phase": t.kind,
        "namespace": v.namespace,
        "deployment": v.name,
        "uid": v.uid,
        "generation": v.generation,
        "revision": v.revision,
        "replicas": v.replicas,
        "updated_replicas": v.updated,
        "available_replicas": v.available,
        "images": {name: image for name, image in v.images},
        **t.detail,
    }
    if r is not None:
        payload["old_images"] = None if r.old_images is None else {n: i for n, i in r.old_images}
        payload["new_images"] = {n: i for n, i in r.new_images}
        payload["rollout_generation"] = r.generation
    occurred = t.occurred_at
    if occurred is None or occurred > now:
        occurred = now
    return TimelineEvent(
        incident_id=incident_id,
        type=EventType.DEPLOY,
        occurred_at=occurred,
        actor=v.manager,
        source=SOURCE,
        summary=_summary(t),
        payload=payload,
        dedup_key=f"deploy:{incident_id}:{t.key}",
    )


Record = Callable[[str, Transition], Awaitable[None]]


class NamespaceWatch:
    """List + watch Deployments of one namespace until cancelled; see the module docstring."""

    def __init__(
        self,
        namespace: str,
        *,
        apps: Any,
        watch_module: Any,
        record: Record,
        backoff: Backoff,
        watch_timeout: int,
    ) -> None:
        self.namespace = namespace
        self._apps = apps
        self._watch_module = watch_module
        self._record = record
        self._backoff = backoff
        self._watch_timeout = watch_timeout
        self.known: dict[str, Tracked] = {}
        self.resource_version: str | None = None
        self._listed = False

    async def run(self) -> None:
        """Watch forever: resume after a clean end, relist after 410, back off after anything else."""
        failures = 0
        while True:
            try:
                if self.resource_version is None:
                    await self.relist()
                await self.watch_once()
                failures = 0
            except WatchExpired as exc:
                failures += 1
                log.info("deployment watch expired; relisting", extra={"namespace": self.namespace, "error": str(exc)})
                self.resource_version = None
                if failures > 1:  # expired again right after a relist: do not hot-loop
                    await asyncio.sleep(self._backoff.delay(failures - 1, None))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the watch must outlive any API failure
                failures += 1
                retry_after = exc.retry_after if isinstance(exc, ApiFailure) else None
                delay = self._backoff.delay(failures, retry_after)
                log.warning(
                    "deployment watch failed; retrying",
                    extra={
                        "namespace": self.namespace,
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                        "attempt": failures,
                        "delay_s": round(delay, 3),
                    },
                )
                await asyncio.sleep(delay)

    async def relist(self) -> None:
        """List every Deployment, fold each into what was known (the first list is the baseline), note the RV."""
        items, version = await self._list()
        baseline = not self._listed
        seen: set[str] = set()
        for obj in items:
            name = str(obj.get("metadata", {}).get("name", ""))
            seen.add(name)
            await self._fold(name, obj, baseline=baseline)
        for name in [n for n in self.known if n not in seen]:
            gone = self.known.pop(name)
            if not baseline:
                await self._record(self.namespace, deleted(gone))
        self._listed = True
        self.resource_version = version

    async def _list(self) -> tuple[list[Mapping[str, Any]], str]:
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": _LIST_PAGE, "_preload_content": False, "_request_timeout": 30}
            if token:
                kwargs["_continue"] = token
            response = await self._apps.list_namespaced_deployment(self.namespace, **kwargs)
            try:
                status, headers, body = response.status, response.headers, await response.read()
            finally:
                response.release()
            if status == 410:
                raise WatchExpired("list continuation expired")
            if status != 200:
                retry_after = parse_retry_after(headers.get("Retry-After"))
                raise ApiFailure(f"list answered HTTP {status}: {body[:200]!r}", status=status, retry_after=retry_after)
            data = json.loads(body)
            items.extend(i for i in data.get("items") or [] if isinstance(i, Mapping))
            metadata = data.get("metadata") or {}
            token = metadata.get("continue") or None
            if not token:
                return items, str(metadata.get("resourceVersion") or "")

    async def watch_once(self) -> None:
        """One watch request from :attr:`resource_version` until the server ends it (or it fails)."""
        timeout = int(self._watch_timeout * random.uniform(1.0, 1.25))
        async with self._watch_module.Watch(return_type="object") as watch:
            stream = watch.stream(
                self._apps.list_namespaced_deployment,
                self.namespace,
                resource_version=self.resource_version,
                timeout_seconds=timeout,
                allow_watch_bookmarks=True,
                _request_timeout=(10, timeout + 30),
            )
            try:
                async for event in stream:
                    await self._on_event(event)
            except Exception as exc:
                if getattr(exc, "status", None) == 410:
                    raise WatchExpired(str(getattr(exc, "reason", exc))) from exc
                status = getattr(exc, "status", None)
                if isinstance(status, int):
                    headers = getattr(exc, "headers", None) or {}
                    retry_after = parse_retry_after(headers.get("Retry-After"))
                    raise ApiFailure(f"watch: {exc}".strip(), status=status, retry_after=retry_after) from exc
                raise

    async def _on_event(self, event: Any) -> None:
        if not isinstance(event, Mapping) or not isinstance(event.get("raw_object"), Mapping):
            raise ApiFailure(f"unexpected watch line: {str(event)[:200]!r}")
        kind, obj = event.get("type"), event["raw_object"]
        version = obj.get("metadata", {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            await self._fold(str(obj.get("metadata", {}).get("name", "")), obj, baseline=False)
        elif kind == "DELETED":
            gone = self.known.pop(str(obj.get("metadata", {}).get("name", "")), None)
            if gone is not None:
                await self._record(self.namespace, deleted(gone))
        if version:
            self.resource_version = str(version)

    async def _fold(self, name: str, obj: Mapping[str, Any], *, baseline: bool) -> None:
        try:
            tracked, transitions = advance(self.known.get(name), obj, baseline=baseline)
        except ValueError as exc:
            log.warning("ignoring a malformed Deployment", extra={"namespace": self.namespace, "error": str(exc)})
            return
        self.known[name] = tracked
        for transition in transitions:
            await self._record(self.namespace, transition)


class DeployWatcher:
    """Keeps the right namespaces watched and records their rollouts; ``await run()`` until cancelled."""

    def __init__(
        self,
        config: KubernetesConfig,
        *,
        policy: Callable[[], Policy],
        incidents: OpenIncidents,
        sink: TimelineSink,
        clock: Callable[[], datetime],
        refresh: float = 2.0,
        watch_timeout: int = 300,
        backoff: Backoff | None = None,
    ) -> None:
        self.config = config
        self._policy = policy
        self._incidents = incidents
        self._sink = sink
        self._clock = clock
        self._refresh = refresh
        self._watch_timeout = watch_timeout
        self._backoff = backoff or Backoff(base=0.5, cap=30.0)
        self.watches: dict[str, NamespaceWatch] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Import the client off the loop, then reconcile the watched namespaces every ``refresh`` seconds."""
        client, watch_module = await asyncio.to_thread(_import_kubernetes)
        api_client = client.ApiClient(self.config.client_configuration(client))
        apps = client.AppsV1Api(api_client)
        log.info("deploy watch started", extra={"api": self.config.url})
        try:
            while True:
                try:
                    wanted = await self.wanted_namespaces()
                except Exception as exc:  # Postgres hiccup: keep the current watches
                    log.warning("cannot work out which namespaces to watch", extra={"error": str(exc)})
                else:
                    self._reconcile(wanted, apps, watch_module)
                await asyncio.sleep(self._refresh)
        finally:
            await self._stop_all()
            await api_client.close()

    async def wanted_namespaces(self) -> set[str]:
        """The namespaces to watch now, per the policy's ``deploy_watch``."""
        policy = self._policy()
        if policy.deploy_watch == "all_mapped":
            return {ns for service in policy.services.values() for ns in service.namespaces}
        wanted: set[str] = set()
        for incident in await self._incidents.open_incidents():
            service = policy.services.get(incident.service)
            if service is not None:
                wanted.update(service.namespaces)
        return wanted

    def _reconcile(self, wanted: set[str], apps: Any, watch_module: Any) -> None:
        for namespace in sorted(set(self._tasks) - wanted):
            self._tasks.pop(namespace).cancel()
            self.watches.pop(namespace, None)
            log.info("deployment watch stopped", extra={"namespace": namespace})
        for namespace in sorted(wanted - set(self._tasks)):
            watch = NamespaceWatch(
                namespace,
                apps=apps,
                watch_module=watch_module,
                record=self.record,
                backoff=self._backoff,
                watch_timeout=self._watch_timeout,
            )
            self.watches[namespace] = watch
            self._tasks[namespace] = asyncio.create_task(watch.run(), name=f"deployment watch {namespace}")
            log.info("deployment watch starting", extra={"namespace": namespace})

    async def _stop_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.watches.clear()

    async def record(self, namespace: str, transition: Transition) -> None:
        """Attach ``transition`` to every open incident whose service owns ``namespace``."""
        service = self._policy().service_for_namespace(namespace)
        if service is None:
            return
        try:
            incidents = await self._incidents.open_for_service(service.name)
            for incident in incidents:
                await self._sink.record(deploy_event(transition, incident.id, now=self._clock()))
        except Exception:
            log.exception("could not record a deploy event", extra={"namespace": namespace, "key": transition.key})
            return
        if incidents:
            log.info(
                "deploy recorded",
                extra={"namespace": namespace, "phase": transition.kind, "incidents": [i.id for i in incidents]},
            )


def _import_kubernetes() -> tuple[Any, Any]:
    """``kubernetes_asyncio.client`` and ``kubernetes_asyncio.watch`` (run in a worker thread: ~1 s)."""
    return importlib.import_module("kubernetes_asyncio.client"), importlib.import_module("kubernetes_asyncio.watch")


def deploy_watcher(services: Services) -> DeployWatcher | None:
    """The daemon's watcher from its settings, or ``None`` (logged) when no Kubernetes API is configured."""
    s = services.settings
    if s.kubernetes_api_url is None:
        log.info("deploy watch: not configured (set KUBERNETES_API_URL, or run in a pod with a service account)")
        return None
    config = KubernetesConfig(
        url=s.kubernetes_api_url,
        token=s.kubernetes_token.value if s.kubernetes_token else None,
        token_file=s.kubernetes_token_file,
        ca_file=s.kubernetes_ca_file,
    )
    policy = services.policy
    return DeployWatcher(
        config, policy=lambda: policy.current, incidents=services.incidents, sink=services.sink, clock=services.clock
    )
