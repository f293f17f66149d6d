"""Score matrices of the ranking ideas measured by scripts/shape_attempts.py (research code, not served).

Each function takes a catalog's vectors (or chunks, or BM25 scores) and returns a query x candidate score
matrix, or adapted vectors whose cosines make one. The calibration variants are written out here rather
than taken from engine/index/calibrate.py because most of them (all items, partial strength, James-Stein) are
what the product no longer does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from engine.catalog.records import Publication
from engine.encode.chunks import ChunkVectors, normalize
from engine.encode.embed import Encoder
from engine.index.adaptation import CatalogAdaptation


@dataclass
class Catalog:
    """One catalog of a shape with what the attempts need: chunks, pooled vectors, BM25 scores."""

    publications: list[Publication]
    chunks: ChunkVectors
    vectors: np.ndarray
    bm25: np.ndarray
    encoder_name: str


def cosine(vectors: np.ndarray) -> np.ndarray:
    """All pairwise cosines of unit vectors."""
    return vectors @ vectors.T


def centred(vectors: np.ndarray) -> np.ndarray:
    """Vectors minus their mean, re-normalised."""
    return normalize(vectors - vectors.mean(axis=0))


def z_key(
    c: Catalog,
    vectors: np.ndarray,
    *,
    translated_only: bool,
    shrinkage: float,
    strength: float = 1.0,
    james_stein: bool = False,
) -> np.ndarray:
    """Per-language z-scores of the cosine, statistics from all items or from translated items only; weights
    n / (n + shrinkage), or positive-part James-Stein weights on each language's mean offset."""
    languages = np.array([p.language or "" for p in c.publications])
    n = len(vectors)
    pooled_mean, pooled_cov = _moments(vectors)
    m0, s0 = vectors @ pooled_mean, np.sqrt(np.einsum("nd,de,ne->n", vectors, pooled_cov, vectors))
    means, spreads = np.repeat(m0[:, None], n, 1), np.repeat(s0[:, None], n, 1)
    subset = _translated(c.publications) if translated_only else np.ones(n, dtype=bool)
    if subset.sum() >= 2:
        sub_mean, sub_cov = _moments(vectors[subset])
        s_sub = np.sqrt(np.einsum("nd,de,ne->n", vectors, sub_cov, vectors))
        for language in set(languages):
            chosen = subset & (languages == language)
            if chosen.sum() < 2:
                continue
            weight = strength * chosen.sum() / (chosen.sum() + shrinkage)
            lang_mean, lang_cov = _moments(vectors[chosen])
            if james_stein:
                offset = lang_mean - sub_mean
                weight = max(0.0, 1 - np.trace(lang_cov) / chosen.sum() / max(offset @ offset, 1e-12))
            s_lang = np.sqrt(np.einsum("nd,de,ne->n", vectors, lang_cov, vectors))
            column = languages == language
            means[:, column] = (m0 + weight * (vectors @ (lang_mean - sub_mean)))[:, None]
            spreads[:, column] = (s0 * (1 + weight * (s_lang / s_sub - 1)))[:, None]
    return (cosine(vectors) - means) / spreads


def _moments(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance."""
    mean = vectors.mean(axis=0)
    return mean, (vectors - mean).T @ (vectors - mean) / len(vectors)


def _translated(publications: list[Publication]) -> np.ndarray:
    """Items whose translation group holds two or more languages."""
    languages: dict[str, set[str]] = defaultdict(set)
    for p in publications:
        if p.group and p.language:
            languages[p.group].add(p.language)
    return np.array([bool(p.group) and len(languages[p.group]) > 1 for p in publications])


def smoothed(vectors: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Document-level neighbour smoothing (database-side augmentation)."""
    scores = cosine(vectors)
    np.fill_diagonal(scores, -np.inf)
    best = np.argsort(-scores, axis=1)[:, : min(k, len(vectors) - 1)]
    w = np.maximum(np.take_along_axis(scores, best, 1), 0)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-9)
    return normalize(vectors + weight * np.einsum("nk,nkd->nd", w, vectors[best]))


def chunk_smoothed(c: Catalog, k: int = 5, weight: float = 0.5) -> np.ndarray:
    """The engine's adaptation (centring + chunk-level smoothing) with other parameters."""
    return CatalogAdaptation.fit(c.chunks, k=k, strength=weight).document_vectors(c.chunks)


def late_interaction(c: Catalog, centre: bool) -> np.ndarray:
    """Each chunk's best match in the other document, length-weighted mean, symmetrised."""
    chunks = c.chunks.vectors.astype(np.float64)
    if centre:
        chunks = normalize(chunks - chunks.mean(axis=0))
    n, owners, weights = len(c.publications), c.chunks.owners, c.chunks.weights
    products = chunks @ chunks.T
    best = np.stack([products[:, owners == j].max(axis=1) for j in range(n)], axis=1)  # (chunks, documents)
    totals = np.zeros((n, n))
    np.add.at(totals, owners, best * weights[:, None])
    one_way = totals / np.bincount(owners, weights=weights, minlength=n)[:, None]
    return (one_way + one_way.T) / 2


def row_z(scores: np.ndarray) -> np.ndarray:
    """Scores standardised per query (the query itself left out)."""
    values = scores.astype(np.float64).copy()
    np.fill_diagonal(values, np.nan)
    z = (values - np.nanmean(values, axis=1, keepdims=True)) / (np.nanstd(values, axis=1, keepdims=True) + 1e-9)
    return np.nan_to_num(z)


def hybrid(c: Catalog, dense: np.ndarray, weight: float, *, same_language_long: bool) -> np.ndarray:
    """Dense and BM25 scores standardised per query and mixed; optionally BM25 only for same-language pairs of
    long texts (150+ words)."""
    lexical = row_z(c.bm25)
    if same_language_long:
        languages = np.array([p.language for p in c.publications])
        long = np.array([len(f"{p.title} {p.abstract}".split()) >= 150 for p in c.publications])
        mask = (languages[:, None] == languages[None, :]) & long[:, None] & long[None, :]
        lexical = np.where(mask, lexical, 0.0)
    return (1 - weight) * row_z(dense) + weight * lexical


def language_slots_kept(c: Catalog, dense: np.ndarray, weight: float, pool: int = 50) -> np.ndarray:
    """Reorder only the query-language items of the top ``pool`` by dense + BM25, each keeping a slot of its
    language, so the language mix of the list stays the dense one."""
    scores = dense.copy()
    languages = np.array([p.language for p in c.publications])
    for q in range(len(scores)):
        row = scores[q].copy()
        row[q] = -np.inf
        top = np.argsort(-row)[:pool]
        same = top[languages[top] == languages[q]]
        if len(same) < 2:
            continue
        mix = (1 - weight) * _z(scores[q, same]) + weight * _z(c.bm25[q, same])
        scores[q, same[np.argsort(-mix, kind="stable")]] = np.sort(scores[q, same])[::-1]
    return scores


def _z(values: np.ndarray) -> np.ndarray:
    """Standardised values."""
    return (values - values.mean()) / (values.std() + 1e-9)


def all_but_the_top(vectors: np.ndarray, d: int) -> np.ndarray:
    """Centred, then the top ``d`` principal directions removed (Mu & Viswanath, 2018)."""
    x = vectors - vectors.mean(axis=0)
    _, _, top = np.linalg.svd(x, full_matrices=False)
    return normalize(x - (x @ top[:d].T) @ top[:d])


def csls(vectors: np.ndarray, k: int) -> np.ndarray:
    """Cross-domain similarity local scaling: 2 cos(q, d) minus d's mean cosine to its k nearest (hubness)."""
    scores = cosine(vectors)
    masked = scores.copy()
    np.fill_diagonal(masked, -np.inf)
    hub = -np.partition(-masked, min(k, len(vectors) - 1) - 1, axis=1)[:, :k].mean(axis=1)
    return 2 * scores - hub[None, :]


def title_blend(c: Catalog, encoder: Encoder, weight: float) -> np.ndarray:
    """Centred document vectors with ``weight`` times the title's own vector added (first 200 characters of
    the abstract for untitled items)."""
    titles = encoder.encode(
        [p.title or p.abstract[:200] for p in c.publications], languages=[p.language for p in c.publications]
    )
    return centred(normalize(c.vectors + weight * titles))


def whitened(vectors: np.ndarray) -> np.ndarray:
    """Whitening with the catalog's covariance, shrunk toward its mean eigenvalue (BERT-whitening style)."""
    x = vectors - vectors.mean(axis=0)
    values, basis = np.linalg.eigh(x.T @ x / len(x))
    return normalize(x @ basis @ np.diag(1 / np.sqrt(values + values.mean())) @ basis.T)
