"""Why two publications are related: shared topics, shared authors, shared salient terms."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable

from engine.catalog import Publication
from engine.lexical import all_stopwords, fold

# Words of 3+ letters (Latin with accents, Arabic) or acronyms with digits such as G20 or COP28.
_WORD = re.compile(r"[^\W\d_]{3,}|[A-Z]{1,5}\d{1,4}", re.UNICODE)
# A term in more than this share of the catalog says nothing about why two items are related: it catches
# what the stop lists miss (think-tank boilerplate such as "policy" or "paper").
_MAX_DOCUMENT_FREQUENCY = 0.08
_MIN_DOCUMENTS_FOR_CUTOFF = 30


def terms_of(text: str) -> set[str]:
    """Normalised content words of a text (case, accents and Arabic spellings folded; stop words out)."""
    stop = all_stopwords()
    return {word for word in map(fold, _WORD.findall(text)) if word not in stop}


class TermStatistics:
    """Document frequencies over a catalog, to rank shared terms by how telling they are (idf)."""

    def __init__(self, publications: Iterable[Publication]) -> None:
        self._terms: dict[str, frozenset[str]] = {}
        frequency: Counter[str] = Counter()
        for p in publications:
            terms = frozenset(terms_of(f"{p.title} {p.abstract}"))
            self._terms[p.id] = terms
            frequency.update(terms)
        self._n = max(1, len(self._terms))
        limit = self._n * _MAX_DOCUMENT_FREQUENCY if self._n >= _MIN_DOCUMENTS_FOR_CUTOFF else self._n
        self._idf = {t: math.log(self._n / df) for t, df in frequency.items() if df <= limit}

    def terms(self, publication_id: str) -> frozenset[str]:
        """The terms of an indexed publication."""
        return self._terms.get(publication_id, frozenset())

    def shared_terms(self, query_terms: Iterable[str], publication_id: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` terms both texts contain, most telling first."""
        shared = [t for t in set(query_terms) & self.terms(publication_id) if t in self._idf]
        shared.sort(key=lambda t: (-self._idf[t], t))
        return shared[:limit]


def shared_values(left: Iterable[str], right: Iterable[str]) -> list[str]:
    """Values in both lists, in the order of ``right`` (case-insensitive match)."""
    wanted = {v.casefold() for v in left}
    return [v for v in right if v.casefold() in wanted]
