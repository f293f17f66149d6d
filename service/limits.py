"""Per-client-address rate limits of the expensive anonymous routes, with the ``limits`` library (the one
behind Flask-Limiter and SlowAPI): a moving window per address in memory, so one client cannot take the
work pool from the others. Behind a reverse proxy, the client address is the proxy's unless uvicorn is told
to trust its forwarded headers (``--forwarded-allow-ips``); or let the proxy limit and turn these off."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse, storage, strategies


class RateLimitedError(RuntimeError):
    """A client address went over a rate limit (HTTP maps it to 429 with Retry-After)."""

    def __init__(self, kind: str, limit: str, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"rate limit of {limit} for {kind} per client address reached; retry in {retry_after} s")


def parse_limit(text: str) -> RateLimitItem | None:
    """A limit such as ``"20/10 seconds"`` or ``"5 per second"`` (checked by the settings at start-up);
    ``""`` or ``"off"`` for none."""
    return None if text.strip().lower() in ("", "off") else parse(text)


class ClientLimits:
    """Named limits (e.g. ``drafts``, ``heavy``), each counted per client address."""

    def __init__(self, **limits: str) -> None:
        self._items = {kind: item for kind, text in limits.items() if (item := parse_limit(text)) is not None}
        self._limiter = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def check(self, kind: str, address: str | None) -> None:
        """Count one request of ``kind`` from ``address``; :class:`RateLimitedError` when over its limit."""
        item = self._items.get(kind)
        if item is None or self._limiter.hit(item, kind, address or "unknown"):
            return
        reset = self._limiter.get_window_stats(item, kind, address or "unknown").reset_time
        raise RateLimitedError(kind, str(item), max(1, math.ceil(reset - time.time())))
