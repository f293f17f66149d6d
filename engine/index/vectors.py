"""The vector index: FAISS ``IndexIDMap2`` over inner product on unit vectors, behind a narrow API.

String publication ids map to the int64 numbers FAISS stores; ``build``/``add``/``remove``/``search``/``save``/``load``
is the whole interface; the build that holds an index records what made it (engine/index/store.py).

The FAISS index is exact (``IndexFlatIP``) up to ``HNSW_THRESHOLD`` vectors and an HNSW graph beyond,
where an exact scan no longer answers in about a millisecond (docs/performance.md has the figures and
the measured recall). HNSW cannot delete: removed ids become tombstones that searches skip, and the
next build drops them.
"""

from __future__ import annotations

import errno
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

HNSW_THRESHOLD = 5_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
IndexKind = str  # "flat" | "hnsw" | "auto"
STORAGES = ("float32", "float16")


class IndexLoadError(RuntimeError):
    """An index folder that cannot be used (missing, damaged, or built with another model)."""


def _as_matrix(vectors: np.ndarray, dimension: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dimension:
        raise ValueError(f"expected vectors of shape (n, {dimension}), got {matrix.shape}")
    return matrix


class VectorIndex:
    """Cosine search over unit vectors, addressed by string ids: exact up to ``HNSW_THRESHOLD`` vectors, an
    (approximate) HNSW graph beyond, unless ``kind`` chooses."""

    def __init__(self, dimension: int, model: str, kind: IndexKind = "auto", storage: str = "float32") -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}")
        if kind not in ("auto", "flat", "hnsw"):
            raise ValueError(f"index kind must be 'auto', 'flat' or 'hnsw', got {kind!r}")
        if storage not in STORAGES:
            raise ValueError(f"vector storage must be one of {STORAGES}, got {storage!r}")
        self.dimension = dimension
        self.model = model
        self.requested_kind = kind
        # float16 halves the memory of the vectors; cosines then carry about 3 significant digits.
        self.storage = storage
        self._index = self._new_faiss("hnsw" if kind == "hnsw" else "flat")
        self._id_of: dict[int, str] = {}
        self._number_of: dict[str, int] = {}
        self._next = 0

    def _new_faiss(self, kind: str) -> faiss.Index:
        half = self.storage == "float16"
        inner = faiss.METRIC_INNER_PRODUCT
        if kind == "hnsw":
            if half:
                graph = faiss.IndexHNSWSQ(self.dimension, faiss.ScalarQuantizer.QT_fp16, HNSW_M, inner)
            else:
                graph = faiss.IndexHNSWFlat(self.dimension, HNSW_M, inner)
            graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            graph.hnsw.efSearch = HNSW_EF_SEARCH
            return faiss.IndexIDMap2(graph)
        if half:
            return faiss.IndexIDMap2(faiss.IndexScalarQuantizer(self.dimension, faiss.ScalarQuantizer.QT_fp16, inner))
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dimension))

    @property
    def kind(self) -> str:
        """``flat`` (exact) or ``hnsw`` (approximate graph)."""
        return "hnsw" if isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSW) else "flat"

    def __len__(self) -> int:
        return len(self._number_of)

    @property
    def tombstones(self) -> int:
        """Removed items an HNSW graph still holds (searches skip them; 0 for a flat index)."""
        return int(self._index.ntotal) - len(self)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._number_of

    @property
    def ids(self) -> list[str]:
        """Ids in insertion order."""
        return [self._id_of[i] for i in sorted(self._id_of)]

    def build(self, ids: Sequence[str], vectors: np.ndarray) -> VectorIndex:
        """Replace the contents with ``ids`` and their vectors (``auto`` picks flat or HNSW by size)."""
        kind = self.requested_kind
        if kind == "auto":
            kind = "hnsw" if len(ids) >= HNSW_THRESHOLD else "flat"
        self._index = self._new_faiss(kind)
        self._id_of.clear()
        self._number_of.clear()
        self._next = 0
        self.add(ids, vectors)
        return self

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add new ids; an id already present is replaced (upsert)."""
        matrix = _as_matrix(vectors, self.dimension)
        if len(ids) != len(matrix):
            raise ValueError(f"{len(ids)} ids for {len(matrix)} vectors")
        if len(set(ids)) != len(ids):
            raise ValueError("duplicate ids in one add() call")
        self.remove([item_id for item_id in ids if item_id in self._number_of])
        numbers = np.arange(self._next, self._next + len(ids), dtype=np.int64)
        self._next += len(ids)
        self._index.add_with_ids(matrix, numbers)
        for number, item_id in zip(numbers.tolist(), ids, strict=True):
            self._id_of[number] = item_id
            self._number_of[item_id] = number

    def remove(self, ids: Sequence[str]) -> int:
        """Remove ids that are present; returns how many were removed."""
        numbers = [self._number_of.pop(item_id) for item_id in ids if item_id in self._number_of]
        if numbers:
            if self.kind == "flat":
                self._index.remove_ids(np.asarray(numbers, dtype=np.int64))
            for number in numbers:
                del self._id_of[number]  # in an HNSW graph the vector stays, as a tombstone
        return len(numbers)

    def copy(self) -> VectorIndex:
        """An independent copy (FAISS data included), to change without disturbing readers of this one."""
        clone = VectorIndex(self.dimension, self.model, self.requested_kind, self.storage)
        clone._index = faiss.clone_index(self._index)
        if self.kind == "hnsw":
            faiss.downcast_index(clone._index.index).hnsw.efSearch = HNSW_EF_SEARCH
        clone._id_of = dict(self._id_of)
        clone._number_of = dict(self._number_of)
        clone._next = self._next
        return clone

    def vectors(self, item_ids: Sequence[str]) -> np.ndarray:
        """The stored vectors of ``item_ids``, as one matrix."""
        out = np.empty((len(item_ids), self.dimension), dtype=np.float32)
        for position, item_id in enumerate(item_ids):
            out[position] = self._index.reconstruct(self._number_of[item_id])
        return out

    def vector(self, item_id: str) -> np.ndarray:
        """The stored vector of ``item_id`` (KeyError if absent)."""
        return self._index.reconstruct(self._number_of[item_id])

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest ids for each query row, best first, as ``(id, cosine)`` pairs."""
        scores, numbers = self.search_numbers(queries, k)
        results = []
        for row_scores, row_numbers in zip(scores.tolist(), numbers.tolist(), strict=True):
            # FAISS pads with -1 when it finds fewer than k; tombstones have no id any more.
            hits = [(self._id_of[n], s) for s, n in zip(row_scores, row_numbers, strict=True) if n in self._id_of]
            results.append(hits[:k])
        return results

    def search_numbers(self, queries: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """The raw answer for batch jobs: cosines and internal numbers per query row, best first.

        Numbers are those of :meth:`numbers_of`; ``-1`` marks padding. Removed items of an HNSW graph
        (tombstones) still appear, under numbers no live id has, so rows hold extra columns for them.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        matrix = _as_matrix(np.atleast_2d(queries), self.dimension)
        k = min(k, len(self))
        if k == 0:
            return np.empty((len(matrix), 0), np.float32), np.empty((len(matrix), 0), np.int64)
        tombstones = int(self._index.ntotal) - len(self)
        # One thread per query: a request-serving process must not fan out over all cores per call;
        # batch jobs (neighbour lists) ask for more and the setting is put back.
        faiss.omp_set_num_threads(threads)
        try:
            scores, numbers = self._index.search(matrix, min(k + tombstones, int(self._index.ntotal)))
        finally:
            faiss.omp_set_num_threads(1)
        return scores, numbers

    def numbers_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The internal numbers of ``item_ids`` (as in :meth:`search_numbers`)."""
        return np.fromiter((self._number_of[item_id] for item_id in item_ids), dtype=np.int64, count=len(item_ids))

    def stored_bytes(self) -> int:
        """Size of the FAISS structure (vectors, graph, id map) as written to disk: about its memory use."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "index.faiss"
            faiss.write_index(self._index, str(path))
            return path.stat().st_size

    def save(self, index_path: Path, ids_path: Path) -> dict[str, Any]:
        """Write the FAISS file and the id map; return what a manifest records of the index."""
        try:
            faiss.write_index(self._index, str(index_path))
        except RuntimeError as exc:  # FAISS reports a failed write (full or read-only disk) without an errno
            raise OSError(
                errno.EIO, f"FAISS could not write it ({str(exc).splitlines()[0]})", str(index_path)
            ) from None
        ids_path.write_text(json.dumps(sorted(self._id_of.items())), encoding="utf-8")
        return {
            "model": self.model,
            "dimension": self.dimension,
            "count": len(self),
            "storage": self.storage,
            "index_type": f"IndexIDMap2({type(faiss.downcast_index(self._index.index)).__name__})",
            "faiss_version": faiss.__version__,
        }

    @classmethod
    def load(
        cls, index_path: Path, ids_path: Path, *, model: str, dimension: int, storage: str, count: int
    ) -> VectorIndex:
        """Load an index written by :meth:`save`, checked against what its manifest says of it."""
        if storage not in STORAGES:
            raise IndexLoadError(f"the manifest of {index_path.parent} names an unknown vector storage {storage!r}")
        index = cls(dimension, model, storage=storage)
        try:
            raw = faiss.read_index(str(index_path))
            pairs = json.loads(ids_path.read_text(encoding="utf-8"))
        except (RuntimeError, OSError, ValueError) as exc:
            raise IndexLoadError(
                f"cannot read the index files in {index_path.parent} ({exc}); rebuild the index"
            ) from None
        if raw.d != dimension or raw.ntotal < len(pairs) or len(pairs) != count:
            raise IndexLoadError(
                f"the index in {index_path.parent} does not match its manifest (dimension {raw.d}, {raw.ntotal} "
                f"vectors, {len(pairs)} ids); rebuild it"
            )
        if not isinstance(raw, faiss.IndexIDMap2):
            raise IndexLoadError(f"{index_path} is a {type(raw).__name__}, not an IndexIDMap2; rebuild it")
        index._index = raw
        if index.kind == "hnsw":
            faiss.downcast_index(raw.index).hnsw.efSearch = HNSW_EF_SEARCH
        index._id_of = {int(n): item_id for n, item_id in pairs}
        index._number_of = {item_id: int(n) for n, item_id in pairs}
        # Tombstones keep their numbers inside the FAISS file: new items must not reuse them.
        stored = faiss.vector_to_array(raw.id_map)
        index._next = int(max(max(index._id_of, default=-1), stored.max(initial=-1))) + 1
        return index
