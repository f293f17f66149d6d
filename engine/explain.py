"""Why two publications are related: shared topics, shared authors, shared salient terms."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from engine.catalog import Publication

# Words of 3+ letters (Latin with accents, Arabic) or acronyms with digits such as G20 or COP28.
_WORD = re.compile(r"[^\W\d_]{3,}|[A-Z]{1,5}\d{1,4}", re.UNICODE)
# A term in more than this share of the catalog says nothing about why two items are related. This
# removes stop words in every language from the corpus itself, instead of per-language stop lists.
_MAX_DOCUMENT_FREQUENCY = 0.08
_MIN_DOCUMENTS_FOR_CUTOFF = 30


def _normalise(word: str) -> str:
    # Case- and accent-insensitive; Arabic diacritics (harakat) are combining marks and go too.
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def terms_of(text: str) -> set[str]:
    """Normalised content words of a text."""
    return {_normalise(w) for w in _WORD.findall(text)}


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
