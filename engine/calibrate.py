"""Per-language score calibration: rank by how unusually similar an item is *for its language*.

A multilingual encoder scores items in the query's own language higher across the board, so a loosely
related same-language item can outrank the best match in another language. For a query vector q and an
item of language L we rank by the z-score ``(q.d - q.mu_L) / sqrt(q' Sigma_L q)``, where mu_L and
Sigma_L are the mean and covariance of the catalog's vectors in L: exactly the mean and spread of q's
similarities to all items of L, computed in O(d^2) instead of O(n). With few items in a language the
statistics are shrunk towards the whole catalog's (weight n / (n + 20)).

Within one language this is a monotone transform of the cosine, so per-language top lists are exact; the
API still reports the cosine as ``score``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

CALIBRATION_FILE = "calibration.npz"
SHRINKAGE = 20.0
_UNKNOWN = ""


class LanguageCalibration:
    """Mean vectors and covariances per language (and overall), fitted on a catalog's vectors."""

    def __init__(
        self, languages: Sequence[str], means: np.ndarray, covariances: np.ndarray, counts: np.ndarray
    ) -> None:
        # Row 0 holds the whole catalog; rows 1.. the languages, in the order of ``languages``.
        self.languages = list(languages)
        self._row = {lang: i + 1 for i, lang in enumerate(self.languages)}
        self.means = means.astype(np.float64)
        self.covariances = covariances.astype(np.float64)
        self.counts = counts.astype(np.float64)
        # float32 copies for the per-request path (float32 BLAS, half the memory traffic).
        self._means32 = np.ascontiguousarray(self.means, dtype=np.float32)
        self._covariances32 = np.ascontiguousarray(self.covariances, dtype=np.float32)
        # (d, rows * d): the covariances side by side, for one matrix product per batch of queries.
        self._stacked32 = np.ascontiguousarray(np.concatenate(list(self._covariances32), axis=1))
        # Shrinkage as a linear map from the raw statistics (row 0 overall, then languages) to the output
        # columns (0 for unknown languages, then languages): each language blends with the overall row.
        rows = len(self.counts)
        weights = self.counts / (self.counts + SHRINKAGE)
        mixing = np.zeros((rows, rows))
        for row in range(1, rows):
            mixing[row, row], mixing[0, row] = weights[row], 1 - weights[row]
        unknown = self._row.get(_UNKNOWN)
        mixing[:, 0] = mixing[:, unknown] if unknown else np.eye(rows)[:, 0]
        self._mixing32 = mixing.astype(np.float32)
        self._mixed_means32 = np.ascontiguousarray(self._means32.T @ self._mixing32)

    @classmethod
    def fit(cls, vectors: np.ndarray, languages: Sequence[str | None]) -> LanguageCalibration:
        """Statistics of ``vectors`` overall and per language (``None`` counts as one unknown language)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        labels = np.array([lang or _UNKNOWN for lang in languages])
        names = sorted(set(labels))
        means, covariances, counts = [], [], []
        for mask in [np.ones(len(labels), dtype=bool), *(labels == name for name in names)]:
            subset = vectors[mask]
            mean = subset.mean(axis=0)
            centred = subset - mean
            means.append(mean)
            covariances.append(centred.T @ centred / len(subset))
            counts.append(len(subset))
        return cls(names, np.stack(means), np.stack(covariances), np.array(counts))

    def statistics(self, query: np.ndarray, language: str | None) -> tuple[float, float]:
        """Mean and standard deviation of ``query``'s similarities to the items of ``language``."""
        query = np.asarray(query, dtype=np.float64)
        overall = (float(query @ self.means[0]), float(np.sqrt(max(query @ self.covariances[0] @ query, 1e-12))))
        row = self._row.get(language or _UNKNOWN)
        if row is None:
            return overall
        weight = self.counts[row] / (self.counts[row] + SHRINKAGE)
        mean = float(query @ self.means[row])
        std = float(np.sqrt(max(query @ self.covariances[row] @ query, 1e-12)))
        return weight * mean + (1 - weight) * overall[0], weight * std + (1 - weight) * overall[1]

    def scorer(self, query: np.ndarray) -> dict[str | None, tuple[float, float]]:
        """Per-language (mean, std) for one query, computed once per request, all languages in one pass."""
        means, spreads = self.statistics_matrix(query)
        table: dict[str | None, tuple[float, float]] = {
            lang: (float(means[0, row]), float(spreads[0, row])) for lang, row in self._row.items()
        }
        table[None] = (float(means[0, 0]), float(spreads[0, 0]))
        return table

    def column_of(self, language: str | None) -> int:
        """The column of ``language`` in :meth:`statistics_matrix` (column 0 serves unknown languages)."""
        row = self._row.get(language or _UNKNOWN)
        return 0 if row is None or not language else row

    def statistics_matrix(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`scorer` for many queries at once: means and standard deviations, (queries, columns) each.

        Column 0 answers for items of unknown language, column ``i`` for ``languages[i - 1]``.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        # q' Sigma q for every covariance at once: one product with the covariances side by side.
        projected = (queries @ self._stacked32).reshape(len(queries), len(self._covariances32), -1)
        spreads = np.sqrt(np.maximum(np.einsum("bld,bd->bl", projected, queries), 1e-12))
        return queries @ self._mixed_means32, spreads @ self._mixing32

    def save(self, folder: Path) -> None:
        """Write ``calibration.npz`` (plain arrays, no pickle)."""
        np.savez(
            folder / CALIBRATION_FILE,
            languages=np.array(self.languages, dtype=np.str_),
            means=self.means.astype(np.float32),
            covariances=self.covariances.astype(np.float32),
            counts=self.counts,
        )

    @classmethod
    def load(cls, folder: Path) -> LanguageCalibration | None:
        """Read ``calibration.npz`` if the build has one."""
        path = folder / CALIBRATION_FILE
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return cls(list(data["languages"]), data["means"], data["covariances"], data["counts"])
