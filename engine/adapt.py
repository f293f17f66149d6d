"""Catalog adaptation: the model's chunk vectors fitted to the catalog they are ranked in, before indexing.

Two unsupervised steps, fitted on each build's own catalog (docs/quality.md has what each adds on every
catalog shape, and the alternatives that lost):

1. **Centring.** The mean of the catalog's chunk vectors is subtracted. Embeddings of one catalog share a
   common direction that says "a text of this catalog" and nothing about which one; without it the
   distinctive part of each text decides.
2. **Neighbour smoothing** (database-side augmentation, as in image retrieval, here per chunk). Each
   centred chunk moves toward its ``neighbours`` nearest chunks of *other* publications (by ``weight``,
   neighbours weighted by their cosine), and a publication's vector is the length-weighted mean of its
   smoothed chunks. A text's topic is what its near neighbours share, so one-off wording counts for less;
   for long texts each passage finds its own neighbours instead of one averaged vector doing it for all.

The neighbour graph is kept with the build, so an API write updates it (:meth:`CatalogAdaptation.update`)
for the chunks a change touches, with the build's mean: the same result as a fresh fit with that mean.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from engine.embed import ChunkVectors, normalize
from engine.index import IndexLoadError

ADAPTATION_FILE = "adaptation.npz"
DEFAULT_NEIGHBOURS = 5
DEFAULT_WEIGHT = 0.5
# Up to this many chunks the neighbours are found exactly, by blocks of matrix products; beyond, by an HNSW
# graph over the chunks (the product grows with the square of the catalog).
_EXACT_LIMIT = 30_000
_BLOCK = 1024


@dataclass(frozen=True, slots=True)
class CatalogAdaptation:
    """The fitted adaptation of one catalog: its mean and each chunk's nearest chunks of other publications."""

    mean: np.ndarray  # (dimension,) float32
    neighbours: int
    weight: float
    graph: np.ndarray  # (chunks, neighbours) int64 rows of the catalog's chunks, -1 where there are fewer
    similarities: np.ndarray  # (chunks, neighbours) float32 cosines of the centred chunks

    @classmethod
    def fit(
        cls,
        chunks: ChunkVectors,
        *,
        neighbours: int = DEFAULT_NEIGHBOURS,
        weight: float = DEFAULT_WEIGHT,
        mean: np.ndarray | None = None,
        threads: int = 1,
        show_progress: bool = False,
    ) -> CatalogAdaptation:
        """Fit on a catalog's chunks (``mean``: reuse a given mean instead of the chunks' own)."""
        if neighbours < 0:
            raise ValueError(f"neighbours must be >= 0 (0 for centring only), got {neighbours}")
        if not 0 <= weight <= 10:
            raise ValueError(f"the smoothing weight must be between 0 and 10, got {weight}")
        if mean is None:
            mean = chunks.vectors.mean(axis=0) if len(chunks.vectors) else np.zeros(chunks.vectors.shape[1])
        mean = np.asarray(mean, dtype=np.float32)
        centred = centre(chunks.vectors, mean)
        rows = np.arange(len(centred))
        graph, similarities = nearest_of_other_documents(
            centred, chunks.owners, rows, neighbours, threads=threads, show_progress=show_progress
        )
        return cls(mean, neighbours, float(weight), graph, similarities)

    def document_vectors(self, chunks: ChunkVectors) -> np.ndarray:
        """The adapted vector of every document of ``chunks`` (the catalog this adaptation was fitted on)."""
        centred = centre(chunks.vectors, self.mean)
        if self.neighbours == 0 or not len(centred):
            return chunks.pooled(centred)
        valid = self.graph >= 0
        weights = np.where(valid, np.maximum(self.similarities, 0.0), 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
        borrowed = np.einsum("ck,ckd->cd", weights, centred[np.where(valid, self.graph, 0)])
        return chunks.pooled(normalize(centred + self.weight * borrowed))

    def smooth_query(self, centred: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray) -> np.ndarray:
        """A text from outside the catalog (a draft): its centred vector moved toward its nearest catalog items
        (``neighbours``, adapted vectors, with their ``similarities``), like a catalog chunk toward its own."""
        if self.neighbours == 0 or not len(neighbours):
            return normalize(centred[None, :])[0]
        weights = np.maximum(np.asarray(similarities, dtype=np.float32), 0.0)
        if weights.sum() <= 0:
            return normalize(centred[None, :])[0]
        borrowed = (weights / weights.sum()) @ neighbours
        return normalize((centred + self.weight * borrowed)[None, :])[0]

    def update(
        self, before: ChunkVectors, kept: np.ndarray, added: ChunkVectors, *, threads: int = 1
    ) -> tuple[CatalogAdaptation, ChunkVectors, np.ndarray]:
        """The adaptation after a write: documents ``kept`` of ``before`` (their numbers, in the new order),
        then the ``added`` ones. Only the chunks a change touches are searched again: new chunks, and chunks
        that lost a neighbour; the others merge their old neighbours with the new chunks.

        Returns the new adaptation, the new catalog's chunks, and the documents (new numbers) whose adapted
        vectors differ from before: the added ones and those with a chunk whose neighbours changed.
        """
        kept = np.asarray(kept, dtype=np.int64)
        old_rows = before.selection(kept)
        after = ChunkVectors.concat([before.select(kept), added], before.vectors.shape[1])
        total, kept_count = len(after.vectors), len(old_rows)
        new_row = np.full(len(before.vectors) + 1, -1, dtype=np.int64)  # the extra last cell maps -1 to -1
        new_row[old_rows] = np.arange(kept_count)
        centred = centre(after.vectors, self.mean)
        graph = np.full((total, self.neighbours), -1, dtype=np.int64)
        similarities = np.full((total, self.neighbours), -np.inf, dtype=np.float32)
        if self.neighbours and kept_count:
            graph[:kept_count] = new_row[self.graph[old_rows]]
            similarities[:kept_count] = np.where(graph[:kept_count] >= 0, self.similarities[old_rows], -np.inf)
        remapped = graph[:kept_count].copy()
        # A chunk that lost a neighbour may now have its next best anywhere: search it again.
        lost = np.flatnonzero(((self.graph[old_rows] >= 0) & (graph[:kept_count] < 0)).any(axis=1))
        if self.neighbours and kept_count and total > kept_count:
            # The others: their best among the chunks they kept are unchanged, so only the added ones compete.
            merge = np.setdiff1d(np.arange(kept_count), lost)
            added_rows = np.arange(kept_count, total)
            for start in range(0, len(merge), _BLOCK):
                rows = merge[start : start + _BLOCK]
                scores = centred[rows] @ centred[added_rows].T
                candidates = np.concatenate([graph[rows], np.broadcast_to(added_rows, scores.shape)], axis=1)
                values = np.concatenate([similarities[rows], scores], axis=1)
                values[candidates < 0] = -np.inf
                order = np.argsort(-values, axis=1, kind="stable")[:, : self.neighbours]
                graph[rows] = np.take_along_axis(candidates, order, 1)
                similarities[rows] = np.take_along_axis(values, order, 1)
                graph[rows] = np.where(np.isfinite(similarities[rows]), graph[rows], -1)
        again = np.concatenate([lost, np.arange(kept_count, total)])
        if len(again):
            graph[again], similarities[again] = nearest_of_other_documents(
                centred, after.owners, again, self.neighbours, threads=threads
            )
        similarities = np.where(graph >= 0, similarities, 0.0).astype(np.float32)
        touched = np.concatenate([np.flatnonzero((graph[:kept_count] != remapped).any(axis=1)), lost])
        changed = np.union1d(after.owners[touched], np.arange(len(kept), after.documents))
        return CatalogAdaptation(self.mean, self.neighbours, self.weight, graph, similarities), after, changed

    def save(self, folder: Path) -> None:
        """Write ``adaptation.npz`` (plain arrays, no pickle)."""
        np.savez(
            folder / ADAPTATION_FILE,
            mean=self.mean,
            neighbours=np.array(self.neighbours),
            weight=np.array(self.weight),
            graph=self.graph.astype(np.int32),
            similarities=self.similarities,
        )

    @classmethod
    def load(cls, folder: Path, *, graph: bool = True) -> CatalogAdaptation | None:
        """Read ``adaptation.npz`` if the build has one; without ``graph`` only what queries need is read."""
        path = folder / ADAPTATION_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                neighbours = int(data["neighbours"])
                empty = np.zeros((0, neighbours))
                return cls(
                    data["mean"].astype(np.float32),
                    neighbours,
                    float(data["weight"]),
                    data["graph"].astype(np.int64) if graph else empty.astype(np.int64),
                    data["similarities"] if graph else empty.astype(np.float32),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise IndexLoadError(f"{path} is damaged ({exc}); rebuild the index") from None


def centre(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``vectors`` minus the catalog mean, re-normalised."""
    return normalize(np.asarray(vectors, dtype=np.float32) - np.asarray(mean, dtype=np.float32))


def nearest_of_other_documents(
    vectors: np.ndarray,
    owners: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    threads: int = 1,
    show_progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``rows``, the ``k`` rows of ``vectors`` with the highest inner product that belong to another
    document (``owners``), best first: (rows, products), padded with -1 and 0 when there are fewer."""
    graph = np.full((len(rows), k), -1, dtype=np.int64)
    similarities = np.zeros((len(rows), k), dtype=np.float32)
    if k == 0 or not len(rows):
        return graph, similarities
    if len(vectors) > _EXACT_LIMIT:
        return _nearest_by_graph(vectors, owners, rows, k, threads, show_progress)
    blocks = range(0, len(rows), _BLOCK)
    for start in tqdm(blocks, desc="neighbour smoothing", unit="block", disable=not show_progress or len(blocks) < 2):
        block = rows[start : start + _BLOCK]
        scores = vectors[block] @ vectors.T
        scores[owners[block][:, None] == owners[None, :]] = -np.inf
        _keep_best(scores, np.broadcast_to(np.arange(len(vectors)), scores.shape), k, graph, similarities, start)
    return graph, similarities


def _nearest_by_graph(
    vectors: np.ndarray, owners: np.ndarray, rows: np.ndarray, k: int, threads: int, show_progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Large catalogs: an HNSW graph over the chunks, searched wide enough to skip a document's own chunks."""
    graph = np.full((len(rows), k), -1, dtype=np.int64)
    similarities = np.zeros((len(rows), k), dtype=np.float32)
    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    faiss.omp_set_num_threads(threads)
    try:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        own = np.bincount(owners, minlength=int(owners.max()) + 1)
        fetch = k + int(min(own.max(), 64))
        index.hnsw.efSearch = max(128, 2 * fetch)
        blocks = range(0, len(rows), 4 * _BLOCK)
        for start in tqdm(blocks, desc="neighbour smoothing", unit="block", disable=not show_progress):
            block = rows[start : start + 4 * _BLOCK]
            scores, found = index.search(np.ascontiguousarray(vectors[block]), fetch)
            scores[(found < 0) | (owners[np.maximum(found, 0)] == owners[block][:, None])] = -np.inf
            _keep_best(scores, found, k, graph, similarities, start)
    finally:
        faiss.omp_set_num_threads(1)
    return graph, similarities


def _keep_best(
    scores: np.ndarray, candidates: np.ndarray, k: int, graph: np.ndarray, similarities: np.ndarray, start: int
) -> None:
    """Write each row's ``k`` best finite ``scores`` (and their ``candidates``) into ``graph``/``similarities``."""
    take = min(k, scores.shape[1])
    if scores.shape[1] > 2 * take:
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        order = np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable"), 1)
    else:
        order = np.argsort(-scores, axis=1, kind="stable")[:, :take]
    best = np.take_along_axis(scores, order, 1)
    chosen = np.take_along_axis(candidates, order, 1)
    finite = np.isfinite(best)
    stop = start + len(scores)
    graph[start:stop, :take] = np.where(finite, chosen, -1)
    similarities[start:stop, :take] = np.where(finite, best, 0.0)
