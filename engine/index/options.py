"""The options of a build: what besides the catalog and the model decides what it holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.index.adaptation import SMOOTHING_NEIGHBOURS
from engine.index.neighbours import DEFAULT_SIZE
from engine.index.vectors import STORAGES


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
