"""Catalog writes without a full rebuild: upsert or delete publications, persisted as a new build.

Only the new or changed items are encoded; every other vector is copied from the index in service.
The result is written like any build (staging folder, checksums, atomic ``current`` flip), so a write
is on disk before it is acknowledged and a restart loses nothing. A later ``scripts/build_index.py``
run replaces the catalog with its input files, API writes included.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.build import build_options, write_build
from engine.calibrate import LanguageCalibration
from engine.catalog import Publication
from engine.embed import EmbeddingCache, Encoder, encode_cached
from engine.neighbours import NeighbourLists
from engine.recommend import EncoderUnavailableError, Recommender, UnknownPublicationError
from engine.settings import available_cores
from engine.text import publication_text

logger = logging.getLogger(__name__)
MAX_WRITE_ITEMS = 100
# Neighbour lists are recomputed for the whole catalog (calibration is refitted on every write), which
# takes about 0.25 ms an item here: above this size a write's build goes without them (live search,
# the same answers) until the next scripts/build_index.py run.
WRITE_NEIGHBOURS_LIMIT = 20_000


class WriteRejectedError(ValueError):
    """A write that breaks a documented limit (HTTP maps it to 422)."""


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What a write changed."""

    build_id: str
    upserted: tuple[str, ...]
    deleted: tuple[str, ...]
    publications: int


def apply_writes(
    recommender: Recommender,
    index_dir: Path,
    *,
    upserts: Sequence[Publication] = (),
    deletes: Sequence[str] = (),
    encoder: Encoder | None = None,
    cache: EmbeddingCache | None = None,
) -> WriteReport:
    """Write a new build of ``index_dir``: ``recommender``'s catalog with ``upserts`` and without ``deletes``."""
    if len(upserts) + len(deletes) > MAX_WRITE_ITEMS:
        raise WriteRejectedError(f"at most {MAX_WRITE_ITEMS} publications per write, got {len(upserts) + len(deletes)}")
    for publication_id in deletes:
        recommender.get(publication_id)  # UnknownPublicationError names a missing id
    if upserts and encoder is None:
        raise EncoderUnavailableError("this service was started without a model; it cannot encode new items")
    publications = dict(recommender.publications)
    for publication_id in deletes:
        del publications[publication_id]
    index = recommender.index.copy()
    index.remove(list(deletes))
    if upserts:
        texts = [publication_text(p) for p in upserts]
        vectors, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in upserts])
        index.add([p.id for p in upserts], vectors)
        publications.update({p.id: p for p in upserts})
    if not publications:
        raise WriteRejectedError("a write may not remove every publication; build an index from a catalog instead")
    ordered = list(publications.values())
    ids, languages = [p.id for p in ordered], [p.language for p in ordered]
    vectors = index.vectors(ids)
    calibration = LanguageCalibration.fit(vectors, languages) if recommender.calibration is not None else None
    neighbours = None
    size = recommender.neighbours.requested_size if recommender.neighbours is not None else 0
    if size and len(ordered) <= WRITE_NEIGHBOURS_LIMIT:
        neighbours = NeighbourLists.compute(
            index, ids, vectors, languages, calibration, size=size, threads=available_cores()
        )
    elif size:
        logger.warning(
            "%d publications: this write's build has no neighbour lists (over %d); related-by-id uses the live "
            "search until the next scripts/build_index.py run",
            len(ordered),
            WRITE_NEIGHBOURS_LIMIT,
        )
    # The options this build was made with, so a later build_index from files compares like with like.
    options = build_options(calibration is not None, size if neighbours is not None else 0, index.storage)
    folder = write_build(
        Path(index_dir),
        index,
        ordered,
        sources=["api"],
        calibration=calibration,
        neighbours=neighbours,
        options=options,
    )
    return WriteReport(folder.name, tuple(p.id for p in upserts), tuple(deletes), len(ordered))


__all__ = ["MAX_WRITE_ITEMS", "UnknownPublicationError", "WriteRejectedError", "WriteReport", "apply_writes"]
