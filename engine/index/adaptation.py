"""Catalog adaptation: the model's chunk vectors fitted to the catalog they are ranked in, before indexing.

Two unsupervised steps, fitted on each build's own catalog (docs/quality-shapes.md has what each adds on every
catalog shape, and the alternatives that lost):

1. **Centring.** The mean of the catalog's chunk vectors is subtracted. Embeddings of one catalog share a
   common direction that says "a text of this catalog" and nothing about which one; without it the
   distinctive part of each text decides.
2. **Neighbour smoothing** (database-side augmentation, as in image retrieval, here per chunk). Each
   centred chunk gets ``strength`` times the cosine-weighted mean of its ``k`` nearest chunks of *other*
   publications added, and is re-normalised; a publication's vector is the length-weighted mean of its
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

from engine.encode.chunks import ChunkVectors, normalize
from engine.index.vectors import IndexLoadError

# Round values, not tuned: docs/quality-shapes.md shows k = 3 and 10 and strength 1.0 beside them.
SMOOTHING_NEIGHBOURS = 5
SMOOTHING_STRENGTH = 0.5
# A catalog of up to this many chunks is searched exactly, by blocks of matrix products; a larger one by an
# HNSW graph over its chunks (the products grow with the square of the catalog). A search for a few rows
# (a write) is exact at any size: it costs rows x chunks, and building a graph would cost the whole catalog.
_EXACT_LIMIT = 30_000
_EXACT_PRODUCTS = 2_000_000_000
_BLOCK = 1024
_MIN_DOCUMENTS_TO_CENTRE = 3
# Own chunks an HNSW search skips past before looking exactly: longer documents are searched exactly.
_OWN_CHUNKS_SKIPPED = 64


@dataclass(frozen=True, slots=True)
class CatalogAdaptation:
    """The fitted adaptation of one catalog: its mean and each chunk's nearest chunks of other publications."""

    mean: np.ndarray  # (dimension,) float32
    k: int  # nearest chunks of other publications each chunk is smoothed toward (0: centring only)
    strength: float  # how much of their mean is added to a chunk before re-normalising
    graph: np.ndarray  # (chunks, k) int64 rows of the catalog's chunks, -1 where there are fewer
    similarities: np.ndarray  # (chunks, k) float32 cosines of the centred chunks
    documents: int  # the catalog size the mean was fitted on

    @classmethod
    def fit(
        cls,
        chunks: ChunkVectors,
        *,
        k: int = SMOOTHING_NEIGHBOURS,
        strength: float = SMOOTHING_STRENGTH,
        mean: np.ndarray | None = None,
        threads: int = 1,
        show_progress: bool = False,
    ) -> CatalogAdaptation:
        """Fit on a catalog's chunks (``mean``: reuse a given mean instead of the chunks' own)."""
        if k < 0:
            raise ValueError(f"the smoothing k must be >= 0 (0 for centring only), got {k}")
        if not 0 <= strength <= 10:
            # Past a few times the chunk itself, a text would be little more than its neighbours' average.
            raise ValueError(f"the smoothing strength must be between 0 and 10, got {strength}")
        if mean is None:
            # Fewer than three texts have no common direction to remove: centring one gives a zero vector,
            # two are made exact opposites.
            enough = chunks.documents >= _MIN_DOCUMENTS_TO_CENTRE
            mean = chunks.vectors.mean(axis=0) if enough else np.zeros(chunks.vectors.shape[1])
        mean = np.asarray(mean, dtype=np.float32)
        centred = centre(chunks.vectors, mean)
        rows = np.arange(len(centred))
        graph, similarities = nearest_of_other_documents(
            centred, chunks.owners, rows, k, threads=threads, show_progress=show_progress
        )
        return cls(mean, k, float(strength), graph, similarities, chunks.documents)

    def document_vectors(self, chunks: ChunkVectors) -> np.ndarray:
        """The adapted vector of every document of ``chunks`` (the catalog this adaptation was fitted on)."""
        centred = centre(chunks.vectors, self.mean)
        if self.k == 0 or not len(centred):
            return chunks.pooled(centred)
        valid = self.graph >= 0
        # A neighbour less similar than a random chunk (cosine < 0 after centring) says nothing of the topic.
        weights = np.where(valid, np.maximum(self.similarities, 0.0), 0.0)
        total = weights.sum(axis=1, keepdims=True)
        weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
        rows = np.where(valid, self.graph, 0)
        smoothed = np.empty_like(centred)
        # In blocks: the neighbours' vectors of every chunk at once would be k times the catalog's vectors.
        for start in range(0, len(centred), 8 * _BLOCK):
            block = slice(start, start + 8 * _BLOCK)
            borrowed = np.einsum("ck,ckd->cd", weights[block], centred[rows[block]])
            smoothed[block] = centred[block] + self.strength * borrowed
        return chunks.pooled(normalize(smoothed))

    def smooth_query(self, centred: np.ndarray, neighbours: np.ndarray, similarities: np.ndarray) -> np.ndarray:
        """A text from outside the catalog (a draft): its centred vector moved toward its nearest catalog items
        (``neighbours``, adapted vectors, with their ``similarities``), like a catalog chunk toward its own.

        Per document and against adapted vectors, unlike catalog chunks (per chunk, against centred chunks):
        the service keeps only the index of adapted vectors in memory, not the catalog's chunks.
        """
        if self.k == 0 or not len(neighbours):
            return normalize(centred[None, :])[0]
        weights = np.maximum(np.asarray(similarities, dtype=np.float32), 0.0)
        if weights.sum() <= 0:
            return normalize(centred[None, :])[0]
        borrowed = (weights / weights.sum()) @ neighbours
        return normalize((centred + self.strength * borrowed)[None, :])[0]

    def save(self, path: Path) -> None:
        """Write to ``path`` (``.npz``, plain arrays, no pickle)."""
        np.savez(
            path,
            mean=self.mean,
            k=np.array(self.k),
            strength=np.array(self.strength),
            graph=self.graph.astype(np.int32),
            similarities=self.similarities,
            documents=np.array(self.documents),
        )

    @classmethod
    def load(cls, path: Path, *, graph: bool = True) -> CatalogAdaptation | None:
        """Read what :meth:`save` wrote, if ``path`` exists; without ``graph`` only what queries need is read."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                k = int(data["k"])
                empty = np.zeros((0, k))
                return cls(
                    data["mean"].astype(np.float32),
                    k,
                    float(data["strength"]),
                    data["graph"].astype(np.int64) if graph else empty.astype(np.int64),
                    data["similarities"] if graph else empty.astype(np.float32),
                    int(data["documents"]),
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
    if len(vectors) > _EXACT_LIMIT and len(rows) * len(vectors) > _EXACT_PRODUCTS:
        graph, similarities = _nearest_by_graph(vectors, owners, rows, k, threads, show_progress)
        # Rows the graph search left short (a document of more chunks than it skips): search them exactly.
        short = np.flatnonzero((graph < 0).any(axis=1))
        if len(short) and len(vectors) - 1 > k:
            graph[short], similarities[short] = _nearest_exactly(vectors, owners, rows[short], k, False)
        return graph, similarities
    return _nearest_exactly(vectors, owners, rows, k, show_progress)


def _nearest_exactly(
    vectors: np.ndarray, owners: np.ndarray, rows: np.ndarray, k: int, show_progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    graph = np.full((len(rows), k), -1, dtype=np.int64)
    similarities = np.zeros((len(rows), k), dtype=np.float32)
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
        fetch = k + int(min(own.max(), _OWN_CHUNKS_SKIPPED))
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
