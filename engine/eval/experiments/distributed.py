"""Measured cost and scaling of builds on Ray (``scripts/benchmark.py --only distributed``).

The same texts are encoded by the local path (one thread: the per-CPU reference; all cores: what a local
build uses) and by the Ray pipeline on a real cluster of 1 and 2 worker nodes of one CPU each
(``ray.cluster_utils.Cluster`` on this machine, the head without CPUs). Neighbour lists likewise, local and
in Ray tasks. A Ray build pays fixed costs a local one does not (starting actors, each importing and
loading the model), measured by the actors themselves apart from their encoding; efficiency per CPU is
the rate once the model is loaded over (CPUs x the one-thread local rate), and the compute efficiency an
actor's own rate while it encodes over the one-thread local rate.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.encode.embed import SentenceTransformerEncoder, encode_chunks
from engine.index.calibrate import LanguageCalibration
from engine.index.neighbours import NeighbourLists
from engine.index.vectors import VectorIndex
from engine.runtime.cluster import RayCluster, RayOptions
from engine.settings import available_cores


def _seconds(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def measure_local(
    models_dir: Path, model: str, texts: Sequence[str], languages: Sequence[str | None], threads: int
) -> dict[str, Any]:
    """The local path on ``threads`` threads: model load time and documents/s (after a warm-up)."""
    load_s, encoder = _seconds(lambda: SentenceTransformerEncoder(models_dir, model, threads=threads))
    encode_chunks(encoder, list(texts[:4]), languages=list(languages[:4]))
    encode_s, chunks = _seconds(lambda: encode_chunks(encoder, list(texts), languages=list(languages)))
    return {
        "threads": threads,
        "model_load_s": load_s,
        "encode_s": encode_s,
        "docs_per_s": len(texts) / encode_s,
        "chunks": len(chunks.vectors),
        "vectors": chunks.vectors,
    }


def measure_ray(
    models_dir: Path,
    model: str,
    texts: Sequence[str],
    languages: Sequence[str | None],
    workers: int,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Encode ``texts`` on a fresh cluster of ``workers`` one-CPU worker nodes."""
    from ray.cluster_utils import Cluster

    start_s, cluster = _seconds(lambda: _start(Cluster, workers))
    connected: RayCluster | None = None
    try:
        connect_s, connected = _seconds(lambda: _connected(RayOptions(address=cluster.address, batch_size=batch_size)))
        encoder = connected.encoder(models_dir, model)
        total_s, chunks = _seconds(lambda: encoder.encode_chunks(list(texts), languages=list(languages)))
        times = encoder.last_run
        row: dict[str, Any] = {
            "workers": workers,
            "cpus": connected.cpus(),
            "cluster_start_s": start_s,
            "connect_s": connect_s,
            "total_s": total_s,
            "docs_per_s_total": len(texts) / total_s,
            "actors": times.actors,
            "model_load_s_per_actor": times.load_s / max(times.actors, 1),
            "actor_docs_per_s": times.actor_docs_per_s,
            "busy_share": times.busy_share,
            "actor_peak_rss_mb": times.peak_rss_mb,
            # Once the actors run (model loaded), the cluster's rate: each actor's rate while encoding, times the
            # share of its time it encodes, for every actor.
            "docs_per_s_loaded": times.actors * times.actor_docs_per_s * times.busy_share,
            "vectors": chunks.vectors,
        }
        return row
    finally:
        if connected is not None:
            connected.close()
        cluster.shutdown()


def measure_ray_lists(workload: tuple, workers: int) -> tuple[float, NeighbourLists]:
    """Seconds to compute the workload's neighbour lists in Ray tasks on ``workers`` one-CPU nodes (the
    index shipped to the object store included), and the lists."""
    from ray.cluster_utils import Cluster

    cluster = _start(Cluster, workers)
    try:
        with RayCluster(RayOptions(address=cluster.address)) as connected:
            index, ids, vectors, languages, calibration = workload
            return _seconds(
                lambda: NeighbourLists.compute(
                    index, ids, vectors, languages, calibration, map_slices=connected.map_slices
                )
            )
    finally:
        cluster.shutdown()


def _connected(options: RayOptions) -> RayCluster:
    cluster = RayCluster(options)
    cluster.connect()
    return cluster


def _start(cluster_class: Any, workers: int) -> Any:
    sigterm = signal.getsignal(signal.SIGTERM)
    cluster = cluster_class(initialize_head=True, head_node_args={"num_cpus": 0})
    # A head node started in this process installs Ray's SIGTERM handler, which would outlive it.
    signal.signal(signal.SIGTERM, sigterm)
    for _ in range(workers):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def lists_workload(n: int, dimension: int = 512, seed: int = 3) -> tuple:
    """Unit vectors in three languages, indexed as a build indexes them (HNSW from 5,000 items)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(n)]
    languages = [("en", "fr", "ar")[i % 3] for i in range(n)]
    groups = [f"g{i // 3}" if i % 12 < 3 else f"s{i}" for i in range(n)]
    index = VectorIndex(dimension, "synthetic").build(ids, vectors)
    return index, ids, vectors, languages, LanguageCalibration.fit(vectors, languages, groups)


def bench_distributed(
    models_dir: Path,
    model: str,
    corpora: dict[str, tuple[list[str], list[str | None], int]],
    *,
    list_items: int = 20_000,
    worker_counts: Sequence[int] = (1, 2),
) -> dict[str, Any]:
    """Local vs Ray on each corpus (name -> texts, languages, documents per Ray batch), and neighbour lists of
    ``list_items`` vectors."""
    report: dict[str, Any] = {"cores": available_cores(), "corpora": {}, "lists": {}}
    for name, (texts, languages, batch_size) in corpora.items():
        one = measure_local(models_dir, model, texts, languages, threads=1)
        every = measure_local(models_dir, model, texts, languages, threads=available_cores())
        rows = {"local_1_thread": _public(one), f"local_{every['threads']}_threads": _public(every)}
        for workers in worker_counts:
            row = measure_ray(models_dir, model, texts, languages, workers, batch_size=batch_size)
            row["max_vector_difference"] = float(np.abs(row["vectors"] - one["vectors"]).max())
            row["compute_efficiency"] = row["actor_docs_per_s"] / one["docs_per_s"]
            row["efficiency_per_cpu"] = row["docs_per_s_loaded"] / (row["cpus"] * one["docs_per_s"])
            row["share_of_local"] = row["docs_per_s_total"] / every["docs_per_s"]
            rows[f"ray_{workers}_workers"] = _public(row)
        report["corpora"][name] = {
            "documents": len(texts),
            "chunks": one["chunks"],
            "ray_batch_size": batch_size,
            "runs": rows,
        }
    if list_items:
        workload = lists_workload(list_items)
        index, ids, vectors, languages, calibration = workload
        local_s, local = _seconds(
            lambda: NeighbourLists.compute(index, ids, vectors, languages, calibration, threads=available_cores())
        )
        lists: dict[str, Any] = {"items": list_items, "index": index.kind, "local_s": local_s}
        for workers in worker_counts:
            seconds, spread = measure_ray_lists(workload, workers)
            lists[f"ray_{workers}_workers_s"] = seconds
            lists[f"ray_{workers}_workers_identical"] = bool(np.array_equal(spread.positions, local.positions))
        report["lists"] = lists
    return report


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "vectors"}
