"""Catalog -> embeddings (cached) -> index, written atomically beside the builds it replaces.

An index folder holds ``builds/<build id>/`` folders and a ``current`` symlink. A build is written into a
hidden staging folder, renamed into ``builds/``, and only then is ``current`` flipped with an atomic
rename, so a reader sees the old index or the new one, never half of one, and a failed build (bad
catalog line, crash, full disk) leaves the served index untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.catalog.records import CatalogError, catalog_hash, load_catalog, write_catalog
from engine.catalog.text import publication_text
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.encode.models import sha256_file
from engine.index.pipeline import BuildContents, BuildOptions, derive
from engine.index.vectors import FORMAT_VERSION, MANIFEST_FILE, IndexLoadError

CURRENT = "current"
BUILDS = "builds"
CATALOG_FILE = "catalog.jsonl"
KEEP_BUILDS = 3


@dataclass(slots=True)
class BuildReport:
    """What one build did."""

    items: int
    encoded: int
    cached: int
    seconds: float
    build_dir: Path
    skipped: list[CatalogError] = field(default_factory=list)
    up_to_date: bool = False  # the current build already holds this catalog: nothing was written

    def summary(self) -> str:
        """One line for the end of a build job."""
        skipped = f", {len(self.skipped)} invalid lines skipped" if self.skipped else ""
        if self.up_to_date:
            return (
                f"index up to date: the current build already holds these {self.items} items with this model "
                f"and options{skipped}; nothing written ({self.seconds:.2f}s) -> {self.build_dir}"
            )
        rate = self.items / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"indexed {self.items} items ({self.encoded} encoded, {self.cached} from cache{skipped}) "
            f"in {self.seconds:.1f}s ({rate:.0f} items/s) -> {self.build_dir}"
        )


def build_index(
    catalog_paths: Sequence[Path],
    index_dir: Path,
    encoder: Encoder,
    *,
    cache: EmbeddingCache | None = None,
    skip_invalid: bool = False,
    show_progress: bool = False,
    options: BuildOptions | None = None,
    force: bool = False,
) -> BuildReport:
    """Build an index of the catalogs into a new build folder of ``index_dir`` and make it current.

    Raises :class:`CatalogError` on the first bad line (unless ``skip_invalid``) before anything is written.
    ``options`` (engine/index/pipeline.py): catalog adaptation, per-language calibration, neighbour lists, storage.
    When the current build already holds the same catalog, model and options (and passes its checksums),
    nothing is written unless ``force``: the report says ``up_to_date``.
    """
    started = time.perf_counter()
    options = options or BuildOptions()
    loaded = load_catalog(list(catalog_paths), skip_invalid=skip_invalid)
    publications = loaded.publications
    if not publications:
        raise CatalogError(str(catalog_paths[0]), 0, "file", "no valid publications; nothing to index")
    digest = catalog_hash(publications)
    current = None if force else _current_build_of(index_dir, encoder.name, digest, options.as_dict())
    if current is not None:
        return BuildReport(
            items=len(publications),
            encoded=0,
            cached=0,
            seconds=time.perf_counter() - started,
            build_dir=current,
            skipped=loaded.errors,
            up_to_date=True,
        )
    texts = [publication_text(p) for p in publications]
    languages = [p.language for p in publications]
    chunks, encoded = encode_cached(encoder, texts, cache, languages=languages, show_progress=show_progress)
    contents = derive(publications, chunks, encoder.name, options, show_progress=show_progress)
    build_dir = write_build(index_dir, contents, sources=[str(p) for p in catalog_paths], digest=digest)
    return BuildReport(
        items=len(publications),
        encoded=encoded,
        cached=len(publications) - encoded,
        seconds=time.perf_counter() - started,
        build_dir=build_dir,
        skipped=loaded.errors,
    )


def write_build(
    index_dir: Path,
    contents: BuildContents,
    *,
    sources: Sequence[str] = (),
    digest: str | None = None,
) -> Path:
    """Save a build (index, catalog, chunk vectors, adaptation, calibration, lists) as a new build folder and
    flip ``current`` to it; return the folder. ``digest`` is the catalog's :func:`catalog_hash` when the
    caller has it already.
    """
    builds = index_dir / BUILDS
    builds.mkdir(parents=True, exist_ok=True)
    # Microseconds keep ids in build order even for several builds in one second (pruning sorts by id).
    build_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]
    staging = builds / f".staging-{build_id}"
    publications = contents.publications
    try:
        contents.index.save(
            staging,
            extra={
                "build_id": build_id,
                "catalog_hash": digest or catalog_hash(publications),
                "catalog_sources": list(sources),
                "options": contents.options.as_dict(),
                "language_correction": contents.calibration.describe() if contents.calibration else None,
            },
        )
        write_catalog(publications, staging / CATALOG_FILE)
        contents.chunks.save(staging, [p.id for p in publications])
        for part in (contents.adaptation, contents.calibration, contents.neighbours):
            if part is not None:
                part.save(staging)
        _record_checksums(staging)
        _fsync_tree(staging)
        final = builds / build_id
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _point_current(index_dir, Path(BUILDS) / build_id)
    _prune(builds, keep=final)
    return final


def _current_build_of(index_dir: Path, model: str, digest: str, options: dict[str, object]) -> Path | None:
    """The current build if it was made from this catalog with this model and options, and is intact."""
    link = Path(index_dir) / CURRENT
    if not link.is_dir():
        return None
    folder = link.resolve()
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        made_from = [manifest.get(key) for key in ("model", "catalog_hash", "options", "format_version")]
        if made_from == [model, digest, options, FORMAT_VERSION]:
            verify_build(folder)
            return folder
    except (OSError, ValueError, IndexLoadError):
        pass  # anything unreadable or damaged: build afresh
    return None


def _record_checksums(folder: Path) -> None:
    """Add the SHA-256 of every file of the build to its manifest, so damage is caught at load time."""
    manifest_path = folder / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["checksums"] = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != MANIFEST_FILE}
    manifest_path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")


def verify_build(folder: Path) -> None:
    """Check every file against the checksums in the manifest; :class:`IndexLoadError` on any difference."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexLoadError(f"{folder / MANIFEST_FILE} is missing or damaged ({exc}); rebuild the index") from None
    for name, expected in manifest.get("checksums", {}).items():
        path = folder / name
        if not path.is_file():
            raise IndexLoadError(f"{path} is missing from the build; rebuild the index")
        if sha256_file(path) != expected:
            raise IndexLoadError(f"{path} is corrupted (checksum mismatch with the manifest); rebuild the index")


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())


def _point_current(index_dir: Path, target: Path) -> None:
    link = index_dir / CURRENT
    temporary = index_dir / f".{CURRENT}-{uuid.uuid4().hex[:8]}"
    os.symlink(target, temporary)
    os.replace(temporary, link)  # rename(2) over the old symlink is atomic


def _prune(builds: Path, keep: Path) -> None:
    """Delete old builds beyond the newest ``KEEP_BUILDS`` (never the current one) and stale staging."""
    finished = sorted((p for p in builds.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    for old in finished[:-KEEP_BUILDS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in builds.glob(".staging-*"):
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)


def resolve_build(index_dir: Path) -> Path:
    """The folder holding the current index: ``index_dir/current`` if present, else ``index_dir`` itself."""
    link = index_dir / CURRENT
    if link.exists():
        return link.resolve()
    return index_dir
