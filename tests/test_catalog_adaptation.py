"""Catalog adaptation (centring + neighbour smoothing) against brute-force numpy, and its incremental update."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import (
    CatalogAdaptation,
    ChunkVectors,
    EngineHolder,
    RelatedQuery,
    build_index,
    load_recommender,
)
from engine.catalog.records import parse_record
from engine.encode.chunks import normalize
from engine.index import adaptation as adaptation_module
from engine.index.store import ADAPTATION_FILE
from engine.index.vectors import IndexLoadError
from tests.fakes import FakeEncoder, pub, write_jsonl


def random_chunks(seed: int, documents: int = 60, dimension: int = 16) -> ChunkVectors:
    """Documents of 1-4 chunks drawn around a few topics, so neighbours mean something."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((5, dimension))
    counts = rng.integers(1, 5, documents)
    owners = np.repeat(np.arange(documents), counts)
    vectors = topics[rng.integers(0, 5, documents)][owners] + 0.8 * rng.standard_normal((len(owners), dimension))
    weights = np.where(np.repeat(counts, counts) > 1, rng.integers(50, 400, len(owners)), 1).astype(np.float32)
    return ChunkVectors(normalize(vectors), owners.astype(np.int64), weights, documents)


def brute_force(chunks: ChunkVectors, k: int, weight: float, mean: np.ndarray | None = None) -> np.ndarray:
    """The documented adaptation, written out: centre, smooth each chunk toward its k nearest chunks of other
    documents (weights = their cosines), pool by length."""
    vectors = chunks.vectors.astype(np.float64)
    mean = vectors.mean(axis=0) if mean is None else mean
    centred = vectors - mean
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    smoothed = np.empty_like(centred)
    for row in range(len(centred)):
        scores = centred @ centred[row]
        scores[chunks.owners == chunks.owners[row]] = -np.inf
        best = np.argsort(-scores, kind="stable")[:k]
        best = best[np.isfinite(scores[best])]
        w = np.maximum(scores[best], 0)
        borrowed = (w / w.sum()) @ centred[best] if w.sum() > 0 else 0
        smoothed[row] = centred[row] + weight * borrowed
        smoothed[row] /= np.linalg.norm(smoothed[row])
    pooled = np.zeros((chunks.documents, centred.shape[1]))
    np.add.at(pooled, chunks.owners, smoothed * chunks.weights[:, None])
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


@pytest.mark.parametrize(("k", "weight"), [(5, 0.5), (3, 1.0), (0, 0.5)])
def test_adapted_vectors_equal_brute_force(k: int, weight: float) -> None:
    chunks = random_chunks(0)
    adaptation = CatalogAdaptation.fit(chunks, k=k, strength=weight)
    assert adaptation.document_vectors(chunks) == pytest.approx(brute_force(chunks, k, weight), abs=1e-5)
    if k:
        # never a chunk of the same document, best first
        graph = adaptation.graph
        assert (chunks.owners[graph] != chunks.owners[:, None]).all()
        assert (np.diff(adaptation.similarities, axis=1) <= 1e-6).all()


def test_tiny_catalogs_have_fewer_neighbours_and_no_errors() -> None:
    # 2 documents of one chunk each: every chunk has one possible neighbour; the rest is padding
    chunks = ChunkVectors.of_documents(normalize(np.array([[1.0, 0.2], [0.3, 1.0]])))
    adaptation = CatalogAdaptation.fit(chunks, k=5)
    assert adaptation.graph.tolist() == [[1, -1, -1, -1, -1], [0, -1, -1, -1, -1]]
    # too few texts to have a common direction: not centred (centring would make the two exact opposites)
    assert adaptation.mean.tolist() == [0.0, 0.0]
    assert adaptation.document_vectors(chunks) == pytest.approx(brute_force(chunks, 5, 0.5, np.zeros(2)), abs=1e-6)
    single = ChunkVectors.of_documents(normalize(np.array([[1.0, 0.2]])))
    assert np.linalg.norm(CatalogAdaptation.fit(single).document_vectors(single)) == pytest.approx(1.0)


def test_large_catalogs_find_nearly_the_same_neighbours_by_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = random_chunks(1, documents=400)
    exact = CatalogAdaptation.fit(chunks)
    monkeypatch.setattr(adaptation_module, "_EXACT_LIMIT", 10)
    approximate = CatalogAdaptation.fit(chunks, threads=2)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact.graph, approximate.graph, strict=True)])
    assert overlap >= 0.95
    assert (chunks.owners[approximate.graph] != chunks.owners[:, None]).all()


def test_adaptation_round_trips_and_a_damaged_file_is_named(tmp_path: Path) -> None:
    chunks = random_chunks(3)
    adaptation = CatalogAdaptation.fit(chunks)
    path = tmp_path / ADAPTATION_FILE
    adaptation.save(path)
    loaded = CatalogAdaptation.load(path)
    assert loaded is not None and loaded.graph.tolist() == adaptation.graph.tolist()
    assert loaded.document_vectors(chunks) == pytest.approx(adaptation.document_vectors(chunks))
    light = CatalogAdaptation.load(path, graph=False)
    assert light is not None and light.mean == pytest.approx(adaptation.mean) and light.graph.size == 0
    path.write_bytes(b"not a zip file")
    with pytest.raises(IndexLoadError, match=r"adaptation\.npz is damaged"):
        CatalogAdaptation.load(path)


WRITE_CATALOG = [
    pub("a1", "trade trade finance"),
    pub("a2", "trade finance finance", language="fr", group="g-a"),
    pub("a3", "trade finance finance", group="g-a"),
    pub("b1", "climate water water"),
    pub("b2", "climate climate water", language="ar"),
    pub("b3", "water youth"),
    pub("c1", "migration security security"),
    pub("c2", "migration health security"),
    pub("c3", "health youth health"),
    pub("c4", "health youth"),
]


def test_a_written_item_is_served_with_the_vector_a_draft_of_its_text_gets(tmp_path: Path) -> None:
    """Between builds a written item has no place in the build's chunk graph: it is adapted like a draft
    (centred with the build's mean, smoothed toward its nearest items), never toward its own older version."""
    encoder = FakeEncoder()
    index_dir = tmp_path / "index"
    build_index([write_jsonl(tmp_path / "c.jsonl", WRITE_CATALOG)], index_dir, encoder)
    holder = EngineHolder(index_dir, expected_model=None, encoder=encoder)
    holder.reload()
    built = holder.current
    new = [pub("d1", "trade water climate"), pub("c2", "migration migration youth")]  # one new, one edited
    holder.write(upserts=[parse_record(r, "api", i) for i, r in enumerate(new)], deletes=["b3"])
    written = holder.current
    assert "b3" not in written.publications and written.publications["c2"].abstract == "migration migration youth"
    draft = built.text_vector("", "trade water climate", "en")
    assert written.index.vector("d1") == pytest.approx(draft, abs=1e-5)
    for key in ("d1", "c2"):
        assert np.linalg.norm(written.index.vector(key)) == pytest.approx(1.0, abs=1e-5)
    # The next build folds them in: the same catalog, with build vectors.
    rebuilt = build_index([], index_dir, encoder)
    holder.follow_once()
    assert rebuilt.items == len(written) and len(holder.current.delta) == 0
    assert set(holder.current.publications) == set(written.publications)


def test_a_draft_with_an_items_text_finds_that_item_first(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index_dir = tmp_path / "index"
    build_index([write_jsonl(tmp_path / "c.jsonl", WRITE_CATALOG)], index_dir, encoder)
    recommender = load_recommender(index_dir, encoder=encoder)
    for p in recommender.publications.values():
        items = recommender.recommend_text("", p.abstract, p.language, RelatedQuery(k=3)).items
        assert items[0].score == pytest.approx(max(i.score for i in items))
        assert recommender.publications[items[0].id].abstract == p.abstract


def test_pooling_is_the_length_weighted_mean_whatever_the_chunk_order() -> None:
    chunks = random_chunks(4)
    expected = np.zeros((chunks.documents, chunks.vectors.shape[1]))
    np.add.at(expected, chunks.owners, chunks.vectors * chunks.weights[:, None])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert chunks.pooled() == pytest.approx(expected, abs=1e-6)
    order = np.random.default_rng(0).permutation(len(chunks.vectors))
    shuffled = ChunkVectors(chunks.vectors[order], chunks.owners[order], chunks.weights[order], chunks.documents)
    assert shuffled.pooled() == pytest.approx(expected, abs=1e-6)
