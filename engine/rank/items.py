"""Ranked candidates -> :class:`RelatedItem`: snippets, translation links and explanations.

The per-publication parts of a response (snippet, translation links) are computed once per item and
kept, so a request only adds what depends on the query: score, rank and the explanation.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from engine.catalog.records import Publication
from engine.rank.candidates import Candidate
from engine.rank.explain import TermStatistics, shared_values
from engine.rank.query import RelatedQuery
from engine.rank.results import Explanation, RelatedItem, Translation

SNIPPET_CHARS = 220


@dataclass(frozen=True, slots=True)
class Seed:
    """What a query is related to: a vector plus what is known about its source."""

    vector: np.ndarray
    language: str | None
    excluded: frozenset[str]
    group: frozenset[str]  # ids that are versions of the query itself
    source: str | None = None  # the catalog item the vector belongs to (its neighbour list may answer)
    pins: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    terms: frozenset[str] = frozenset()


class ItemBuilder:
    """Builds the items of a response for one catalog; dict writes are atomic, so threads may share it."""

    def __init__(self, publications: Mapping[str, Publication], groups: Mapping[str, tuple[str, ...]]) -> None:
        self.publications = publications
        self.groups = groups  # translation group -> its members' ids
        self._terms: TermStatistics | None = None
        self._terms_lock = threading.Lock()
        self._translation_cache: dict[str, tuple[Translation, ...]] = {}
        # Per item, what a response shows of it whatever the query: its snippet and translation links.
        self._shown: dict[str, tuple[str, tuple[Translation, ...]]] = {}

    def translations_of(self, publication: Publication) -> tuple[Translation, ...]:
        """The other language versions of ``publication`` (its group, itself excluded)."""
        cached = self._translation_cache.get(publication.id)
        if cached is None:
            members = self.groups.get(publication.group, ()) if publication.group else ()
            cached = tuple(Translation(i, self.publications[i].language) for i in members if i != publication.id)
            self._translation_cache[publication.id] = cached
        return cached

    def term_statistics(self) -> TermStatistics:
        """Term statistics of the catalog, for explanations."""
        if self._terms is None:
            # Once: a caller arriving while another builds them waits for that build instead of repeating it.
            with self._terms_lock:
                if self._terms is None:
                    self._terms = TermStatistics(self.publications.values())
        return self._terms

    def item(self, seed: Seed, query: RelatedQuery, candidate: Candidate, rank: int) -> RelatedItem:
        """The response entry of ``candidate`` at ``rank`` for a query from ``seed``."""
        p, score, pinned = candidate.publication, candidate.similarity, candidate.pinned
        shown = self._shown.get(p.id)
        if shown is None:
            shown = self._shown[p.id] = (snippet(p.abstract), self.translations_of(p))
        explanation = None
        if query.explain:
            explanation = Explanation(
                shared_topics=tuple(shared_values(seed.topics, p.topics)),
                shared_authors=tuple(shared_values(seed.authors, p.authors)),
                shared_terms=tuple(
                    # The query's language and catalog id: names are shown as the query writes them.
                    self.term_statistics().shared_terms(seed.terms, p.id, language=seed.language, source=seed.source)
                ),
                similarity=round(score, 6),
                calibrated=round(candidate.calibrated, 4),
                redundancy=round(candidate.redundancy, 6),
                pinned=pinned,
                same_language=None if seed.language is None else p.language == seed.language,
            )
        return RelatedItem(
            id=p.id,
            title=p.title,
            language=p.language,
            type=p.type,
            published=p.published,
            url=p.url,
            score=round(score, 6),
            rank=rank,
            authors=p.authors,
            snippet=shown[0],
            is_translation=p.id in seed.group,
            translations=shown[1],
            pinned=pinned,
            explanation=explanation,
            image=p.metadata.get("image"),
        )


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """The start of a text, cut at a word boundary, with an ellipsis when cut."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:.-")
    return cut + " …"
