"""Builds on a Ray cluster: the encoding as a Ray Data pipeline, the neighbour lists as Ray tasks.

Only the two costly, independent parts of a build leave the machine: encoding the texts the cache lacks
(``map_batches`` over a pool of actors, each loading the model once) and the batches of neighbour lists
(one task per group of batches). Everything else (the import, the adaptation, the index, the calibration,
the atomic write of the build folder, the cache) stays in the driver and runs the same code as a local
build, so a build made on Ray holds vectors within 1e-6 of a local build's and, on the tests' catalogs, the
same neighbour lists (tests/test_cluster.py). Nodes should be of one kind (CPU, faiss and numpy versions):
other kernels round differently.

Ray is an optional extra (``pip install -e '.[ray]'``); nothing here imports it until a cluster is opened.
Every node needs the project installed and the prepared model at the same ``models_dir`` path (shared
storage or the same image): docs/scale.md.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from engine.encode.chunks import ChunkVectors
from engine.encode.embed import SentenceTransformerEncoder, encode_chunks
from engine.encode.models import check_prepared, read_manifest
from engine.index.neighbours import ListWork, Rows
from engine.settings import available_cores

logger = logging.getLogger(__name__)

# Passed to every worker: models come from the prepared folder, never from a hub.
_WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
# Groups of neighbour-list batches per CPU: enough to keep every CPU busy and to lose little to a failed node.
_GROUPS_PER_CPU = 4


class ClusterUnavailableError(RuntimeError):
    """Ray is not installed, or the cluster cannot be reached or has no CPUs."""


class WorkerModelMismatchError(RuntimeError):
    """A worker node's prepared model is not the driver's (its vectors would not be comparable)."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    """How a build uses the cluster."""

    address: str = "local"  # "local" starts one on this machine; "auto" finds a running one; else its address
    actors_per_node: int = 1  # encoding actors per node with CPUs
    cpus_per_actor: int = 1  # each actor's share of a node (its encoder's threads)
    batch_size: int = 32  # documents per batch handed to an actor
    # CPUs (FAISS threads) of each neighbour-list task. Each task process holds its own copy of the index: at
    # millions of items, give a node's CPUs to one task rather than one CPU to each of many (docs/scale.md).
    cpus_per_task: int = 1

    def __post_init__(self) -> None:
        for name in ("actors_per_node", "cpus_per_actor", "batch_size", "cpus_per_task"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.address.strip():
            raise ValueError("the Ray address is empty: give 'local', 'auto' or the head's address (host:port)")


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once on an address nothing listens on (Ray itself retries such a connection for minutes)."""
    if address == "auto":
        # Ray's own lookup: $RAY_ADDRESS, else the cluster last started on this machine.
        address = os.environ.get("RAY_ADDRESS") or _last_local_cluster()
        if address is None:
            raise ClusterUnavailableError(
                "no running Ray cluster found (no $RAY_ADDRESS, none started here): start one with "
                "`ray start --head`, give its address, or give --ray local"
            )
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterUnavailableError(f"the Ray address {address!r} is not host:port (or ray://host:port)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterUnavailableError(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}): start it with "
            "`ray start --head` on that host, or give --ray local"
        ) from None


def _last_local_cluster() -> str | None:
    """The address Ray records for the cluster last started on this machine (under $RAY_TMPDIR, as Ray does)."""
    folder = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    try:
        return (folder / "ray_current_cluster").read_text().strip() or None
    except OSError:
        return None


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterUnavailableError(
            "Ray is not installed: install the extra with `pip install -e '.[ray]'` (or build without --ray)"
        ) from None
    return ray


class RayCluster:
    """A connection to a Ray cluster for one build, made on first use (so a build that fails validation, waits
    for the build lock or finds its index up to date starts nothing). A context manager: leaving it
    disconnects, and stops a cluster that ``local`` started."""

    def __init__(
        self, options: RayOptions | None = None, *, on_connect: Callable[[RayCluster], None] | None = None
    ) -> None:
        self.options = options or RayOptions()
        self._ray = _ray()
        self._on_connect = on_connect
        self._connected = False
        self._owned = False

    @property
    def ray(self) -> Any:
        """The ``ray`` module, connected."""
        self.connect()
        return self._ray

    def connect(self) -> None:
        """Connect (once), and check the cluster can run what the options ask for."""
        if self._connected:
            return
        ray, address = self._ray, self.options.address
        # A process already connected (a notebook, a test) keeps its connection: it is used, and left open.
        self._owned = not ray.is_initialized()
        if self._owned and address != "local":
            _check_reachable(address)
        sigterm = signal.getsignal(signal.SIGTERM)
        init: dict[str, Any] = {
            "runtime_env": {"env_vars": dict(_WORKER_ENV)},
            "logging_level": logging.WARNING,
            "log_to_driver": False,
        }
        try:
            if self._owned and address == "local":
                # address="local": always a new cluster, even where another one runs (ray.init() would join it).
                ray.init(address="local", num_cpus=available_cores(), include_dashboard=False, **init)
            elif self._owned:
                ray.init(address=address, **init)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterUnavailableError(
                f"cannot reach the Ray cluster at {address!r} ({exc}); start it with `ray start --head` or give "
                "--ray local"
            ) from None
        finally:
            # ray.init installs a SIGTERM handler that exits from wherever the driver is: keep the caller's, so a
            # stopped build behaves as a local one (the cluster frees a dead driver's actors and tasks itself).
            if threading.current_thread() is threading.main_thread() and sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        self._connected = True
        try:
            context = ray.data.DataContext.get_current()
            context.enable_progress_bars = False  # the build shows its own bar (documents, not Ray blocks)
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            self._check_sizes()
        except BaseException:
            self.close()
            raise
        if self._on_connect is not None:
            self._on_connect(self)

    def _check_sizes(self) -> None:
        """Refuse actors or tasks wider than every node: Ray would wait for such a node forever."""
        largest = max((int(node["Resources"]["CPU"]) for node in self._workers()), default=0)
        if largest < 1:
            raise ClusterUnavailableError(f"the Ray cluster at {self.options.address!r} has no CPUs to work on")
        for flag, wanted in (
            ("--ray-cpus-per-actor", self.options.cpus_per_actor),
            ("--ray-cpus-per-task", self.options.cpus_per_task),
        ):
            if wanted > largest:
                raise ClusterUnavailableError(
                    f"{flag} {wanted} exceeds the largest node's {largest} CPUs: give at most {largest}"
                )

    def _workers(self) -> list[dict[str, Any]]:
        """The alive nodes that have CPUs (a head started without CPUs runs no actor or task)."""
        return [node for node in self._ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) > 0]

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (stopping the cluster ``local`` started), unless the connection was there before."""
        if self._connected and self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._connected = False

    def failed(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the cluster's failure (unreachable, a lost node beyond Ray's retries, a worker's
        error, a model mismatch) rather than the build's own."""
        return isinstance(exc, (self._ray.exceptions.RayError, WorkerModelMismatchError, ClusterUnavailableError))

    def nodes(self) -> int:
        """Alive nodes that have CPUs."""
        self.connect()
        return len(self._workers())

    def cpus(self) -> int:
        """CPUs of the alive nodes."""
        return int(self.ray.cluster_resources().get("CPU", 0))

    def check_nodes(self, models_dir: Path, model: str, expected: str) -> None:
        """Check, on every node with CPUs, that the model is prepared and is ``expected`` (a cheap read of its
        manifest): an actor that fails to load it would only be started again and again by Ray Data."""
        ray = self.ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0, max_retries=0)(_model_on_node)
        pending = {
            node["NodeManagerAddress"]: probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(models_dir), model)
            for node in self._workers()
        }
        for host, ref in pending.items():
            found = ray.get(ref)
            if found != expected:
                raise WorkerModelMismatchError(
                    f"the node {host} has {found}, the build uses {expected}: prepare the same model at "
                    f"{models_dir} on every node (scripts/prepare_model.py)"
                )

    def encoder(self, models_dir: Path, model: str) -> RayEncoder:
        """An encoder whose documents are encoded by actors on the cluster."""
        return RayEncoder(self, models_dir, model)

    def map_slices(
        self, fn: Callable[[ListWork, int, int, int], Rows], work: ListWork, slices: Sequence[tuple[int, int]]
    ) -> Iterator[Rows]:
        """Run ``fn`` over ``slices`` in Ray tasks (a :class:`~engine.index.neighbours.SliceMap`): the shared work
        is put in the object store once, each task takes a run of consecutive slices with ``cpus_per_task`` CPUs
        and as many threads; results come back in the order of ``slices``. A task lost with its node is run
        again (Ray's retries)."""
        if not slices:
            return iter(())
        ray = self.ray
        shared = ray.put(work)
        cpus = self.options.cpus_per_task
        count = max(1, min(len(slices), self.cpus() // cpus * _GROUPS_PER_CPU))
        groups = [list(group) for group in np.array_split(np.arange(len(slices)), count) if len(group)]
        task = ray.remote(num_cpus=cpus, max_retries=3)(_run_slices)
        pending = [task.remote(fn, shared, [slices[i] for i in group], cpus) for group in groups]

        def results() -> Iterator[Rows]:
            for ref in pending:
                yield from ray.get(ref)

        return results()


def _model_on_node(models_dir: str, model: str) -> str:
    """The prepared model's name and fingerprint on this node, or why there is none."""
    try:
        check_prepared(Path(models_dir), model)
        manifest = read_manifest(Path(models_dir), model)
    except Exception as exc:  # reported to the driver, which names the node
        return f"no usable model ({exc})"
    return manifest.vectors_name


def _run_slices(
    fn: Callable[[ListWork, int, int, int], Rows], work: ListWork, slices: list[tuple[int, int]], threads: int
) -> list[Rows]:
    """One task: ``fn`` over a run of slices, on the task's CPUs."""
    return [fn(work, start, stop, threads) for start, stop in slices]


class _EncodeActor:
    """One encoding actor: loads the model once, then encodes batches of documents (``encode_chunks``, the
    local build's own function), returning each document's chunk vectors and weights as bytes."""

    def __init__(self, models_dir: str, model: str, expected: str, threads: int, chunked: bool) -> None:
        os.environ.update(_WORKER_ENV)
        started = time.perf_counter()
        self.encoder = SentenceTransformerEncoder(Path(models_dir), model, threads=threads)
        self.load_s = time.perf_counter() - started  # reported with the first batch, then 0
        if self.encoder.name != expected:
            raise WorkerModelMismatchError(
                f"the worker on {os.uname().nodename} has model {self.encoder.name}, the build uses {expected}: "
                f"prepare the same model on every node (scripts/prepare_model.py)"
            )
        self.chunked = chunked

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Encode one batch: its rows' chunk vectors and weights as bytes, with the actor's own timings."""
        started = time.perf_counter()
        texts = [str(text) for text in batch["text"]]
        languages = [str(language) or None for language in batch["language"]]
        if self.chunked:
            parts = encode_chunks(self.encoder, texts, languages=languages).split()
        else:
            vectors = self.encoder.encode(texts, languages=languages)
            parts = [(row[None, :], np.ones(1, np.float32)) for row in vectors]
        vectors_out = np.empty(len(parts), dtype=object)
        weights_out = np.empty(len(parts), dtype=object)
        for i, (vectors, weights) in enumerate(parts):
            vectors_out[i] = np.ascontiguousarray(vectors, dtype=np.float32).tobytes()
            weights_out[i] = np.ascontiguousarray(weights, dtype=np.float32).tobytes()
        # The actor's own seconds, on the batch's first row: the driver sums them into RunTimes.
        encode_s, load_s, rss_mb = np.zeros(len(parts)), np.zeros(len(parts)), np.zeros(len(parts))
        if len(parts):
            encode_s[0] = time.perf_counter() - started
            load_s[0], self.load_s = self.load_s, 0.0
            rss_mb[0] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "row": batch["row"],
            "vectors": vectors_out,
            "weights": weights_out,
            "encode_s": encode_s,
            "load_s": load_s,
            "rss_mb": rss_mb,
        }


@dataclass(frozen=True, slots=True)
class RunTimes:
    """Where the time of one encoding run went, as the actors measured it: loading the model (once per
    actor) and encoding batches; the rest of ``actors x seconds`` went to Ray (scheduling, transfers) or idle."""

    documents: int
    seconds: float  # wall time of the run, in the driver
    actors: int  # actors that loaded the model
    load_s: float  # summed over the actors
    encode_s: float  # summed over the actors
    peak_rss_mb: float  # the largest actor process's peak resident memory

    @property
    def actor_docs_per_s(self) -> float:
        """Documents per second of one actor while it encodes (compare with one local thread)."""
        return self.documents / self.encode_s if self.encode_s > 0 else 0.0

    @property
    def busy_share(self) -> float:
        """Share of the actors' time after loading the model that went to encoding."""
        available = self.actors * self.seconds - self.load_s
        return self.encode_s / available if available > 0 else 0.0


class RayEncoder:
    """An :class:`~engine.encode.embed.Encoder` whose work runs on a Ray cluster.

    Its name, dimension and limit are read from the model's manifest, so the driver never loads the model
    to encode; each actor loads it and checks it is the same model. ``encode_chunks`` is what builds use
    (engine/encode/embed.py hands it whole documents)."""

    def __init__(self, cluster: RayCluster, models_dir: Path, model: str) -> None:
        check_prepared(models_dir, model)
        manifest = read_manifest(models_dir, model)
        self.cluster = cluster
        self.models_dir, self.model = Path(models_dir), model
        self.model_name = manifest.name
        self.name = manifest.vectors_name
        self.dimension = manifest.dimension
        self.max_tokens = manifest.max_seq_length
        self._local: SentenceTransformerEncoder | None = None
        self.last_run: RunTimes | None = None

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (the model is loaded here on first use: builds never ask)."""
        if self._local is None:
            self._local = SentenceTransformerEncoder(self.models_dir, self.model)
        return self._local.count_tokens(text)

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """One vector per text, as the model's limit cuts it (no chunking), computed on the cluster."""
        return self._run(texts, languages, show_progress, chunked=False).vectors

    def encode_chunks(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> ChunkVectors:
        """The chunk vectors of whole documents (``engine.encode.embed.encode_chunks`` run by the actors)."""
        return self._run(texts, languages, show_progress, chunked=True)

    def _run(
        self, texts: Sequence[str], languages: Sequence[str | None] | None, show_progress: bool, *, chunked: bool
    ) -> ChunkVectors:
        if not texts:
            return ChunkVectors.concat([], self.dimension)
        ray, options = self.cluster.ray, self.cluster.options
        self.cluster.check_nodes(self.models_dir, self.model, self.name)
        languages = list(languages) if languages is not None else [None] * len(texts)
        # Longest first: batches of like lengths pad little, and the slowest batches do not come last.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        items = [{"row": i, "text": texts[i], "language": languages[i] or ""} for i in order]
        actors = max(1, options.actors_per_node * self.cluster.nodes())
        logger.info(
            "encoding %d documents on Ray: up to %d actors, %d per batch", len(texts), actors, options.batch_size
        )
        mapped = ray.data.from_items(items).map_batches(
            _EncodeActor,
            fn_constructor_kwargs={
                "models_dir": str(self.models_dir),
                "model": self.model,
                "expected": self.name,
                "threads": options.cpus_per_actor,
                "chunked": chunked,
            },
            # All actors from the start (a pool growing from one would leave nodes idle on a short job); down to
            # one while a lost node's actor cannot be placed again.
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors, initial_size=actors),
            batch_size=options.batch_size,
            num_cpus=options.cpus_per_actor,
            batch_format="numpy",
        )
        parts: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(texts)
        started, actors, load_s, encode_s, rss_mb = time.perf_counter(), 0, 0.0, 0.0, 0.0
        with tqdm(total=len(texts), desc="encoding on Ray", unit="doc", disable=not show_progress) as bar:
            for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
                for row, vectors, weights in zip(batch["row"], batch["vectors"], batch["weights"], strict=True):
                    parts[int(row)] = (
                        np.frombuffer(vectors, dtype=np.float32).reshape(-1, self.dimension),
                        np.frombuffer(weights, dtype=np.float32),
                    )
                bar.update(len(batch["row"]))
                actors += int(np.count_nonzero(batch["load_s"]))
                load_s, encode_s = load_s + float(batch["load_s"].sum()), encode_s + float(batch["encode_s"].sum())
                rss_mb = max(rss_mb, float(batch["rss_mb"].max()))
        self.last_run = RunTimes(len(texts), time.perf_counter() - started, actors, load_s, encode_s, rss_mb)
        missing = sum(part is None for part in parts)
        if missing:
            raise RuntimeError(f"the Ray pipeline returned no vectors for {missing} of {len(texts)} documents")
        return ChunkVectors.of_parts(parts, self.dimension)
