"""Metrics against hand-worked numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.catalog.records import Publication
from engine.eval.metrics import (
    average_precision_at_k,
    evaluate_run,
    group_qrels,
    load_qrels,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
    restrict_qrels,
    topic_qrels,
)

RANKING = ["a", "b", "c", "d", "e"]
JUDGED = {"b": 2, "d": 1, "z": 1, "x": 0}


def test_ndcg_graded() -> None:
    # DCG = 2/log2(3) + 1/log2(5) = 1.26186 + 0.43068 = 1.69254
    # ideal order 2,1,1: 2/1 + 1/log2(3) + 1/2 = 3.13093; nDCG = 0.54059
    assert ndcg_at_k(RANKING, JUDGED, 5) == pytest.approx(0.54059, abs=1e-5)
    # at k=1 nothing relevant is ranked: 0
    assert ndcg_at_k(RANKING, JUDGED, 1) == 0.0


def test_ndcg_perfect_is_one() -> None:
    assert ndcg_at_k(["b", "d", "z"], JUDGED, 3) == pytest.approx(1.0)


def test_mrr_recall_ap_precision() -> None:
    assert reciprocal_rank_at_k(RANKING, JUDGED, 5) == 0.5  # first relevant at rank 2
    assert reciprocal_rank_at_k(RANKING, JUDGED, 1) == 0.0
    assert recall_at_k(RANKING, JUDGED, 5) == pytest.approx(2 / 3)  # b and d of b, d, z
    # hits at ranks 2 and 4: (1/2 + 2/4) / 3 relevant = 1/3
    assert average_precision_at_k(RANKING, JUDGED, 5) == pytest.approx(1 / 3)
    assert precision_at_k(RANKING, JUDGED, 5) == pytest.approx(0.4)  # 2 of 5 relevant, so 0.4
    assert precision_at_k(["b"], JUDGED, 1) == 1.0


def test_evaluate_run_averages_and_skips_queries_without_relevant_items() -> None:
    run = {"q1": ["a", "b"], "q2": ["c", "a"], "q3": ["a"]}
    qrels = {"q1": {"b": 1}, "q2": {"c": 1}, "q3": {"x": 0}}
    result = evaluate_run(run, qrels, k=2)
    # q1: RR 1/2, nDCG 1/log2(3) = 0.63093; q2: RR 1, nDCG 1; q3 has no relevant item and is skipped
    assert result["n_queries"] == 2
    assert result["mrr@2"] == pytest.approx(0.75)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    assert result["recall@2"] == 1.0 and result["p@1"] == 0.5


def publications() -> list[Publication]:
    return [
        Publication("a-en", "A", language="en", topics=("trade",), group="a"),
        Publication("a-fr", "A", language="fr", topics=("trade",), group="a"),
        Publication("b", "B", language="fr", topics=("trade", "water")),
        Publication("c", "C", language="en", topics=("water",)),
        Publication("d", "D", language="ar"),
    ]


def test_topic_qrels_exclude_own_group() -> None:
    qrels = topic_qrels(publications())
    assert qrels["a-en"] == {"b": 1}  # a-fr shares the topic but is the same publication
    assert qrels["b"] == {"a-en": 1, "a-fr": 1, "c": 1}
    assert qrels["d"] == {}


def test_group_qrels_and_cross_lingual_restriction() -> None:
    pubs = publications()
    qrels = group_qrels(pubs)
    assert qrels["a-en"] == {"a-fr": 1} and qrels["b"] == {}
    language_of = {p.id: p.language for p in pubs}
    restricted = restrict_qrels(topic_qrels(pubs), language_of, cross_lingual=True)
    assert restricted["b"] == {"a-en": 1, "c": 1}  # a-fr is in b's own language


def test_load_qrels(tmp_path: Path) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq\ta\t2\nq\tb\t0\n", encoding="utf-8")
    assert load_qrels(path) == {"q": {"a": 2, "b": 0}}
    path.write_text("query-id\tcorpus-id\tscore\nq\ta\thigh\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2: expected"):
        load_qrels(path)
