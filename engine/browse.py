"""Catalog browsing: a simple, accent- and case-insensitive title search with filters and paging."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.catalog import Publication
from engine.lexical import fold

MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class BrowsePage:
    """One page of catalog entries and the number of all matches."""

    total: int
    items: list[Publication]


def browse(
    publications: Iterable[Publication],
    *,
    query: str | None = None,
    languages: Sequence[str] = (),
    types: Sequence[str] = (),
    limit: int = 20,
    offset: int = 0,
) -> BrowsePage:
    """Publications whose title (or, for untitled items, abstract) contains every word of ``query``.

    Newest first; items without a date last. ``limit`` is capped at :data:`MAX_LIMIT`.
    """
    words = fold(query).split() if query else []
    matches = []
    for p in publications:
        if languages and p.language not in languages:
            continue
        if types and p.type not in types:
            continue
        if words:
            haystack = fold(p.title or p.abstract)
            if not all(word in haystack for word in words):
                continue
        matches.append(p)
    matches.sort(key=lambda p: (p.published is not None, p.published or "", p.id), reverse=True)
    limit = max(0, min(limit, MAX_LIMIT))
    return BrowsePage(total=len(matches), items=matches[offset : offset + limit])
