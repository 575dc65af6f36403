"""Reading Deployment states into rollout transitions (pure; objects from the stand-in's controller steps)."""

from __future__ import annotations

from collections.abc import Callable

from chatops.sandbox import kubernetes_objects as k
from chatops.sources.k8s_rollout import DeploymentView, Tracked, Transition, advance, deleted


def run(obj: k.Obj, known: Tracked | None, *, baseline: bool = False) -> tuple[Tracked, list[Transition]]:
    return advance(known, k.snapshot(obj), baseline=baseline)


def kinds(transitions: list[Transition]) -> list[str]:
    return [t.kind for t in transitions]


def test_phase_follows_kubectl_rollout_status() -> None:
    obj = k.new_deployment("checkout", "api", image="checkout:1")
    assert DeploymentView.parse(obj).phase == "complete"
    k.set_image(obj, "checkout:2")
    assert DeploymentView.parse(obj).phase == "pending"
    k.observe(obj)
    assert DeploymentView.parse(obj).phase == "progressing"
    k.progress(obj, updated=3, available=2)
    assert DeploymentView.parse(obj).phase == "progressing"  # fewer available than updated
    k.complete(obj)
    assert DeploymentView.parse(obj).phase == "complete"
    k.set_image(obj, "checkout:3")
    k.fail(obj)
    assert DeploymentView.parse(obj).phase == "failed"


def test_a_rollout_sequence_yields_started_progressing_complete_with_images() -> None:
    obj = k.new_deployment("checkout", "api", image="checkout:1")
    known, out = run(obj, None, baseline=True)
    assert out == []
    seen: list[Transition] = []
    k.set_image(obj, "checkout:2")
    steps: list[Callable[[], None]] = [
        lambda: None,
        lambda: k.observe(obj),
        lambda: k.progress(obj, updated=1),
        lambda: k.progress(obj, updated=1, available=1),
        lambda: k.progress(obj, updated=2),
        lambda: k.complete(obj),
    ]
    for step in steps:
        step()
        known, out = run(obj, known)
        seen.extend(out)
    assert kinds(seen) == ["started", "progressing", "progressing", "progressing", "complete"]
    started, complete = seen[0], seen[-1]
    assert started.rollout is not None and started.rollout.old_images == (("app", "checkout:1"),)
    assert started.rollout.new_images == (("app", "checkout:2"),)
    assert started.view.manager == "kubectl-set" and started.occurred_at is not None
    assert complete.rollout is not None and complete.rollout.old_images == (("app", "checkout:1"),)
    assert len({t.key for t in seen}) == len(seen)
    assert known.rollout is None
    # The same state again (a relist) yields nothing.
    _, again = run(obj, known)
    assert again == []


def test_a_failed_rollout_is_reported_once() -> None:
    obj = k.new_deployment("checkout", "api", image="checkout:1")
    known, _ = run(obj, None, baseline=True)
    k.set_image(obj, "checkout:bad")
    k.observe(obj)
    k.fail(obj)
    known, out = run(obj, known)
    assert kinds(out) == ["started", "failed"]
    assert out[1].detail["reason"] == "ProgressDeadlineExceeded"
    _, again = run(obj, known)
    assert again == []


def test_a_gap_still_yields_start_and_end_with_the_old_image() -> None:
    obj = k.new_deployment("checkout", "api", image="checkout:1")
    known, _ = run(obj, None, baseline=True)
    k.set_image(obj, "checkout:2")
    k.observe(obj)
    k.complete(obj)
    _, out = run(obj, known)  # only the end state was seen (e.g. a relist after 410)
    assert kinds(out) == ["started", "complete"]
    assert out[1].rollout is not None and out[1].rollout.old_images == (("app", "checkout:1"),)


def test_scale_is_not_a_rollout_and_baseline_mid_rollout_is_followed() -> None:
    obj = k.new_deployment("checkout", "api", image="checkout:1")
    known, _ = run(obj, None, baseline=True)
    k.scale(obj, 5)
    known, out = run(obj, known)
    assert kinds(out) == ["scaled"] and out[0].detail == {"from": 3, "to": 5}
    k.set_image(obj, "checkout:2")
    k.observe(obj)
    fresh, out = run(obj, None, baseline=True)
    assert out == [] and fresh.rollout is not None and fresh.rollout.old_images is None
    k.complete(obj)
    _, out = run(obj, fresh)
    assert kinds(out) == ["complete"]


def test_created_recreated_and_deleted() -> None:
    obj = k.new_deployment("checkout", "worker", image="worker:1")
    known, out = run(obj, None)
    assert kinds(out) == ["started", "complete"] and out[0].detail == {"created": True}
    again = k.new_deployment("checkout", "worker", image="worker:1")  # new uid
    _, out = run(again, known)
    assert kinds(out) == ["started", "complete"]
    assert deleted(known).kind == "deleted"
