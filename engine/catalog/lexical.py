"""Text normalisation shared by lexical matching: Arabic letter forms, accents, stop words."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

_ARABIC_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed\u0640]")  # harakat + tatweel
_ARABIC_LETTERS = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
# bm25s ships no Arabic stop words; these are the most frequent function words of Modern Standard Arabic
# (after the letter normalisation above). Moroccan Arabic (ary) shares most of them.
_ARABIC_STOPWORDS_TEXT = (
    "في من علي الي عن ان او ثم مع هذا هذه ذلك تلك التي "
    "الذي الذين كان كانت يكون هو هي هم نحن انت ما لا لم لن "
    "قد كل بعض بين عند حتي اذا لكن او اي غير بعد قبل حيث "
    "كما ايضا فقط منذ خلال "
)
ARABIC_STOPWORDS = frozenset(_ARABIC_STOPWORDS_TEXT.split())
STEMMER_OF = {"en": "english", "fr": "french", "ar": "arabic", "ary": "arabic"}


@lru_cache(maxsize=8)
def stemmer(language: str) -> Any:
    import Stemmer

    return Stemmer.Stemmer(language)


@lru_cache(maxsize=1)
def stopwords() -> dict[str, frozenset[str]]:
    from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_FRENCH

    return {
        "en": frozenset(STOPWORDS_EN),
        "fr": frozenset(STOPWORDS_FRENCH),
        "ar": ARABIC_STOPWORDS,
        "ary": ARABIC_STOPWORDS,
    }


def strip_arabic_marks(text: str) -> str:
    """Text without Arabic diacritics and tatweel (letters kept as written): combining marks split words in regexes."""
    return _ARABIC_DIACRITICS.sub("", text)


def normalise_arabic(text: str) -> str:
    """Strip Arabic diacritics and tatweel, unify alef, ya and ta marbuta spellings."""
    return _ARABIC_DIACRITICS.sub("", text).translate(_ARABIC_LETTERS)


def fold(text: str) -> str:
    """Lower-case without accents or Arabic diacritics, for matching as people type."""
    decomposed = unicodedata.normalize("NFKD", normalise_arabic(text.casefold()))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=1)
def all_stopwords() -> frozenset[str]:
    """Stop words of every supported language, folded like :func:`fold` output."""
    return frozenset(fold(w) for words in stopwords().values() for w in words)


@lru_cache(maxsize=1)
def function_words() -> frozenset[str]:
    """Function words of every supported language, folded: :func:`all_stopwords` with NLTK's English list.

    Explanations show words to people, so "which", "them" or "have" must never be among them; bm25s's short
    English list (33 words) misses those. :func:`stopwords` stays as it is for the lexical baselines.
    """
    from bm25s.stopwords import STOPWORDS_EN_PLUS  # NLTK's English list (179 words)

    return all_stopwords() | frozenset(fold(w) for w in STOPWORDS_EN_PLUS)
