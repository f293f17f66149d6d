"""The evaluation runner: any ranker (the engine or a baseline), every item as a query, metrics overall,
cross-lingual and per language pair, plus language bias, intra-list similarity and coverage."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.catalog.records import Publication
from engine.eval.metrics import Qrels, Run, evaluate_run, judgments_for, restrict_qrels
from engine.rank.recommend import Recommender


@dataclass(frozen=True, slots=True)
class Exclusions:
    """What a ranker leaves out of a list besides the query itself."""

    include_translations: bool = False  # keep the query's own other language versions
    languages: Collection[str] | None = None  # keep only these languages
    exclude_languages: Collection[str] | None = None


class Ranker(Protocol):
    """Anything that ranks catalog items for a catalog item."""

    name: str

    def rank(self, query_id: str, k: int, exclusions: Exclusions) -> list[str]:
        """Ids of the best ``k`` items for ``query_id`` (never the query itself)."""
        ...


class EngineRanker:
    """The engine's own ranking path (``Recommender.related``), as a :class:`Ranker`."""

    def __init__(self, recommender: Recommender, name: str = "engine", **options: object) -> None:
        self.recommender = recommender
        self.name = name
        self.options = options

    def rank(self, query_id: str, k: int, exclusions: Exclusions) -> list[str]:
        items = self.recommender.related(
            query_id,
            k,
            include_translations=exclusions.include_translations,
            languages=exclusions.languages,
            exclude_languages=exclusions.exclude_languages,
            **self.options,
        )
        return [item.id for item in items]


@dataclass(slots=True)
class SystemReport:
    """Everything measured for one system on one data set."""

    system: str
    overall: dict[str, float]
    cross_lingual: dict[str, float]
    pairs: dict[str, dict[str, float]] = field(default_factory=dict)  # "en->fr" -> metrics
    language_bias: float = 0.0
    intra_list_similarity: float = 0.0
    coverage: float = 0.0


def make_run(
    ranker: Ranker,
    queries: Collection[str],
    k: int,
    *,
    include_translations: bool,
    language_of: dict[str, str | None],
    cross_lingual: bool = False,
    only_language: str | None = None,
) -> Run:
    """Rank every query; optionally only results in other languages, or in one language."""
    run: Run = {}
    for query in queries:
        exclude = [language_of[query]] if cross_lingual and language_of[query] else None
        languages = [only_language] if only_language else None
        run[query] = ranker.rank(query, k, Exclusions(include_translations, languages, exclude))
    return run


def evaluate_system(
    ranker: Ranker,
    publications: Sequence[Publication],
    *,
    relevance: str = "topics",
    qrels_path: Path | None = None,
    k: int = 10,
    vectors: dict[str, np.ndarray] | None = None,
    pairs: bool = True,
) -> SystemReport:
    """Measure one ranker: overall, cross-lingual only, per language pair, bias, diversity, coverage.

    ``vectors`` (id -> unit vector, the same for every system) measure intra-list similarity.
    """
    qrels = judgments_for(publications, relevance, qrels_path)
    language_of = {p.id: p.language for p in publications}
    queries = [q for q in qrels if q in language_of and any(g > 0 for g in qrels[q].values())]
    include = relevance == "group" and qrels_path is None
    run = make_run(ranker, queries, k, include_translations=include, language_of=language_of)
    overall = evaluate_run(run, qrels, k)
    cross_qrels = restrict_qrels(qrels, language_of, cross_lingual=True)
    cross_run = make_run(ranker, queries, k, include_translations=include, language_of=language_of, cross_lingual=True)
    report = SystemReport(ranker.name, overall, evaluate_run(cross_run, cross_qrels, k))
    if pairs:
        report.pairs = _pair_metrics(ranker, queries, qrels, k, include, language_of)
    report.language_bias = language_bias(run, language_of)
    report.coverage = len({doc for docs in run.values() for doc in docs}) / max(1, len(publications))
    if vectors is not None:
        report.intra_list_similarity = intra_list_similarity(run, vectors)
    return report


def _pair_metrics(
    ranker: Ranker, queries: Sequence[str], qrels: Qrels, k: int, include: bool, language_of: dict[str, str | None]
) -> dict[str, dict[str, float]]:
    languages = sorted({language_of[q] for q in language_of if language_of[q]})
    result: dict[str, dict[str, float]] = {}
    for source, target in itertools.product(languages, repeat=2):
        pair_queries = [q for q in queries if language_of[q] == source]
        pair_qrels = {q: {d: g for d, g in qrels[q].items() if language_of.get(d) == target} for q in pair_queries}
        pair_queries = [q for q in pair_queries if any(g > 0 for g in pair_qrels[q].values())]
        if not pair_queries:
            continue
        run = make_run(
            ranker, pair_queries, k, include_translations=include, language_of=language_of, only_language=target
        )
        result[f"{source}->{target}"] = evaluate_run(run, pair_qrels, k)
    return result


def language_bias(run: Run, language_of: dict[str, str | None]) -> float:
    """Mean share of each list's items in the query's own language (an unbiased ranker over L equally
    represented languages gets about 1/L)."""
    shares = [sum(language_of.get(d) == language_of[q] for d in docs) / len(docs) for q, docs in run.items() if docs]
    return float(np.mean(shares)) if shares else 0.0


def intra_list_similarity(run: Run, vectors: dict[str, np.ndarray]) -> float:
    """Mean pairwise cosine between the items of each list (lower = more diverse)."""
    values = []
    for docs in run.values():
        if len(docs) < 2:
            continue
        matrix = np.stack([vectors[d] for d in docs])
        sims = matrix @ matrix.T
        n = len(docs)
        values.append((sims.sum() - np.trace(sims)) / (n * (n - 1)))
    return float(np.mean(values)) if values else 0.0


def evaluate_recommender(
    recommender: Recommender,
    *,
    relevance: str = "topics",
    qrels_path: Path | None = None,
    k: int = 10,
    cross_lingual_only: bool = False,
) -> dict[str, float]:
    """Rank every judged query with the engine and score the run (the figures of ``scripts/evaluate.py``).

    ``group`` relevance keeps translations in the ranking (they are what is looked for);
    ``cross_lingual_only`` ranks and judges only items in a language other than the query's.
    """
    publications = list(recommender.publications.values())
    qrels = judgments_for(publications, relevance, qrels_path)
    language_of = {p.id: p.language for p in publications}
    qrels = restrict_qrels(qrels, language_of, cross_lingual=cross_lingual_only)
    queries = [q for q in qrels if q in recommender.publications]
    run = make_run(
        EngineRanker(recommender),
        queries,
        k,
        include_translations=relevance == "group" and qrels_path is None,
        language_of=language_of,
        cross_lingual=cross_lingual_only,
    )
    return evaluate_run(run, qrels, k)
