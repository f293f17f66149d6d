"""The catalog changes made since a build, searched beside it: a write costs what it changes, not a rebuild.

A :class:`Delta` holds the publications written or deleted after the build's store generation and the vectors
of those written. :class:`DeltaIndex` answers like one index over the build's vectors with the deleted and
replaced ones hidden and the written ones added (scored exactly, by one small matrix product), so every
worker serves a write as soon as it has read it from the store. The next build folds the changes in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.catalog.records import Publication
from engine.encode.chunks import ChunkVectors
from engine.index.adaptation import CatalogAdaptation, centre
from engine.index.vectors import VectorIndex


@dataclass(frozen=True, slots=True)
class Delta:
    """The store's changes after a build: ``upserted`` publications (with one vector row each, in order) and
    the ids of ``deleted`` ones, as of store ``generation``."""

    generation: int
    upserted: tuple[Publication, ...] = ()
    vectors: np.ndarray | None = None
    deleted: frozenset[str] = frozenset()

    def __len__(self) -> int:
        return len(self.upserted) + len(self.deleted)


class DeltaIndex:
    """A build's :class:`VectorIndex` with a :class:`Delta` over it; the search interface of the index."""

    def __init__(self, base: VectorIndex, delta: Delta) -> None:
        self.base = base
        self.model, self.dimension, self.storage = base.model, base.dimension, base.storage
        self._fresh_ids = [p.id for p in delta.upserted]
        self._row = {key: i for i, key in enumerate(self._fresh_ids)}
        vectors = delta.vectors if delta.vectors is not None else np.zeros((0, base.dimension), np.float32)
        if len(vectors) != len(self._fresh_ids):
            raise ValueError(f"{len(vectors)} delta vectors for {len(self._fresh_ids)} publications")
        self._fresh = np.ascontiguousarray(vectors, dtype=np.float32)
        # Base vectors no longer valid: deleted items and items written since (their new vector is fresh).
        self.hidden = frozenset(key for key in [*delta.deleted, *self._fresh_ids] if key in base)
        self._size = len(base) - len(self.hidden) + len(self._fresh_ids)

    @property
    def kind(self) -> str:
        """The base index's kind."""
        return self.base.kind

    def __len__(self) -> int:
        return self._size

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row or (item_id in self.base and item_id not in self.hidden)

    @property
    def ids(self) -> list[str]:
        """Every id, the build's first."""
        return [key for key in self.base.ids if key not in self.hidden] + self._fresh_ids

    def vector(self, item_id: str) -> np.ndarray:
        """The vector of ``item_id`` (KeyError if absent)."""
        row = self._row.get(item_id)
        if row is not None:
            return self._fresh[row]
        if item_id in self.hidden:
            raise KeyError(item_id)
        return self.base.vector(item_id)

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """The vectors of ``item_ids``, as one matrix."""
        out = np.empty((len(item_ids), self.dimension), dtype=np.float32)
        for position, item_id in enumerate(item_ids):
            out[position] = self.vector(item_id)
        return out

    def fresh_hits(self, query: np.ndarray) -> list[tuple[str, float]]:
        """Every written item with its cosine to ``query`` (exact: the delta is small)."""
        if not self._fresh_ids:
            return []
        return list(zip(self._fresh_ids, (self._fresh @ np.asarray(query, np.float32)).tolist(), strict=True))

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest ids for each query row by cosine, best first, over the build and the delta."""
        matrix = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        results = []
        # Ask the build for as many more as it hides, so k live ones remain.
        base_hits = self.base.search(matrix, k + len(self.hidden)) if len(self.base) else [[] for _ in matrix]
        for row, hits in zip(matrix, base_hits, strict=True):
            merged = [hit for hit in hits if hit[0] not in self.hidden] + self.fresh_hits(row)
            merged.sort(key=lambda hit: hit[1], reverse=True)
            results.append(merged[:k])
        return results


def outside_vectors(
    adaptation: CatalogAdaptation | None,
    index: VectorIndex | DeltaIndex,
    chunks: ChunkVectors,
    exclude: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Document vectors of texts outside a build's chunk graph (drafts, written publications), adapted like the
    catalog's: centred with the build's mean, pooled, then smoothed toward their nearest items in ``index``
    (never toward ``exclude[row]``, a written publication's own earlier version).

    Per document and against adapted vectors, where a build smooths each chunk toward the catalog's chunks: the
    service keeps only the index in memory. The next build gives written publications their build vectors.
    """
    if adaptation is None:
        vectors = chunks.pooled()
    else:
        centred = chunks.pooled(centre(chunks.vectors, adaptation.mean))
        exclude = list(exclude) if exclude is not None else [None] * len(centred)
        k = adaptation.k
        found = index.search(centred, k + 1) if k and len(index) else [[] for _ in centred]
        vectors = np.empty_like(centred)
        for row, (vector, hits) in enumerate(zip(centred, found, strict=True)):
            hits = [hit for hit in hits if hit[0] != exclude[row]][:k]
            neighbours = index.vectors([key for key, _ in hits]) if hits else np.zeros((0, len(vector)), np.float32)
            vectors[row] = adaptation.smooth_query(vector, neighbours, np.array([score for _, score in hits]))
    if index.storage == "float16":
        vectors = vectors.astype(np.float16).astype(np.float32)  # as a build stores them
    return vectors
