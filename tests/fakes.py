"""A tiny deterministic encoder for exact ranking tests (no model needed)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Each keyword is one axis: a text's vector is its keyword counts, normalised, so cosines can be worked by hand.
VOCABULARY = ("trade", "climate", "water", "migration", "finance", "health", "security", "youth")


class FakeEncoder:
    """Bag-of-keywords encoder; counts whitespace tokens (+2 like BOS/EOS) and records every call."""

    def __init__(self, max_tokens: int = 64, name: str = "fake@1") -> None:
        self.name = name
        self.dimension = len(VOCABULARY)
        self.max_tokens = max_tokens
        self.calls: list[list[str]] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            if self.count_tokens(text) > self.max_tokens:
                raise AssertionError(f"the encoder was given {self.count_tokens(text)} tokens > {self.max_tokens}")
            for word in text.lower().split():
                word = word.strip(".,;:!?")
                if word in VOCABULARY:
                    out[row, VOCABULARY.index(word)] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    @property
    def encoded_texts(self) -> int:
        return sum(len(c) for c in self.calls)


def write_jsonl(path: Path, records: Sequence[dict[str, Any] | str]) -> Path:
    """Write records (dicts as JSON, strings verbatim) one per line."""
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


def pub(pid: str, abstract: str, **fields: Any) -> dict[str, Any]:
    """A catalog record with defaults."""
    return {"id": pid, "title": "", "abstract": abstract, "language": "en", "type": "policy-brief", **fields}
