"""The chunk vectors of a list of documents: what the model gave for each piece of each text.

A document longer than the model's input limit is encoded in chunks (engine/encode/embed.py); builds keep the
chunk vectors (``embeddings.npz``) so that writes and the catalog adaptation can work per passage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@dataclass(frozen=True, slots=True)
class ChunkVectors:
    """The chunk vectors of a list of documents, as the model gave them (unit length, after its language offsets).

    ``owners[i]`` is the document (row in the list) that chunk ``i`` belongs to; ``weights[i]`` its length in
    characters (1 for a document of one chunk). Every document has at least one chunk.
    """

    vectors: np.ndarray  # (chunks, dimension) float32
    owners: np.ndarray  # (chunks,) int64
    weights: np.ndarray  # (chunks,) float32
    documents: int

    @classmethod
    def of_documents(cls, vectors: np.ndarray) -> ChunkVectors:
        """One chunk per document (document vectors given directly)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(vectors)
        return cls(vectors, np.arange(n, dtype=np.int64), np.ones(n, dtype=np.float32), n)

    @classmethod
    def concat(cls, parts: Sequence[ChunkVectors], dimension: int) -> ChunkVectors:
        """The documents of ``parts`` one after the other."""
        if not parts:
            return cls(np.zeros((0, dimension), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), 0)
        offsets = np.cumsum([0, *(p.documents for p in parts)])
        return cls(
            np.concatenate([p.vectors for p in parts]).astype(np.float32, copy=False),
            np.concatenate([p.owners + offset for p, offset in zip(parts, offsets, strict=False)]),
            np.concatenate([p.weights for p in parts]).astype(np.float32, copy=False),
            int(offsets[-1]),
        )

    @classmethod
    def of_parts(cls, parts: Sequence[tuple[np.ndarray, np.ndarray]], dimension: int) -> ChunkVectors:
        """Documents given as ``(chunk vectors, weights)`` each, in order (what :meth:`split` returns)."""
        if not parts:
            return cls.concat([], dimension)
        counts = np.fromiter((len(w) for _, w in parts), dtype=np.int64, count=len(parts))
        return cls(
            np.concatenate([v for v, _ in parts]).astype(np.float32, copy=False),
            np.repeat(np.arange(len(parts), dtype=np.int64), counts),
            np.concatenate([w for _, w in parts]).astype(np.float32, copy=False),
            len(parts),
        )

    def select(self, documents: Sequence[int]) -> tuple[ChunkVectors, np.ndarray]:
        """The chunks of these documents, renumbered in the order of ``documents``, and the rows they came
        from (each document's chunks in their own order)."""
        documents = np.asarray(documents, dtype=np.int64)
        new_number = np.full(self.documents, -1, dtype=np.int64)
        new_number[documents] = np.arange(len(documents))
        rows = np.flatnonzero(new_number[self.owners] >= 0)
        rows = rows[np.argsort(new_number[self.owners[rows]], kind="stable")]
        selected = ChunkVectors(self.vectors[rows], new_number[self.owners[rows]], self.weights[rows], len(documents))
        return selected, rows

    def save(self, path: Path, ids: Sequence[str]) -> None:
        """Write the documents' ids and their chunk vectors to ``path`` (``.npz``, plain arrays, no pickle)."""
        if len(ids) != self.documents:
            raise ValueError(f"{len(ids)} ids for {self.documents} documents")
        np.savez(
            path,
            ids=np.array(list(ids), dtype=np.str_),
            vectors=self.vectors,
            owners=self.owners.astype(np.int32),
            weights=self.weights,
        )

    @classmethod
    def load(cls, path: Path) -> tuple[list[str], ChunkVectors] | None:
        """Read what :meth:`save` wrote, if ``path`` exists: (document ids, chunks). Raises ``ValueError`` and
        ``OSError`` on a damaged file."""
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            ids = data["ids"].tolist()
            chunks = cls(data["vectors"], data["owners"].astype(np.int64), data["weights"], len(ids))
        if chunks.vectors.ndim != 2 or not (len(chunks.vectors) == len(chunks.owners) == len(chunks.weights)):
            raise ValueError(f"{path}: chunk arrays of different lengths")
        if len(ids) and (chunks.owners.min(initial=0) < 0 or chunks.owners.max(initial=0) >= len(ids)):
            raise ValueError(f"{path}: chunk owners outside the {len(ids)} documents")
        return ids, chunks

    def split(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per document, its (chunk vectors, weights), in document order (chunks grouped by document)."""
        if self.documents == 0:
            return []
        order = np.argsort(self.owners, kind="stable")
        bounds = np.searchsorted(self.owners[order], np.arange(1, self.documents))
        return list(zip(np.split(self.vectors[order], bounds), np.split(self.weights[order], bounds), strict=True))

    def pooled(self, vectors: np.ndarray | None = None) -> np.ndarray:
        """Document vectors: the weighted mean of each document's chunks (``vectors`` in place of the stored
        ones, row for row), re-normalised."""
        chunks = self.vectors if vectors is None else vectors
        grouped = bool(np.all(np.diff(self.owners) >= 0))  # as every constructor here makes them
        if grouped and len(chunks) == self.documents:  # one chunk each (every document has at least one)
            return normalize(chunks)
        weighted = chunks * self.weights[:, None]
        if grouped and len(chunks):
            # One segmented sum: a scatter-add (np.add.at) is much slower.
            starts = np.flatnonzero(np.r_[True, np.diff(self.owners) > 0])
            pooled = np.zeros((self.documents, chunks.shape[1]), dtype=np.float32)
            pooled[self.owners[starts]] = np.add.reduceat(weighted, starts, axis=0)
            return normalize(pooled)
        pooled = np.zeros((self.documents, chunks.shape[1]), dtype=np.float32)
        np.add.at(pooled, self.owners, weighted)
        return normalize(pooled)
