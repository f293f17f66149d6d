"""Per-language score calibration, as strong as the catalog's own translations show it should be.

A multilingual encoder scores items in the query's own language higher across the board, so a loosely
related same-language item can outrank the best match in another language. We rank an item of language
L by a z-score of its cosine, ``(q.d - m_L(q)) / s_L(q)``, with

    m_L(q) = q.mu + w_L q.(mu_L - mu_P)
    s_L(q) = s(q) * (1 + w_L (sqrt(q' Sigma_L q) / sqrt(q' Sigma_P q) - 1))

where mu and s(q) are the mean and spread of q's similarities to the whole catalog, and the language
terms are measured on the catalog's **translated items only** (P: items whose translation group holds
two or more languages; mu_L, Sigma_L: its items in L). There every language holds the same publications,
so what differs between languages is the encoder's language effect and not what each language happens
to publish: a French list that is mostly economics does not push economics down for French queries.
Each language's effect counts by ``w_L = n_L / (n_L + 10)`` for its ``n_L`` translated items; the spread
of q's similarities to ``n_L`` items is uncertain by about ``sqrt(2 / n_L)``, ±45 % at ten (the constant
and the alternatives are in docs/quality-shapes.md). A catalog without translations gets no language correction
at all: the key is then the same order as the cosine, for every query.

All of it is computed per query in O(d^2) from stored means and covariances, not O(n). Within one
language the key is an increasing function of the cosine, so per-language top lists are exact; the API
still reports the cosine as ``score``.
"""

from __future__ import annotations

import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.index.vectors import IndexLoadError

SHRINKAGE = 10.0
_MIN_TRANSLATED = 2


class LanguageCalibration:
    """Whole-catalog statistics, plus the language effects measured on the catalog's translated items."""

    def __init__(
        self,
        languages: Sequence[str],
        means: np.ndarray,
        covariances: np.ndarray,
        weights: np.ndarray,
        counts: np.ndarray,
    ) -> None:
        # ``languages``: the languages with a measured effect, in column order 1.. (column 0 is the catalog).
        # ``means``: (1 + L, d) the catalog mean, then mu + w_L (mu_L - mu_P) per language.
        # ``covariances``: (2 + L, d, d) the catalog's, the translated items', then each language's among them.
        self.languages = list(languages)
        self._column = {lang: i + 1 for i, lang in enumerate(self.languages)}
        self.means = np.asarray(means, dtype=np.float64)
        self.covariances = np.asarray(covariances, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.counts = np.asarray(counts, dtype=np.float64)
        if not (len(self.means) == len(self.weights) + 1 == len(self.covariances) - 1 == len(self.languages) + 1):
            raise ValueError("calibration arrays do not agree on the number of languages")
        # float32 copies for the per-request path (float32 BLAS, half the memory traffic).
        self._means32 = np.ascontiguousarray(self.means.T, dtype=np.float32)
        # (d, (2 + L) * d): the covariances side by side, for one matrix product per batch of queries.
        self._stacked32 = np.ascontiguousarray(np.concatenate(list(self.covariances), axis=1), dtype=np.float32)
        self._weights32 = self.weights.astype(np.float32)

    @classmethod
    def fit(
        cls,
        vectors: np.ndarray,
        languages: Sequence[str | None],
        groups: Sequence[str | None],
    ) -> LanguageCalibration:
        """Statistics of ``vectors``; the language effects come from items whose ``group`` (translation group)
        holds two or more languages. Without groups there is no language effect to measure."""
        vectors = np.asarray(vectors, dtype=np.float64)
        labels = [lang or "" for lang in languages]
        mean, covariance = _moments(vectors)
        translated = _translated(labels, groups)
        names = sorted({label for label, t in zip(labels, translated, strict=True) if t and label})
        counts = {
            name: int(sum(1 for label, t in zip(labels, translated, strict=True) if t and label == name))
            for name in names
        }
        names = [name for name in names if counts[name] >= _MIN_TRANSLATED]
        if not names:
            return cls([], mean[None, :], np.stack([covariance, covariance]), np.zeros(0), np.zeros(0))
        pooled_mean, pooled_covariance = _moments(vectors[translated])
        means, covariances, weights = [mean], [covariance, pooled_covariance], []
        label_array = np.array(labels)
        for name in names:
            language_mean, language_covariance = _moments(vectors[translated & (label_array == name)])
            weight = counts[name] / (counts[name] + SHRINKAGE)
            means.append(mean + weight * (language_mean - pooled_mean))
            covariances.append(language_covariance)
            weights.append(weight)
        return cls(
            names, np.stack(means), np.stack(covariances), np.array(weights), np.array([counts[n] for n in names])
        )

    def column_of(self, language: str | None) -> int:
        """The column of ``language`` in :meth:`statistics_matrix` (0: the whole catalog, for languages without
        a measured effect and unknown languages)."""
        return self._column.get(language or "", 0)

    def statistics_matrix(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """m and s of every query for every column: two ``(queries, 1 + languages)`` arrays."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        # q' Sigma q for every covariance at once: one product with the covariances side by side.
        projected = (queries @ self._stacked32).reshape(len(queries), len(self.covariances), -1)
        variances = np.maximum(np.einsum("bld,bd->bl", projected, queries), 1e-12)
        spread = np.sqrt(variances[:, :1])
        ratio = np.sqrt(variances[:, 2:] / variances[:, 1:2])
        spreads = np.concatenate([spread, spread * (1 + self._weights32 * (ratio - 1))], axis=1)
        return queries @ self._means32, spreads

    def scorer(self, query: np.ndarray) -> dict[str | None, tuple[float, float]]:
        """Per-language (m, s) for one query, all languages in one pass; ``None`` answers for every other
        language."""
        means, spreads = self.statistics_matrix(query)
        table: dict[str | None, tuple[float, float]] = {
            lang: (float(means[0, column]), float(spreads[0, column])) for lang, column in self._column.items()
        }
        table[None] = (float(means[0, 0]), float(spreads[0, 0]))
        return table

    def describe(self) -> dict[str, dict[str, float]]:
        """Per corrected language: translated items and the weight of its effect (for manifests and logs)."""
        return {
            lang: {"translated_items": int(count), "weight": round(float(weight), 4)}
            for lang, count, weight in zip(self.languages, self.counts, self.weights, strict=True)
        }

    def save(self, path: Path) -> None:
        """Write to ``path`` (``.npz``, plain arrays, no pickle)."""
        np.savez(
            path,
            languages=np.array(self.languages, dtype=np.str_),
            means=self.means.astype(np.float32),
            covariances=self.covariances.astype(np.float32),
            weights=self.weights,
            counts=self.counts,
        )

    @classmethod
    def load(cls, path: Path) -> LanguageCalibration | None:
        """Read what :meth:`save` wrote, if ``path`` exists."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    [str(lang) for lang in data["languages"]],
                    data["means"],
                    data["covariances"],
                    data["weights"],
                    data["counts"],
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise IndexLoadError(f"{path} is damaged or from an older version ({exc}); rebuild the index") from None


def _moments(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    return mean, centred.T @ centred / len(vectors)


def _translated(labels: Sequence[str], groups: Sequence[str | None]) -> np.ndarray:
    """Items whose translation group holds at least two languages."""
    languages_of: dict[str, set[str]] = defaultdict(set)
    for label, group in zip(labels, groups, strict=True):
        if group and label:
            languages_of[group].add(label)
    return np.array(
        [bool(group and label and len(languages_of[group]) >= 2) for label, group in zip(labels, groups, strict=True)],
        dtype=bool,
    )
