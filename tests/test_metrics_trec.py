"""Our metrics against trec_eval (pytrec_eval) on seeded random runs with graded judgments."""

from __future__ import annotations

import numpy as np
import pytest
import pytrec_eval

from engine.eval.metrics import (
    average_precision_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_trec_eval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(60)]
    qrels, run = {}, {}
    for q in range(30):
        judged = rng.choice(docs, size=int(rng.integers(1, 15)), replace=False)
        qrels[f"q{q}"] = {d: int(rng.integers(0, 3)) for d in judged}
        if not any(qrels[f"q{q}"].values()):
            qrels[f"q{q}"][str(judged[0])] = 1
        ranked = list(rng.choice(docs, size=10, replace=False))
        run[f"q{q}"] = {d: float(10 - i) for i, d in enumerate(ranked)}  # distinct, decreasing scores
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank", "recall.10", "map_cut.10", "P.1"})
    expected = evaluator.evaluate(run)
    for q, scores in run.items():
        ranking = sorted(scores, key=lambda d: -scores[d])
        judged = qrels[q]
        assert ndcg_at_k(ranking, judged, 10) == pytest.approx(expected[q]["ndcg_cut_10"], abs=1e-4)
        assert reciprocal_rank_at_k(ranking, judged, 10) == pytest.approx(expected[q]["recip_rank"], abs=1e-4)
        assert recall_at_k(ranking, judged, 10) == pytest.approx(expected[q]["recall_10"], abs=1e-4)
        assert average_precision_at_k(ranking, judged, 10) == pytest.approx(expected[q]["map_cut_10"], abs=1e-4)
        assert precision_at_k(ranking, judged, 1) == pytest.approx(expected[q]["P_1"], abs=1e-4)
