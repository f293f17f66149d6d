"""Precomputed neighbour lists give exactly the answers of a live index search, and are stored safely."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine import (
    BuildOptions,
    EngineHolder,
    Publication,
    Recommender,
    RelatedQuery,
    VectorIndex,
    build_index,
    load_recommender,
)
from engine.catalog.records import parse_record
from engine.index.calibrate import LanguageCalibration
from engine.index.neighbours import NeighbourLists
from engine.index.store import NEIGHBOURS_FILE, Build, resolve_build
from engine.index.vectors import IndexLoadError
from tests.fakes import pub, write_jsonl

QUERIES = [
    {},
    {"languages": ("fr",)},
    {"types": ("podcast",)},
    {"language_policy": "prefer"},
    {"language_policy": "same", "k": 30},
    {"include_translations": True, "k": 20},
    {"collapse_translations": True},
    {"diversity": 0.3},
    {"k": 40, "offset": 30},  # past the end of every list: the live search must take over
]


def catalog(n: int, seed: int = 0) -> tuple[list[Publication], np.ndarray]:
    """Clustered vectors with a per-language offset (so calibration reorders languages), types, groups."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 100), 32)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, 32)).astype(np.float32)
    languages = [("en", "fr", "ar")[i % 3] for i in range(n)]
    vectors[np.array(languages) == "fr"] += 0.5 * rng.standard_normal(32).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    publications = [
        Publication(
            f"p{i}",
            f"title {i}",
            language=languages[i],
            type=("policy-paper", "podcast", "op-ed")[(i // 3) % 3],
            group=f"g{i // 3}" if i % 5 else None,
        )
        for i in range(n)
    ]
    return publications, vectors


class TableEncoder:
    """An encoder that looks vectors up by text (the titles of :func:`catalog`)."""

    name, max_tokens = "table@1", 64

    def __init__(self, table: dict[str, np.ndarray]) -> None:
        self.table = table
        self.dimension = len(next(iter(table.values())))

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def encode(self, texts: Sequence[str], **_: object) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])


def assert_same_answers(listed: Recommender, live: Recommender, ids: list[str], query: dict) -> None:
    """The same items in the same order; cosines equal up to float32 rounding (a matrix product and
    FAISS's single-query kernel round differently in the 7th digit)."""
    for key in ids:
        got = listed.recommend(key, RelatedQuery(**query)).items
        expected = live.recommend(key, RelatedQuery(**query)).items
        assert [i.id for i in got] == [i.id for i in expected], (query, key)
        np.testing.assert_allclose([i.score for i in got], [i.score for i in expected], atol=1e-5)


@pytest.mark.parametrize(("n", "kind", "calibrate"), [(400, "flat", True), (400, "flat", False), (1500, "hnsw", True)])
def test_lists_answer_exactly_like_a_live_search(n: int, kind: str, calibrate: bool) -> None:
    publications, vectors = catalog(n)
    ids, languages = [p.id for p in publications], [p.language for p in publications]
    index = VectorIndex(32, "m", kind=kind).build(ids, vectors)
    groups = [p.group for p in publications]
    calibration = LanguageCalibration.fit(vectors, languages, groups) if calibrate else None
    # the catalog's translations measure a language effect for every language, so calibration reorders them
    assert calibration is None or calibration.languages == ["ar", "en", "fr"]
    lists = NeighbourLists.compute(index, ids, vectors, languages, calibration, size=25, threads=2)
    live = Recommender(Build(publications, index, BuildOptions(), calibration=calibration))
    listed = Recommender(Build(publications, index, BuildOptions(), calibration=calibration, neighbours=lists))
    sample = ids[::7]
    for query in QUERIES:
        assert_same_answers(listed, live, sample, query)
    # The stored keys are the ranking keys: each list is sorted by them, best first.
    assert np.all(np.diff(lists.calibrated, axis=1) <= 1e-6)
    if not calibrate:
        np.testing.assert_allclose(lists.calibrated, lists.similarities, atol=1e-6)


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_built_lists_match_the_live_search_of_the_loaded_build(tmp_path: Path, storage: str) -> None:
    publications, vectors = catalog(300, seed=3)
    records = [pub(p.id, p.title, language=p.language, group=p.group) for p in publications]
    catalog_file = write_jsonl(tmp_path / "c.jsonl", records)
    encoder = TableEncoder({p.title: v for p, v in zip(publications, vectors, strict=True)})
    build_index([catalog_file], tmp_path / "index", encoder, options=BuildOptions(neighbours=20, storage=storage))
    listed = load_recommender(tmp_path / "index")
    live = Recommender(replace(listed.build, neighbours=None))
    sample = [p.id for p in publications[::5]]
    for query in QUERIES:
        assert_same_answers(listed, live, sample, query)


def test_lists_skip_the_item_itself_and_removed_items() -> None:
    publications, vectors = catalog(300)
    ids = [p.id for p in publications]
    index = VectorIndex(32, "m", kind="hnsw").build(ids, vectors)
    index.remove(["p1", "p2"])  # tombstones in the HNSW graph
    kept = [i for i in ids if i not in ("p1", "p2")]
    rows = [ids.index(i) for i in kept]
    lists = NeighbourLists.compute(index, kept, vectors[rows], ["en"] * len(kept), None, size=10)
    for key in kept[:50]:
        positions, similarities, _ = lists.of(key)
        listed = [lists.ids[p] for p in positions]
        assert key not in listed and "p1" not in listed and "p2" not in listed
        assert len(listed) == 10
        # The cosines are the true ones, best first.
        own = vectors[ids.index(key)]
        expected = [float(own @ vectors[ids.index(i)]) for i in listed]
        np.testing.assert_allclose(similarities, expected, atol=1e-5)
        assert similarities == sorted(similarities, reverse=True)


def test_a_short_catalog_gives_complete_lists_and_they_answer_alone() -> None:
    publications, vectors = catalog(12)
    ids = [p.id for p in publications]
    index = VectorIndex(32, "m").build(ids, vectors)
    lists = NeighbourLists.compute(index, ids, vectors, [p.language for p in publications], None, size=50)
    assert lists.size == 11 and lists.complete and lists.requested_size == 50
    listed = Recommender(Build(publications, index, BuildOptions(), neighbours=lists))

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the live search ran")

    index.search = no_search
    # A filter that leaves fewer items than asked: the list is the whole answer (p0 has no translations).
    items = listed.recommend("p0", RelatedQuery(k=10, languages=("fr",))).items
    assert {i.id for i in items} == {p.id for p in publications if p.language == "fr"}


def test_builds_store_lists_that_survive_a_reload_and_writes(small_index: Path, fake_encoder) -> None:
    build = resolve_build(small_index)
    assert (build / NEIGHBOURS_FILE).is_file()
    holder = EngineHolder(small_index, expected_model=None, encoder=fake_encoder)
    holder.reload()
    recommender = holder.current
    assert recommender.build.neighbours is not None and len(recommender.build.neighbours) == len(recommender)
    added = parse_record(pub("n1", "trade finance"), "test", 1)
    holder.write(upserts=[added])
    after = holder.current
    # The build's lists still answer (no rebuild); the written item joins them where it ranks.
    assert after.build.neighbours is recommender.build.neighbours
    assert "n1" in [i.id for i in after.related("t2", 3)]


def test_lists_that_do_not_match_the_catalog_or_are_damaged_are_refused(small_index: Path) -> None:
    build = resolve_build(small_index)
    recommender = load_recommender(small_index)
    other = NeighbourLists(["x", "y"], np.zeros((2, 1), np.int32), np.zeros((2, 1)), np.zeros((2, 1)))
    with pytest.raises(IndexLoadError, match="do not match the catalog"):
        Recommender(replace(recommender.build, neighbours=other))
    (build / NEIGHBOURS_FILE).write_bytes(b"not an npz file")
    with pytest.raises(IndexLoadError, match="corrupted"):
        load_recommender(small_index)  # the build's checksums catch it first
    with pytest.raises(IndexLoadError, match="damaged"):
        NeighbourLists.load(build / NEIGHBOURS_FILE)
