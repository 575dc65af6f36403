"""``chatops.tasks.TaskTracker``: the concurrency bound, drain-then-cancel on shutdown, refusal after close."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import warnings

import pytest

from chatops.tasks import TaskTracker, TrackerClosed


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_limit_run_at_once_the_rest_wait_their_turn() -> None:
    tracker = TaskTracker(limit=2)
    release = asyncio.Event()
    running = 0
    peak = 0
    finished: list[int] = []

    async def work(n: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        finished.append(n)
        return n

    tasks = [tracker.spawn(work(n), name=f"work {n}") for n in range(5)]
    await settle()
    assert running == 2, "two run, three wait for the semaphore"
    assert tracker.in_flight == 5, "waiting tasks count as in flight"
    release.set()
    assert await asyncio.gather(*tasks) == [0, 1, 2, 3, 4]
    assert peak == 2
    assert sorted(finished) == [0, 1, 2, 3, 4]
    assert tracker.in_flight == 0


async def test_tasks_are_named_and_results_returned() -> None:
    tracker = TaskTracker()

    async def answer() -> int:
        return 42

    task = tracker.spawn(answer(), name="command /incident")
    assert task.get_name() == "command /incident"
    assert await task == 42


async def test_wait_idle_returns_when_the_last_task_is_done() -> None:
    tracker = TaskTracker()
    await asyncio.wait_for(tracker.wait_idle(), 1)  # nothing spawned: at once
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    tracker.spawn(work(), name="a")
    tracker.spawn(work(), name="b")
    idle = asyncio.create_task(tracker.wait_idle())
    await settle()
    assert not idle.done()
    gate.set()
    await asyncio.wait_for(idle, 1)
    assert tracker.in_flight == 0


async def test_close_drains_finishing_work_then_cancels_the_rest() -> None:
    tracker = TaskTracker()
    gate = asyncio.Event()
    cleaned_up: list[str] = []

    async def finishes() -> str:
        await gate.wait()
        return "done"

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.append("hangs")

    quick = tracker.spawn(finishes(), name="quick")
    stuck = tracker.spawn(hangs(), name="stuck")
    await settle()
    closing = asyncio.create_task(tracker.close(timeout=0.2))
    await settle()
    assert tracker.closing
    gate.set()  # the in-flight declare finishes during the drain
    cancelled = await closing
    assert cancelled == 1
    assert quick.result() == "done"
    assert stuck.cancelled()
    assert cleaned_up == ["hangs"], "cancelled work gets to run its clean-up"
    assert tracker.in_flight == 0


async def test_close_with_nothing_in_flight_returns_zero_at_once() -> None:
    tracker = TaskTracker()
    assert await asyncio.wait_for(tracker.close(timeout=30), 1) == 0
    assert tracker.closing


async def test_close_returns_as_soon_as_the_work_is_done() -> None:
    tracker = TaskTracker()

    async def short() -> None:
        await asyncio.sleep(0)

    tracker.spawn(short(), name="short")
    # A 30 s timeout must not be waited out: wait_for fails the test if close() lingers.
    assert await asyncio.wait_for(tracker.close(timeout=30), 5) == 0


async def test_spawn_is_refused_after_close_and_the_coroutine_is_closed() -> None:
    tracker = TaskTracker()
    await tracker.close(timeout=0)

    async def work() -> None:  # pragma: no cover - must never run
        raise AssertionError("ran after close")

    coro = work()
    with pytest.raises(TrackerClosed, match="shutting down"):
        tracker.spawn(coro, name="late")
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # no "never awaited" warning later
    assert tracker.in_flight == 0


async def test_stop_accepting_refuses_new_work_but_lets_running_work_finish() -> None:
    tracker = TaskTracker()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "finished"

    running = tracker.spawn(work(), name="running")
    tracker.stop_accepting()
    late = work()
    with pytest.raises(TrackerClosed):
        tracker.spawn(late, name="late")
    gate.set()
    assert await running == "finished"


async def test_a_failing_task_is_logged_with_its_name(caplog: pytest.LogCaptureFixture) -> None:
    tracker = TaskTracker()

    async def boom() -> None:
        raise RuntimeError("kaput")

    task = tracker.spawn(boom(), name="command /incident")
    with caplog.at_level(logging.ERROR, logger="chatops.tasks"):
        with pytest.raises(RuntimeError):
            await task
        await settle()
    [record] = [r for r in caplog.records if r.getMessage() == "background task failed"]
    assert getattr(record, "task", None) == "command /incident"
    assert record.exc_info is not None and "kaput" in str(record.exc_info[1])
    assert tracker.in_flight == 0


async def test_work_cancelled_while_waiting_for_its_turn_leaves_no_unawaited_coroutine() -> None:
    tracker = TaskTracker(limit=1)

    async def hangs() -> None:
        await asyncio.Event().wait()

    async def queued() -> None:  # pragma: no cover - cancelled before it gets the semaphore
        raise AssertionError("must not run")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = tracker.spawn(hangs(), name="first")
        second = tracker.spawn(queued(), name="second")
        await settle()
        assert await tracker.close(timeout=0) == 2
        assert first.cancelled() and second.cancelled()
        del first, second
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


async def test_work_cancelled_before_it_ever_started_leaves_no_unawaited_coroutine() -> None:
    tracker = TaskTracker()

    async def work() -> None:  # pragma: no cover - cancelled before its first step
        raise AssertionError("must not run")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = tracker.spawn(work(), name="cancelled at once")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
    assert tracker.in_flight == 0
