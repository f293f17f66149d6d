"""Synthetic catalogs and builds at any size, for benchmarks and load tests (not for quality figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.catalog.records import Publication
from engine.encode.chunks import ChunkVectors
from engine.index.catalog_store import CatalogStore
from engine.index.options import BuildOptions
from engine.index.store import Build


def synthetic_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Clustered unit vectors (closer to real embeddings than uniform noise), 512-d like the model's."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(8, n // 200), 512)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)]
    vectors += 0.6 * rng.standard_normal((n, 512), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def synthetic_publications(n: int) -> list[Publication]:
    """``n`` publications with abstract-sized texts (150 words of a 5,000-word vocabulary), en/fr/ar in
    translation groups of three, three types and spread dates."""
    rng = np.random.default_rng(2)
    words = [f"word{i}" for i in range(5000)]
    return [
        Publication(
            f"pub-{i}",
            " ".join(rng.choice(words, 10)).capitalize(),
            " ".join(rng.choice(words, 150)),
            language=("en", "fr", "ar")[i % 3],
            type=("policy-paper", "op-ed", "podcast")[i % 3],
            authors=("A. Author",),
            published=f"20{10 + i % 15}-0{1 + i % 9}-1{i % 9}",
            url=f"https://example.org/pub-{i}",
            group=f"g{i // 3}",
        )
        for i in range(n)
    ]


def synthetic_build(index_dir: Path, n: int, model: str) -> None:
    """A build of ``n`` synthetic publications and clustered vectors, written through the engine's own build
    writer (index, neighbour lists, calibration, checksums) and recorded as built with ``model``, so a
    service configured with that model loads it like any build (and encodes drafts with the real model)."""
    chunks = ChunkVectors.of_documents(synthetic_vectors(n))
    publications = synthetic_publications(n)
    store = CatalogStore.of(index_dir)
    try:
        generation = store.import_catalog(publications).generation
    finally:
        store.close()
    build = Build.assemble(publications, chunks, model, BuildOptions())
    build.save(index_dir, generation=generation, sources=["synthetic"])
