"""Baseline rankers to measure the engine against: random, recency, lexical BM25, character n-gram TF-IDF.

They rank by a score vector over the whole catalog and apply the engine's exclusions (the item itself,
its translations unless asked for, language filters), so the only difference is how items are scored.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

from engine.catalog.lexical import STEMMER_OF, normalise_arabic, stemmer, stopwords
from engine.catalog.records import Publication
from engine.catalog.text import publication_text
from engine.eval.evaluate import Exclusions

_WORD = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str, language: str | None) -> list[str]:
    """Lexical tokens: lower-cased words, Arabic normalised, stop words removed, Snowball-stemmed by language."""
    text = normalise_arabic(text.lower())
    words = _WORD.findall(text)
    stop = stopwords().get(language or "", frozenset())
    words = [w for w in words if w not in stop and not w.isdigit()]
    algorithm = STEMMER_OF.get(language or "")
    if algorithm:
        words = stemmer(algorithm).stemWords(words)
    # Accents folded after stemming (the French stemmer expects them), so "économie" matches "economie".
    return ["".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c)) for w in words]


class ScoreRanker:
    """Ranks by a score vector over the catalog, with the engine's exclusions."""

    def __init__(self, name: str, publications: Sequence[Publication], scores: Callable[[int], np.ndarray]) -> None:
        self.name = name
        self.publications = list(publications)
        self._row = {p.id: i for i, p in enumerate(self.publications)}
        self._scores = scores
        self._languages = np.array([p.language or "" for p in self.publications])
        groups = [p.group or f"\0{p.id}" for p in self.publications]
        self._groups = np.array(groups)

    def scores(self, row: int) -> np.ndarray:
        """The scores of every catalog item for the item at ``row`` (a fresh array)."""
        return np.array(self._scores(row), dtype=np.float64)

    def rank(self, query_id: str, k: int, exclusions: Exclusions) -> list[str]:
        """The ``k`` best-scoring items that pass the exclusions."""
        row = self._row[query_id]
        scores = self.scores(row)
        blocked = np.zeros(len(scores), dtype=bool)
        blocked[row] = True
        if not exclusions.include_translations:
            blocked |= self._groups == self._groups[row]
        if exclusions.languages:
            blocked |= ~np.isin(self._languages, list(exclusions.languages))
        if exclusions.exclude_languages:
            blocked |= np.isin(self._languages, list(exclusions.exclude_languages))
        scores[blocked] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.publications[i].id for i in order if np.isfinite(scores[i])]


def random_ranker(publications: Sequence[Publication], seed: int = 0) -> ScoreRanker:
    """Uniformly random order, reproducible per query."""
    n = len(publications)
    return ScoreRanker("random", publications, lambda row: np.random.default_rng([seed, row]).random(n))


def recency_ranker(publications: Sequence[Publication]) -> ScoreRanker:
    """Newest first, what many sites show today; undated items last, ties in a fixed random order."""
    days = np.array(
        [dt.date.fromisoformat(p.published).toordinal() if p.published else -1e9 for p in publications], dtype=float
    )
    jitter = np.random.default_rng(0).random(len(publications)) * 0.5
    return ScoreRanker("recency", publications, lambda row: days + jitter)


def bm25_ranker(publications: Sequence[Publication]) -> ScoreRanker:
    """Okapi BM25 (bm25s) with the query publication's own text as the query."""
    import bm25s

    corpus = [tokenize(publication_text(p), p.language) for p in publications]
    model = bm25s.BM25()
    model.index(corpus, show_progress=False)
    return ScoreRanker("bm25", publications, lambda row: model.get_scores(corpus[row]))


def tfidf_ranker(publications: Sequence[Publication]) -> ScoreRanker:
    """Cosine of character 3-5-gram TF-IDF vectors (scikit-learn), robust to morphology and scripts."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [normalise_arabic(publication_text(p).lower()) for p in publications]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit_transform(texts)
    return ScoreRanker("tfidf-char", publications, lambda row: (matrix @ matrix[row].T).toarray().ravel())


BASELINES: dict[str, Callable[[Sequence[Publication]], ScoreRanker]] = {
    "random": random_ranker,
    "recency": recency_ranker,
    "bm25": bm25_ranker,
    "tfidf-char": tfidf_ranker,
}
