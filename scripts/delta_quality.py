"""Ranking quality between builds: items written through the API (served from the delta beside the build)
next to the same catalog built in one go, and after the next build folds the writes in.

For each catalog shape, a build is made of the catalog without a random share of its items; those items are
then written through the service's write path (encoded, committed to the catalog store, served from the
delta, engine/runtime/holder.py); nDCG@10, MRR@10 and P@1 (same-topic relevance) are measured on what is
served, on a full build of the whole catalog, and after ``build_index`` folds the writes in.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

from engine import (
    EmbeddingCache,
    EngineHolder,
    build_index,
    get_settings,
    load_catalog,
    load_recommender,
    open_encoder,
)
from engine.eval.evaluate import evaluate_recommender
from engine.eval.serving import PROJECT
from engine.eval.shapes import SHARED_DATA as SHARED

CATALOGS = {
    "demo": PROJECT / "data" / "demo" / "catalog.jsonl",
    "sib200-dev": SHARED / "sib200-dev" / "catalog.jsonl",
    "masakhanews-dev": SHARED / "masakhanews-dev" / "catalog.jsonl",
}
METRICS = ("ndcg@10", "mrr@10", "p@1")


def measure(catalog: Path, share: float, seed: int, encoder, cache: EmbeddingCache, folder: Path) -> dict:
    """The three states of one catalog: full build, build + written share (delta), folded."""
    publications = load_catalog(catalog).publications
    rng = random.Random(seed)
    written = rng.sample(publications, max(1, round(share * len(publications))))
    held = {p.id for p in written}
    part = folder / "part.jsonl"
    part.write_text(
        "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in publications if p.id not in held),
        encoding="utf-8",
    )
    full = folder / "full"
    build_index([catalog], full, encoder, cache=cache)
    served = folder / "served"
    build_index([part], served, encoder, cache=cache)
    holder = EngineHolder(served, expected_model=None, encoder=encoder, cache=cache)
    holder.reload()
    for start in range(0, len(written), 100):
        holder.write(upserts=written[start : start + 100])
    states = {
        "full build": evaluate_recommender(load_recommender(full, encoder=encoder)),
        "build + writes (delta)": evaluate_recommender(holder.current),
    }
    build_index([], served, encoder, cache=cache)  # fold the writes in
    holder.follow_once()
    states["after the next build"] = evaluate_recommender(holder.current)
    return {
        "items": len(publications),
        "written": len(written),
        **{name: {m: round(v[m], 4) for m in (*METRICS, "n_queries")} for name, v in states.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Measure every catalog found; print a table and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.1, help="share of items written through the API")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated catalog names (default: every one present)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if not 0 < args.share < 1:
        parser.error(f"--share must be between 0 and 1, got {args.share}")
    settings = get_settings()
    encoder = open_encoder(settings)
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    names = args.only.split(",") if args.only else list(CATALOGS)
    report = {}
    for name in names:
        if not CATALOGS[name].is_file():
            print(f"skipped {name}: {CATALOGS[name]} is absent", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            report[name] = measure(CATALOGS[name], args.share, args.seed, encoder, cache, Path(tmp))
    for name, row in report.items():
        print(f"{name}: {row['written']} of {row['items']} items written through the API")
        for state in ("full build", "build + writes (delta)", "after the next build"):
            print(f"  {state:24s} " + "  ".join(f"{m} {row[state][m]:.3f}" for m in METRICS))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
