"""Candidate search: the best publications for a query vector by the ranking key, that pass a filter.

Answers from the build's precomputed neighbour lists (engine/index/neighbours.py) when the query is a catalog
item and its list holds enough items that pass; otherwise by an index search that widens until no
unseen item can beat the last one kept. Both give the same items in the same order on an exact index
(on HNSW the lists come from a wider search; see engine/index/neighbours.py). With catalog changes since the
build (engine/index/delta.py), a list skips the items changed or deleted since and is merged with the written
items, scored exactly; a written item's own list is out of date, so it is searched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from engine.catalog.records import Publication
from engine.index.calibrate import LanguageCalibration
from engine.index.delta import DeltaIndex
from engine.index.neighbours import NeighbourLists
from engine.index.vectors import VectorIndex

# Extra candidates fetched beyond what is needed before filtering; grown when filters remove many.
_CANDIDATE_MARGIN = 20
# The ranking key of an item: its cosine to the query, calibrated for its language.
Calibrator = Callable[[str | None, float], float]


@dataclass(slots=True)
class Candidate:
    """An item on its way into a list (built a dozen times a request, never shared: not frozen, which
    makes it three times cheaper to construct)."""

    publication: Publication
    similarity: float
    calibrated: float
    redundancy: float = 0.0
    pinned: bool = False


class CandidateSearch:
    """Finds candidates in one index build: its vectors, catalog, calibration and neighbour lists."""

    def __init__(
        self,
        index: VectorIndex | DeltaIndex,
        publications: Mapping[str, Publication],
        calibration: LanguageCalibration | None,
        neighbours: NeighbourLists | None = None,
        languages: frozenset[str | None] | None = None,
    ) -> None:
        self.index = index
        self.publications = publications
        self.calibration = calibration
        self.neighbours = neighbours
        self._delta = index if isinstance(index, DeltaIndex) else None
        # Every language in the catalog (given when known, to spare a pass over it).
        self._languages = languages if languages is not None else frozenset(p.language for p in publications.values())

    def calibrator(self, vector: np.ndarray) -> Calibrator:
        """The ranking key of an item of a language given its cosine to ``vector``: the per-language
        z-score, or the cosine without calibration. The statistics are computed on first use only, since
        answers from neighbour lists carry their keys."""
        if self.calibration is None:
            return lambda language, similarity: similarity
        calibration = self.calibration
        table: dict[str | None, tuple[float, float]] = {}

        def calibrate(language: str | None, similarity: float) -> float:
            if not table:
                table.update(calibration.scorer(vector))
            mean, std = table.get(language, table[None])
            return (similarity - mean) / std

        return calibrate

    def best(
        self,
        vector: np.ndarray,
        keep: Callable[[Publication], bool],
        n: int,
        calibrate: Calibrator,
        source: str | None = None,
    ) -> tuple[list[Candidate], bool]:
        """The ``n`` best publications by ``calibrate`` that pass ``keep``, and whether the index was searched
        for them (False when ``source``, the catalog item the vector belongs to, had its neighbour list answer)."""
        if source is not None and self.neighbours is not None:
            listed = self._from_list(source, keep, n, vector, calibrate)
            if listed is not None:
                return listed, False
        return self._search(vector, keep, n, calibrate), True

    def _from_list(
        self, source: str, keep: Callable[[Publication], bool], n: int, vector: np.ndarray, calibrate: Calibrator
    ) -> list[Candidate] | None:
        hidden = self._delta.hidden if self._delta is not None else frozenset()
        entry = self.neighbours.of(source) if source not in hidden else None
        if entry is None:
            return None
        kept: list[Candidate] = []
        ids, publications = self.neighbours.ids, self.publications
        for position, similarity, calibrated in zip(*entry, strict=True):
            key = ids[position]
            if key in hidden:
                continue
            publication = publications[key]
            if keep(publication):
                kept.append(Candidate(publication, similarity, calibrated))
                if len(kept) == n:
                    break
        else:
            # Fewer than n passed: the whole answer only if the list holds every other item.
            if not self.neighbours.complete:
                return None
        if self._delta is None:
            return kept
        # The first n that pass are the build's best n; the written items compete with them on the same key.
        for key, similarity in self._delta.fresh_hits(vector):
            publication = publications[key]
            if key != source and keep(publication):
                kept.append(Candidate(publication, similarity, calibrate(publication.language, similarity)))
        kept.sort(key=lambda c: c.calibrated, reverse=True)
        return kept[:n]

    def _search(
        self, vector: np.ndarray, keep: Callable[[Publication], bool], n: int, calibrate: Calibrator
    ) -> list[Candidate]:
        """The index returns items by cosine; the search widens until no unseen item can beat the n-th
        best key: an unseen item has a cosine at most the last one returned, and ``calibrate`` grows with the
        cosine within each language, so the best it could reach is the key of that cosine in each language.
        """
        # Calibrated keys reorder across languages, so start wider: one search instead of two or three.
        fetch = (4 * n if self.calibration is not None else n) + _CANDIDATE_MARGIN
        while True:
            hits = self.index.search(vector, fetch)[0]
            kept = [
                Candidate(self.publications[i], s, calibrate(self.publications[i].language, s))
                for i, s in hits
                if keep(self.publications[i])
            ]
            kept.sort(key=lambda c: c.calibrated, reverse=True)
            if fetch >= len(self.index) or not hits:
                return kept[:n]
            floor = hits[-1][1]
            best_unseen = max(calibrate(language, floor) for language in self._languages)
            if len(kept) >= n and kept[n - 1].calibrated >= best_unseen:
                return kept[:n]
            fetch *= 4
