"""apps/v1 Deployment objects for the Kubernetes stand-in, and the controller steps a rollout goes through.

The functions here build and mutate plain JSON dicts shaped like the apiserver's (camelCase, zero-valued status
fields omitted as ``omitempty`` does, conditions with ``lastUpdateTime``/``lastTransitionTime`` in RFC 3339 with
second precision). They know nothing about resource versions or HTTP: :mod:`chatops.sandbox.kubernetes` stamps
``metadata.resourceVersion`` and serves them.

A rollout, as the deployment controller reports it (what ``kubectl rollout status`` reads):

1. ``spec.template`` changes → ``metadata.generation`` + 1, status untouched (:func:`set_image`);
2. the controller observes it → ``status.observedGeneration = generation``, ``Progressing`` reason
   ``ReplicaSetUpdated``, ``updatedReplicas`` 0 (:func:`observe`);
3. new pods come up → ``updatedReplicas`` / ``availableReplicas`` grow, old ones go (:func:`progress`);
4. done → every replica updated and available, ``Progressing`` reason ``NewReplicaSetAvailable``
   (:func:`complete`), or stuck past ``progressDeadlineSeconds`` → ``Progressing`` ``False`` with reason
   ``ProgressDeadlineExceeded`` (:func:`fail`).
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "complete",
    "fail",
    "new_deployment",
    "observe",
    "progress",
    "rfc3339",
    "scale",
    "set_image",
]

Obj = dict[str, Any]


def rfc3339(when: datetime | None = None) -> str:
    """``2026-04-22T02:47:00Z``: the apiserver's ``metav1.Time`` format (seconds, UTC)."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _template_hash(obj: Obj) -> str:
    return hashlib.sha256(repr(obj["spec"]["template"]).encode()).hexdigest()[:10]


def _replica_set(obj: Obj) -> str:
    return f"{obj['metadata']['name']}-{_template_hash(obj)}"


def _touch(obj: Obj, manager: str) -> None:
    obj["metadata"]["managedFields"] = [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": rfc3339(),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {}},
        }
    ]


def _set_status(obj: Obj, **counts: int) -> None:
    """Set status counters, dropping zeros (``omitempty``)."""
    status = obj.setdefault("status", {})
    for key, value in counts.items():
        if value:
            status[key] = value
        else:
            status.pop(key, None)


def _condition(obj: Obj, kind: str, status: str, reason: str, message: str) -> None:
    now = rfc3339()
    conditions: list[Obj] = obj.setdefault("status", {}).setdefault("conditions", [])
    for cond in conditions:
        if cond["type"] == kind:
            if cond["status"] != status:
                cond["lastTransitionTime"] = now
            cond.update(status=status, reason=reason, message=message, lastUpdateTime=now)
            return
    conditions.append(
        {
            "type": kind,
            "status": status,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
    )


def new_deployment(
    namespace: str, name: str, *, image: str, replicas: int = 3, container: str = "app", manager: str = "kubectl"
) -> Obj:
    """A Deployment that has already rolled out ``image`` on every replica (generation 1, observed)."""
    labels = {"app": name}
    obj: Obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "creationTimestamp": rfc3339(),
            "labels": dict(labels),
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": container, "image": image}]},
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    }
    _touch(obj, manager)
    complete(obj)
    return obj


def set_image(obj: Obj, image: str, *, container: str | None = None, manager: str = "kubectl-set") -> None:
    """Change one container's image (the first, or ``container``): a new generation the controller has not seen."""
    containers: list[Obj] = obj["spec"]["template"]["spec"]["containers"]
    target = next((c for c in containers if container is None or c["name"] == container), None)
    if target is None:
        raise ValueError(f"no container {container!r} in {obj['metadata']['name']}")
    target["image"] = image
    obj["metadata"]["generation"] += 1
    annotations = obj["metadata"].setdefault("annotations", {})
    revision = int(annotations.get("deployment.kubernetes.io/revision", "1")) + 1
    annotations["deployment.kubernetes.io/revision"] = str(revision)
    _touch(obj, manager)


def scale(obj: Obj, replicas: int, *, manager: str = "kubectl-scale") -> None:
    """Change ``spec.replicas`` (a new generation, same template); the controller scales at once."""
    obj["spec"]["replicas"] = replicas
    obj["metadata"]["generation"] += 1
    _touch(obj, manager)
    complete(obj)


def observe(obj: Obj) -> None:
    """The controller picked up the new generation and created the new ReplicaSet (no new pod ready yet)."""
    replicas = obj["spec"]["replicas"]
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    _set_status(obj, updatedReplicas=0, replicas=replicas)
    _condition(obj, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{_replica_set(obj)}" is progressing.')


def progress(obj: Obj, *, updated: int, available: int | None = None) -> None:
    """``updated`` new pods exist and ``available`` pods (old and new) are available."""
    replicas = obj["spec"]["replicas"]
    available = min(replicas, updated) if available is None else available
    old_left = max(0, replicas - updated)
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    _set_status(
        obj,
        updatedReplicas=updated,
        replicas=updated + old_left,
        readyReplicas=available,
        availableReplicas=available,
        unavailableReplicas=max(0, updated + old_left - available),
    )
    _condition(obj, "Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{_replica_set(obj)}" is progressing.')


def complete(obj: Obj) -> None:
    """Every replica runs the current template and is available."""
    replicas = obj["spec"]["replicas"]
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    _set_status(
        obj,
        replicas=replicas,
        updatedReplicas=replicas,
        readyReplicas=replicas,
        availableReplicas=replicas,
        unavailableReplicas=0,
    )
    _condition(obj, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
    _condition(
        obj,
        "Progressing",
        "True",
        "NewReplicaSetAvailable",
        f'ReplicaSet "{_replica_set(obj)}" has successfully progressed.',
    )


def fail(obj: Obj, *, message: str | None = None) -> None:
    """The rollout exceeded ``progressDeadlineSeconds``."""
    obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
    text = message or f'ReplicaSet "{_replica_set(obj)}" has timed out progressing.'
    _condition(obj, "Progressing", "False", "ProgressDeadlineExceeded", text)


def snapshot(obj: Obj) -> Obj:
    """A deep copy, safe to hand out."""
    return copy.deepcopy(obj)
