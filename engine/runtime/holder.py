"""The recommender in service: loaded once, reloaded without downtime, optionally on index changes.

Requests take a reference to the current :class:`Recommender` and keep it to the end, so a reload
(which loads the new index completely before one reference swap) never disturbs a request in flight.
A new index that fails to load is refused and the old one stays in service.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.catalog.records import CatalogError, Publication
from engine.encode.embed import EmbeddingCache, Encoder
from engine.index.overrides import OVERRIDES_FILE, OverridesError
from engine.index.store import resolve_build
from engine.index.vectors import IndexLoadError
from engine.rank.recommend import Recommender
from engine.runtime.loading import load_recommender
from engine.runtime.writes import WriteReport, apply_writes

logger = logging.getLogger(__name__)


class NotReadyError(RuntimeError):
    """No index is loaded yet (HTTP maps it to 503)."""


class ReloadError(RuntimeError):
    """A new index was refused; the previous one is still in service."""


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """The outcome of a reload."""

    build_id: str | None
    previous_build_id: str | None
    publications: int
    changed: bool
    warnings: tuple[str, ...]


class EngineHolder:
    """Holds the recommender in service and swaps in new builds of ``index_dir``."""

    def __init__(
        self,
        index_dir: Path,
        expected_model: str | None,
        encoder: Encoder | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.expected_model = expected_model
        self.encoder = encoder
        self.cache = cache
        self._current: Recommender | None = None
        self.loaded_at: str | None = None
        self.last_error: str | None = None
        self._reload_lock = threading.Lock()
        self._warm_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def current(self) -> Recommender:
        """The recommender in service (:class:`NotReadyError` before the first successful load)."""
        recommender = self._current
        if recommender is None:
            raise NotReadyError(f"no index loaded from {self.index_dir}: {self.last_error or 'not loaded yet'}")
        return recommender

    @property
    def ready(self) -> bool:
        """Whether an index is in service."""
        return self._current is not None

    def reload(self) -> ReloadReport:
        """Load the current build of the index folder and swap it in; on failure keep the old one."""
        with self._reload_lock:
            previous = self._current
            try:
                fresh = load_recommender(self.index_dir, self.expected_model, self.encoder)
                fresh.warm()  # the old build serves meanwhile; no request pays for the new one's first use
            except (IndexLoadError, CatalogError, OverridesError, OSError, ValueError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                kept = previous.build.build_id if previous else None
                logger.error("reload refused, keeping build %s: %s", kept, self.last_error)
                raise ReloadError(self.last_error) from exc
            self._swap_in(fresh)
            report = ReloadReport(
                build_id=fresh.build.build_id,
                previous_build_id=previous.build.build_id if previous else None,
                publications=len(fresh),
                changed=previous is None or previous.version != fresh.version,
                warnings=fresh.overrides.warnings,
            )
            logger.info("serving build %s (%d publications)", report.build_id, report.publications)
            return report

    def write(self, upserts: Sequence[Publication] = (), deletes: Sequence[str] = ()) -> WriteReport:
        """Upsert and/or delete publications: a new build on disk, then swapped in (see engine/runtime/writes.py)."""
        with self._reload_lock:
            report = apply_writes(
                self.current, self.index_dir, upserts=upserts, deletes=deletes, encoder=self.encoder, cache=self.cache
            )
            fresh = load_recommender(self.index_dir, self.expected_model, self.encoder)
            self._swap_in(fresh)
            logger.info("write: %d upserted, %d deleted -> build %s", len(upserts), len(deletes), report.build_id)
        # Acknowledged without waiting for the term statistics (a minute at 100k items): they are computed
        # right after, in the background; an explanation asked meanwhile waits for them off the event loop.
        threading.Thread(target=self._warm_if_current, args=(fresh,), name="warm-after-write", daemon=True).start()
        return report

    def _warm_if_current(self, recommender: Recommender) -> None:
        """Warm ``recommender`` unless a later write replaced it meanwhile (one warm-up at a time)."""
        with self._warm_lock:
            if self._current is recommender:
                recommender.warm()

    def _swap_in(self, fresh: Recommender) -> None:
        """Put ``fresh`` in service (callers hold the lock)."""
        self._current = fresh  # one reference assignment: requests see the old or the new, never half
        # A large build is hundreds of thousands of objects that every full garbage collection would walk with
        # the GIL held, again and again while the per-item caches fill (the tail latency it cost is in
        # docs/performance.md). Builds hold no reference cycles (tested), so they go to the permanent
        # generation once loaded and are still freed by reference counting when replaced. One collection
        # first, so no garbage of the loading (np.load leaves small cycles) is frozen with them.
        gc.collect()
        gc.freeze()
        self.loaded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.last_error = None
        for warning in fresh.overrides.warnings:
            logger.warning(warning)

    def try_load(self) -> None:
        """Initial load: a failure is logged and reported by ``/ready`` instead of stopping the service."""
        with contextlib.suppress(ReloadError):
            self.reload()

    def signature(self) -> tuple[str, int]:
        """What the watcher compares: the current build folder and the overrides file's mtime."""
        overrides = self.index_dir / OVERRIDES_FILE
        try:
            mtime = overrides.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = 0
        return str(resolve_build(self.index_dir)), mtime

    def start_watching(self, interval: float = 1.0) -> None:
        """Poll the index folder every ``interval`` seconds and reload when it changes.

        Polling a symlink and one mtime is cheap and works on every filesystem, unlike inotify.
        """
        if self._watcher is not None:
            return
        self._stop.clear()
        last = self.signature()

        def watch() -> None:
            nonlocal last
            while not self._stop.wait(interval):
                now = self.signature()
                if now == last:
                    continue
                last = now
                with contextlib.suppress(ReloadError):  # logged, and the previous build stays in service
                    self.reload()

        self._watcher = threading.Thread(target=watch, name="index-watcher", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        """Stop the watcher thread, if any."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
