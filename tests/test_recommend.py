"""Exact rankings with the fake encoder (vectors in tests/fakes.py, catalog in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import InvalidQueryError, RelatedQuery, UnknownPublicationError, load_recommender
from engine.catalog.records import Publication


def test_related_excludes_itself_and_its_translations(small_index: Path) -> None:
    recommender = load_recommender(small_index)
    items = recommender.related("t1-en", k=2)
    # t1 = (2 trade, 1 finance)/sqrt5; t3 = trade: 2/sqrt5 = 0.894; t2 = (1, 2)/sqrt5: 4/5 = 0.8
    assert [(i.id, i.rank) for i in items] == [("t3", 1), ("t2", 2)]
    assert [i.score for i in items] == pytest.approx([0.894427, 0.8], abs=1e-5)
    assert items[0].language == "ar" and items[0].type == "podcast"


def test_include_translations_keeps_the_other_language_version_first(small_index: Path) -> None:
    items = load_recommender(small_index).related("t1-en", k=3, include_translations=True)
    assert [i.id for i in items] == ["t1-fr", "t3", "t2"]
    assert items[0].score == pytest.approx(1.0)


def test_filters_by_language_and_type(small_index: Path) -> None:
    recommender = load_recommender(small_index)
    assert [i.id for i in recommender.related("t1-en", k=5, types=["op-ed"])] == ["t2"]
    # French items: t1-fr is excluded as a translation, so only c2 is left, with score 0
    assert [i.id for i in recommender.related("t1-en", k=5, languages=["fr"])] == ["c2"]
    ids = [i.id for i in recommender.related("c1", k=10, exclude_languages=["en"])]
    assert ids[0] == "c2" and all(recommender.get(i).language != "en" for i in ids)


def test_filters_reach_beyond_the_first_candidates(small_index: Path) -> None:
    # Only h1 is a video and it is the least similar item to t1-en: the search must widen to find it.
    items = load_recommender(small_index).related("t1-en", k=1, types=["video"])
    assert [i.id for i in items] == ["h1"]


def test_k_larger_than_catalog_returns_every_other_item_once(small_index: Path) -> None:
    items = load_recommender(small_index).related("w1", k=50)
    ids = [i.id for i in items]
    assert len(ids) == len(set(ids)) == 8 and "w1" not in ids
    assert [i.rank for i in items] == list(range(1, 9))
    assert ids[0] in {"c1", "c2"}


def test_unknown_id_and_bad_k(small_index: Path) -> None:
    recommender = load_recommender(small_index)
    with pytest.raises(UnknownPublicationError, match="publication 'nope' not found"):
        recommender.related("nope")
    with pytest.raises(InvalidQueryError, match="invalid k: must be between 1 and 100, got 0"):
        recommender.related("t1-en", k=0)


def test_snippet_cuts_at_a_word() -> None:
    from engine.rank.recommend import snippet

    assert snippet("short text") == "short text"
    assert snippet("alpha beta gamma delta", limit=13) == "alpha beta …"


@pytest.mark.parametrize(
    "option",
    [
        {"languages": ("fr",)},
        {"exclude_languages": ("en",)},
        {"types": ("podcast",)},
        {"exclude_types": ("paper",)},
        {"published_after": "2026-01-01"},
        {"published_before": "2024-01-01"},
    ],
)
def test_every_filter_counts_as_a_filter(option: dict) -> None:
    # The ranking skips accepts() for queries without filters: a filter missing from has_filters() would
    # be ignored. Each option here refuses this English paper of 2025.
    paper = Publication(id="x", title="t", language="en", type="paper", published="2025-06-01")
    query = RelatedQuery(**option)
    assert query.has_filters() and not query.accepts(paper)
    assert not RelatedQuery().has_filters() and RelatedQuery().accepts(paper)
