"""The recommender in service: loaded once, kept in step with the catalog store, reloaded without downtime.

Requests take a reference to the current :class:`Recommender` and keep it to the end, so a reload or a write
(each makes a new recommender completely before one reference swap) never disturbs a request in flight. A new
build that fails to load is refused and the old one stays in service.

Every worker follows the catalog store (engine/index/catalog_store.py): a write committed by any of them, a
build made by ``scripts/build_index.py`` or a reload asked of any of them reaches all within a second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.catalog.records import Publication
from engine.encode.embed import EmbeddingCache, Encoder
from engine.events import emit
from engine.index.catalog_store import CatalogStore, Change, StoreBusyError, StoreUnavailableError
from engine.index.folder import BuildLock, BuildLockedError, clean_leftovers
from engine.index.overrides import OVERRIDES_FILE, OverridesError, OverridesFile, read_overrides
from engine.index.store import Build, resolve_build
from engine.rank.recommend import Recommender
from engine.runtime.loading import LOAD_ERRORS, changes_after, compose, load_build
from engine.runtime.writes import WriteRejectedError, WriteReport, check_write, encode_upserts

logger = logging.getLogger(__name__)
# How often a worker looks at the store (and, with --watch, the index folder): writes, builds and reloads
# made elsewhere are served within this, plus the time to compose them.
FOLLOW_INTERVAL = 0.1
# Seconds before a failed reload is tried again (a busy store, a build replaced while it loaded...).
RETRY_DELAY = 5.0
# Seconds without a new write before a worker computes the term statistics of explanations for its catalog.
WARM_DELAY = 1.0


class NotReadyError(RuntimeError):
    """No index is loaded yet (HTTP maps it to 503)."""

    retry_after = 5


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
        self.store: CatalogStore | None = None
        self._current: Recommender | None = None
        self.serving_since: float | None = None  # when the recommender in service was swapped in (Unix time)
        self.last_error: str | None = None  # of the last reload or catch-up that failed, until one succeeds
        self.fallback: str | None = None  # why an older build is served, when the current one is unusable
        self.pending = 0  # store changes without vectors of the build's model, waiting for a build
        self._base: Build | None = None
        self._overrides: OverridesFile | None = None
        self._changes: dict[str, Change] = {}
        self._vectors: dict[tuple[str, int], np.ndarray] = {}
        self._reloads_seen = 0
        self._signature: tuple[str, int] | None = None
        self._reload_lock = threading.Lock()  # the served state: held for a swap, never for a load
        self._reload_serial = threading.Lock()  # one reload at a time
        self._retry_at: float | None = None  # when to try a failed reload again
        self._warm_lock = threading.Lock()
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def current(self) -> Recommender:
        """The recommender in service (:class:`NotReadyError` before the first successful load)."""
        recommender = self._current
        if recommender is None:
            raise NotReadyError(f"no index loaded from {self.index_dir}: {self.last_error or 'not loaded yet'}")
        return recommender

    @property
    def loaded_at(self) -> str | None:
        """:attr:`serving_since` as an ISO time, to the second."""
        if self.serving_since is None:
            return None
        return dt.datetime.fromtimestamp(self.serving_since, dt.UTC).isoformat(timespec="seconds")

    @property
    def ready(self) -> bool:
        """Whether an index is in service."""
        return self._current is not None

    @property
    def generation(self) -> int:
        """The catalog store generation served (0 before the first load)."""
        return self._current.generation if self._current is not None else 0

    def reload(self, *, everywhere: bool = False) -> ReloadReport:
        """Load the current build of the index folder with the store's changes since, and swap it in; on
        failure keep the old one (and try again after ``RETRY_DELAY``). ``everywhere``: then ask every other
        worker to reload too. Writes go on meanwhile: the lock they share is held only for the swap."""
        with self._reload_serial:
            started = time.monotonic()
            previous = self._current
            self._signature, self._retry_at = self.signature(), None
            try:
                if self.store is not None:
                    self._reloads_seen = self.store.reloads()
                build, fallback = load_build(self.index_dir, self.expected_model)
                overrides = read_overrides(self.index_dir)
                store = self._open_store(build)
                generation, changes = changes_after(store, build)
                vectors: dict[tuple[str, int], np.ndarray] = {}
                fresh, pending = compose(build, overrides, changes.values(), generation, self.encoder, vectors)
                fresh.warm()  # the old build serves meanwhile; no request pays for the new one's first use
            except (*LOAD_ERRORS, OverridesError, StoreBusyError, StoreUnavailableError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._retry_at = time.monotonic() + RETRY_DELAY  # a busy store, a build being replaced...
                kept = previous.build.build_id if previous else None
                emit(
                    "reload",
                    "reload refused, keeping build %s: %s",
                    kept,
                    self.last_error,
                    level=logging.ERROR,
                    outcome="failed",
                    build_id=kept,
                    error=self.last_error,
                    seconds=round(time.monotonic() - started, 3),
                )
                raise ReloadError(self.last_error) from exc
            with self._reload_lock:
                # Writes committed while it loaded join it (cheaply: the tables of this build are reused).
                now, later = changes_after(store, build, generation)
                if later:
                    changes = {**changes, **later}
                    fresh, pending = compose(
                        build, overrides, changes.values(), now, self.encoder, vectors, previous=fresh
                    )
                self._base, self._overrides, self._changes, self._vectors = build, overrides, changes, vectors
                self.fallback, self.pending = fallback, pending
                self._swap_in(fresh)
            for warning in fresh.overrides.warnings:  # once a reload, not once a write
                logger.warning(warning)
            if everywhere and store is not None:
                try:
                    self._reloads_seen = store.request_reload()
                except (StoreBusyError, StoreUnavailableError) as exc:
                    logger.warning("reloaded here, but asking the other workers failed: %s", exc)
            report = ReloadReport(
                build_id=fresh.build.build_id,
                previous_build_id=previous.build.build_id if previous else None,
                publications=len(fresh),
                changed=previous is None or previous.version != fresh.version,
                warnings=fresh.overrides.warnings,
            )
            emit(
                "reload",
                "serving build %s at generation %d (%d publications, %d changes since the build)",
                report.build_id,
                now,
                report.publications,
                len(fresh.delta),
                outcome="ok",
                build_id=report.build_id,
                previous_build_id=report.previous_build_id,
                generation=now,
                publications=report.publications,
                changes_since_build=len(fresh.delta),
                seconds=round(time.monotonic() - started, 3),
            )
            return report

    def write(self, upserts: Sequence[Publication] = (), deletes: Sequence[str] = ()) -> WriteReport:
        """Upsert and/or delete publications: committed to the store (durable when this returns), then served
        by this worker at once and by every other within a second. Nothing is rebuilt."""
        check_write(upserts, deletes)
        recommender = self.current
        if self.store is None:
            raise WriteRejectedError(
                f"this service has no catalog store in {self.index_dir} (read-only?); it serves the build as is"
            )
        if deletes and not upserts and len(deletes) >= len(recommender):
            raise WriteRejectedError("a write may not remove every publication; build an index from a catalog instead")
        # Encoded before the store's lock is taken: other writers wait for the commit only.
        encoded = encode_upserts(self.encoder, upserts, self.cache)
        generation = self.store.write(encoded, deletes)
        try:
            self.catch_up()
        except Exception:
            logger.exception("write committed at generation %d, but serving it here failed; retrying", generation)
        served = self.current
        emit(
            "write",
            "write: %d upserted, %d deleted -> generation %d",
            len(upserts),
            len(deletes),
            generation,
            upserted=len(upserts),
            deleted=len(deletes),
            generation=generation,
            build_id=served.build.build_id,
        )
        return WriteReport(
            served.build.build_id,
            generation,
            tuple(p.id for p in upserts),
            tuple(deletes),
            len(served),
        )

    def catch_up(self) -> bool:
        """Serve the store's changes committed since the generation in service; whether there were any."""
        with self._reload_lock:
            if self.store is None or self._base is None:
                return False
            generation, changes = self.store.changes_since(self.generation)
            if generation <= self.generation:
                return False
            merged = {**self._changes, **{c.id: c for c in changes}}
            fresh, pending = compose(
                self._base, self._overrides, merged.values(), generation, self.encoder, self._vectors, self._current
            )
            live = {(c.id, c.version) for c in merged.values()}
            for stale in [key for key in self._vectors if key not in live]:
                del self._vectors[stale]
            self._changes, self.pending = merged, pending
            self._swap_in(fresh)
        # Served without waiting for the term statistics (a minute at 100k items): they are computed in the
        # background once writes pause for WARM_DELAY, so a burst of writes pays for them once; an explanation
        # asked meanwhile computes them off the event loop.
        timer = threading.Timer(WARM_DELAY, self._warm_if_current, args=(fresh,))
        timer.daemon = True
        timer.start()
        return True

    def _open_store(self, build: Build) -> CatalogStore | None:
        """The index folder's store, seeded from ``build`` when it was lost; None when it cannot be opened (the
        build is then served as it is, without writes)."""
        if self.store is None:
            try:
                self.store = CatalogStore.of(self.index_dir)
            except StoreUnavailableError as exc:
                logger.warning("%s; serving the build without writes", exc)
                return None
            self._reloads_seen = self.store.reloads()
        generation = build.manifest.store_generation if build.manifest else None
        if generation is not None and self.store.adopt(build.publications, generation):
            logger.warning(
                "the catalog store was empty or behind build %s (generation %d): adopted it", build.build_id, generation
            )
        return self.store

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
        self.serving_since = time.time()  # of this generation: how late a worker caught up is measurable
        self.last_error = None

    def try_load(self) -> None:
        """Initial load: a failure is logged and reported by ``/ready`` instead of stopping the service. First,
        unless a build is running, what killed builds left in the index folder is removed."""
        if self.index_dir.is_dir():
            # A build running now holds the lock and cleans up itself; a read-only folder is served as it is.
            with contextlib.suppress(BuildLockedError, OSError), BuildLock(self.index_dir):
                for leftover in clean_leftovers(self.index_dir):
                    logger.warning("removed %s, left by a build that was killed", leftover)
        with contextlib.suppress(ReloadError):
            self.reload()

    def signature(self) -> tuple[str, int]:
        """What ``--watch`` compares: the current build folder and the overrides file's mtime."""
        overrides = self.index_dir / OVERRIDES_FILE
        try:
            mtime = overrides.stat().st_mtime_ns
        except OSError:
            mtime = 0
        return str(resolve_build(self.index_dir)), mtime

    def follow_once(self, *, watch: bool = False) -> None:
        """One look at the store (and with ``watch`` at the index folder): reload or catch up if it moved."""
        retry = self._retry_at is not None and time.monotonic() >= self._retry_at
        if self._current is None:
            if retry or self.signature() != self._signature:  # not loaded yet: again once the folder changes
                self.try_load()
            return
        generation, reloads = (
            self.store.positions() if self.store is not None else (self.generation, self._reloads_seen)
        )
        link, mtime = self.signature()
        # A new `current` is always noticed (a build that died before announcing itself); the overrides file,
        # edited by hand, with `watch`.
        moved = link != self._signature[0] or (watch and mtime != self._signature[1])
        if retry or moved or reloads != self._reloads_seen:
            self.reload()
        elif generation != self.generation:
            self.catch_up()

    def start_following(self, interval: float = FOLLOW_INTERVAL, *, watch: bool = False) -> None:
        """Follow the store every ``interval`` seconds in a thread (and with ``watch`` the index folder: a new
        ``current`` link or an edited ``overrides.json``). Polling one row and one mtime is cheap and works on
        every filesystem, unlike inotify. A failure is logged and kept for ``/ready``; the thread goes on."""
        if self._follower is not None:
            return
        self._stop.clear()

        def follow() -> None:
            while not self._stop.wait(interval):
                try:
                    self.follow_once(watch=watch)
                except ReloadError:
                    pass  # logged, kept in last_error; the previous build stays in service
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    logger.exception("following the store failed; retrying in %.0fs", RETRY_DELAY)
                    self._stop.wait(RETRY_DELAY)  # a lasting failure is logged every few seconds, not ten a second

        self._follower = threading.Thread(target=follow, name="store-follower", daemon=True)
        self._follower.start()

    def stop_following(self) -> None:
        """Stop the follower thread, if any."""
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=5)
            self._follower = None

    @property
    def worker(self) -> int:
        """This worker's process id (``/ready`` shows which worker answered)."""
        return os.getpid()
