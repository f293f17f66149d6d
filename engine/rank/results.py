"""What a related-items query returns, and the errors it can raise."""

from __future__ import annotations

from dataclasses import dataclass

from engine.catalog.records import UnknownPublicationError as UnknownPublicationError  # re-exported


class TextTooLongError(ValueError):
    """A free-text query over the documented limits (HTTP maps it to 413)."""


class EncoderUnavailableError(RuntimeError):
    """A free-text query reached a recommender loaded without a model."""


# The response types below are dataclasses with a __dict__ (no slots): orjson serialises those much faster
# (docs/performance.md). Translation and Explanation stay frozen, since translation links are shared
# between responses; a RelatedItem is built fresh for each response, so it is left mutable, which makes it
# cheaper to construct.


@dataclass(frozen=True)
class Translation:
    """Another language version of a publication."""

    id: str
    language: str | None


@dataclass(frozen=True)
class Explanation:
    """Why an item is in the list, and the parts of its position."""

    shared_topics: tuple[str, ...]
    shared_authors: tuple[str, ...]
    shared_terms: tuple[str, ...]
    similarity: float
    calibrated: float  # the ranking key: the cosine as a z-score within the item's language
    redundancy: float  # max cosine to items ranked above it (what MMR penalises)
    pinned: bool
    same_language: bool | None


@dataclass
class RelatedItem:
    """One ranked related publication."""

    id: str
    title: str
    language: str | None
    type: str | None
    published: str | None
    url: str | None
    score: float
    rank: int
    authors: tuple[str, ...] = ()
    snippet: str = ""
    is_translation: bool = False
    translations: tuple[Translation, ...] = ()
    pinned: bool = False
    explanation: Explanation | None = None
    image: str | None = None  # the catalog's optional `image` (http/https, checked at load)


@dataclass(frozen=True, slots=True)
class RelatedResult:
    """A page of related items; ``reason`` says why it is empty; ``searched``: the index was searched (no
    stored neighbour list answered), for the service's metrics."""

    items: list[RelatedItem]
    reason: str | None = None
    searched: bool = False

    def payload(self, publication_id: str | None, build_id: str | None, offset: int, k: int) -> dict[str, object]:
        """The related route's JSON body (``RelatedResponse``), for the service and the static export alike, so
        an exported file is the route's answer byte for byte."""
        return {
            "id": publication_id,
            "build_id": build_id,
            "offset": offset,
            "k": k,
            "items": self.items,
            "reason": self.reason,
        }
