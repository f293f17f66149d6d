"""The FAISS index against brute-force numpy on seeded random vectors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import IndexLoadError, VectorIndex


def unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(vectors: np.ndarray, ids: list[str], queries: np.ndarray, k: int) -> list[list[str]]:
    scores = queries @ vectors.T
    return [[ids[j] for j in np.argsort(-row, kind="stable")[:k]] for row in scores]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_search_matches_brute_force(seed: int) -> None:
    vectors, queries = unit_vectors(500, 32, seed), unit_vectors(20, 32, seed + 100)
    ids = [f"doc-{i}" for i in range(500)]
    index = VectorIndex(32, "m").build(ids, vectors)
    results = index.search(queries, 10)
    assert [[key for key, _ in row] for row in results] == brute_force(vectors, ids, queries, 10)
    expected_scores = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose([[s for _, s in row] for row in results], expected_scores, rtol=1e-5, atol=1e-6)


def test_remove_and_add_match_brute_force_on_the_remaining_items() -> None:
    vectors = unit_vectors(100, 16, 3)
    ids = [f"d{i}" for i in range(100)]
    index = VectorIndex(16, "m").build(ids[:80], vectors[:80])
    assert index.remove(["d0", "d5", "missing"]) == 2
    index.add(ids[80:], vectors[80:])
    keep = [i for i in range(100) if i not in (0, 5)]
    query = unit_vectors(1, 16, 4)
    expected = brute_force(vectors[keep], [ids[i] for i in keep], query, 15)
    assert [key for key, _ in index.search(query, 15)[0]] == expected[0]
    assert len(index) == 98 and "d0" not in index and "d99" in index


def test_add_existing_id_replaces_its_vector() -> None:
    vectors = unit_vectors(3, 4, 5)
    index = VectorIndex(4, "m").build(["a", "b", "c"], vectors)
    index.add(["a"], vectors[2:3])
    assert len(index) == 3
    np.testing.assert_allclose(index.vector("a"), vectors[2])


def test_fewer_items_than_k_returns_no_padding() -> None:
    index = VectorIndex(4, "m").build(["a", "b"], unit_vectors(2, 4, 6))
    (row,) = index.search(unit_vectors(1, 4, 7), 10)
    assert sorted(key for key, _ in row) == ["a", "b"]


def test_bad_shapes_are_refused() -> None:
    index = VectorIndex(4, "m")
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        index.add(["a"], np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add(["a", "b"], np.zeros((1, 4), dtype=np.float32))


def save_and_load(index: VectorIndex, folder: Path) -> tuple[VectorIndex, dict]:
    """Save ``index`` and load it back as a build would, from what ``save`` said of it."""
    description = index.save(folder / "vectors.faiss", folder / "ids.json")
    keys = ("model", "dimension", "storage", "count")
    return VectorIndex.load(
        folder / "vectors.faiss", folder / "ids.json", **{k: description[k] for k in keys}
    ), description


def test_save_load_roundtrip(tmp_path: Path) -> None:
    vectors = unit_vectors(50, 8, 8)
    index = VectorIndex(8, "model-a@1").build([f"d{i}" for i in range(50)], vectors)
    index.remove(["d3"])
    loaded, description = save_and_load(index, tmp_path)
    assert (description["model"], description["dimension"], description["count"]) == ("model-a@1", 8, 49)
    query = unit_vectors(2, 8, 9)
    assert loaded.search(query, 5) == index.search(query, 5)
    loaded.add(["new"], unit_vectors(1, 8, 10))  # ids keep counting after a load
    assert len(loaded) == 50


def test_load_detects_damage(tmp_path: Path) -> None:
    files = (tmp_path / "vectors.faiss", tmp_path / "ids.json")
    described = {"model": "m", "dimension": 8, "storage": "float32", "count": 2}
    with pytest.raises(IndexLoadError, match="cannot read the index files"):
        VectorIndex.load(*files, **described)
    VectorIndex(8, "m").build(["a", "b"], unit_vectors(2, 8, 0)).save(*files)
    files[1].write_text(json.dumps(json.loads(files[1].read_text())[:1]))
    with pytest.raises(IndexLoadError, match="does not match its manifest"):
        VectorIndex.load(*files, **described)
    with pytest.raises(IndexLoadError, match="unknown vector storage"):
        VectorIndex.load(*files, **{**described, "storage": "int3"})


def test_hnsw_recall_against_brute_force_and_tombstones(tmp_path: Path) -> None:
    vectors, queries = unit_vectors(3000, 32, 11), unit_vectors(50, 32, 12)
    ids = [f"d{i}" for i in range(3000)]
    index = VectorIndex(32, "m", kind="hnsw").build(ids, vectors)
    assert index.kind == "hnsw"
    expected = brute_force(vectors, ids, queries, 10)
    found = [[key for key, _ in row] for row in index.search(queries, 10)]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, expected, strict=True)])
    assert recall >= 0.98, recall
    # HNSW cannot delete: removed ids are skipped and never come back from a search
    removed = [row[0] for row in found[:10]]
    assert index.remove(removed) == len(set(removed))
    assert len(index) == 3000 - len(set(removed))
    assert not set(removed) & {key for row in index.search(queries, 10) for key, _ in row}
    assert all(len(row) == 10 for row in index.search(queries, 10))
    loaded, description = save_and_load(index, tmp_path)
    assert loaded.kind == "hnsw" and description["index_type"] == "IndexIDMap2(IndexHNSWFlat)"
    assert loaded.search(queries[:3], 5) == index.search(queries[:3], 5)


def test_auto_kind_picks_flat_for_small_indexes() -> None:
    index = VectorIndex(8, "m").build(["a", "b"], unit_vectors(2, 8, 0))
    assert index.kind == "flat"
    with pytest.raises(ValueError, match="index kind"):
        VectorIndex(8, "m", kind="ivf")


def test_items_added_after_a_reload_do_not_take_a_tombstone_number(tmp_path: Path) -> None:
    vectors = np.eye(4, dtype=np.float32)
    index = VectorIndex(4, "m", kind="hnsw").build(["a", "b", "c"], vectors[:3])
    index.remove(["c"])  # the highest number becomes a tombstone inside the HNSW graph
    loaded, _ = save_and_load(index, tmp_path)
    loaded.add(["d"], vectors[3:])
    # Had "d" reused c's number, c's vector would be found under d's id with cosine 1.
    hits = loaded.search(vectors[2], 3)[0]
    assert all(not (key == "d" and score > 0.5) for key, score in hits)
    assert loaded.search(vectors[3], 1)[0][0][0] == "d"
    _, numbers = loaded.search_numbers(vectors[3], 1)
    assert numbers[0][0] == loaded.numbers_of(["d"])[0]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_float16_storage_keeps_recall_and_survives_save_load_and_removal(tmp_path: Path, kind: str) -> None:
    vectors, queries = unit_vectors(2000, 32, 21), unit_vectors(50, 32, 22)
    ids = [f"d{i}" for i in range(2000)]
    index = VectorIndex(32, "m", kind=kind, storage="float16").build(ids, vectors)
    expected = brute_force(vectors, ids, queries, 10)
    results = index.search(queries, 10)
    recall = np.mean([len({k for k, _ in row} & set(truth)) / 10 for row, truth in zip(results, expected, strict=True)])
    assert recall >= 0.98, recall
    # Cosines carry float16 precision: about three significant digits.
    exact = np.sort(queries @ vectors.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose([[s for _, s in row] for row in results], exact, atol=2e-3)
    np.testing.assert_allclose(index.vector("d7"), vectors[7], atol=1e-3)
    assert index.remove(["d0"]) == 1 and "d0" not in {k for row in index.search(vectors[:1], 5) for k, _ in row}
    loaded, description = save_and_load(index, tmp_path)
    expected_type = "IndexHNSWSQ" if kind == "hnsw" else "IndexScalarQuantizer"
    assert description["storage"] == "float16" and description["index_type"] == f"IndexIDMap2({expected_type})"
    assert loaded.storage == "float16" and loaded.search(queries[:3], 5) == index.search(queries[:3], 5)
    assert loaded.copy().storage == "float16"
    with pytest.raises(ValueError, match="vector storage"):
        VectorIndex(32, "m", storage="int4")
