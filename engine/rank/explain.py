"""Why two publications are related: shared topics, shared authors, shared salient terms.

Shared terms are what a reader should recognise at a glance, so they come in two tiers:

1. names (engine/rank/names.py): countries matched across English, French and Arabic, acronyms, capitalised
   multi-word names kept whole, and single words the catalog writes capitalised mid-sentence ("Sahel");
   rarest in the catalog first, shown as written ("World Trade Organization", not "organ");
2. content words, rarest first, but only those that one of the two texts dwells on (uses repeatedly): a word
   that both texts use once in passing ("argue", "issue", "rise") is common language, not a shared subject.
   A pair that shares nothing of the kind gets no terms: on the demo catalog a fallback to the rarest words
   both texts use once brought back "offer", "agree", "entered" (README, "Why related").

Content words are matched by stem (English and French Snowball; Arabic without its article), so that
"multilateral" and "multilateralism" count as one subject, and "argue" shares the document frequency of the
catalog's boilerplate "argues" (and is cut with it). Everything that needs the catalog is computed once per
catalog; a request only intersects two sets and sorts the few shared terms.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from engine.catalog.lexical import STEMMER_OF, fold, function_words, stemmer, stopwords
from engine.catalog.records import Publication
from engine.rank.names import CALENDAR_WORDS, COUNTRY_PREFIX, NAME_PREFIX, country_name, fold_word, is_title_case, scan

# A term in more than this share of the catalog says nothing about why two items are related: it catches
# what the stop lists miss (think-tank boilerplate such as "policy" or "paper").
_MAX_DOCUMENT_FREQUENCY = 0.08
# The same within the languages a term is written in: in a catalog that is half English, "recommande" in a
# quarter of the French items is as much boilerplate as "recommends" in a quarter of the English ones, though
# it is in fewer items overall. On the demo catalog 0.2 cuts the French and Arabic counterparts of the words
# the catalog-wide cut-off removes in English (recommande, comme, vers; يتناول, يمكن).
_MAX_LANGUAGE_SHARE = 0.2
_MIN_DOCUMENTS_FOR_CUTOFF = 30
# A text dwells on a content word when it uses it at least twice (title and abstract), and one time more each
# time the text doubles past the catalog's median length: a 270-word paper repeats "response" or "policy" in
# passing, where a 70-word abstract names its subject twice.
_TOPICAL = 2
_ARABIC_ARTICLE = re.compile(r"^(?:[وفبك]?ال|لل)(?=...)")
_LATIN_STEMMED = frozenset({"en", "fr"})  # Arabic words are only stripped of their article (see word_key)
_LANGUAGE_OF_NAMES = {"ary": "ar"}  # Moroccan Arabic names countries as Modern Standard Arabic does
# Keys of the words seen, per language: a catalog repeats a few thousand words, stemmed once each.
_KEYS: defaultdict[str | None, dict[str, str]] = defaultdict(dict)
_KEYS_KEPT = 200_000


@dataclass(slots=True)
class TextTerms:
    """The terms of one text, one entry per occurrence (plain lists: Counter counts them in C)."""

    keys: list[str] = field(default_factory=list)
    surfaces: list[str] = field(default_factory=list)  # how each occurrence is written
    capitalised: list[str] = field(default_factory=list)  # content words written capitalised mid-sentence
    lowercase: list[str] = field(default_factory=list)  # ... and in lower case mid-sentence
    counts: Counter[str] = field(default_factory=Counter)

    def written(self) -> dict[str, tuple[str, ...]]:
        """Each key's written forms, most frequent (then longest) first."""
        pairs = Counter(zip(self.keys, self.surfaces, strict=True))
        forms = {key: (surface,) for key, surface in pairs}
        if len(forms) < len(pairs):  # some key is written in several ways: order those by use
            several: dict[str, list[str]] = {}
            for key, surface in sorted(pairs, key=lambda pair: (-pairs[pair], -len(pair[1]))):
                several.setdefault(key, []).append(surface)
            forms.update((key, tuple(written)) for key, written in several.items() if len(written) > 1)
        return forms


def guess_language(words: Iterable[str]) -> str | None:
    """English or French by function words (free text comes without a language), else None."""
    lists = stopwords()
    hits = Counter(lang for w in words for lang in ("en", "fr") if w in lists[lang])
    return max(hits, key=lambda lang: hits[lang]) if hits else None


def word_key(word: str, language: str | None) -> str:
    """The key of a content word: its folded stem (English, French), or an Arabic word without its article.

    Arabic keeps its root letters: Snowball's Arabic stemmer gives "والتعاون" and "التعاون" different stems,
    while taking off the article (and و ف ب ك ل before it) makes them one term.
    """
    cache = _KEYS[language]
    key = cache.get(word)
    if key is None:
        if len(cache) > _KEYS_KEPT:
            cache.clear()  # a bound on memory for a long-running service fed free text
        if "\u0600" <= word[:1] <= "\u06ff":
            key = _ARABIC_ARTICLE.sub("", fold_word(word))
        elif language in _LATIN_STEMMED:
            key = fold_word(stemmer(STEMMER_OF[language]).stemWord(word.casefold()))
        else:
            key = fold_word(word)
        cache[word] = key
    return key


@lru_cache(maxsize=1)
def _not_content_words() -> frozenset[str]:
    """Function words, months and weekdays: never a shared subject."""
    return function_words() | CALENDAR_WORDS


def analyse(title: str, abstract: str = "", language: str | None = None) -> TextTerms:
    """Names and content words of a title and abstract, with their counts, written forms and capitals."""
    result = TextTerms()
    stop = _not_content_words()
    keys, surfaces = result.keys, result.surfaces
    for text, headline in ((title, True), (abstract, False)):
        if not text:
            continue
        title_case = headline and is_title_case(text)
        found = scan(text, title_case=title_case)
        for key, surface in found.names:
            keys.append(key)
            surfaces.append(surface)
        words, gaps, folded = found.words, found.gaps, found.folded
        lang = language or guess_language(folded)
        # A hyphenated compound ("like-minded", "issue-based") is one term: its parts alone say little. So is a
        # name: "North" of "North Africa" or "Trade" of "World Trade Organization" is no subject of its own.
        compound = [k for k in range(1, len(words)) if gaps[k] == "-"]
        skip = found.consumed | found.named | set(compound) | {k - 1 for k in compound}
        for k in compound:
            if k - 1 in compound or not (words[k - 1].isalpha() and words[k].isalpha()):
                continue  # not the first hyphen of a chain, or digits ("post-1945", "COVID-19")
            end = k + 1
            while end < len(words) and gaps[end] == "-" and words[end].isalpha():
                end += 1
            if not found.consumed.intersection(range(k - 1, end)):
                keys.append("-".join([*folded[k - 1 : end - 1], word_key(words[end - 1], lang)]))
                surfaces.append("-".join(words[k - 1 : end]))
        lowercase, capitalised = result.lowercase, result.capitalised
        for i, word in enumerate(words):
            if len(word) < 3 or folded[i] in stop or i in skip or not word.isalpha():
                continue
            key = word_key(word, lang)
            keys.append(key)
            surfaces.append(word)
            if not (title_case or found.shouting or found.initial[i]):  # a capital there says nothing
                (capitalised if word[0].isupper() else lowercase).append(key)
    result.counts = Counter(keys)
    return result


def terms_of(text: str, *, title: str = "", language: str | None = None) -> set[str]:
    """Keys of a text's names and content words (stems; case, accents and Arabic spellings folded); a ``title``
    is read as a headline apart from the text, as for catalog items."""
    return set(analyse(title, text, language).counts)


def _usual(forms: Counter[str]) -> str:
    """The most frequent written form; on a tie the longer one ("United States" rather than "U.S")."""
    return max(forms.items(), key=lambda item: (item[1], len(item[0])))[0]


def _words_of(shown: str) -> tuple[str, ...]:
    """The folded words of a shown term, to leave out a term that a shown one already contains."""
    return tuple(fold(shown).replace("-", " ").split())


def _contains(longer: tuple[str, ...], shorter: tuple[str, ...]) -> bool:
    n = len(shorter)
    return 0 < n <= len(longer) and any(longer[i : i + n] == shorter for i in range(len(longer) - n + 1))


class TermStatistics:
    """Document frequencies and written forms of terms over a catalog, to explain why two items are related."""

    def __init__(self, publications: Iterable[Publication]) -> None:
        self._terms: dict[str, frozenset[str]] = {}
        self._repeated: dict[str, dict[str, int]] = {}  # per item, the content words it dwells on
        # Per item, its own spellings of a term, most used first, where they are not just the usual one.
        self._written: dict[str, dict[str, tuple[str, ...]]] = {}
        frequency: Counter[str] = Counter()
        by_language: defaultdict[str, Counter[str]] = defaultdict(Counter)
        documents: Counter[str] = Counter()
        written: Counter[tuple[str, str]] = Counter()  # (term, form)
        written_in: Counter[tuple[str, str, str]] = Counter()  # (name, language, form)
        capitalised: Counter[str] = Counter()
        lowercase: Counter[str] = Counter()
        lengths: dict[str, int] = {}
        for p in publications:
            found = analyse(p.title, p.abstract, p.language)
            language = p.language or ""
            terms = frozenset(found.counts)
            self._terms[p.id] = terms
            self._repeated[p.id] = {t: c for t, c in found.counts.items() if c >= _TOPICAL}
            self._written[p.id] = found.written()
            lengths[p.id] = len(found.keys)
            frequency.update(terms)
            by_language[language].update(terms)
            documents[language] += 1
            written.update(zip(found.keys, found.surfaces, strict=True))
            written_in.update((k, language, s) for k, s in zip(found.keys, found.surfaces, strict=True) if k[0] == "@")
            capitalised.update(found.capitalised)
            lowercase.update(found.lowercase)
        self._n = max(1, len(self._terms))
        self._idf = {
            t: math.log(self._n / df) for t, df in frequency.items() if _telling(t, df, by_language, documents)
        }
        # A single word is a name when the catalog writes it capitalised mid-sentence more often than not
        # ("Sahel", "Brussels"); "Multilateralism" capitalised once for emphasis stays a word.
        self._proper = frozenset(w for w, n in capitalised.items() if n > lowercase[w] and w in self._idf)
        surfaces: defaultdict[str, Counter[str]] = defaultdict(Counter)
        for (term, form), n in written.items():
            if term in self._idf:
                surfaces[term][form] = n
        self._shown = {t: self._display(t, forms) for t, forms in surfaces.items()}
        surfaces_in: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for (term, lang, form), n in written_in.items():
            if term in self._idf:
                surfaces_in[term, lang][form] = n
        self._shown_in = {key: _usual(forms) for key, forms in surfaces_in.items()}
        median = max(1.0, statistics.median(lengths.values())) if lengths else 1.0
        for pid, length in lengths.items():
            least = max(_TOPICAL, 1 + math.log2(max(length, 1) / median))
            self._repeated[pid] = {t: c for t, c in self._repeated[pid].items() if c >= least and t in self._idf}
            written = {t: self._cased(t, forms) for t, forms in self._written[pid].items() if t in self._idf}
            self._written[pid] = {t: forms for t, forms in written.items() if forms != (self._shown[t],)}

    def _cased(self, term: str, forms: tuple[str, ...]) -> tuple[str, ...]:
        """Written forms as shown: a name as written, a word in lower case."""
        if self.is_name(term):
            return forms
        if len(forms) == 1:
            return (forms[0].casefold(),)
        return tuple(dict.fromkeys(form.casefold() for form in forms))

    def _display(self, term: str, forms: Counter[str]) -> str:
        """How a term is shown by default: a name as most often written, a word in lower case."""
        if term.startswith(NAME_PREFIX):
            return _usual(forms)
        if len(forms) == 1:
            form = next(iter(forms))
            return form if term in self._proper else form.casefold()
        capitals = Counter({form: n for form, n in forms.items() if form[:1].isupper()})
        if term in self._proper and capitals:
            return _usual(capitals)
        return _usual(Counter(form.casefold() for form in forms.elements()))

    def terms(self, publication_id: str) -> frozenset[str]:
        """The term keys of an indexed publication."""
        return self._terms.get(publication_id, frozenset())

    def is_name(self, term: str) -> bool:
        """Whether a term key stands for a proper name (country, acronym, multi-word or capitalised name)."""
        return term.startswith(NAME_PREFIX) or term in self._proper

    def shown(self, term: str, *, language: str | None = None, source: str | None = None, item: str = "") -> str:
        """A term as the query's reader would recognise it.

        A form both texts use comes first (one stem may be "international" in one and "internationalism" in
        the other); then the query's own (``source``: its catalog id); for a name, its usual form in the query's
        ``language`` (a country named in French in the item is shown in English to an English query); then the
        ``item``'s; then the catalog's usual form.
        """
        usual = (self._shown.get(term, term),)
        mine = self._written.get(source or "", {}).get(term, usual) if source is not None else ()
        theirs = self._written.get(item, {}).get(term, usual)
        common = [form for form in mine if form in theirs]
        if common or mine:
            return (common or mine)[0]
        if language is not None and term.startswith(NAME_PREFIX):
            language = _LANGUAGE_OF_NAMES.get(language, language)
            if (term, language) in self._shown_in:
                return self._shown_in[term, language]
            if term.startswith(COUNTRY_PREFIX):
                return country_name(term.removeprefix(COUNTRY_PREFIX).upper(), language)
        return theirs[0]

    def shared_terms(
        self,
        query_terms: Iterable[str],
        publication_id: str,
        limit: int = 5,
        *,
        language: str | None = None,
        source: str | None = None,
    ) -> list[str]:
        """Up to ``limit`` terms both texts contain: names first, then words one of them dwells on; rarest first.

        ``language`` is the query's, to name a country in it; ``source`` is the query's catalog id when it has
        one, so that its spelling is shown and the words it dwells on count (for free text, the item's only).
        """
        item_repeated = self._repeated.get(publication_id, {})
        query_repeated = self._repeated.get(source, {}) if source is not None else {}
        names: list[tuple[bool, float, int, str]] = []
        words: list[tuple[float, str]] = []
        for term in set(query_terms) & self.terms(publication_id):
            idf = self._idf.get(term)
            if idf is None:
                continue
            if self.is_name(term):
                # Countries, acronyms and multi-word names before single capitalised words ("European").
                names.append((not term.startswith(NAME_PREFIX), -idf, -len(term), term))
            elif term in item_repeated or term in query_repeated:
                # log-scaled counts in both texts: a subject of both beats a subject of one.
                weight = (1 + math.log(item_repeated.get(term, 1))) * (1 + math.log(query_repeated.get(term, 1)))
                words.append((-idf * weight, term))
        candidates = [t for *_, t in sorted(names)] + [t for _, t in sorted(words)]
        shown = [self.shown(t, language=language, source=source, item=publication_id) for t in candidates]
        parts = [_words_of(form) for form in shown]
        chosen: list[str] = []
        for n, form in enumerate(shown):
            # "UN" next to "UN General Assembly", "Trade" next to "World Trade Organization": the longer says it.
            if any(len(other) > len(parts[n]) and _contains(other, parts[n]) for other in parts):
                continue
            if form not in chosen:
                chosen.append(form)
            if len(chosen) == limit:
                break
        return chosen


def _telling(term: str, df: int, by_language: dict[str, Counter[str]], documents: Counter[str]) -> bool:
    """Whether ``term`` is rare enough, in the catalog and among items of its languages, to explain a relation."""
    n = documents.total()
    if n >= _MIN_DOCUMENTS_FOR_CUTOFF and df > n * _MAX_DOCUMENT_FREQUENCY:
        return False
    home = sum(documents[lang] for lang, counts in by_language.items() if counts[term])
    return home < _MIN_DOCUMENTS_FOR_CUTOFF or df <= home * _MAX_LANGUAGE_SHARE


def shared_values(left: Iterable[str], right: Iterable[str]) -> list[str]:
    """Values in both lists, in the order of ``right`` (case-insensitive match)."""
    wanted = {v.casefold() for v in left}
    return [v for v in right if v.casefold() in wanted]
