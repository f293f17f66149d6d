"""The CPU-heavy part of a request (encoding a draft, a diverse or deep list, explanations, title search)
runs here: off the event loop, on a few threads, behind a bounded queue. A full queue is answered at once
with 503 and Retry-After, so a flood of expensive requests costs the others a refusal, never a stall."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class BusyError(RuntimeError):
    """Every worker is busy and the queue is full (HTTP maps it to 503 with Retry-After)."""

    def __init__(self, workers: int, queue: int, retry_after: int = 1) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"the service is busy: {workers} worker(s) and a queue of {queue} are taken; retry in {retry_after} s"
        )


class WorkPool:
    """``workers`` threads (anyio's, under a capacity limiter) and at most ``queue`` requests waiting."""

    def __init__(self, workers: int, queue: int) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"a work pool needs workers >= 1 and queue >= 0, got {workers} and {queue}")
        self.workers, self.queue = workers, queue
        self._limiter: anyio.CapacityLimiter | None = None  # made on first use, inside the event loop
        # Counted here, before the first await: the limiter's own statistics lag a burst that arrives in one
        # tick of the loop (every request would pass the check before any of them waits). Only the event
        # loop touches it, so it needs no lock.
        self._admitted = 0

    async def run(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args)`` on a worker thread; :class:`BusyError` at once when the queue is full."""
        if self._admitted >= self.workers + self.queue:
            raise BusyError(self.workers, self.queue)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.workers)
        self._admitted += 1
        try:
            return await anyio.to_thread.run_sync(function, *args, limiter=self._limiter)
        finally:
            self._admitted -= 1

    @property
    def waiting(self) -> int:
        """Requests admitted and not yet on a worker."""
        return max(0, self._admitted - self.workers)
