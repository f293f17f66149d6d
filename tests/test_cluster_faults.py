"""Faults of a real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head without CPUs
and two worker nodes of one CPU each) under ``scripts/build_index.py --ray ADDRESS``, run as operators run it:

- a worker node killed in the middle of the encoding: Ray runs its lost batches again on the other node and
  the build completes, with the vectors a local build gives;
- the driver killed (SIGKILL) during the encoding and after it: nothing half-written becomes current, the
  build in service still loads, and the next build on the same cluster completes and clears what was left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine import build_index
from engine.encode.chunks import ChunkVectors
from engine.index.catalog_store import CatalogStore
from engine.index.store import Build
from tests.conftest import DEMO_CATALOG, PROJECT_ROOT

pytest.importorskip("ray", reason="the Ray extra is not installed: pip install -e '.[ray]'")
from ray.cluster_utils import Cluster

pytestmark = pytest.mark.model
EDITIONS = 3  # the demo catalog three times over (408 documents): long enough to fail in the middle of


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # No CPUs on the head: every actor and task runs on a worker node, so losing one loses work for real.
    sigterm = signal.getsignal(signal.SIGTERM)
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        yield started
    finally:
        started.shutdown()
        # Starting a head node in this process installs Ray's SIGTERM handler, which outlives it.
        signal.signal(signal.SIGTERM, sigterm)


def two_workers(cluster: Cluster) -> list:
    """Worker nodes until two are alive (a test may have killed one)."""
    workers = [node for node in cluster.worker_nodes if not node.dead_processes()]
    while len(workers) < 2:
        workers.append(cluster.add_node(num_cpus=1))
    cluster.wait_for_nodes()
    return workers


def editions_catalog(path: Path, editions: int = EDITIONS) -> Path:
    records = [json.loads(line) for line in DEMO_CATALOG.read_text(encoding="utf-8").splitlines() if line.strip()]
    lines = []
    for edition in range(editions):
        for record in records:
            copy = {
                **record,
                "id": f"{record['id']}-e{edition}",
                "abstract": f"{record.get('abstract', '')} ({edition})",
            }
            copy.pop("group", None)
            lines.append(json.dumps(copy, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def store_generation(index_dir: Path) -> int:
    store = CatalogStore.of(index_dir)
    try:
        return store.snapshot().generation
    finally:
        store.close()


class Driver:
    """``scripts/build_index.py --ray ADDRESS`` as a process, its progress read from stderr as it goes."""

    def __init__(self, catalog: Path, index_dir: Path, address: str) -> None:
        command = [sys.executable, "scripts/build_index.py", "--catalog", str(catalog), "--index-dir", str(index_dir)]
        command += ["--no-cache", "--ray", address, "--ray-batch-size", "8"]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(command, cwd=PROJECT_ROOT, stderr=subprocess.PIPE, text=True, env=env)
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while chunk := self.process.stderr.read(1):
            self.stderr += chunk

    def encoded(self) -> int:
        """Documents the progress bar last showed as encoded."""
        found = re.findall(r"\| *(\d+)/\d+ \[", self.stderr)
        return int(found[-1]) if found else 0

    def wait_for(self, documents: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.encoded() < documents:
            if self.process.poll() is not None:
                pytest.fail(
                    f"the build ended ({self.process.returncode}) before {documents} were encoded:\n{self.stderr}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"fewer than {documents} documents encoded in {timeout} s:\n{self.stderr[-3000:]}")
            time.sleep(0.05)

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def test_a_worker_node_killed_while_encoding_and_the_build_completes(
    cluster: Cluster, tmp_path: Path, real_encoder
) -> None:
    _, doomed = two_workers(cluster)
    catalog = editions_catalog(tmp_path / "catalog.jsonl")
    driver = Driver(catalog, tmp_path / "ray", cluster.address)
    driver.wait_for(40)  # both actors are up (the bar moves once both loaded the model), most batches to go
    cluster.remove_node(doomed, allow_graceful=False)
    assert driver.finish() == 0, driver.stderr[-3000:]
    assert driver.encoded() == 408
    assert "building on Ray" in driver.stderr and "2 nodes, 2 CPUs" in driver.stderr

    # Every document encoded once, as the local build encodes it.
    build_index([catalog], tmp_path / "local", real_encoder)
    (_, spread), (_, local) = (ChunkVectors.load(tmp_path / d / "current" / "embeddings.npz") for d in ("ray", "local"))
    assert spread.documents == local.documents == 408
    assert float(np.abs(spread.vectors - local.vectors).max()) <= 1e-6
    np.testing.assert_array_equal(
        Build.load(tmp_path / "ray").neighbours.positions, Build.load(tmp_path / "local").neighbours.positions
    )


@pytest.mark.parametrize("kill_after", [40, 408], ids=["while-encoding", "after-encoding"])
def test_a_killed_driver_leaves_the_served_build_current_and_the_next_build_completes(
    cluster: Cluster, tmp_path: Path, real_encoder, kill_after: int
) -> None:
    two_workers(cluster)
    index_dir = tmp_path / "index"
    served = build_index([DEMO_CATALOG], index_dir, real_encoder).build_dir
    generation = store_generation(index_dir)
    catalog = editions_catalog(tmp_path / "catalog.jsonl")

    driver = Driver(catalog, index_dir, cluster.address)
    driver.wait_for(kill_after)
    driver.process.send_signal(signal.SIGKILL)
    assert driver.finish() == -signal.SIGKILL

    # What is current is a whole build: the one served before, or (killed after the save) the new one.
    current = (index_dir / "current").resolve()
    build = Build.load(index_dir)  # checks every file against the manifest's checksums
    if current == served.resolve():
        assert len(build.publications) == 136
    else:
        assert len(build.publications) == 136 + 408 and kill_after == 408
    if kill_after == 40:  # the import commits only after the encoding: the store did not change
        assert current == served.resolve()
        assert store_generation(index_dir) == generation

    # The same cluster builds again (the dead driver's actors are gone), and the leftovers are cleared.
    again = Driver(catalog, index_dir, cluster.address)
    assert again.finish() == 0, again.stderr[-3000:]
    final = Build.load(index_dir)
    assert len(final.publications) == 136 + 408
    assert not [p.name for p in (index_dir / "builds").iterdir() if p.name.startswith(".staging")]
