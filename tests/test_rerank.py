"""Re-ranking steps, query validation and overrides, on hand-worked numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import InvalidQueryError, RelatedQuery
from engine.catalog.lexical import fold
from engine.catalog.records import Publication
from engine.index.overrides import OverridesError, load_overrides
from engine.rank.rerank import keep_min_score, mmr_order


def test_mmr_without_diversity_is_the_similarity_order() -> None:
    sims = np.array([0.5, 0.9, 0.7], dtype=np.float32)
    assert mmr_order(sims, np.eye(3, dtype=np.float32), 0.0, 3) == [(1, 0.0), (2, 0.0), (0, 0.0)]


def test_mmr_demotes_a_near_duplicate() -> None:
    # a and b are the same direction; c is orthogonal. Similarities 0.9, 0.88, 0.6.
    vectors = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    sims = np.array([0.9, 0.88, 0.6], dtype=np.float32)
    # after a: b scores 0.5*0.88 - 0.5*1 = -0.06, c scores 0.5*0.6 - 0 = 0.3, so c comes second
    picked = mmr_order(sims, vectors, 0.5, 3)
    assert picked == [(0, 0.0), (2, 0.0), (1, 1.0)]


def test_keep_min_score() -> None:
    assert keep_min_score([0.9, 0.5, 0.8, 0.2], None, 0) == [0, 1, 2, 3]
    assert keep_min_score([0.9, 0.5, 0.8, 0.2], 0.7, 0) == [0, 2]
    # 1 passes, topped up to 3 with the best-ranked others (positions 1 and 2)
    assert keep_min_score([0.9, 0.5, 0.6, 0.2], 0.7, 3) == [0, 1, 2]
    assert keep_min_score([0.1], 0.7, 5) == [0]


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        ({"k": 0}, "k"),
        ({"offset": -1}, "offset"),
        ({"language_policy": "mine"}, "language_policy"),
        ({"diversity": -0.1}, "diversity"),
        ({"min_score": 1.5}, "min_score"),
        ({"min_results": 101}, "min_results"),
        ({"published_after": "2024-02-30"}, "published_after"),
        ({"published_after": "2024-02-01", "published_before": "2024-01-01"}, "published_after"),
    ],
)
def test_query_validation_names_the_option(options: dict, parameter: str) -> None:
    with pytest.raises(InvalidQueryError) as caught:
        RelatedQuery(**options).validated()
    assert caught.value.parameter == parameter


def test_query_dates_are_normalised_and_inclusive() -> None:
    query = RelatedQuery(published_after="20240101").validated()
    assert query.published_after == "2024-01-01"
    assert query.accepts(Publication("a", "t", published="2024-01-01"))
    assert not query.accepts(Publication("b", "t", published="2023-12-31"))
    assert not query.accepts(Publication("c", "t"))


def test_fold_ignores_case_accents_and_arabic_diacritics() -> None:
    assert fold("Été Économique") == "ete economique"
    assert fold("مُدُن") == "مدن"


def test_overrides_validation(tmp_path: Path) -> None:
    known = frozenset({"a", "b", "c"})
    assert load_overrides(tmp_path, known).version == "none"
    (tmp_path / "overrides.json").write_text(json.dumps({"pinned": {"a": ["b", "a", "x", "c"]}, "banned": ["c", "y"]}))
    overrides = load_overrides(tmp_path, known)
    # a cannot pin itself, x is unknown, c is banned
    assert overrides.pinned == {"a": ("b",)} and overrides.banned == {"c"}
    assert "['x', 'y']" in overrides.warnings[0]
    for bad in ["{nope", json.dumps({"pinned": {"a": "b"}}), json.dumps({"banned": "a"}), json.dumps({"pins": {}})]:
        (tmp_path / "overrides.json").write_text(bad)
        with pytest.raises(OverridesError):
            load_overrides(tmp_path, known)
