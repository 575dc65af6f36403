"""``chatops.locks.KeyedLock``: one holder per key, keys independent, nothing kept once released."""

from __future__ import annotations

import asyncio

import pytest

from chatops.locks import KeyedLock


async def test_one_holder_per_key_in_arrival_order() -> None:
    locks = KeyedLock()
    order: list[str] = []
    inside = 0

    async def work(name: str) -> None:
        nonlocal inside
        async with locks.hold("inc-1"):
            inside += 1
            assert inside == 1, "two holders of one key at once"
            await asyncio.sleep(0.01)
            order.append(name)
            inside -= 1

    await asyncio.gather(*(work(str(n)) for n in range(5)))
    assert order == ["0", "1", "2", "3", "4"]
    assert len(locks) == 0


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLock()
    async with locks.hold("inc-1"):
        async with asyncio.timeout(1):
            async with locks.hold("inc-2"):
                assert len(locks) == 2
    assert len(locks) == 0


async def test_a_failing_or_cancelled_holder_releases_the_key() -> None:
    locks = KeyedLock()
    with pytest.raises(RuntimeError):
        async with locks.hold("inc-1"):
            raise RuntimeError("boom")
    assert len(locks) == 0

    async def wait() -> None:
        async with locks.hold("inc-1"):
            raise AssertionError("never reached: cancelled while waiting")

    async with locks.hold("inc-1"):
        waiter = asyncio.create_task(wait())
        await asyncio.sleep(0.01)
        assert len(locks) == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert len(locks) == 0
