"""Reading what a worker serves: the current build (or, when it is damaged, the newest intact one), its
overrides, and the catalog changes since the build, composed into a :class:`Recommender`."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Iterable, MutableMapping
from pathlib import Path

import numpy as np

from engine.catalog.records import CatalogError
from engine.encode.chunks import ChunkVectors
from engine.encode.embed import Encoder
from engine.index.catalog_store import CatalogStore, Change
from engine.index.delta import Delta, outside_vectors
from engine.index.folder import finished_builds, resolve_build
from engine.index.overrides import OverridesFile, read_overrides
from engine.index.store import Build
from engine.index.vectors import IndexLoadError
from engine.rank.recommend import Recommender

logger = logging.getLogger(__name__)
# What a damaged build can raise while it loads (besides IndexLoadError, which names the problem).
LOAD_ERRORS = (IndexLoadError, CatalogError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def load_recommender(index_dir: Path, expected_model: str | None = None, encoder: Encoder | None = None) -> Recommender:
    """What a worker of ``index_dir`` serves now: its current build (see :meth:`Build.load`), the catalog store's
    changes since that build, and the overrides. Reads the store, never writes it."""
    build = Build.load(Path(index_dir), expected_model)
    store = CatalogStore.of(index_dir) if CatalogStore.exists(index_dir) else None
    try:
        generation, changes = changes_after(store, build)
    finally:
        if store is not None:
            store.close()
    return compose(build, read_overrides(Path(index_dir)), changes.values(), generation, encoder)[0]


def changes_after(store: CatalogStore | None, build: Build, since: int = 0) -> tuple[int, dict[str, Change]]:
    """The store's generation, and its changes after both the build's generation and ``since``, by id."""
    base = max(build.manifest.store_generation or 0 if build.manifest is not None else 0, since)
    if store is None:
        return base, {}
    generation, changes = store.changes_since(base)
    return max(generation, base), {c.id: c for c in changes}


def load_build(index_dir: Path, expected_model: str | None = None) -> tuple[Build, str | None]:
    """The current build, or when it is missing, dangling or damaged the newest intact build, with why
    (None when the current one loaded). The current build's error when none loads."""
    try:
        return Build.load(Path(index_dir), expected_model), None
    except LOAD_ERRORS as exc:
        first = exc
    current = resolve_build(Path(index_dir))
    for folder in finished_builds(index_dir):
        if folder == current:
            continue
        try:
            build = Build.load(folder, expected_model)
        except LOAD_ERRORS:
            continue
        reason = (
            f"the current build is unusable ({type(first).__name__}: {first}); "
            f"serving {folder.name}, the newest intact build"
        )
        logger.error(reason)
        return build, reason
    raise first


def compose(
    build: Build,
    overrides: OverridesFile | None,
    changes: Iterable[Change],
    generation: int,
    encoder: Encoder | None = None,
    vectors: MutableMapping[tuple[str, int], np.ndarray] | None = None,
    previous: Recommender | None = None,
) -> tuple[Recommender, int]:
    """The recommender of ``build`` with the store's ``changes`` since it (as of ``generation``), and how many
    changes wait for the next build (without vectors of the build's model: written by a worker on another).

    ``vectors`` keeps the adapted vector of each (id, version) between calls: each depends only on the build
    and its own chunks, so every worker computes the same one. ``previous``, a recommender of the same build,
    spares the checks and tables made once per build.
    """
    vectors = {} if vectors is None else vectors
    upserted, deleted, pending = [], set(), 0
    for change in changes:
        if change.publication is None:
            deleted.add(change.id)
        elif change.chunks is None or change.model != build.index.model:
            pending += 1
        else:
            upserted.append(change)
    todo = [c for c in upserted if (c.id, c.version) not in vectors]
    if todo:
        parts = [ChunkVectors(v, np.zeros(len(v), np.int64), w, 1) for v, w in (c.chunks for c in todo)]
        chunks = ChunkVectors.concat(parts, build.index.dimension)
        fresh = outside_vectors(build.adaptation, build.index, chunks, exclude=[c.id for c in todo])
        vectors.update(((c.id, c.version), row) for c, row in zip(todo, fresh, strict=True))
    matrix = np.stack([vectors[c.id, c.version] for c in upserted]) if upserted else None
    delta = Delta(generation, tuple(c.publication for c in upserted), matrix, frozenset(deleted))
    recommender = Recommender(build, None, encoder, delta, previous)
    if overrides is not None:
        recommender.overrides = overrides.resolve(recommender.publications)
    return recommender, pending
