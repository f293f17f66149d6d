"""Ranking quality of the shipped system (tuned model + per-language calibration) on the shared judged data.

Floors are the figures measured on 2026-11-27 minus a small margin (docs/quality.md has the full table):
sib200-dev dev split nDCG@10 0.598 (cross-lingual 0.586, first model 0.504/0.484), same-language share
0.16; ntrex-dev translation P@1 0.994; seed graded nDCG@10 0.956; demo catalog nDCG@10 0.780.
The adapter was trained on the sib200 train split, so only the dev split is evaluated here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import EngineRanker, build_index, evaluate_recommender, evaluate_system, load_recommender
from tests.conftest import shared_file

pytestmark = [pytest.mark.model, pytest.mark.shared_data]


def index_of(catalog: Path, tmp_path: Path, encoder, split: str | None = None) -> Path:
    if split:
        lines = [
            line for line in catalog.read_text(encoding="utf-8").splitlines() if json.loads(line)["split"] == split
        ]
        catalog = tmp_path / f"{split}.jsonl"
        catalog.write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_index([catalog], tmp_path / "index", encoder)
    return tmp_path / "index"


def test_ntrex_translation_precision_at_1(tmp_path: Path, real_encoder) -> None:
    recommender = load_recommender(index_of(shared_file("ntrex-dev", "catalog.jsonl"), tmp_path, real_encoder))
    metrics = evaluate_recommender(recommender, relevance="group")
    assert metrics["n_queries"] == 171
    assert metrics["p@1"] >= 0.985
    assert evaluate_recommender(recommender, relevance="group", cross_lingual_only=True)["p@1"] >= 0.985


def test_sib200_dev_same_topic_ndcg_and_language_bias(tmp_path: Path, real_encoder) -> None:
    catalog = shared_file("sib200-dev", "catalog.jsonl")
    recommender = load_recommender(index_of(catalog, tmp_path, real_encoder, split="dev"))
    publications = list(recommender.publications.values())
    report = evaluate_system(EngineRanker(recommender), publications, relevance="topics", pairs=False)
    assert report.overall["n_queries"] == 396
    assert report.overall["ndcg@10"] >= 0.58
    assert report.cross_lingual["ndcg@10"] >= 0.57
    assert report.language_bias <= 0.25  # four languages: an unbiased ranker is near 0.25


def test_seed_page_graded_ndcg(tmp_path: Path, real_encoder) -> None:
    catalog = shared_file("seed", "catalog.jsonl")
    recommender = load_recommender(index_of(catalog, tmp_path, real_encoder))
    metrics = evaluate_recommender(recommender, qrels_path=catalog.parent / "qrels.tsv")
    assert metrics["n_queries"] == 1 and metrics["ndcg@10"] >= 0.94


def test_demo_catalog_same_topic_ndcg(demo_index: Path) -> None:
    metrics = evaluate_recommender(load_recommender(demo_index), relevance="topics")
    assert metrics["ndcg@10"] >= 0.76
