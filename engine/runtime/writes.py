"""Catalog writes without a full rebuild: upsert or delete publications, persisted as a new build.

Only the new or changed items are encoded; every other chunk vector comes from the build in service, and
the catalog adaptation is updated only where the change reaches (engine/index/adaptation.py), with the build's mean.
The result is written like any build (staging folder, checksums, atomic ``current`` flip), so a write
is on disk before it is acknowledged and a restart loses nothing. A later ``scripts/build_index.py``
run replaces the catalog with its input files, API writes included.
"""

from __future__ import annotations

import logging
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.catalog.records import Publication
from engine.catalog.text import publication_text
from engine.encode.chunks import ChunkVectors
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.index.adaptation import CatalogAdaptation
from engine.index.store import CATALOG_FILE, CHUNKS_FILE, Build
from engine.index.vectors import IndexLoadError
from engine.rank.recommend import EncoderUnavailableError, Recommender, UnknownPublicationError
from engine.settings import available_cores

logger = logging.getLogger(__name__)
MAX_WRITE_ITEMS = 100
# Neighbour lists are recomputed for the whole catalog (calibration is refitted on every write), a cost
# that grows with it (docs/performance.md): above this size a write's build goes without them (live
# search, the same answers) until the next scripts/build_index.py run.
WRITE_NEIGHBOURS_LIMIT = 20_000
# Up to this many chunks a write fits the catalog adaptation afresh, like a build: a small fit costs little.
REFIT_CHUNKS = 5_000


class WriteRejectedError(ValueError):
    """A write that breaks a documented limit (HTTP maps it to 422)."""


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What a write changed."""

    build_id: str
    upserted: tuple[str, ...]
    deleted: tuple[str, ...]
    publications: int


def apply_writes(
    recommender: Recommender,
    index_dir: Path,
    *,
    upserts: Sequence[Publication] = (),
    deletes: Sequence[str] = (),
    encoder: Encoder | None = None,
    cache: EmbeddingCache | None = None,
) -> WriteReport:
    """Write a new build of ``index_dir``: ``recommender``'s catalog with ``upserts`` and without ``deletes``."""
    if len(upserts) + len(deletes) > MAX_WRITE_ITEMS:
        raise WriteRejectedError(f"at most {MAX_WRITE_ITEMS} publications per write, got {len(upserts) + len(deletes)}")
    repeated = sorted(key for key, n in Counter(p.id for p in upserts).items() if n > 1)
    if repeated:
        raise WriteRejectedError(f"duplicate ids in one write: {', '.join(repeated)}; send each publication once")
    for publication_id in deletes:
        recommender.get(publication_id)  # UnknownPublicationError names a missing id
    if upserts and encoder is None:
        raise EncoderUnavailableError("this service was started without a model; it cannot encode new items")
    old_ids, before = _stored_chunks(recommender, Path(index_dir))
    removed = set(deletes) | {p.id for p in upserts}
    kept = [i for i, key in enumerate(old_ids) if key not in removed]
    publications = [recommender.publications[old_ids[i]] for i in kept] + list(upserts)
    if not publications:
        raise WriteRejectedError("a write may not remove every publication; build an index from a catalog instead")
    added = ChunkVectors.concat([], before.vectors.shape[1])
    if upserts:
        texts = [publication_text(p) for p in upserts]
        added, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in upserts])
    options = recommender.build.options
    adaptation, base = None, recommender.index
    kept_chunks, old_rows = before.select(kept)
    chunks = ChunkVectors.concat([kept_chunks, added], before.vectors.shape[1])
    changed = np.arange(len(kept), len(publications))
    if options.adapt:
        fitted = recommender.build.stored_adaptation()
        if fitted is None:
            raise IndexLoadError(_unusable(recommender, Path(index_dir), "it has no adaptation.npz"))
        if _refit(fitted, len(chunks.vectors), len(publications)):
            # Small, or much grown or shrunk since its mean was fitted: fit again, as a build would.
            base = None
        else:
            # The build's mean stays until the next scripts/build_index.py run: only what a write touches moves.
            adaptation, changed = fitted.update(chunks, old_rows, threads=available_cores())
    lists = len(publications) <= WRITE_NEIGHBOURS_LIMIT
    if options.neighbours and not lists:
        logger.warning(
            "%d publications: this write's build has no neighbour lists (over %d); related-by-id uses the live "
            "search until the next scripts/build_index.py run",
            len(publications),
            WRITE_NEIGHBOURS_LIMIT,
        )
        # Recorded as made, so a later build_index from files compares like with like.
        options = replace(options, neighbours=0)
    build = Build.assemble(
        publications,
        chunks,
        recommender.index.model,
        options,
        adaptation=adaptation,
        base=base,
        changed=[publications[i].id for i in changed],
    ).save(Path(index_dir), sources=["api"])
    return WriteReport(build.build_id, tuple(p.id for p in upserts), tuple(deletes), len(publications))


def _refit(fitted: CatalogAdaptation, chunks: int, documents: int) -> bool:
    """Whether a write fits the adaptation afresh instead of updating it with the build's mean: when a fresh
    fit costs little, or when the catalog has halved or doubled since the mean was fitted (a build of a few
    items that grows by writes would otherwise keep a mean that is one of its items)."""
    return chunks <= REFIT_CHUNKS or not fitted.documents / 2 <= documents <= 2 * fitted.documents


def _unusable(recommender: Recommender, index_dir: Path, reason: str) -> str:
    """Why the build in service cannot take a write, and the rebuild that keeps its writes: from its own catalog."""
    return (
        f"the build in {recommender.build.folder} cannot take writes: {reason}; rebuild it from its own catalog, "
        f"which holds every write so far: python scripts/build_index.py --catalog "
        f"{recommender.build.folder / CATALOG_FILE} --index-dir {index_dir}"
    )


def _stored_chunks(recommender: Recommender, index_dir: Path) -> tuple[list[str], ChunkVectors]:
    """The chunk vectors of the build in service, in its catalog's order."""
    if recommender.build.folder is None:
        raise WriteRejectedError("this recommender was built in memory; writes need an index folder")
    try:
        stored = recommender.build.stored_chunks()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise IndexLoadError(_unusable(recommender, index_dir, f"{CHUNKS_FILE} is damaged ({exc})")) from None
    if stored is None or stored[0] != list(recommender.publications):
        raise IndexLoadError(_unusable(recommender, index_dir, f"{CHUNKS_FILE} is missing or holds another catalog"))
    return stored


__all__ = ["MAX_WRITE_ITEMS", "UnknownPublicationError", "WriteRejectedError", "WriteReport", "apply_writes"]
