"""Proper names in a text: countries (en/fr/ar, via pycountry), acronyms and capitalised multi-word names.

Names are what a reader recognises first in a "why related" explanation, so they get keys of their own:

* a country, however it is written (``Morocco``, ``Maroc``, ``المغرب``, ``au Maroc``, ``بالمغرب``), is
  ``@iso:ma``, so that an English and a French text naming it share one term;
* an acronym (``WTO``, ``G20``, ``COP28``, ``SDGs``) is ``@`` + its folded form, plural ``s`` dropped;
* a run of capitalised Latin-script words (``World Trade Organization``, ``Lake Chad``, ``Policy Center for
  the New South``) is ``@`` + its folded words, kept whole.

Keys start with ``@``, which no folded content word contains, so names never collide with plain words.
"""

from __future__ import annotations

import calendar
import gettext
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from engine.catalog.lexical import fold, function_words, strip_arabic_marks

NAME_PREFIX = "@"
COUNTRY_PREFIX = "@iso:"
_TOKEN_SPLIT = re.compile(r"([^\W_]+)")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
# What ends a sentence (or starts a heading, quote or bracket): the next word's capital says nothing.
_BOUNDARY = re.compile(r"[.!?:;\n\r\"“”«»()\[\]•\u061f\u06d4]")
# Inside a multi-word name, words may be joined by one space, a hyphen or an elision apostrophe.
_NAME_GAP = re.compile(r"[ \u00a0]|-|['’]")
# Lower-case words allowed inside a name ("Bank of the South", "Côte d'Ivoire"); "and"/"et" are not, or
# "Brazil, Chile, Norway and the United Kingdom" would read as one name.
_CONNECTORS = frozenset({"of", "for", "the", "on", "de", "du", "des", "la", "le", "les", "d", "l", "al", "el"})
_ROMAN = re.compile(r"^[IVXLC]+$")
# English months and weekdays are capitalised but name no subject ("held last June"); French ones are not
# capitalised. The C locale's calendar names are English.
CALENDAR_WORDS = frozenset(w.casefold() for w in [*calendar.month_name[1:], *calendar.day_name])
# Short forms that pycountry does not list (it has "Russian Federation", "Viet Nam", "Türkiye"), yet texts use.
_COUNTRY_ALIASES = {
    "US": ("US", "U.S.", "USA", "U.S.A."),
    "GB": ("UK", "U.K.", "Britain", "Great Britain"),
    "RU": ("Russia", "روسيا"),
    "SY": ("Syria", "Syrie", "سوريا"),
    "VN": ("Vietnam",),
    "TR": ("Turkey", "تركيا"),
    "CI": ("Ivory Coast",),
    "CV": ("Cape Verde",),
    "CZ": ("Czech Republic",),
    "LA": ("Laos",),
    "KR": ("كوريا الجنوبية",),
    "KP": ("كوريا الشمالية",),
    "PS": ("Palestine", "فلسطين"),
}


@dataclass(slots=True)
class NameScan:
    """What :func:`scan` found in one text: its words (parallel lists, for speed over a whole catalog) and names."""

    words: list[str]
    gaps: list[str]  # what precedes each word in the text
    initial: list[bool]  # the word starts a sentence (or follows a bracket or quote): its capital tells nothing
    folded: list[str]
    names: list[tuple[str, str]] = field(default_factory=list)  # (key, surface) per occurrence
    consumed: set[int] = field(default_factory=set)  # words of a country name or an acronym: not content words
    named: set[int] = field(default_factory=set)  # words of any name: their capital is the name's, not the word's
    shouting: bool = False  # written in capitals: no capital in it tells anything

    def text_of(self, start: int, end: int) -> str:
        """Words ``start:end`` with what joined them in the text (one space for any whitespace)."""
        parts = [self.words[start]]
        for k in range(start + 1, end):
            parts.append(" " if self.gaps[k].isspace() else self.gaps[k])
            parts.append(self.words[k])
        return "".join(parts)


# Texts of a catalog reuse a few thousand words: folding each once is most of the saving of a catalog scan.
fold_word = lru_cache(maxsize=1 << 17)(fold)


def tokenize(text: str) -> tuple[list[str], list[str]]:
    """Words of ``text`` (letters and digits; hyphens and apostrophes split) and the text before each."""
    parts = _TOKEN_SPLIT.split(text)
    return parts[1::2], parts[0:-1:2]


def prepare(text: str) -> str:
    """``text`` composed (NFC) without Arabic vowel marks, so that no combining mark splits a word."""
    return strip_arabic_marks(unicodedata.normalize("NFC", text))


def is_title_case(text: str) -> bool:
    """Whether most longer words of ``text`` are capitalised, as in an English headline."""
    words = [w for w in tokenize(text)[0] if len(w) >= 4 and not w.isupper() and w[0].isalpha()]
    words = [w for w in words if fold(w) not in function_words()]
    return len(words) >= 2 and sum(w[0].isupper() for w in words) >= 0.6 * len(words)


def is_acronym(word: str) -> bool:
    """``WTO``, ``G20``, ``COP28``, ``SDGs``, ``AfCFTA``: two capitals (or a capital and digits), few lower-case."""
    if not word[:1].isupper() or (word[1:2].islower() and not word[2:3].isupper()):
        return False  # most words: a lower-case first letter, or a capital and two lower-case letters
    if not (2 <= len(word) <= 10 and word.isascii() and word[0].isupper()) or _ROMAN.match(word):
        return False
    core = word[:-1] if word.endswith("s") and word[-2:-1].isupper() else word
    capitals = sum(ch.isupper() for ch in core)
    if re.search(r"[a-z]{2}", core) or (capitals < 2 and not (capitals == 1 and core[1:].isdigit())):
        return False
    return not core[-1].islower() or capitals >= 3  # "AfCFTA", "ZLECAf" yes; "Mr", "Dr" no


def acronym_key(word: str) -> str:
    """The key of an acronym: folded, plural ``s`` dropped (``SDGs`` and ``SDG`` are one term)."""
    core = word[:-1] if word.endswith("s") and word[-2:-1].isupper() else word
    return NAME_PREFIX + core.casefold()


def name_key(words: list[str]) -> str:
    """The key of a multi-word name: its folded words, whatever joined them."""
    return NAME_PREFIX + " ".join(fold_word(w) for w in words)


def _words(name: str) -> tuple[str, ...]:
    return tuple(fold_word(w) for w in tokenize(prepare(name))[0])


@lru_cache(maxsize=1)
def _country_translations() -> dict[str, gettext.NullTranslations]:
    import pycountry

    return {
        language: gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=[language], fallback=True)
        for language in ("fr", "ar")
    }


def _country_forms(country: object) -> list[str]:
    """English names of a pycountry record (common, short, official), best first."""
    return [v for v in (getattr(country, a, None) for a in ("common_name", "name", "official_name")) if v]


@lru_cache(maxsize=1)
def country_gazetteer() -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """Country names in English, French and Arabic, folded: first word -> [(words, ISO code)], longest first.

    Full names win over the part before a comma ("Korea, Republic of" -> "Korea"), and such a part naming two
    countries (Korea, Congo, Virgin Islands) is left out rather than guessed.
    """
    import pycountry

    translations = _country_translations()
    full: dict[tuple[str, ...], str] = {}
    heads: dict[tuple[str, ...], set[str]] = {}
    for country in pycountry.countries:
        code = country.alpha_2
        english = _country_forms(country)
        for name in english + [t.gettext(n) for t in translations.values() for n in english]:
            full.setdefault(_words(name), code)
            if "," in name:
                heads.setdefault(_words(name.split(",")[0]), set()).add(code)
    for code, aliases in _COUNTRY_ALIASES.items():
        for alias in aliases:
            full.setdefault(_words(alias), code)
    names = dict(full)
    for words, codes in heads.items():
        if len(codes) == 1 and words not in names:
            names[words] = next(iter(codes))
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    for words, code in names.items():
        if words:
            index.setdefault(words[0], []).append((words, code))
    for entries in index.values():
        entries.sort(key=lambda e: -len(e[0]))
    return index


@lru_cache(maxsize=512)
def country_name(code: str, language: str | None) -> str:
    """A country's usual name in ``language`` (en, fr or ar; English otherwise), from pycountry."""
    import pycountry

    country = pycountry.countries.get(alpha_2=code)
    if country is None:
        return code
    name = _country_forms(country)[0]
    translation = _country_translations().get(language or "")
    if translation is not None:
        name = translation.gettext(name)
    return name.split(",")[0]  # "Korea, Republic of" reads as "Korea"


def _arabic_variants(word: str) -> list[tuple[str, int]]:
    """``word`` and the word without the clitics a country name may carry: و or ف, then ب ك or ل (لل read as
    ال); each with the number of leading letters that are not part of the name."""
    variants = [(word, 0)]
    if len(word) > 3 and word[0] in "وف":
        variants.append((word[1:], 1))
    for stem, clitic in list(variants):
        if len(stem) > 3 and stem[0] in "بكل":
            variants.append((stem[1:], clitic + 1))
        if stem.startswith("لل") and len(stem) > 3:
            variants.append(("ال" + stem[2:], clitic + 1))
    return variants


def _match_country(found: NameScan, i: int) -> tuple[int, str, int] | None:
    """The longest country name starting at word ``i``: (number of words, ISO code, letters of a clitic
    before it, as in "والمغرب"), or None."""
    words, folded = found.words, found.folded
    arabic = bool(_ARABIC.match(words[i]))
    if not arabic and not words[i][0].isupper():
        return None  # "chad", "turkey" in lower case are not the countries
    gazetteer = country_gazetteer()
    for first, clitic in _arabic_variants(folded[i]) if arabic else [(folded[i], 0)]:
        for name, code in gazetteer.get(first, ()):
            n = len(name)
            if tuple(folded[i + 1 : i + n]) != name[1:]:
                continue
            if not arabic and sum(map(len, name)) <= 3 and not all(w.isupper() for w in words[i : i + n]):
                continue  # "US", "UK" only in capitals: "us" is a pronoun
            if any(not _NAME_GAP.fullmatch(g) and g != "." for g in found.gaps[i + 1 : i + n]):
                continue  # a name does not run across a comma or a full stop ("U.S." aside)
            return n, code, clitic
    return None


def scan(text: str, *, title_case: bool = False) -> NameScan:
    """Countries, acronyms and capitalised multi-word names of ``text``.

    In a ``title_case`` headline every word is capitalised, so capitals say nothing: only countries and
    acronyms are looked for.
    """
    words, gaps = tokenize(prepare(text))
    initial = [k == 0 or (g != " " and _BOUNDARY.search(g) is not None) for k, g in enumerate(gaps)]
    found = NameScan(words, gaps, initial, [fold_word(w) for w in words])
    folded = found.folded
    # Capitalised Latin words that may be part of a name (Arabic has no capitals; a month is no name).
    capital = [w[0].isupper() and f not in CALENDAR_WORDS for w, f in zip(words, folded, strict=True)]
    gazetteer = country_gazetteer()
    countries: set[tuple[int, int]] = set()
    i = 0
    while i < len(words):
        first = words[i][0]
        candidate = folded[i] in gazetteer if capital[i] else "\u0600" <= first <= "\u06ff"
        match = _match_country(found, i) if candidate else None
        if match is None:
            i += 1
            continue
        n, code, clitic = match
        surface = found.text_of(i, i + n)[clitic:]
        if "." in surface:
            surface += "."  # "U.S." lost its last full stop to the gap after it
        if clitic and surface.startswith("ل") and not surface.startswith("ال"):
            surface = "ا" + surface  # "للمغرب" names "المغرب"
        found.names.append((COUNTRY_PREFIX + code.casefold(), surface))
        found.consumed.update(range(i, i + n))
        countries.add((i, i + n))
        i += n
    # In a text written in capitals ("THE END OF AID IN AFRICA") every word looks like an acronym.
    shouting = found.shouting = is_shouting(words)
    stop = function_words()
    for i, word in enumerate(words):
        if shouting or folded[i] in stop:
            continue  # "THE", "DANS": function words in capitals are still function words
        if capital[i] and i not in found.consumed and is_acronym(word):
            surface = word
            if i + 1 < len(words) and gaps[i + 1] == "-" and words[i + 1].isdigit():
                surface = f"{word}-{words[i + 1]}"  # COVID-19 is read whole
            found.names.append((acronym_key(word), surface))
            found.consumed.add(i)
    if not (title_case or shouting):
        _add_runs(found, capital, countries)
    return found


def is_shouting(words: list[str]) -> bool:
    """Whether a text is written in capitals: most of its words of three letters or more are upper case."""
    long = [w for w in words if len(w) >= 3 and w.isalpha() and not ("\u0600" <= w[0] <= "\u06ff")]
    return len(long) >= 3 and sum(w.isupper() for w in long) >= 0.6 * len(long)


def _add_runs(found: NameScan, capital: list[bool], countries: set[tuple[int, int]]) -> None:
    """Runs of two or more capitalised words (connectors allowed inside) as whole names."""
    words, gaps, initial, folded = found.words, found.gaps, found.initial, found.folded
    capitals = [k for k, c in enumerate(capital) if c]
    elsewhere = {folded[k] for k in capitals if not initial[k]}
    after = 0  # the first word not yet part of a run
    for i in capitals:
        if i < after:
            continue
        j = i + 1  # extend while the next word is capitalised, or a connector followed by one
        end = i + 1
        while j < len(words) and _NAME_GAP.fullmatch(gaps[j]) and not initial[j]:
            if capital[j]:
                end = j = j + 1
            elif folded[j] in _CONNECTORS and words[j].islower():
                j += 1
            else:
                break
        after = end
        start = i
        # A sentence starts with a capital anyway: "The High Ambition Coalition" names "High Ambition Coalition",
        # "Paralysie du Conseil" names nothing. The first word stays when the text capitalises it elsewhere too.
        if initial[start] and not (is_acronym(words[start]) or folded[start] in elsewhere):
            start += 1
        while start < end and not capital[start]:
            start += 1  # "As the United States": the connector left in front is not part of the name
        # Two capitalised words at least, one of them neither an acronym nor a country ("COP28 on the SDGs" is two
        # names, "Lake Chad" one); a run that is just a country was counted as the country.
        own = [k for k in range(start, end) if capital[k] and k not in found.consumed]
        if own and sum(capital[start:end]) >= 2 and (start, end) not in countries:
            found.names.append((name_key(words[start:end]), found.text_of(start, end)))
            found.named.update(range(start, end))
