"""Ranking-quality metrics and relevance judgments: pure functions on plain dicts.

Conventions follow trec_eval: graded relevance with linear gain in nDCG; MRR, recall and AP count any
grade > 0 as relevant; AP@k divides by the number of relevant items (as trec_eval's ``map_cut``).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from engine.catalog.records import Publication

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]


def ndcg_at_k(ranking: Sequence[str], judgments: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of the first ``k`` ids (gain = grade, discount log2(rank+1))."""
    dcg = sum(judgments.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:k], start=1))
    ideal = sorted((g for g in judgments.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def reciprocal_rank_at_k(ranking: Sequence[str], judgments: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant id within the first ``k``, else 0."""
    for rank, doc in enumerate(ranking[:k], start=1):
        if judgments.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def recall_at_k(ranking: Sequence[str], judgments: Mapping[str, int], k: int) -> float:
    """Share of the relevant ids found in the first ``k``."""
    relevant = {doc for doc, grade in judgments.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def average_precision_at_k(ranking: Sequence[str], judgments: Mapping[str, int], k: int) -> float:
    """Sum of precision at each relevant hit within the first ``k``, divided by the number of relevant ids."""
    relevant = {doc for doc, grade in judgments.items() if grade > 0}
    if not relevant:
        return 0.0
    hits, total = 0, 0.0
    for rank, doc in enumerate(ranking[:k], start=1):
        if doc in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


def precision_at_k(ranking: Sequence[str], judgments: Mapping[str, int], k: int) -> float:
    """Share of the first ``k`` positions holding a relevant id."""
    return sum(1 for doc in ranking[:k] if judgments.get(doc, 0) > 0) / k


def evaluate_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int) -> dict[str, float]:
    """Mean nDCG@k, MRR@k, recall@k, MAP@k and P@1 over the queries that have at least one relevant id.

    Keys: ``ndcg@k``, ``mrr@k``, ``recall@k``, ``map@k``, ``p@1``, ``n_queries``.
    """
    metrics = {
        f"ndcg@{k}": ndcg_at_k,
        f"mrr@{k}": reciprocal_rank_at_k,
        f"recall@{k}": recall_at_k,
        f"map@{k}": average_precision_at_k,
    }
    totals: dict[str, float] = defaultdict(float)
    n = 0
    for query, judgments in qrels.items():
        if not any(grade > 0 for grade in judgments.values()):
            continue
        ranking = list(run.get(query, []))
        n += 1
        for name, metric in metrics.items():
            totals[name] += metric(ranking, judgments, k)
        totals["p@1"] += precision_at_k(ranking, judgments, 1)
    result = {name: (totals[name] / n if n else 0.0) for name in [*metrics, "p@1"]}
    result["n_queries"] = n
    return result


def topic_qrels(publications: Iterable[Publication]) -> Qrels:
    """Relevant = shares a topic with the query and is outside its translation group."""
    items = list(publications)
    by_topic: dict[str, set[str]] = defaultdict(set)
    for p in items:
        for topic in p.topics:
            by_topic[topic].add(p.id)
    group_of = {p.id: p.group for p in items}
    qrels: Qrels = {}
    for p in items:
        related = set().union(*(by_topic[t] for t in p.topics)) if p.topics else set()
        qrels[p.id] = {doc: 1 for doc in related if doc != p.id and (p.group is None or group_of[doc] != p.group)}
    return qrels


def group_qrels(publications: Iterable[Publication]) -> Qrels:
    """Relevant = another language version of the query (same translation ``group``)."""
    members: dict[str, list[str]] = defaultdict(list)
    items = list(publications)
    for p in items:
        if p.group:
            members[p.group].append(p.id)
    return {p.id: {doc: 1 for doc in members[p.group] if doc != p.id} if p.group else {} for p in items}


def load_qrels(path: Path) -> Qrels:
    """Read a BEIR-style TSV (``query-id  corpus-id  score`` with a header line)."""
    qrels: Qrels = defaultdict(dict)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise ValueError(f"{path}: expected the header 'query-id<TAB>corpus-id<TAB>score', got {header}")
        for number, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                query, doc, score = row[0], row[1], int(row[2])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: expected query-id, corpus-id and an integer score") from None
            qrels[query][doc] = score
    return dict(qrels)


def restrict_qrels(qrels: Qrels, language_of: Mapping[str, str | None], *, cross_lingual: bool) -> Qrels:
    """With ``cross_lingual``, keep only judgments on items in a language other than the query's."""
    if not cross_lingual:
        return qrels
    return {
        query: {doc: g for doc, g in judged.items() if language_of.get(doc) != language_of.get(query)}
        for query, judged in qrels.items()
    }


RELEVANCE_KINDS = ("topics", "group")


def judgments_for(publications: Sequence[Publication], relevance: str, qrels_path: Path | None = None) -> Qrels:
    """Judgments from a qrels file if given, else derived from the catalog by ``relevance``."""
    if qrels_path is not None:
        return load_qrels(qrels_path)
    if relevance == "topics":
        return topic_qrels(publications)
    if relevance == "group":
        return group_qrels(publications)
    raise ValueError(f"unknown relevance {relevance!r}; use one of {RELEVANCE_KINDS}")
