"""The on-disk build, as one typed object: :class:`Build` (its parts) and :class:`BuildManifest` (what made it).

Every file name of a build is here. A build is written into a hidden staging folder, checksummed, fsynced,
renamed into ``builds/``, and only then is ``current`` flipped with an atomic rename, each rename made durable
(engine/index/folder.py): a reader sees the old build or the new one, never half of one, and a failed build (bad
catalog line, crash, full disk) leaves the served one untouched. A build is a snapshot of the catalog store at
one generation (engine/index/catalog_store.py), recorded in its manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.catalog.records import Publication, catalog_hash, load_catalog, write_catalog
from engine.encode.chunks import ChunkVectors
from engine.encode.models import sha256_file
from engine.index.adaptation import CatalogAdaptation
from engine.index.calibrate import LanguageCalibration
from engine.index.folder import BUILDS, CURRENT, fsync_tree, prune_builds, publish_build, resolve_build
from engine.index.neighbours import DEFAULT_SIZE, NeighbourLists, SliceMap
from engine.index.options import BuildOptions
from engine.index.vectors import IndexLoadError, VectorIndex
from engine.settings import available_cores

# 3: builds record the catalog store's generation they hold.
FORMAT_VERSION = 3
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "vectors.faiss"
IDS_FILE = "ids.json"
CATALOG_FILE = "catalog.jsonl"
CHUNKS_FILE = "embeddings.npz"
ADAPTATION_FILE = "adaptation.npz"
CALIBRATION_FILE = "calibration.npz"
NEIGHBOURS_FILE = "neighbours.npz"


@dataclass(frozen=True, slots=True)
class BuildManifest:
    """``manifest.json``: what a build was made from and with, and the checksum of each of its files."""

    build_id: str
    model: str
    dimension: int
    count: int
    catalog_hash: str
    build_time: str
    # Defaults for what older builds did not record, so their manifests read and get the format message.
    storage: str = "float32"
    options: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    index_type: str = ""
    faiss_version: str = ""
    catalog_sources: tuple[str, ...] = ()
    language_correction: dict[str, Any] | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    store_generation: int | None = None  # the catalog store's generation this build holds

    @classmethod
    def read(cls, folder: Path) -> BuildManifest:
        """The manifest of the build in ``folder``; :class:`IndexLoadError` naming the fix when it is unusable."""
        path = folder / MANIFEST_FILE
        if not path.is_file():
            raise IndexLoadError(
                f"no index in {folder} ({MANIFEST_FILE} missing); build one with scripts/build_index.py"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
            known["catalog_sources"] = tuple(known.get("catalog_sources", ()))
            for name in ("dimension", "count", "format_version", "store_generation"):
                if known.get(name) is not None:
                    known[name] = int(known[name])
            manifest = cls(**known)
        except (ValueError, TypeError, AttributeError) as exc:
            raise IndexLoadError(f"{path} is damaged ({exc}); rebuild the index") from None
        return manifest

    def write(self, folder: Path) -> None:
        """Write ``manifest.json`` into ``folder``."""
        data = {**asdict(self), "catalog_sources": list(self.catalog_sources)}
        (folder / MANIFEST_FILE).write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


@dataclass(slots=True)
class Build:
    """Everything one build holds: the publications and, derived from their chunk vectors, the catalog
    adaptation, the vector index, the language calibration and the neighbour lists.

    Made by :meth:`assemble` (in memory), written by :meth:`save`, read by :meth:`load`. A loaded build holds
    what serving needs: its chunk vectors and the adaptation's graph stay on disk (:meth:`stored_chunks`).
    """

    publications: list[Publication]
    index: VectorIndex
    options: BuildOptions
    chunks: ChunkVectors | None = None
    adaptation: CatalogAdaptation | None = None
    calibration: LanguageCalibration | None = None
    neighbours: NeighbourLists | None = None
    manifest: BuildManifest | None = None  # None until saved or loaded
    folder: Path | None = None  # where it was saved or loaded from

    @classmethod
    def assemble(
        cls,
        publications: Sequence[Publication],
        chunks: ChunkVectors,
        model: str,
        options: BuildOptions,
        *,
        adaptation: CatalogAdaptation | None = None,
        show_progress: bool = False,
        map_slices: SliceMap | None = None,
    ) -> Build:
        """Adapt, index, calibrate and list ``publications`` (in the order of ``chunks``' documents): the one
        sequence that full builds (engine/index/build.py) and in-memory evaluation (``Recommender.from_publications``)
        share, so an answer does not depend on which made it. ``adaptation`` is an already fitted one;
        ``map_slices`` computes the neighbour lists' batches elsewhere (a Ray cluster: engine/runtime/cluster.py).
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
                map_slices=map_slices,
            )
        return cls(publications, index, options, chunks, adaptation, calibration, neighbours)

    @property
    def build_id(self) -> str:
        """The build's id ("in-memory" before it is saved)."""
        return self.manifest.build_id if self.manifest else "in-memory"

    def save(
        self, index_dir: Path, *, generation: int, sources: Sequence[str] = (), digest: str | None = None
    ) -> Build:
        """Write this build as a new build folder of ``index_dir`` and flip ``current`` to it; return it with its
        manifest and folder. ``generation`` is the catalog store's generation the publications were read at;
        ``digest`` the catalog's :func:`catalog_hash` when the caller has it already. Callers hold the build lock
        (engine/index/folder.py)."""
        if self.chunks is None:
            raise ValueError("this build has no chunk vectors (a loaded or hand-made build): assemble one to save")
        builds = Path(index_dir) / BUILDS
        builds.mkdir(parents=True, exist_ok=True)
        # Microseconds keep ids in build order even for several builds in one second (pruning sorts by id).
        build_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]
        staging = builds / f".staging-{build_id}"
        try:
            staging.mkdir()
            description = self.index.save(staging / INDEX_FILE, staging / IDS_FILE)
            write_catalog(self.publications, staging / CATALOG_FILE)
            self.chunks.save(staging / CHUNKS_FILE, [p.id for p in self.publications])
            for part, name in (
                (self.adaptation, ADAPTATION_FILE),
                (self.calibration, CALIBRATION_FILE),
                (self.neighbours, NEIGHBOURS_FILE),
            ):
                if part is not None:
                    part.save(staging / name)
            manifest = BuildManifest(
                build_id=build_id,
                build_time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                catalog_hash=digest or catalog_hash(self.publications),
                catalog_sources=tuple(sources),
                options=self.options.as_dict(),
                language_correction=self.calibration.describe() if self.calibration else None,
                checksums={p.name: sha256_file(p) for p in sorted(staging.iterdir())},
                store_generation=generation,
                **description,
            )
            manifest.write(staging)
            fsync_tree(staging)
            final = publish_build(Path(index_dir), staging, build_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        prune_builds(Path(index_dir), keep=final)
        return replace(self, manifest=manifest, folder=final)

    @classmethod
    def load(cls, index_dir: Path, expected_model: str | None = None) -> Build:
        """The current build of ``index_dir`` (or the build folder itself), checked against its checksums;
        refuses a build made with a model other than ``expected_model``, or of another format."""
        folder = resolve_build(Path(index_dir))
        manifest = BuildManifest.read(folder)
        verify_build(folder, manifest)
        if expected_model is not None and manifest.model != expected_model:
            raise IndexLoadError(
                f"the index in {folder} was built with model {manifest.model!r}, but the engine uses "
                f"{expected_model!r}; rebuild it with scripts/build_index.py"
            )
        if manifest.format_version != FORMAT_VERSION:
            raise IndexLoadError(
                f"the build in {folder} has format {manifest.format_version}, this version reads format "
                f"{FORMAT_VERSION}; rebuild it: python scripts/build_index.py --catalog {folder / CATALOG_FILE} "
                f"--index-dir {index_dir}{_rebuild_flags(manifest.options)}"
            )
        index = VectorIndex.load(
            folder / INDEX_FILE,
            folder / IDS_FILE,
            model=manifest.model,
            dimension=manifest.dimension,
            storage=manifest.storage,
            count=manifest.count,
        )
        catalog = folder / CATALOG_FILE
        if not catalog.is_file():
            raise IndexLoadError(f"{catalog} is missing; rebuild the index with scripts/build_index.py")
        return cls(
            load_catalog(catalog).publications,
            index,
            BuildOptions.from_manifest(manifest.options),
            adaptation=CatalogAdaptation.load(folder / ADAPTATION_FILE, graph=False),
            calibration=LanguageCalibration.load(folder / CALIBRATION_FILE),
            neighbours=NeighbourLists.load(folder / NEIGHBOURS_FILE),
            manifest=manifest,
            folder=folder,
        )

    def stored_chunks(self) -> tuple[list[str], ChunkVectors] | None:
        """The model's chunk vectors of a saved build (document ids, chunks), or None when it kept none."""
        return ChunkVectors.load(self.folder / CHUNKS_FILE) if self.folder else None

    @staticmethod
    def up_to_date(index_dir: Path, model: str, generation: int, options: BuildOptions) -> Path | None:
        """The current build's folder if it holds the store at ``generation`` with this model and options and
        is intact, else None."""
        link = Path(index_dir) / CURRENT
        if not link.is_dir():
            return None
        folder = link.resolve()
        try:
            manifest = BuildManifest.read(folder)
            made_from = [manifest.model, manifest.store_generation, manifest.options, manifest.format_version]
            if made_from == [model, generation, options.as_dict(), FORMAT_VERSION]:
                verify_build(folder, manifest)
                return folder
        except (OSError, IndexLoadError):
            pass  # anything unreadable or damaged: build afresh
        return None


def verify_build(folder: Path, manifest: BuildManifest | None = None) -> None:
    """Check every file against the checksums in the manifest; :class:`IndexLoadError` on any difference."""
    manifest = manifest or BuildManifest.read(folder)
    unchecked = [name for name in (INDEX_FILE, IDS_FILE, CATALOG_FILE) if name not in manifest.checksums]
    if unchecked:
        # Without its checksums a damaged file would load and fail on every request instead of here.
        raise IndexLoadError(
            f"the manifest of {folder} has no checksum for {', '.join(unchecked)}; rebuild the index with "
            "scripts/build_index.py"
        )
    for name, expected in manifest.checksums.items():
        path = folder / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing from the build; rebuild the index")
        if sha256_file(path) != expected:
            raise IndexLoadError(f"{path} is corrupted (checksum mismatch with the manifest); rebuild the index")


def _rebuild_flags(options: dict[str, Any]) -> str:
    """The build_index flags that reproduce an older build's options (those it recorded)."""
    flags = []
    if options.get("calibrate") is False:
        flags.append("--no-calibrate")
    if options.get("neighbours", DEFAULT_SIZE) != DEFAULT_SIZE:
        flags.append(f"--neighbours {options['neighbours']}")
    if options.get("storage", "float32") != "float32":
        flags.append(f"--storage {options['storage']}")
    return "".join(f" {flag}" for flag in flags)


__all__ = ["BUILDS", "CURRENT", "Build", "BuildManifest", "resolve_build", "verify_build"]
