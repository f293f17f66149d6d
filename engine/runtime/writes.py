"""Catalog writes: checked, encoded (only the written items), then committed to the catalog store.

A write is acknowledged once the store has committed it durably (engine/index/catalog_store.py); nothing is
rebuilt. Every worker then serves it from the delta beside its build (engine/index/delta.py), and the next
``scripts/build_index.py`` run folds it into a build.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.catalog.records import Publication
from engine.catalog.text import publication_text
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.rank.results import EncoderUnavailableError

MAX_WRITE_ITEMS = 100

# What the store keeps of an upsert: the publication, the model and the chunk vectors it encoded.
EncodedUpsert = tuple[Publication, str, tuple[np.ndarray, np.ndarray]]


class WriteRejectedError(ValueError):
    """A write that breaks a documented limit (HTTP maps it to 422)."""


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What a write changed, and the store generation that holds it."""

    build_id: str
    generation: int
    upserted: tuple[str, ...]
    deleted: tuple[str, ...]
    publications: int


def check_write(upserts: Sequence[Publication], deletes: Sequence[str]) -> None:
    """:class:`WriteRejectedError` for a write over the limits or naming an id twice."""
    if len(upserts) + len(deletes) > MAX_WRITE_ITEMS:
        raise WriteRejectedError(f"at most {MAX_WRITE_ITEMS} publications per write, got {len(upserts) + len(deletes)}")
    repeated = sorted(key for key, n in Counter([*(p.id for p in upserts), *deletes]).items() if n > 1)
    if repeated:
        raise WriteRejectedError(f"duplicate ids in one write: {', '.join(repeated)}; send each publication once")


def encode_upserts(
    encoder: Encoder | None, upserts: Sequence[Publication], cache: EmbeddingCache | None = None
) -> list[EncodedUpsert]:
    """The chunk vectors of the written publications, for the store (the cache spares a repeated text)."""
    if not upserts:
        return []
    if encoder is None:
        raise EncoderUnavailableError("this service was started without a model; it cannot encode new items")
    texts = [publication_text(p) for p in upserts]
    chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in upserts])
    return [(p, encoder.name, parts) for p, parts in zip(upserts, chunks.split(), strict=True)]


__all__ = ["MAX_WRITE_ITEMS", "WriteRejectedError", "WriteReport", "check_write", "encode_upserts"]
