"""Chunking of long texts: within the limit, on sentence boundaries, nothing lost."""

from __future__ import annotations

import pytest

from engine.catalog.text import chunk_text, split_sentences


def count(text: str) -> int:
    return len(text.split()) + 2  # +2 like BOS/EOS


def test_short_text_is_one_unchanged_chunk() -> None:
    assert chunk_text("One sentence. Two.", count, 10) == ["One sentence. Two."]


def test_long_text_is_split_on_sentences_within_the_limit_without_loss() -> None:
    sentences = [f"Sentence number {i} has six words." for i in range(20)]
    text = " ".join(sentences)
    chunks = chunk_text(text, count, 20)
    assert len(chunks) > 1
    assert all(count(c) <= 20 for c in chunks)
    assert " ".join(chunks).split() == text.split()
    # 6 words per sentence, 18 words fit in one chunk: 3 whole sentences per chunk.
    assert chunks[0] == " ".join(sentences[:3])


def test_overlong_sentence_is_cut_between_words() -> None:
    text = " ".join(f"w{i}" for i in range(50))
    chunks = chunk_text(text, count, 12)
    assert all(count(c) <= 12 for c in chunks)
    assert " ".join(chunks).split() == text.split()


def test_arabic_and_french_sentence_ends() -> None:
    assert split_sentences("هل هذا سؤال؟ نعم.\nC'est fini ! Vraiment…") == [
        "هل هذا سؤال؟",
        "نعم.",
        "C'est fini !",
        "Vraiment…",
    ]


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_text("x", count, 0)
