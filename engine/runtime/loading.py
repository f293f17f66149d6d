"""Reading a build from disk into a :class:`Recommender`: checks, then every file the build holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.catalog.records import load_catalog
from engine.encode.embed import Encoder
from engine.index.adaptation import CatalogAdaptation
from engine.index.build import CATALOG_FILE, resolve_build, verify_build
from engine.index.calibrate import LanguageCalibration
from engine.index.neighbours import DEFAULT_SIZE, NeighbourLists
from engine.index.overrides import load_overrides
from engine.index.vectors import FORMAT_VERSION, IndexLoadError, VectorIndex
from engine.rank.recommend import Recommender


def load_recommender(index_dir: Path, expected_model: str | None = None, encoder: Encoder | None = None) -> Recommender:
    """Load the current build of ``index_dir`` (index, manifest, catalog snapshot) and its overrides."""
    folder = resolve_build(Path(index_dir))
    if (folder / "manifest.json").is_file():
        verify_build(folder)
    index, manifest = VectorIndex.load(folder, expected_model=expected_model)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexLoadError(
            f"the build in {folder} has format {manifest.get('format_version')}, this version reads format "
            f"{FORMAT_VERSION}; rebuild it: python scripts/build_index.py --catalog {folder / CATALOG_FILE} "
            f"--index-dir {index_dir}{_rebuild_flags(manifest.get('options', {}))}"
        )
    catalog = folder / CATALOG_FILE
    if not catalog.is_file():
        raise IndexLoadError(f"{catalog} is missing; rebuild the index with scripts/build_index.py")
    publications = load_catalog(catalog).publications
    overrides = load_overrides(Path(index_dir), frozenset(p.id for p in publications))
    calibration, neighbours = LanguageCalibration.load(folder), NeighbourLists.load(folder)
    adaptation = CatalogAdaptation.load(folder, graph=False)
    return Recommender(
        publications, index, manifest, overrides, encoder, calibration, neighbours, adaptation, build_dir=folder
    )


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
