"""From a catalog's chunk vectors to everything a build serves: adapted vectors, index, calibration, lists.

One sequence for the three places that make builds: ``scripts/build_index.py`` (engine/index/build.py), API
writes (engine/runtime/writes.py) and in-memory evaluation (``Recommender.from_publications``), so an answer does
not depend on which of them made the build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from engine.catalog.records import Publication
from engine.encode.chunks import ChunkVectors
from engine.index.adaptation import SMOOTHING_NEIGHBOURS, CatalogAdaptation
from engine.index.calibrate import LanguageCalibration
from engine.index.neighbours import DEFAULT_SIZE, NeighbourLists
from engine.index.vectors import STORAGES, VectorIndex
from engine.settings import available_cores

# Share of removed items an HNSW graph may hold (each search asks for that many more) before a write rebuilds it.
_MAX_TOMBSTONES = 0.1


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """What besides the catalog and the model decides a build's contents (recorded in its manifest)."""

    adapt: bool = True  # centre on the catalog's mean and smooth (engine/index/adaptation.py)
    smoothing_neighbours: int = SMOOTHING_NEIGHBOURS  # chunks each chunk is smoothed toward; 0: centring only
    calibrate: bool = True  # per-language z-scores (engine/index/calibrate.py)
    neighbours: int = DEFAULT_SIZE  # length of the precomputed neighbour lists; 0 for none
    storage: str = "float32"

    def __post_init__(self) -> None:
        if self.smoothing_neighbours < 0:
            raise ValueError(
                f"smoothing_neighbours must be >= 0 (0 for centring only), got {self.smoothing_neighbours}"
            )
        if self.neighbours < 0:
            raise ValueError(f"neighbours must be >= 0 (0 for no lists), got {self.neighbours}")
        if self.storage not in STORAGES:
            raise ValueError(f"vector storage must be one of {STORAGES}, got {self.storage!r}")

    @classmethod
    def plain(cls, **changes: Any) -> BuildOptions:
        """The model's own cosine: no adaptation, no calibration (baselines and hand-worked tests)."""
        return cls(adapt=False, calibrate=False, **changes)

    def as_dict(self) -> dict[str, Any]:
        """For the manifest (compared by ``build_index`` to decide whether a build is up to date)."""
        return asdict(self)

    @classmethod
    def from_manifest(cls, recorded: Mapping[str, Any]) -> BuildOptions:
        """The options a build records (what a later write of the same build must reuse)."""
        known = {name: recorded[name] for name in cls.__dataclass_fields__ if name in recorded}
        return cls(**known)


@dataclass(slots=True)
class DerivedParts:
    """What a build derives from its publications' chunk vectors (see :class:`engine.index.store.Build`)."""

    adaptation: CatalogAdaptation | None
    index: VectorIndex
    calibration: LanguageCalibration | None
    neighbours: NeighbourLists | None


def derive(
    publications: Sequence[Publication],
    chunks: ChunkVectors,
    model: str,
    options: BuildOptions,
    *,
    adaptation: CatalogAdaptation | None = None,
    base: VectorIndex | None = None,
    changed: Sequence[str] = (),
    show_progress: bool = False,
) -> DerivedParts:
    """Adapt, index, calibrate and list ``publications`` (in the order of ``chunks``' documents).

    ``adaptation`` is an already fitted one (a write's incremental update); ``base`` an index holding the
    previous vectors, of which only ``changed`` ids (and ids no longer in the catalog) are replaced, so a
    write does not rebuild a large HNSW graph.
    """
    publications = list(publications)
    if chunks.documents != len(publications):
        raise ValueError(f"{chunks.documents} documents of chunk vectors for {len(publications)} publications")
    threads = available_cores()
    ids = [p.id for p in publications]
    if options.adapt:
        if adaptation is None:
            adaptation = CatalogAdaptation.fit(
                chunks, k=options.smoothing_neighbours, threads=threads, show_progress=show_progress
            )
        vectors = adaptation.document_vectors(chunks)
    else:
        adaptation, vectors = None, chunks.pooled()
    index = None
    if base is not None:
        index = base.copy()
        present = set(ids)
        index.remove([key for key in index.ids if key not in present])
        row = {key: i for i, key in enumerate(ids)}
        replaced = [key for key in dict.fromkeys(changed) if key in row]
        index.add(replaced, vectors[[row[key] for key in replaced]])
        if index.tombstones > _MAX_TOMBSTONES * len(ids):
            index = None  # searches skip tombstones by asking FAISS for more: past a point, build afresh
    if index is None:
        index = VectorIndex(chunks.vectors.shape[1], model, storage=options.storage).build(ids, vectors)
    if options.storage != "float32":
        # Calibrate and rank the lists on what searches will see: the stored, rounded vectors.
        vectors = index.vectors(ids)
    calibration = None
    if options.calibrate:
        calibration = LanguageCalibration.fit(
            vectors, [p.language for p in publications], [p.group for p in publications]
        )
    neighbours = None
    if options.neighbours > 0:
        neighbours = NeighbourLists.compute(
            index,
            ids,
            vectors,
            [p.language for p in publications],
            calibration,
            size=options.neighbours,
            threads=threads,
            show_progress=show_progress,
        )
    return DerivedParts(adaptation, index, calibration, neighbours)
