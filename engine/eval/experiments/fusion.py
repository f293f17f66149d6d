"""Ranking experiments that lost (docs/quality.md): reciprocal rank fusion with BM25 and near-duplicate
collapse. Kept for scripts/quality_attempts.py, which re-measures every attempt; never served."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.eval.evaluate import Exclusions, Ranker


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    """Fuse ranked lists by summing ``1 / (k + rank)`` (Cormack et al. 2009); ties keep first-seen order."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda doc: -scores[doc])


def collapse_near_duplicates(ids: Sequence[str], vectors: np.ndarray, threshold: float) -> list[int]:
    """Positions to keep: each item unless its cosine to an item kept before it exceeds ``threshold``."""
    kept: list[int] = []
    for i in range(len(ids)):
        if all(float(vectors[i] @ vectors[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


class FusionRanker:
    """Reciprocal rank fusion of several rankers' lists (e.g. semantic + BM25)."""

    def __init__(self, name: str, rankers: Sequence[Ranker], depth: int = 50, k: int = 60) -> None:
        self.name = name
        self.rankers = list(rankers)
        self.depth = depth
        self.k = k

    def rank(self, query_id: str, k: int, exclusions: Exclusions) -> list[str]:
        lists = [r.rank(query_id, max(k, self.depth), exclusions) for r in self.rankers]
        return reciprocal_rank_fusion(lists, self.k)[:k]
