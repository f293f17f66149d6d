"""Evaluate ranking quality: nDCG@k, MRR@k, recall@k and MAP@k with every item as a query.

Evaluates a built index (--index-dir) or a catalog indexed in memory with the configured model
(--catalog, optionally one --split). --baselines adds random, recency, BM25 and char n-gram TF-IDF;
--report DIR writes a Markdown table, a JSON file and a chart, with per-language-pair figures.
--shapes measures every catalog shape of the shared dev sets and the demo catalog (balanced and parallel,
unbalanced and long, translated articles, site-like samples): served ranking, plain cosine, BM25,
recency and random; with --report DIR it writes shapes.md and shapes.json there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from engine import (
    EmbeddingCache,
    IndexLoadError,
    Recommender,
    get_settings,
    load_catalog,
    load_recommender,
    open_encoder,
)
from engine.eval.baselines import BASELINES
from engine.eval.evaluate import EngineRanker, evaluate_recommender, evaluate_system
from engine.eval.metrics import RELEVANCE_KINDS
from engine.eval.report import markdown_table, pair_table, write_report
from engine.eval.shapes import (
    SHARED_DATA,
    SYSTEMS,
    MissingSharedDataError,
    evaluate_shape,
    shapes_table,
    standard_shapes,
)


def _recommender(args: argparse.Namespace) -> Recommender:
    if args.catalog is None:
        return load_recommender(args.index_dir)
    settings = get_settings()
    publications = load_catalog(args.catalog).publications
    if args.split:
        publications = [p for p in publications if p.metadata.get("split") == args.split]
        if not publications:
            raise SystemExit(f"error: no item of {args.catalog} has split {args.split!r}")
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    return Recommender.from_publications(publications, open_encoder(settings), cache=cache)


def _shapes(args: argparse.Namespace) -> int:
    try:
        shapes = standard_shapes(args.shared_data)
    except MissingSharedDataError as exc:
        print(f"error: {exc} (--shared-data)", file=sys.stderr)
        return 2
    settings = get_settings()
    encoder = open_encoder(settings)
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    started = time.perf_counter()
    rows = []
    for shape in tqdm(shapes, desc="shapes", unit="shape"):
        rows.extend(evaluate_shape(shape, encoder, cache, k=args.k))
    table = shapes_table(shapes, rows, k=args.k)
    if args.json:
        print(json.dumps([asdict(row) for row in rows]))
    else:
        print(table)
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "shapes.md").write_text(
            f"# Catalog shapes (model {encoder.name})\n\n{table}\n", encoding="utf-8"
        )
        (args.report / "shapes.json").write_text(json.dumps([asdict(row) for row in rows], indent=2), encoding="utf-8")
        print(f"wrote {args.report / 'shapes.md'} and shapes.json", file=sys.stderr)
    print(
        f"measured {len(shapes)} shapes x {len(SYSTEMS)} systems in {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Print the metrics (a table, or one JSON object with ``--json``); optionally baselines and a report."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--index-dir", type=Path, default=settings.index_dir, help="default: %(default)s")
    source.add_argument("--catalog", type=Path, help="index this catalog in memory instead of loading an index")
    parser.add_argument("--split", help="with --catalog: keep only items whose 'split' field has this value")
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
    parser.add_argument("--baselines", action="store_true", help="also run random, recency, BM25 and TF-IDF")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write report.md, report.json and a chart")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--shapes", action="store_true", help="measure every catalog shape (needs the shared data; see --shared-data)"
    )
    parser.add_argument(
        "--shared-data", type=Path, default=SHARED_DATA, help="the shared evaluation data (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.k < 1:
        parser.error(f"--k must be >= 1, got {args.k}")
    if args.shapes:
        return _shapes(args)
    try:
        recommender = _recommender(args)
    except IndexLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not (args.baselines or args.report):
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
            print(f"{args.catalog or args.index_dir} ({judged}{scope}, k={args.k})")
            for name, value in metrics.items():
                print(f"  {name:<10} {value:.4f}" if name != "n_queries" else f"  {name:<10} {int(value)}")
        return 0

    publications = list(recommender.publications.values())
    vectors = {p.id: recommender.index.vector(p.id) for p in publications}
    rankers = [EngineRanker(recommender, name=f"engine ({recommender.index.model})")]
    if args.baselines:
        rankers += [make(publications) for make in BASELINES.values()]
    reports = [
        evaluate_system(r, publications, relevance=args.relevance, qrels_path=args.qrels, k=args.k, vectors=vectors)
        for r in rankers
    ]
    if args.json:
        print(
            json.dumps(
                {
                    r.system: {
                        **r.overall,
                        "cross_lingual_ndcg": r.cross_lingual[f"ndcg@{args.k}"],
                        "language_bias": r.language_bias,
                        "coverage": r.coverage,
                    }
                    for r in reports
                }
            )
        )
    else:
        print(markdown_table(reports, args.k))
        print()
        print(pair_table(reports, args.k))
    if args.report:
        title = f"{args.catalog or args.index_dir}{f' ({args.split})' if args.split else ''}, relevance " + (
            f"qrels {args.qrels.name}" if args.qrels else args.relevance
        )
        for path in write_report(args.report, title, reports, args.k):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
