"""What a Deployment's successive states mean: rollout started / progressing / complete / failed, scaled, deleted.

Pure functions over the apiserver's JSON (dicts, camelCase, zero values possibly omitted), no I/O. The watcher
(:mod:`chatops.sources.k8s_deploys`) feeds every state it sees to :func:`advance` with what it knew before and
records the :class:`Transition`\\ s that come back.

Reading the status follows ``kubectl rollout status``: a generation the controller has not observed yet
(``status.observedGeneration < metadata.generation``) is *pending*; a ``Progressing`` condition with reason
``ProgressDeadlineExceeded`` is *failed*; fewer updated replicas than wanted, old replicas still around, or
fewer available than updated is *progressing*; otherwise *complete*. A rollout is a change of the pod template
(the new generation), its old → new images are the containers' images before and after. Because :func:`advance`
compares the state it knew with the state it gets, a relist after a gap (410 Gone, a restart of the watch) still
yields the rollout's start and end: nothing between two observations is invented, nothing seen is lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["DeploymentView", "Phase", "Rollout", "Tracked", "Transition", "advance", "deleted", "parse_time"]

Phase = Literal["pending", "progressing", "complete", "failed"]
Kind = Literal["started", "progressing", "complete", "failed", "scaled", "deleted"]


def parse_time(value: Any) -> dt.datetime | None:
    """An RFC 3339 ``metav1.Time`` (``2026-04-22T02:47:00Z``) as an aware datetime, or ``None``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class DeploymentView:
    """The facts of one Deployment state that rollouts are judged by."""

    uid: str
    namespace: str
    name: str
    generation: int
    observed_generation: int
    replicas: int
    status_replicas: int
    updated: int
    available: int
    images: tuple[tuple[str, str], ...]
    template: str
    progressing_reason: str
    progressing_message: str
    progressing_time: dt.datetime | None
    manager: str | None
    managed_time: dt.datetime | None
    revision: str | None

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> DeploymentView:
        """Read a Deployment object (``ValueError`` when it has no name)."""
        meta, spec, status = _dict(obj.get("metadata")), _dict(obj.get("spec")), _dict(obj.get("status"))
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("a Deployment without metadata.name")
        template = _dict(spec.get("template"))
        containers = _dict(template.get("spec")).get("containers")
        images = tuple(
            (str(c.get("name", "")), str(c.get("image", "")))
            for c in (containers if isinstance(containers, list) else [])
            if isinstance(c, Mapping)
        )
        progressing: Mapping[str, Any] = {}
        conditions = status.get("conditions")
        for cond in conditions if isinstance(conditions, list) else []:
            if isinstance(cond, Mapping) and cond.get("type") == "Progressing":
                progressing = cond
        managed = [m for m in meta.get("managedFields") or [] if isinstance(m, Mapping)]
        latest = max(managed, key=lambda m: str(m.get("time") or ""), default={})
        annotations = _dict(meta.get("annotations"))
        return cls(
            uid=str(meta.get("uid") or f"{meta.get('namespace')}/{name}"),
            namespace=str(meta.get("namespace") or ""),
            name=name,
            generation=_int(meta.get("generation"), 1),
            observed_generation=_int(status.get("observedGeneration")),
            replicas=_int(spec.get("replicas"), 1),
            status_replicas=_int(status.get("replicas")),
            updated=_int(status.get("updatedReplicas")),
            available=_int(status.get("availableReplicas")),
            images=images,
            template=repr(sorted(template.items())),
            progressing_reason=str(progressing.get("reason") or ""),
            progressing_message=str(progressing.get("message") or ""),
            progressing_time=parse_time(progressing.get("lastUpdateTime")),
            manager=str(latest["manager"]) if latest.get("manager") else None,
            managed_time=parse_time(latest.get("time")),
            revision=str(annotations["deployment.kubernetes.io/revision"])
            if "deployment.kubernetes.io/revision" in annotations
            else None,
        )

    @property
    def phase(self) -> Phase:
        """Where the current generation's rollout stands (``kubectl rollout status``'s reading)."""
        if self.observed_generation < self.generation:
            return "pending"
        if self.progressing_reason == "ProgressDeadlineExceeded":
            return "failed"
        if self.updated < self.replicas or self.status_replicas > self.updated or self.available < self.updated:
            return "progressing"
        return "complete"


@dataclass(frozen=True)
class Rollout:
    """One rollout being followed: the generation that started it, images before (``None``: unknown) and after."""

    generation: int
    old_images: tuple[tuple[str, str], ...] | None
    new_images: tuple[tuple[str, str], ...]
    last_progress: tuple[int, int] | None = None
    failed: bool = False


@dataclass(frozen=True)
class Tracked:
    """What the watcher knows about one Deployment: its last state and the rollout in flight, if any."""

    view: DeploymentView
    rollout: Rollout | None = None


@dataclass(frozen=True)
class Transition:
    """Something worth a timeline row. ``key`` identifies it across relists, restarts and replicas."""

    kind: Kind
    view: DeploymentView
    rollout: Rollout | None
    key: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    @property
    def occurred_at(self) -> dt.datetime | None:
        """The source's own time for it: the spec change for a start or a scale, else the Progressing update."""
        if self.kind in ("started", "scaled"):
            return self.view.managed_time
        if self.kind == "deleted":
            return None
        return self.view.progressing_time


def _key(view: DeploymentView, generation: int, kind: str, extra: str = "") -> str:
    return f"{view.uid}:{generation}:{kind}" + (f":{extra}" if extra else "")


def advance(
    known: Tracked | None, obj: Mapping[str, Any], *, baseline: bool = False
) -> tuple[Tracked, list[Transition]]:
    """Fold a new state of a Deployment into what was known; return the new knowledge and what happened.

    ``known`` is ``None`` for a Deployment not seen before. With ``baseline`` (the first list of a watch) an
    unknown Deployment is taken as it is, without a "started" transition; a rollout already in flight is still
    followed (its old images unknown) so that its end is recorded.
    """
    view = DeploymentView.parse(obj)
    if known is not None and known.view.uid != view.uid:
        known = None  # deleted and re-created under the same name
    out: list[Transition] = []
    rollout = known.rollout if known is not None else None
    if known is None:
        if not baseline:
            rollout = Rollout(view.generation, None, view.images)
            out.append(Transition("started", view, rollout, _key(view, view.generation, "started"), {"created": True}))
        elif view.phase != "complete":
            rollout = Rollout(view.generation, None, view.images)
    elif view.generation > known.view.generation:
        if view.template != known.view.template:
            superseded = rollout is not None and rollout.last_progress is not None
            rollout = Rollout(view.generation, known.view.images, view.images)
            detail: dict[str, Any] = {"superseded": True} if superseded else {}
            out.append(Transition("started", view, rollout, _key(view, view.generation, "started"), detail))
        if view.replicas != known.view.replicas:
            detail = {"from": known.view.replicas, "to": view.replicas}
            out.append(Transition("scaled", view, rollout, _key(view, view.generation, "scaled"), detail))
    if rollout is not None:
        rollout, reached = _judge(view, rollout)
        if not (baseline and known is None):  # a baseline is taken as it is: what was in flight is followed on
            out.extend(reached)
    return Tracked(view, rollout), out


def _judge(view: DeploymentView, rollout: Rollout) -> tuple[Rollout | None, list[Transition]]:
    """Progress of the rollout in ``view``: the rollout still followed (``None`` once complete) and transitions."""
    phase = view.phase
    gen = rollout.generation
    counts = {"replicas": view.replicas, "updated": view.updated, "available": view.available}
    if phase == "complete":
        return None, [Transition("complete", view, rollout, _key(view, gen, "complete"), counts)]
    if phase == "failed":
        if rollout.failed:
            return rollout, []
        detail = {**counts, "reason": view.progressing_reason, "message": view.progressing_message}
        return replace(rollout, failed=True), [Transition("failed", view, rollout, _key(view, gen, "failed"), detail)]
    if phase == "progressing":
        progress = (view.updated, view.available)
        if rollout.last_progress is not None and rollout.last_progress[0] == view.updated:
            return replace(rollout, last_progress=progress), []
        followed = replace(rollout, last_progress=progress)
        key = _key(view, gen, "progressing", str(view.updated))
        return followed, [Transition("progressing", view, followed, key, counts)]
    return rollout, []


def deleted(known: Tracked) -> Transition:
    """The Deployment is gone."""
    view = known.view
    return Transition("deleted", view, known.rollout, f"{view.uid}:deleted")
