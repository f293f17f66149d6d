"""The build job: catalog files -> chunk vectors (cached) -> a :class:`Build`, saved atomically beside the builds
it replaces (engine/index/store.py), or nothing when the current build already holds the same catalog."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.catalog.records import CatalogError, catalog_hash, load_catalog
from engine.catalog.text import publication_text
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.index.options import BuildOptions
from engine.index.store import Build


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
    ``options`` (engine/index/options.py): catalog adaptation, per-language calibration, neighbour lists, storage.
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
    current = None if force else Build.up_to_date(index_dir, encoder.name, digest, options)
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
    build = Build.assemble(publications, chunks, encoder.name, options, show_progress=show_progress)
    build_dir = build.save(index_dir, sources=[str(p) for p in catalog_paths], digest=digest).folder
    return BuildReport(
        items=len(publications),
        encoded=encoded,
        cached=len(publications) - encoded,
        seconds=time.perf_counter() - started,
        build_dir=build_dir,
        skipped=loaded.errors,
    )
