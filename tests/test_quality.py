"""Ranking quality of the real model on the shared judged data, against floors measured on 2026-11-27.

Measured (use-multilingual-v3, max_seq_length 256, chunked pooling): sib200-dev same-topic nDCG@10 0.6937
(cross-lingual only 0.6790); ntrex-dev translation P@1 0.9591 over all languages (1.0 cross-lingual only);
seed nDCG@10 0.9629. Each floor is the measurement minus a small margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import build_index, evaluate_recommender, load_recommender
from tests.conftest import shared_file

pytestmark = [pytest.mark.model, pytest.mark.shared_data]


def index_of(catalog: Path, tmp_path: Path, encoder) -> Path:
    build_index([catalog], tmp_path / "index", encoder)
    return tmp_path / "index"


def test_ntrex_translation_precision_at_1(tmp_path: Path, real_encoder) -> None:
    recommender = load_recommender(index_of(shared_file("ntrex-dev", "catalog.jsonl"), tmp_path, real_encoder))
    metrics = evaluate_recommender(recommender, relevance="group")
    assert metrics["n_queries"] == 171
    assert metrics["p@1"] >= 0.94
    assert evaluate_recommender(recommender, relevance="group", cross_lingual_only=True)["p@1"] >= 0.98


def test_sib200_same_topic_ndcg(tmp_path: Path, real_encoder) -> None:
    recommender = load_recommender(index_of(shared_file("sib200-dev", "catalog.jsonl"), tmp_path, real_encoder))
    assert evaluate_recommender(recommender, relevance="topics")["ndcg@10"] >= 0.68
    assert evaluate_recommender(recommender, relevance="topics", cross_lingual_only=True)["ndcg@10"] >= 0.66


def test_seed_page_graded_ndcg(tmp_path: Path, real_encoder) -> None:
    catalog = shared_file("seed", "catalog.jsonl")
    recommender = load_recommender(index_of(catalog, tmp_path, real_encoder))
    metrics = evaluate_recommender(recommender, qrels_path=catalog.parent / "qrels.tsv")
    assert metrics["n_queries"] == 1 and metrics["ndcg@10"] >= 0.93
