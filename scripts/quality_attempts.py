"""Measure every ranking idea tried for the engine on the dev sets and write the table to docs/quality.md.

Each attempt is the engine's own ranking path (or a fusion/baseline ranker) over vectors produced one way;
data: sib200-dev dev split (topics), ntrex-dev (translations), seed (graded qrels), the demo catalog.
The adapters compared here are trained on the sib200 *train* split only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import BuildOptions, EmbeddingCache, Recommender, get_settings, open_encoder
from engine.catalog.records import Publication, load_catalog
from engine.catalog.text import publication_text
from engine.encode.adapter import AdapterConfig, apply_adapter, center, language_means, load_adapter, train_adapter
from engine.encode.embed import Encoder, encode_cached
from engine.eval.baselines import bm25_ranker
from engine.eval.evaluate import EngineRanker, Exclusions, Ranker, evaluate_system

PROJECT = Path(__file__).resolve().parent.parent


@dataclass
class DataSet:
    name: str
    publications: list[Publication]
    relevance: str
    qrels: Path | None = None
    base: np.ndarray | None = None  # base-model vectors
    tuned: np.ndarray | None = None  # tuned-model vectors
    truncated: np.ndarray | None = None  # tuned model, texts cut at max_seq_length instead of chunked


# ----- experiments that lost (docs/quality.md), kept here to be re-measured, never served -----


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[str]:
    """Fuse ranked lists by summing ``1 / (k + rank)`` (Cormack et al. 2009); ties keep first-seen order."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda doc: -scores[doc])


def collapse_near_duplicates(ids: Sequence[str], vectors: np.ndarray, threshold: float) -> list[int]:
    """Positions to keep: each item unless its cosine to an item kept before it exceeds ``threshold``."""
    kept: list[int] = []
    for i in range(len(ids)):
        if all(float(vectors[i] @ vectors[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


class FusionRanker:
    """Reciprocal rank fusion of several rankers' lists (e.g. semantic + BM25)."""

    def __init__(self, name: str, rankers: Sequence[Ranker], depth: int = 50, k: int = 60) -> None:
        self.name = name
        self.rankers = list(rankers)
        self.depth = depth
        self.k = k

    def rank(self, query_id: str, k: int, exclusions: Exclusions) -> list[str]:
        lists = [r.rank(query_id, max(k, self.depth), exclusions) for r in self.rankers]
        return reciprocal_rank_fusion(lists, self.k)[:k]


class CollapseRanker:
    """Drops items nearly identical (cosine > threshold) to one ranked above them."""

    def __init__(self, inner: EngineRanker, threshold: float) -> None:
        self.inner, self.threshold, self.name = inner, threshold, f"{inner.name}+collapse"

    def rank(self, query_id: str, k: int, exclusions: Exclusions) -> list[str]:
        ids = self.inner.rank(query_id, 3 * k, exclusions)
        if not ids:
            return []
        vectors = np.stack([self.inner.recommender.index.vector(i) for i in ids])
        return [ids[i] for i in collapse_near_duplicates(ids, vectors, self.threshold)][:k]


def measure(data: DataSet, ranker: Ranker) -> dict[str, float]:
    reference = {p.id: v for p, v in zip(data.publications, data.base, strict=True)}
    report = evaluate_system(
        ranker, data.publications, relevance=data.relevance, qrels_path=data.qrels, vectors=reference, pairs=False
    )
    return {
        "ndcg": report.overall["ndcg@10"],
        "cross": report.cross_lingual["ndcg@10"],
        "p1": report.overall["p@1"],
        "bias": report.language_bias,
        "ils": report.intra_list_similarity,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every attempt and write the Markdown table (and a JSON copy)."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared-data", type=Path, default=PROJECT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT / "docs" / "quality.md")
    parser.add_argument("--only", help="run only attempts whose name contains this text (quick checks)")
    args = parser.parse_args(argv)
    shared = args.shared_data
    if not (shared / "sib200-dev" / "catalog.jsonl").is_file():
        print(f"error: {shared} does not hold the shared evaluation data", file=sys.stderr)
        return 2
    started = time.perf_counter()
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    base_encoder = open_encoder(settings.model_copy(update={"model": "use-multilingual-v3"}))
    tuned_encoder = open_encoder(settings.model_copy(update={"model": "use-multilingual-v3-tuned"}))
    sib = load_catalog(shared / "sib200-dev" / "catalog.jsonl").publications
    train = [p for p in sib if p.metadata.get("split") == "train"]
    sets = [
        DataSet("sib200-dev", [p for p in sib if p.metadata.get("split") == "dev"], "topics"),
        DataSet("ntrex-dev", load_catalog(shared / "ntrex-dev" / "catalog.jsonl").publications, "group"),
        DataSet(
            "seed",
            load_catalog(shared / "seed" / "catalog.jsonl").publications,
            "topics",
            shared / "seed" / "qrels.tsv",
        ),
        DataSet("demo", load_catalog(PROJECT / "data" / "demo" / "catalog.jsonl").publications, "topics"),
    ]

    def vectors_of(encoder: Encoder, pubs: list[Publication]) -> np.ndarray:
        texts = [publication_text(p) for p in pubs]
        return encode_cached(encoder, texts, cache, languages=[p.language for p in pubs])[0].pooled()

    for data in sets:
        data.base = vectors_of(base_encoder, data.publications)
        data.tuned = vectors_of(tuned_encoder, data.publications)
        data.truncated = tuned_encoder.encode(
            [publication_text(p) for p in data.publications], languages=[p.language for p in data.publications]
        )
    train_vectors = vectors_of(base_encoder, train)
    _, shipped_means = load_adapter(settings.models_dir / "use-multilingual-v3-tuned")

    def adapted(config: AdapterConfig) -> Callable[[DataSet], np.ndarray]:
        weight, means = train_adapter(train_vectors, train, config)
        return lambda d: apply_adapter(d.base, [p.language for p in d.publications], weight, means)

    def langs(d: DataSet) -> list[str | None]:
        return [p.language for p in d.publications]

    def engine(
        vectors: Callable[[DataSet], np.ndarray], calibrate: bool = True, **options: object
    ) -> Callable[[DataSet], Ranker]:
        return lambda d: EngineRanker(
            Recommender.from_vectors(
                d.publications, vectors(d), options=BuildOptions(adapt=False, calibrate=calibrate)
            ),
            **options,
        )

    attempts: list[tuple[str, str, Callable[[DataSet], Ranker]]] = [
        ("USE base, cosine (as first built)", "reference", engine(lambda d: d.base, False)),
        (
            "+ language centring (train-split means)",
            "kept, in the tuned model",
            engine(lambda d: center(d.base, langs(d), shipped_means), False),
        ),
        (
            "+ language centring (each catalog's own means)",
            "lost: seed 11 items, too few per language",
            engine(lambda d: center(d.base, langs(d), language_means(d.base, langs(d))), False),
        ),
        ("+ per-language z-score calibration", "kept", engine(lambda d: d.base, True)),
        (
            "adapter without centring (identity weight 0.1)",
            "lost to the centred one",
            engine(adapted(AdapterConfig(center=False)), False),
        ),
        (
            "adapter, identity weight 1.0",
            "lost: too close to the base",
            engine(adapted(AdapterConfig(identity_weight=1.0)), False),
        ),
        (
            "adapter, identity weight 0.01",
            "see next row",
            engine(adapted(AdapterConfig(identity_weight=0.01)), False),
        ),
        (
            "adapter, identity weight 0.01 + calibration",
            "lost: seed 0.942 < 0.95 and demo -0.027 (fits SIB's 7 coarse topics)",
            engine(adapted(AdapterConfig(identity_weight=0.01)), True),
        ),
        ("tuned model: centring + adapter (weight 0.1)", "kept", engine(lambda d: d.tuned, False)),
        (
            "**final: tuned model + calibration**",
            "**shipped**: every target met",
            engine(lambda d: d.tuned, True),
        ),
        (
            "final, texts truncated at 256 tokens",
            "tie within noise (seed is one query); chunking kept, no text dropped",
            engine(lambda d: d.truncated, True),
        ),
        (
            "final + MMR diversity 0.2",
            "an option (diversity=0.2): -0.017 nDCG for -0.027 similarity",
            engine(lambda d: d.tuned, True, diversity=0.2),
        ),
        ("final + MMR diversity 0.5", "an option, not a default", engine(lambda d: d.tuned, True, diversity=0.5)),
        (
            "final + near-duplicate collapse (cos > 0.9)",
            "lost: collapses translations (ntrex nDCG 0.990 -> 0.931)",
            lambda d: CollapseRanker(engine(lambda x: x.tuned, True)(d), 0.9),
        ),
        (
            "final + BM25, reciprocal rank fusion",
            "lost: lexical matches are same-language",
            lambda d: FusionRanker("rrf", [engine(lambda x: x.tuned, True)(d), bm25_ranker(d.publications)]),
        ),
    ]
    rows = []
    for name, verdict, make in attempts:
        if args.only and args.only not in name:
            continue
        results = {data.name: measure(data, make(data)) for data in sets}
        rows.append({"attempt": name, "verdict": verdict, **results})
        print(f"{name}: " + ", ".join(f"{k} {v['ndcg']:.3f}" for k, v in results.items()), flush=True)
    write_table(args.out, rows)
    print(
        f"measured {len(rows)} attempts on {len(sets)} data sets in {time.perf_counter() - started:.0f}s -> {args.out}"
    )
    return 0


def write_table(path: Path, rows: list[dict]) -> None:
    """docs/quality.md: one row per attempt."""
    header = (
        "| attempt | sib200-dev nDCG@10 | cross-lingual | same-lang share | intra-list sim. | ntrex P@1 "
        "| seed nDCG@10 | demo nDCG@10 | demo cross | verdict |\n|" + "---|" * 10
    )
    lines = [header]
    for r in rows:
        s, n, e, d = r["sib200-dev"], r["ntrex-dev"], r["seed"], r["demo"]
        lines.append(
            f"| {r['attempt']} | {s['ndcg']:.3f} | {s['cross']:.3f} | {s['bias']:.3f} | {s['ils']:.3f} | {n['p1']:.3f} "
            f"| {e['ndcg']:.3f} | {d['ndcg']:.3f} | {d['cross']:.3f} | {r['verdict']} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    intro = (
        (PROJECT / "docs" / "quality-intro.md").read_text(encoding="utf-8")
        if (PROJECT / "docs" / "quality-intro.md").is_file()
        else ""
    )
    path.write_text(intro + "\n".join(lines) + "\n", encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
