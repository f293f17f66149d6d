"""What a caller may ask of a related-items query: filters, policies and re-ranking options, validated."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Literal

from engine.catalog.records import Publication

LanguagePolicy = Literal["any", "same", "prefer"]
LANGUAGE_POLICIES: tuple[str, ...] = ("any", "same", "prefer")
MAX_K = 100
# The deepest result a query may reach (offset + k): the work of a request grows with it (a diverse list
# re-ranks every item above the page), and no "related" block is read a thousand items deep.
MAX_WINDOW = 1_000
# Up to this depth, without diversity or explanations, an answer is a lookup in the stored neighbour
# lists (or a small search) and a filter: cheap enough to run on the event loop.
LIGHT_WINDOW = 50


class InvalidQueryError(ValueError):
    """A query option out of range; ``parameter`` names it for the caller (HTTP maps it to 422)."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        self.message = message
        super().__init__(f"invalid {parameter}: {message}")


@dataclass(frozen=True, slots=True)
class RelatedQuery:
    """Options of one related-items request. Construct it, then call :meth:`validated`.

    Dates are inclusive ISO ``YYYY-MM-DD`` bounds; an item without a date fails any date filter.
    ``diversity`` is the MMR trade-off: 0 ranks by similarity alone, 1 by novelty alone.
    ``min_score`` drops items below a cosine similarity, but at least ``min_results`` items are kept.
    ``collapse_translations`` keeps one entry per translation group (its best-ranked version); the
    item's ``translations`` then lead to the other versions.
    """

    k: int = 10
    offset: int = 0
    languages: tuple[str, ...] = ()
    language_policy: LanguagePolicy = "any"
    types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    published_after: str | None = None
    published_before: str | None = None
    include_translations: bool = False
    diversity: float = 0.0
    min_score: float | None = None
    min_results: int = 0
    explain: bool = False
    collapse_translations: bool = False
    exclude_languages: tuple[str, ...] = field(default=())
    # Set by validated() on the copy it returns, so an engine call on a query the service validated does not
    # check it again; not an init field, so a dataclasses.replace() copy is checked afresh.
    _checked: bool = field(default=False, init=False, repr=False, compare=False)

    def validated(self) -> RelatedQuery:
        """A normalised copy if every option is in range, else :class:`InvalidQueryError` naming the option."""
        if self._checked:
            return self
        if not 1 <= self.k <= MAX_K:
            raise InvalidQueryError("k", f"must be between 1 and {MAX_K}, got {self.k}")
        if self.offset < 0:
            raise InvalidQueryError("offset", f"must be 0 or more, got {self.offset}")
        if self.offset + self.k > MAX_WINDOW:
            raise InvalidQueryError(
                "offset",
                f"offset + k must be at most {MAX_WINDOW}, got offset={self.offset} and k={self.k}: "
                "related lists are read from the top; ask for an earlier page",
            )
        if self.language_policy not in LANGUAGE_POLICIES:
            raise InvalidQueryError(
                "language_policy", f"must be one of {LANGUAGE_POLICIES}, got {self.language_policy!r}"
            )
        if not 0.0 <= self.diversity <= 1.0:
            raise InvalidQueryError("diversity", f"must be between 0 and 1, got {self.diversity}")
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise InvalidQueryError("min_score", f"must be a cosine similarity between -1 and 1, got {self.min_score}")
        if not 0 <= self.min_results <= MAX_K:
            raise InvalidQueryError("min_results", f"must be between 0 and {MAX_K}, got {self.min_results}")
        after = _date("published_after", self.published_after)
        before = _date("published_before", self.published_before)
        if after and before and after > before:
            raise InvalidQueryError("published_after", f"{after} is later than published_before {before}")
        # Dates normalised to YYYY-MM-DD, so they compare as strings with catalog dates.
        checked = replace(
            self,
            published_after=after.isoformat() if after else None,
            published_before=before.isoformat() if before else None,
        )
        object.__setattr__(checked, "_checked", True)  # frozen: set once, on the copy only
        return checked

    @property
    def light(self) -> bool:
        """Whether answering costs a lookup in the stored neighbour lists (or, for a build without them, one
        search of ``offset + k`` items): a shallow page without filters, language policy, collapsing,
        diversity or explanations. Anything else may widen its search to the whole index (a filter that few
        items pass, or collapsing, which asks for three times the page), re-rank or explain, and the service
        runs it off its event loop."""
        return (
            not self.explain
            and not self.collapse_translations
            and self.diversity <= 0
            and self.offset + self.k <= LIGHT_WINDOW
            and self.language_policy == "any"
            and not self.has_filters()
        )

    def has_filters(self) -> bool:
        """Whether :meth:`accepts` can refuse anything (languages, types or dates are set)."""
        return bool(
            self.languages
            or self.exclude_languages
            or self.types
            or self.exclude_types
            or self.published_after
            or self.published_before
        )

    def accepts(self, publication: Publication) -> bool:
        """Whether ``publication`` passes the hard filters (languages, types, dates)."""
        if self.languages and publication.language not in self.languages:
            return False
        if publication.language in self.exclude_languages:
            return False
        if self.types and publication.type not in self.types:
            return False
        if publication.type is not None and publication.type in self.exclude_types:
            return False
        if self.published_after or self.published_before:
            if publication.published is None:
                return False
            if self.published_after and publication.published < self.published_after:
                return False
            if self.published_before and publication.published > self.published_before:
                return False
        return True

    def describe_filters(self) -> str:
        """The active filters, for an empty result's ``reason``."""
        parts = []
        for name in ("languages", "types", "exclude_types", "exclude_languages"):
            if getattr(self, name):
                parts.append(f"{name}={list(getattr(self, name))}")
        for name in ("published_after", "published_before", "min_score"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)}")
        if self.language_policy == "same":
            parts.append("language_policy=same")
        return ", ".join(parts) or "no filters"


def _date(parameter: str, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidQueryError(parameter, f"{value!r} is not a date YYYY-MM-DD") from None
