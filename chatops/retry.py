"""Retry with jittered exponential backoff that honours ``Retry-After``.

Every integration (Slack, PagerDuty, Zoom, ...) retries 429 and 5xx the same way; this module is that one way.
A callable signals "retry me" by raising :class:`Retryable`; anything else propagates at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Backoff", "Retryable", "parse_retry_after", "retry_async"]


class Retryable(Exception):
    """Raised by an attempt that may succeed if tried again.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one; ``status`` the HTTP status
    (``None`` for a connection failure); ``detail`` a short description for the final error message.
    """

    def __init__(self, detail: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Backoff:
    """How many attempts to make and how long to wait between them."""

    attempts: int = 4
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        exp = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return exp * (0.5 + random.random() / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header given in seconds; ``None`` when absent or not a number."""
    if value is None:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        return None


async def retry_async(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    *,
    on_giveup: Callable[[Retryable, int], Exception],
) -> T:
    """Run ``attempt`` until it returns, raising ``on_giveup(last_error, attempts)`` after ``backoff.attempts``."""
    for n in range(1, backoff.attempts + 1):
        try:
            return await attempt()
        except Retryable as exc:
            if n == backoff.attempts:
                raise on_giveup(exc, n) from exc
            await asyncio.sleep(backoff.delay(n, exc.retry_after))
    raise AssertionError("unreachable")  # pragma: no cover
