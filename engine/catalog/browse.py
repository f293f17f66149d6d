"""Catalog browsing: a simple, accent- and case-insensitive title search with filters and paging."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.catalog.lexical import fold
from engine.catalog.records import Publication

MAX_LIMIT = 100
MAX_OFFSET = 10_000


@dataclass(frozen=True, slots=True)
class BrowsePage:
    """One page of catalog entries and the number of all matches."""

    total: int
    items: list[Publication]


class CatalogBrowser:
    """Browsing one catalog: its newest-first order and folded titles are computed once, so a request costs
    a pass of substring tests over the catalog, not a fold and a sort of it."""

    def __init__(self, publications: Iterable[Publication]) -> None:
        # Newest first; items without a date last.
        self._ordered = sorted(publications, key=lambda p: (p.published is not None, p.published or "", p.id))
        self._ordered.reverse()
        self._folded = [fold(p.title or p.abstract) for p in self._ordered]

    def page(
        self,
        *,
        query: str | None = None,
        languages: Sequence[str] = (),
        types: Sequence[str] = (),
        limit: int = 20,
        offset: int = 0,
    ) -> BrowsePage:
        """Publications whose title (or, for untitled items, abstract) contains every word of ``query``.

        Newest first; ``limit`` is capped at :data:`MAX_LIMIT`.
        """
        words = fold(query).split() if query else []
        matches = [
            p
            for p, haystack in zip(self._ordered, self._folded, strict=True)
            if (not languages or p.language in languages)
            and (not types or p.type in types)
            and all(word in haystack for word in words)
        ]
        limit = max(0, min(limit, MAX_LIMIT))
        return BrowsePage(total=len(matches), items=matches[offset : offset + limit])
