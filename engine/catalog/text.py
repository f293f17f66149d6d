"""What the model reads: the text of a publication, and chunks of long texts within the model's limit."""

from __future__ import annotations

import re
from collections.abc import Callable

from engine.catalog.records import Publication

# Sentence ends in Latin and Arabic script (Arabic question mark U+061F, full stop U+06D4), or a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?\u061F\u06D4…])\s+|\n+")


def publication_text(publication: Publication) -> str:
    """Title and abstract, the title first so it counts in the first chunk."""
    return "\n".join(part for part in (publication.title, publication.abstract) if part)


def split_sentences(text: str) -> list[str]:
    """Split on sentence ends and line breaks; never returns empty pieces."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece and piece.strip()]


def chunk_text(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens, on sentence boundaries.

    Sentences are packed greedily; a sentence longer than the limit is cut between words. A text within
    the limit comes back as one chunk, unchanged.
    """
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if count_tokens(text) <= max_tokens:
        return [text]
    # Special tokens (BOS/EOS) are counted once per chunk, not once per sentence.
    overhead = count_tokens("")
    chunks: list[str] = []
    current: list[str] = []
    used = overhead
    for sentence in split_sentences(text):
        for piece, tokens in _fit(sentence, count_tokens, max_tokens, overhead):
            if current and used + tokens > max_tokens:
                chunks.append(" ".join(current))
                current, used = [], overhead
            current.append(piece)
            used += tokens
    if current:
        chunks.append(" ".join(current))
    return chunks


def _fit(sentence: str, count_tokens: Callable[[str], int], max_tokens: int, overhead: int) -> list[tuple[str, int]]:
    """Cut one over-long sentence into word runs that each fit the limit; return (piece, tokens)."""
    tokens = count_tokens(sentence) - overhead
    if tokens + overhead <= max_tokens:
        return [(sentence, tokens)]
    # Word by word, so a huge abstract with no punctuation costs linear time.
    pieces: list[tuple[str, int]] = []
    words: list[str] = []
    used = overhead
    for word in sentence.split():
        word_tokens = max(1, count_tokens(word) - overhead)
        if words and used + word_tokens > max_tokens:
            pieces.append((" ".join(words), used - overhead))
            words, used = [], overhead
        words.append(word)
        used += word_tokens
    if words:
        pieces.append((" ".join(words), used - overhead))
    return pieces
