"""Evaluate ranking quality of a built index: nDCG@k, MRR@k, recall@k and MAP@k with every item as a query."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine import IndexLoadError, evaluate_recommender, get_settings, load_recommender
from engine.evaluate import RELEVANCE_KINDS


def main(argv: list[str] | None = None) -> int:
    """Print the metrics as a table, or as one JSON object with ``--json``."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--index-dir", type=Path, default=settings.index_dir, help="default: %(default)s")
    parser.add_argument("--qrels", type=Path, help="BEIR-style qrels TSV (overrides --relevance)")
    parser.add_argument(
        "--relevance",
        choices=RELEVANCE_KINDS,
        default="topics",
        help="topics: shares a topic, outside the query's group; group: the query's translations",
    )
    parser.add_argument("--k", type=int, default=10, help="cut-off (default: %(default)s)")
    parser.add_argument(
        "--cross-lingual-only", action="store_true", help="rank and judge only items in another language than the query"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be >= 1, got {args.k}")
    try:
        recommender = load_recommender(args.index_dir)
    except IndexLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics = evaluate_recommender(
        recommender,
        relevance=args.relevance,
        qrels_path=args.qrels,
        k=args.k,
        cross_lingual_only=args.cross_lingual_only,
    )
    if args.json:
        print(json.dumps({name: round(value, 4) for name, value in metrics.items()}))
    else:
        judged = f"qrels {args.qrels}" if args.qrels else f"relevance {args.relevance}"
        scope = ", cross-lingual only" if args.cross_lingual_only else ""
        print(f"{args.index_dir} ({judged}{scope}, k={args.k})")
        for name, value in metrics.items():
            print(f"  {name:<10} {value:.4f}" if name != "n_queries" else f"  {name:<10} {int(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
