"""The block's words in the reader's language: one file of UI strings (``static/locales.json``) that the
server-rendered fragment reads here and the widget fetches, so both say the same thing."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LOCALES = ("en", "fr", "ar")
# Scripts written right to left, by ISO 639 code: an item's own `dir`, whatever the page's.
RTL_LANGUAGES = frozenset({"ar", "ary", "arz", "apc", "acm", "ajp", "fa", "he", "ur", "ps", "ckb", "yi", "dv"})


@cache
def strings(locale: str) -> dict[str, Any]:
    """The UI strings of ``locale`` (one of :data:`LOCALES`)."""
    table = json.loads((Path(__file__).parent / "static" / "locales.json").read_text(encoding="utf-8"))
    return table[locale]


def direction(language: str | None) -> str:
    """``rtl`` for a language written right to left, else ``ltr``."""
    return "rtl" if language in RTL_LANGUAGES else "ltr"
