"""The build job: catalog files -> the catalog store (upsert) -> a snapshot of the store -> chunk vectors
(stored by writes, cached, or encoded) -> a :class:`Build`, saved atomically beside the builds it replaces
(engine/index/store.py), or nothing when the current build already holds the store's generation.

One build of an index folder runs at a time (engine/index/folder.py). Items the store holds and the files
lack stay (API writes included) unless ``sync``; the changes writes made while a build ran are newer than its
snapshot, so the workers keep serving them beside the new build.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.catalog.records import CatalogError, Publication, catalog_hash, load_catalog
from engine.catalog.text import publication_text
from engine.encode.chunks import ChunkVectors
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.events import emit
from engine.index.catalog_store import (
    CatalogStore,
    ImportPlan,
    Snapshot,
    StoreBusyError,
    StoreUnavailableError,
)
from engine.index.folder import BuildLock, clean_leftovers
from engine.index.neighbours import SliceMap
from engine.index.options import BuildOptions
from engine.index.store import Build

_SHOWN_IDS = 20
logger = logging.getLogger(__name__)


@dataclass(slots=True)
class BuildReport:
    """What one build did."""

    items: int
    encoded: int
    cached: int
    seconds: float
    build_dir: Path | None
    generation: int = 0
    skipped: list[CatalogError] = field(default_factory=list)
    imported: ImportPlan | None = None  # what the catalog files changed in the store
    up_to_date: bool = False  # the current build already holds the store's generation: nothing was written
    dry_run: bool = False
    cleaned: int = 0  # leftovers of killed builds removed

    def summary(self) -> str:
        """The end of a build job: what the import changed, then one line for the build."""
        lines = [self._import_line()] if self.imported is not None else []
        skipped = f", {len(self.skipped)} invalid lines skipped" if self.skipped else ""
        if self.dry_run:
            lines.append("dry run: nothing was written")
        elif self.up_to_date:
            lines.append(
                f"index up to date: the current build already holds the store's {self.items} items (generation "
                f"{self.generation}) with this model and options{skipped}; nothing written ({self.seconds:.2f}s) "
                f"-> {self.build_dir}"
            )
        else:
            rate = self.items / self.seconds if self.seconds > 0 else float("inf")
            lines.append(
                f"indexed {self.items} items at store generation {self.generation} ({self.encoded} encoded, "
                f"{self.cached} from the store or cache{skipped}) in {self.seconds:.1f}s ({rate:.0f} items/s) "
                f"-> {self.build_dir}"
            )
        return "\n".join(lines)

    def _import_line(self) -> str:
        plan = self.imported
        shown = ", ".join(plan.deleted[:_SHOWN_IDS])
        if len(plan.deleted) > _SHOWN_IDS:
            shown += f" and {len(plan.deleted) - _SHOWN_IDS} more"
        if self.dry_run:
            line = f"the import would add {len(plan.added)}, change {len(plan.changed)}, leave {plan.unchanged} as is"
            deleted = f"; it would delete {len(plan.deleted)} absent from the files: {shown}"
        else:
            line = f"import: {len(plan.added)} added, {len(plan.changed)} changed, {plan.unchanged} unchanged"
            deleted = f"; deleted {len(plan.deleted)} absent from the files: {shown}"
        if plan.deleted:
            line += deleted
        if plan.kept_api:
            shown_api = ", ".join(plan.kept_api[:_SHOWN_IDS]) + (" ..." if len(plan.kept_api) > _SHOWN_IDS else "")
            line += (
                f"; kept {len(plan.kept_api)} API edits and deletions of items the files have not changed since "
                f"their last import: {shown_api}"
            )
        if plan.kept:
            line += f"; kept {plan.kept} that the files lack (API writes, earlier imports: --sync deletes them)"
        return line


def build_index(
    catalog_paths: Sequence[Path],
    index_dir: Path,
    encoder: Encoder,
    *,
    cache: EmbeddingCache | None = None,
    skip_invalid: bool = False,
    show_progress: bool = False,
    options: BuildOptions | None = None,
    force: bool = False,
    sync: bool = False,
    dry_run: bool = False,
    map_slices: SliceMap | None = None,
) -> BuildReport:
    """Import the catalog files into the index folder's store (none: build from the store as it is), then
    build the store's publications into a new build folder and make it current.

    Raises :class:`CatalogError` on the first bad line (unless ``skip_invalid``) before anything is written,
    and :class:`~engine.index.folder.BuildLockedError` while another build runs. ``sync`` deletes from the
    store what the files lack; ``dry_run`` only reports what the import would change. When the current build
    already holds the store's generation with this model and options, nothing is written unless ``force``.
    ``map_slices`` computes the neighbour lists elsewhere; with an encoder that encodes on a cluster too
    (engine/runtime/cluster.py), the build is made on Ray and written here exactly as a local one.
    """
    started = time.perf_counter()
    options = options or BuildOptions()
    if sync and not catalog_paths:
        raise ValueError("sync mirrors catalog files: give at least one")
    loaded = load_catalog(list(catalog_paths), skip_invalid=skip_invalid) if catalog_paths else None
    if loaded is not None and not loaded.publications:
        raise CatalogError(str(catalog_paths[0]), 0, "file", "no valid publications; nothing to index")
    with BuildLock(index_dir):
        cleaned = len(clean_leftovers(index_dir))
        store = CatalogStore.of(index_dir)
        try:
            plan, encoded = None, 0
            if loaded is not None:
                plan = store.plan_import(loaded.publications, sync=sync)
                if not dry_run:
                    # Encoded before the import commits: every record it writes can be served at once.
                    chunks, encoded = _encode_records(loaded.publications, plan, encoder, cache, show_progress)
                    plan = store.import_catalog(loaded.publications, sync=sync, chunks=chunks)
            report = BuildReport(
                0, 0, 0, 0.0, None, skipped=loaded.errors if loaded else [], imported=plan, cleaned=cleaned
            )
            if dry_run:
                report.dry_run, report.seconds = True, time.perf_counter() - started
                return report
            _build_snapshot(
                store, report, index_dir, encoder, cache, options, force, show_progress, catalog_paths, map_slices
            )
            report.encoded += encoded
            report.cached = report.items - report.encoded
            report.seconds = time.perf_counter() - started
            emit(
                "build",
                "%s",
                report.summary().splitlines()[-1],
                written=not report.up_to_date,
                build_dir=str(report.build_dir),
                items=report.items,
                encoded=report.encoded,
                generation=report.generation,
                seconds=round(report.seconds, 3),
            )
            return report
        finally:
            store.close()


def _build_snapshot(
    store: CatalogStore,
    report: BuildReport,
    index_dir: Path,
    encoder: Encoder,
    cache: EmbeddingCache | None,
    options: BuildOptions,
    force: bool,
    show_progress: bool,
    catalog_paths: Sequence[Path],
    map_slices: SliceMap | None,
) -> None:
    """Build the store as it is now into ``index_dir`` (unless its current build holds it), filling ``report``."""
    snapshot = store.snapshot()
    if not snapshot.publications:
        raise CatalogError(str(store.path), 0, "catalog", "the store holds no publications; give --catalog")
    report.items, report.generation = len(snapshot.publications), snapshot.generation
    current = None if force else Build.up_to_date(index_dir, encoder.name, snapshot.generation, options)
    if current is not None:
        report.up_to_date, report.build_dir = True, current
        _announce(store)  # in case the run that made it died before announcing it
        return
    chunks, encoded = _chunks_of(snapshot, encoder, cache, show_progress)
    build = Build.assemble(
        snapshot.publications, chunks, encoder.name, options, show_progress=show_progress, map_slices=map_slices
    )
    saved = build.save(
        index_dir,
        generation=snapshot.generation,
        sources=[str(p) for p in catalog_paths] or [str(store.path)],
        digest=catalog_hash(snapshot.publications),
    )
    report.build_dir, report.encoded = saved.folder, encoded
    _announce(store)


def _announce(store: CatalogStore) -> None:
    """Tell every worker to reload (they also notice a new ``current`` by themselves: a failure here is a
    warning, not a failed build)."""
    try:
        store.request_reload()
    except (StoreBusyError, StoreUnavailableError) as exc:
        logger.warning("the build is current, but announcing it failed (%s); workers pick it up from the link", exc)


def _encode_records(
    publications: Sequence[Publication],
    plan: ImportPlan,
    encoder: Encoder,
    cache: EmbeddingCache | None,
    show_progress: bool,
) -> tuple[dict[str, tuple[str, tuple[np.ndarray, np.ndarray]]], int]:
    """The chunk vectors of the records an import writes (cache first), and how many texts were encoded."""
    writes = set(plan.added) | set(plan.changed)
    parts, encoded = _encode([p for p in publications if p.id in writes], encoder, cache, show_progress)
    return {key: (encoder.name, chunks) for key, chunks in parts.items()}, encoded


def _encode(
    publications: Sequence[Publication], encoder: Encoder, cache: EmbeddingCache | None, show_progress: bool
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """id -> (chunk vectors, weights) of ``publications`` (cache first), and how many texts were encoded."""
    if not publications:
        return {}, 0
    chunks, encoded = encode_cached(
        encoder,
        [publication_text(p) for p in publications],
        cache,
        languages=[p.language for p in publications],
        show_progress=show_progress,
    )
    return dict(zip((p.id for p in publications), chunks.split(), strict=True)), encoded


def _chunks_of(
    snapshot: Snapshot, encoder: Encoder, cache: EmbeddingCache | None, show_progress: bool
) -> tuple[ChunkVectors, int]:
    """The chunk vectors of the snapshot's publications: those the store holds, the rest cached or encoded.
    Returns them with the number of texts encoded."""
    publications = snapshot.publications
    parts = {key: (v, w) for key, (model, v, w) in snapshot.chunks.items() if model == encoder.name}
    fresh, encoded = _encode([p for p in publications if p.id not in parts], encoder, cache, show_progress)
    parts.update(fresh)
    chunks = ChunkVectors.of_parts([parts[p.id] for p in publications], encoder.dimension)
    return chunks, encoded
