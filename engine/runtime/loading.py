"""Reading the current build of an index folder, with its overrides, into a :class:`Recommender`."""

from __future__ import annotations

from pathlib import Path

from engine.encode.embed import Encoder
from engine.index.overrides import load_overrides
from engine.index.store import Build
from engine.rank.recommend import Recommender


def load_recommender(index_dir: Path, expected_model: str | None = None, encoder: Encoder | None = None) -> Recommender:
    """Load the current build of ``index_dir`` (see :meth:`Build.load`) and its overrides."""
    build = Build.load(Path(index_dir), expected_model)
    overrides = load_overrides(Path(index_dir), frozenset(p.id for p in build.publications))
    return Recommender(build, overrides, encoder)
