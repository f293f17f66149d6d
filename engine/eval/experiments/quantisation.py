"""Product quantisation at scale, measured for the 10M plan (docs/scale.md); not a storage the product offers.

An IVF-PQ index (FAISS ``IndexIVFPQ``: ``lists`` coarse cells, ``m`` sub-quantisers of 8 bits, so ``m`` bytes
a vector) on the synthetic clustered vectors the other scale figures use, next to exact search: memory,
build time, recall@10 with and without re-ranking the first ``rerank`` candidates by exact cosine from
float16 vectors (which could stay on disk, memory-mapped, at 1 KB a vector).
"""

from __future__ import annotations

import time
from typing import Any

import faiss
import numpy as np

from engine.eval.experiments.synthetic import synthetic_vectors


def recall_at(found: np.ndarray, truth: np.ndarray, k: int = 10) -> float:
    """Mean share of each query's true ``k`` nearest found among its first ``k`` (8 of 10 found: 0.8)."""
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k


def measure_pq(
    n: int, *, m: int = 64, lists: int = 4096, probes: int = 64, rerank: int = 100, queries: int = 200, threads: int = 2
) -> dict[str, Any]:
    """Build IVF``lists``,PQ``m`` over ``n`` synthetic vectors and measure it against exact search."""
    faiss.omp_set_num_threads(threads)
    vectors = synthetic_vectors(n, seed=5)
    rng = np.random.default_rng(11)
    sample = vectors[rng.choice(n, queries, replace=False)]
    _, truth = faiss.knn(sample, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)  # exact
    quantiser = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFPQ(quantiser, vectors.shape[1], lists, m, 8, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    index.train(vectors[rng.choice(n, min(n, 100 * lists), replace=False)])
    train_s = time.perf_counter() - started
    index.add(vectors)
    build_s = time.perf_counter() - started
    index.nprobe = probes
    started = time.perf_counter()
    _, found = index.search(sample, max(10, rerank))
    search_ms = 1000 * (time.perf_counter() - started) / queries
    half = vectors.astype(np.float16)
    reranked = np.empty((queries, 10), dtype=np.int64)
    for row, candidates in enumerate(found):
        candidates = candidates[candidates >= 0]
        scores = half[candidates].astype(np.float32) @ sample[row]
        reranked[row] = candidates[np.argsort(-scores)[:10]]
    return {
        "items": n,
        "index": f"IVF{lists},PQ{m}",
        "nprobe": probes,
        "train_s": train_s,
        "build_s": build_s,
        "memory_mb": faiss.serialize_index(index).nbytes / 2**20,
        "recall_at_10": recall_at(found, truth),
        f"recall_at_10_reranked_{rerank}": recall_at(reranked, truth),
        "search_ms_per_query": search_ms,
        "float16_rerank_store_mb": n * vectors.shape[1] * 2 / 2**20,
    }
