"""Re-ranking steps applied to filtered candidates: MMR diversity and the minimum-score cut."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mmr_order(
    similarities: np.ndarray, vectors: np.ndarray, diversity: float, n_select: int
) -> list[tuple[int, float]]:
    """Maximal marginal relevance: pick ``n_select`` rows, each maximising
    ``(1 - diversity) * similarity - diversity * max cosine to the rows already picked``.

    ``similarities`` are the candidates' cosines to the query and ``vectors`` their unit vectors.
    Returns ``(row, redundancy)`` pairs in pick order; redundancy is that max cosine (0 for the first).
    With ``diversity == 0`` this is the similarity order.
    """
    n = len(similarities)
    n_select = min(n_select, n)
    if n_select <= 0:
        return []
    if diversity <= 0.0:
        order = np.argsort(-similarities, kind="stable")[:n_select]
        return [(int(i), 0.0) for i in order]
    # All pairwise cosines in one matrix product: one GEMM instead of a matrix-vector product per pick.
    cosines = vectors @ vectors.T
    relevance = (1.0 - diversity) * np.asarray(similarities, dtype=np.float32)
    redundancy = np.zeros(n, dtype=np.float32)
    scores = np.empty(n, dtype=np.float32)
    available = np.ones(n, dtype=bool)
    picked: list[tuple[int, float]] = []
    for _ in range(n_select):
        np.subtract(relevance, diversity * redundancy, out=scores)
        scores[~available] = -np.inf
        best = int(np.argmax(scores))
        picked.append((best, float(redundancy[best])))
        available[best] = False
        np.maximum(redundancy, cosines[best], out=redundancy)
    return picked


def keep_min_score(scores: Sequence[float], min_score: float | None, min_results: int) -> list[int]:
    """Positions (in ranked order) of the items to keep: those scoring at least ``min_score``, topped up
    with the best-ranked others until ``min_results`` items are kept (when that many exist)."""
    if min_score is None:
        return list(range(len(scores)))
    keep = {i for i, score in enumerate(scores) if score >= min_score}
    for i in range(len(scores)):
        if len(keep) >= min_results:
            break
        keep.add(i)
    return sorted(keep)
