"""What the engine does that an operator counts: reloads, writes, builds.

Each event is one log record of the ``engine.events`` logger, carrying ``event`` and its fields as record
attributes (a JSON log formatter writes them as keys), and is passed to the listeners registered with
:func:`listen` (the service's metrics). The engine stays free of any metrics or logging library.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("engine.events")
Listener = Callable[[str, dict[str, Any]], None]
_listeners: list[Listener] = []


def listen(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event, fields)`` on every event from now on; returns the function that stops it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None


def emit(event: str, message: str, *args: object, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``message % args`` with ``event`` and ``fields`` attached, and tell the listeners."""
    logger.log(level, message, *args, extra={"event": event, **fields})
    for listener in list(_listeners):
        try:
            listener(event, fields)
        except Exception:  # a broken listener must not fail a reload or a write
            logger.exception("event listener %r failed on %s", listener, event)
