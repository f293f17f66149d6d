"""Builds on Ray give the local build's answers: the same neighbour lists bit for bit from the same vectors,
and, with the real model, vectors within 1e-6 and the same related items over HTTP.

One Ray cluster started on this machine (``--ray local``) serves the whole module; the faults of a
multi-node cluster are in tests/test_cluster_faults.py.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from engine import BuildOptions, build_index, get_settings
from engine.catalog.records import Publication
from engine.encode.chunks import ChunkVectors
from engine.index.calibrate import LanguageCalibration
from engine.index.neighbours import NeighbourLists
from engine.index.store import Build
from engine.index.vectors import VectorIndex
from scripts import build_index as build_script
from tests.conftest import DEMO_CATALOG
from tests.fakes import FakeEncoder

ray = pytest.importorskip("ray", reason="the Ray extra is not installed: pip install -e '.[ray]'")

from engine.runtime.cluster import (  # noqa: E402
    ClusterUnavailableError,
    RayCluster,
    RayOptions,
    WorkerModelMismatchError,
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    before = signal.getsignal(signal.SIGTERM)
    with RayCluster(RayOptions(address="local", batch_size=8)) as connected:
        yield connected
    # ray.init installs a SIGTERM handler and keeps it after shutdown: closing puts the caller's back.
    assert signal.getsignal(signal.SIGTERM) is before
    assert not ray.is_initialized()


def random_catalog(n: int, dimension: int = 24, seed: int = 7) -> tuple[list[str], np.ndarray, list[str], list[str]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"p{i}" for i in range(n)]
    languages = [("en", "fr", "ar")[i % 3] for i in range(n)]
    # Every fourth item has a translation group of three, so the calibration learns language effects.
    groups = [f"g{i // 3}" if (i // 3) % 4 == 0 else f"solo{i}" for i in range(n)]
    return ids, vectors, languages, groups


@pytest.mark.parametrize(("kind", "n"), [("flat", 1_500), ("hnsw", 6_000)])
def test_lists_from_ray_tasks_equal_the_local_ones(cluster: RayCluster, kind: str, n: int) -> None:
    ids, vectors, languages, groups = random_catalog(n)
    index = VectorIndex(vectors.shape[1], "fake@1", kind=kind).build(ids, vectors)
    calibration = LanguageCalibration.fit(vectors, languages, groups)
    local = NeighbourLists.compute(index, ids, vectors, languages, calibration, size=20, threads=2)
    spread = NeighbourLists.compute(index, ids, vectors, languages, calibration, size=20, map_slices=cluster.map_slices)
    # Several tasks, each a run of whole batches: nothing is cut differently from the local loop.
    assert len(local) == n and local.size == 20
    np.testing.assert_array_equal(spread.positions, local.positions)
    # A task computes on one thread; OpenBLAS's products on one and on two threads differ in the last bit of
    # some cosines (as two local runs with different thread counts do), never in the lists themselves.
    np.testing.assert_allclose(spread.similarities, local.similarities, rtol=0, atol=1e-6)
    np.testing.assert_allclose(spread.calibrated, local.calibrated, rtol=0, atol=1e-5)


def test_tasks_of_several_cpus_give_the_same_lists_and_an_impossible_size_is_refused(cluster: RayCluster) -> None:
    ids, vectors, languages, groups = random_catalog(6_000)
    index = VectorIndex(vectors.shape[1], "fake@1", kind="hnsw").build(ids, vectors)
    calibration = LanguageCalibration.fit(vectors, languages, groups)
    local = NeighbourLists.compute(index, ids, vectors, languages, calibration, size=10, threads=2)
    wide = RayCluster(RayOptions(cpus_per_task=2))  # the module's connection, shared and left open
    spread = NeighbourLists.compute(index, ids, vectors, languages, calibration, size=10, map_slices=wide.map_slices)
    np.testing.assert_array_equal(spread.positions, local.positions)
    too_wide = RayCluster(RayOptions(cpus_per_task=3))
    with pytest.raises(ClusterUnavailableError, match="exceeds the largest node's 2 CPUs: give at most 2"):
        NeighbourLists.compute(index, ids, vectors, languages, calibration, map_slices=too_wide.map_slices)


def test_a_build_assembled_with_ray_lists_equals_the_local_build(cluster: RayCluster) -> None:
    ids, vectors, languages, groups = random_catalog(600, dimension=8)
    encoder = FakeEncoder()
    publications = [
        Publication(id=i, title="", abstract="x", language=lang, type="policy-brief", group=g)
        for i, lang, g in zip(ids, languages, groups, strict=True)
    ]
    chunks = ChunkVectors.of_documents(vectors)
    options = BuildOptions(neighbours=30)
    local = Build.assemble(publications, chunks, encoder.name, options)
    spread = Build.assemble(publications, chunks, encoder.name, options, map_slices=cluster.map_slices)
    np.testing.assert_array_equal(spread.neighbours.positions, local.neighbours.positions)
    np.testing.assert_allclose(spread.neighbours.calibrated, local.neighbours.calibrated, rtol=0, atol=1e-5)


def test_bad_ray_options_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="the Ray address is empty: give 'local', 'auto'"):
        RayOptions(address=" ")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        RayOptions(batch_size=0)


@pytest.mark.model
def test_a_node_without_the_drivers_model_stops_the_build_naming_it(cluster: RayCluster, tmp_path: Path) -> None:
    settings = get_settings()
    with pytest.raises(WorkerModelMismatchError, match=r"the node .* has .*@.*, the build uses other@0000: prepare"):
        cluster.check_nodes(settings.models_dir, settings.model, "other@0000")
    with pytest.raises(WorkerModelMismatchError, match="has no usable model"):
        cluster.check_nodes(tmp_path / "models", settings.model, "other@0000")
    encoder = cluster.encoder(settings.models_dir, settings.model)
    cluster.check_nodes(settings.models_dir, settings.model, encoder.name)  # the real one passes


@pytest.mark.model
def test_the_demo_built_on_ray_equals_the_local_build_to_1e6_and_over_http(
    cluster: RayCluster, tmp_path: Path, real_encoder, capsys
) -> None:
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    build_index([DEMO_CATALOG], local_dir, real_encoder)
    # The script itself, as an operator runs it (the module's connection is reused and left open).
    code = build_script.main(
        ["--catalog", str(DEMO_CATALOG), "--index-dir", str(ray_dir), "--no-cache", "--quiet", "--ray", "local"]
    )
    assert code == 0, capsys.readouterr().err
    assert "building on Ray (local): 1 nodes" in capsys.readouterr().err
    assert ray.is_initialized()

    local, spread = Build.load(local_dir / "current"), Build.load(ray_dir / "current")
    assert [p.id for p in spread.publications] == [p.id for p in local.publications]
    (_, local_chunks), (_, spread_chunks) = (
        ChunkVectors.load(folder / "current" / "embeddings.npz") for folder in (local_dir, ray_dir)
    )
    assert spread_chunks.vectors.shape == local_chunks.vectors.shape
    np.testing.assert_array_equal(spread_chunks.owners, local_chunks.owners)
    difference = float(np.abs(spread_chunks.vectors - local_chunks.vectors).max())
    assert difference <= 1e-6, f"chunk vectors differ by {difference}"
    ids = [p.id for p in local.publications]
    documents = float(np.abs(spread.index.vectors(ids) - local.index.vectors(ids)).max())
    assert documents <= 1e-6, f"document vectors differ by {documents}"
    np.testing.assert_array_equal(spread.neighbours.positions, local.neighbours.positions)
    # The manifests differ in build ids and times only: same model, options, catalog hash and count.
    for key in ("model", "dimension", "count", "catalog_hash", "options"):
        assert (
            json.loads((ray_dir / "current" / "manifest.json").read_text())[key]
            == json.loads((local_dir / "current" / "manifest.json").read_text())[key]
        )

    from tests.test_e2e import Server

    servers = [Server(local_dir), Server(ray_dir)]
    try:
        with httpx.Client(timeout=30) as client:
            for item in ids:
                answers = [client.get(f"{s.base}/v1/publications/{item}/related", params={"k": 10}) for s in servers]
                assert [a.status_code for a in answers] == [200, 200]
                listed = [[r["id"] for r in a.json()["items"]] for a in answers]
                assert listed[0] == listed[1], item
    finally:
        for server in servers:
            server.stop()
