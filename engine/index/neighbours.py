"""Precomputed neighbour lists: each item's best others by the ranking key, computed once per build.

A related-items request for a catalog item then costs a lookup and a filter instead of an index search
and per-language statistics (engine/index/calibrate.py), at any catalog size. Each list holds the ``size``
best items by the key a live search ranks by (the per-language z-score of the cosine, or the cosine
without calibration), found with the same widening bound, so the first ``m`` items of a list that pass a
filter are the first ``m`` a live search returns with that filter: exactly so on an exact (flat) index;
on an HNSW graph the lists come from a search at least as wide as a live one (ef >= 220 against 128),
so they can only be closer to the exact answer. When fewer than ``m`` pass, the caller searches as
before (engine/rank/candidates.py).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from engine.index.calibrate import LanguageCalibration
from engine.index.vectors import IndexLoadError, VectorIndex

DEFAULT_SIZE = 50
_BATCH = 1024
# First search width, in multiples of the list size: calibration reorders items across languages.
_WIDEN = 4
_MARGIN = 20
# Up to this many items, an exact index is scored in full (one matrix product per batch).
_EXACT_LIMIT = 20_000


class NeighbourLists:
    """For every item of a build, its ``size`` best other items: their positions in :attr:`ids`, cosines and
    calibrated cosines (the ranking key)."""

    def __init__(
        self,
        ids: Sequence[str],
        positions: np.ndarray,
        similarities: np.ndarray,
        calibrated: np.ndarray,
        requested_size: int = DEFAULT_SIZE,
    ) -> None:
        if not (len(ids) == len(positions) == len(similarities) == len(calibrated)):
            raise ValueError(f"neighbour lists of {len(ids)} ids need as many lists, got {len(positions)}")
        self.ids = list(ids)
        # The length asked for: lists are shorter in small catalogs, and a later write asks for this again.
        self.requested_size = requested_size
        self._position = {key: i for i, key in enumerate(self.ids)}
        self.positions = positions
        self.similarities = similarities
        self.calibrated = calibrated

    @property
    def size(self) -> int:
        """Entries per list (the lists are shorter only when the catalog is)."""
        return int(self.positions.shape[1])

    @property
    def complete(self) -> bool:
        """Whether each list holds every other item, so a short filtered list is the whole answer."""
        return self.size >= len(self.ids) - 1

    def __len__(self) -> int:
        return len(self.ids)

    def of(self, item_id: str) -> tuple[list[int], list[float], list[float]] | None:
        """The list of ``item_id``, best first: (positions in :attr:`ids`, cosines, calibrated cosines); ``None`` for an
        unknown id. Positions, not ids, so a caller that stops early converts only what it reads."""
        position = self._position.get(item_id)
        if position is None:
            return None
        listed = self.positions[position]
        count = int(np.count_nonzero(listed >= 0))
        return (
            listed[:count].tolist(),
            self.similarities[position, :count].tolist(),
            self.calibrated[position, :count].tolist(),
        )

    @classmethod
    def compute(
        cls,
        index: VectorIndex,
        ids: Sequence[str],
        vectors: np.ndarray,
        languages: Sequence[str | None],
        calibration: LanguageCalibration | None,
        *,
        size: int = DEFAULT_SIZE,
        threads: int = 1,
        show_progress: bool = False,
        map_slices: SliceMap | None = None,
    ) -> NeighbourLists:
        """Lists for ``ids`` (rows of ``vectors``, all in ``index``), ranked like a live search.

        Each batch searches ``4 * size`` wide and widens, for the rows that need it, until no item beyond
        the search can beat a list's last entry (the same bound as a live search). An exact (flat) index of
        moderate size is scored in full by one matrix product per batch instead: the same cosines, without
        FAISS's per-query heaps, which cost more than the product here.

        Batches are independent: ``map_slices`` may compute them elsewhere (engine/runtime/cluster.py spreads them
        over Ray tasks). The batches are cut the same either way; only the threads of the products differ, which
        can change a cosine's last bit (and so, in principle, the order of an exact tie).
        """
        n, requested_size = len(ids), size
        size = max(0, min(size, n - 1))
        columns = np.array([calibration.column_of(lang) for lang in languages] if calibration else [0] * n)
        exact = index.kind == "flat" and len(index) == n and n <= _EXACT_LIMIT
        work = ListWork(
            exact=exact,
            index=None if exact else index,
            matrix=np.ascontiguousarray(vectors, dtype=np.float32),
            columns=columns,
            present=np.unique(columns),
            table=None if exact else _position_table(index, ids),
            calibration=calibration,
            size=size,
        )
        batch = max(64, min(_BATCH, 2**24 // max(n, 1))) if exact else _BATCH
        slices = [(start, min(start + batch, n)) for start in range(0, n, batch)] if size else []
        positions = np.full((n, size), -1, dtype=np.int32)
        similarities = np.zeros((n, size), dtype=np.float32)
        calibrated = np.zeros((n, size), dtype=np.float32)
        if map_slices is None:
            results = (list_rows(work, start, stop, threads) for start, stop in slices)
        else:
            results = map_slices(list_rows, work, slices)
        quiet = not show_progress or len(slices) < 2
        with tqdm(total=len(slices), desc="neighbour lists", unit="batch", disable=quiet) as bar:
            for (start, stop), (found_positions, found_similarities, found_calibrated) in zip(
                slices, results, strict=True
            ):
                positions[start:stop] = found_positions
                similarities[start:stop] = found_similarities
                calibrated[start:stop] = found_calibrated
                bar.update()
        return cls(ids, positions, similarities, calibrated, requested_size)

    def save(self, path: Path) -> None:
        """Write to ``path`` (``.npz``, plain arrays, no pickle)."""
        np.savez(
            path,
            ids=np.array(self.ids, dtype=np.str_),
            # The file's field names (rows, keys) are those of format 2 builds.
            rows=self.positions,
            similarities=self.similarities,
            keys=self.calibrated,
            requested_size=np.array(self.requested_size),
        )

    @classmethod
    def load(cls, path: Path) -> NeighbourLists | None:
        """Read what :meth:`save` wrote, if ``path`` exists."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    data["ids"].tolist(),
                    data["rows"],
                    data["similarities"],
                    data["keys"],
                    int(data["requested_size"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise IndexLoadError(f"{path} is damaged ({exc}); rebuild the index") from None


def _top(ranked: np.ndarray, size: int) -> np.ndarray:
    """Column indices of each row's ``size`` largest values, largest first."""
    if ranked.shape[1] > 2 * size:
        part = np.argpartition(-ranked, size - 1, axis=1)[:, :size]
        within = np.argsort(-np.take_along_axis(ranked, part, 1), axis=1, kind="stable")
        return np.take_along_axis(part, within, 1)
    return np.argsort(-ranked, axis=1, kind="stable")[:, :size]


def _position_table(index: VectorIndex, ids: Sequence[str]) -> np.ndarray:
    """Index number -> position in ``ids``; the last cell (and any number of no listed item) holds -1."""
    numbers = index.numbers_of(ids)
    table = np.full(int(numbers.max(initial=-1)) + 2, -1, dtype=np.int64)
    table[numbers] = np.arange(len(ids))
    return table


def _statistics(calibration: LanguageCalibration | None, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if calibration is None:
        # Without calibration the key is the cosine itself: mean 0, spread 1 in a single column.
        return np.zeros((len(queries), 1), np.float32), np.ones((len(queries), 1), np.float32)
    return calibration.statistics_matrix(queries)


@dataclass(frozen=True, slots=True)
class ListWork:
    """What every batch of neighbour lists needs: the same for all batches, so a cluster ships it once."""

    exact: bool  # scored against ``matrix`` in full (a flat index of moderate size), not searched
    index: VectorIndex | None  # searched when not exact
    matrix: np.ndarray  # (n, dimension) the build's document vectors
    columns: np.ndarray  # (n,) each item's column in the calibration's statistics
    present: np.ndarray  # the columns that occur
    table: np.ndarray | None  # index number -> position (not exact)
    calibration: LanguageCalibration | None
    size: int


Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


class SliceMap(Protocol):
    """Runs ``fn(work, start, stop, threads)`` for each slice, yielding the results in the order of ``slices``."""

    def __call__(
        self, fn: Callable[[ListWork, int, int, int], Rows], work: ListWork, slices: Sequence[tuple[int, int]]
    ) -> Iterable[Rows]: ...


def list_rows(work: ListWork, start: int, stop: int, threads: int = 1) -> Rows:
    """The lists of items ``start..stop``: (positions, cosines, calibrated cosines), each ``(stop - start, size)``."""
    n, size, matrix, columns = len(work.matrix), work.size, work.matrix, work.columns
    positions_of = np.full((stop - start, size), -1, dtype=np.int32)
    similarities = np.zeros((stop - start, size), dtype=np.float32)
    calibrated_of = np.zeros((stop - start, size), dtype=np.float32)
    exact = work.exact
    pending = np.arange(start, stop)
    fetch = n if exact else min(n, _WIDEN * size + _MARGIN)
    while len(pending) and size:
        queries = matrix[pending]
        if exact:
            found = queries @ matrix.T
            positions = np.broadcast_to(np.arange(n), found.shape)
        else:
            found, numbers = work.index.search_numbers(queries, fetch, threads=threads)
            # Padding (-1) and numbers past the table (tombstones) land on its last cell, which is -1.
            positions = work.table[np.clip(numbers, -1, len(work.table) - 1)]
        means, spreads = _statistics(work.calibration, queries)
        item_columns = columns[np.maximum(positions, 0)]
        # Chosen in float32 (the whole matrix), then keyed in float64 like the live search and re-sorted,
        # so near-ties order the same way.
        ranked = (found - np.take_along_axis(means, item_columns, 1)) / np.take_along_axis(spreads, item_columns, 1)
        ranked[(positions < 0) | (positions == pending[:, None])] = -np.inf
        order = _top(ranked, size)
        chosen = np.take_along_axis(item_columns, order, 1)
        cosines = np.take_along_axis(found, order, 1).astype(np.float64)
        mean, spread = np.take_along_axis(means, chosen, 1), np.take_along_axis(spreads, chosen, 1)
        best = (cosines - mean) / spread.astype(np.float64)
        best[~np.isfinite(np.take_along_axis(ranked, order, 1))] = -np.inf
        resort = np.argsort(-best, axis=1, kind="stable")
        order, best = np.take_along_axis(order, resort, 1), np.take_along_axis(best, resort, 1)
        # An item beyond the search has a cosine at most the last one found: its best key is that
        # cosine's key in the most favourable language.
        floor = found[:, -1:].astype(np.float64)
        unseen = ((floor - means[:, work.present]) / spreads[:, work.present]).max(axis=1)
        done = (fetch >= n) | (best[:, -1] >= unseen)
        for i in np.flatnonzero(done):
            target, kept = pending[i] - start, np.isfinite(best[i])
            count = int(kept.sum())
            positions_of[target, :count] = positions[i, order[i]][kept]
            similarities[target, :count] = found[i, order[i]][kept]
            calibrated_of[target, :count] = best[i][kept]
        pending = pending[~done]
        fetch = min(n, fetch * _WIDEN)
    return positions_of, similarities, calibrated_of
