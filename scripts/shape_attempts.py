"""Measure every ranking idea tried for issue 12 on every catalog shape; write docs/quality-shapes.md.

Research code, not the product: each attempt is a score matrix over a catalog, computed here with numpy
from the model's chunk vectors, and ranked with the engine's exclusions (engine.eval.baselines.ScoreRanker);
the last row is the engine's own ranking path. Shapes: engine/eval/shapes.py (sib200-dev, masakhanews-dev,
ntrex-dev, seed, demo, sib200 site samples with and without translations). About two minutes on 2 cores
once the embedding cache holds the texts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine import EmbeddingCache, Encoder, Recommender, get_settings, open_encoder
from engine.catalog.text import publication_text
from engine.encode.embed import encode_cached
from engine.eval.baselines import ScoreRanker, bm25_ranker
from engine.eval.evaluate import EngineRanker, Exclusions, Ranker, evaluate_system
from engine.eval.experiments.scores import (
    Catalog,
    all_but_the_top,
    centred,
    chunk_smoothed,
    cosine,
    csls,
    hybrid,
    language_slots_kept,
    late_interaction,
    smoothed,
    title_blend,
    whitened,
    z_key,
)
from engine.eval.metrics import judgments_for, ndcg_at_k, precision_at_k
from engine.eval.shapes import SHARED_DATA, MissingSharedDataError, Shape, standard_shapes
from engine.index.options import BuildOptions
from engine.index.store import Build
from engine.settings import PROJECT_ROOT

Attempt = Callable[[Catalog], np.ndarray]  # a score matrix: row = query, column = candidate


def attempts(encoder: Encoder) -> list[tuple[str, str, Attempt]]:
    """(name, verdict, score matrix) in the order they were tried; the figures are in the table beside them."""

    def z(vectors: Callable[[Catalog], np.ndarray], **options: object) -> Attempt:
        return lambda c: z_key(c, vectors(c), **options)

    plain, adapted = (lambda c: c.vectors), chunk_smoothed
    return [
        ("plain cosine (the model's vectors)", "reference", lambda c: cosine(c.vectors)),
        (
            "per-language z-score, all items (shipped before)",
            "lost on masakhanews",
            z(plain, translated_only=False, shrinkage=20),
        ),
        (
            "  ... shrunk halfway toward the catalog",
            "lost on masakhanews, bias above target",
            z(plain, translated_only=False, shrinkage=20, strength=0.5),
        ),
        (
            "per-language z-score, translated items only (c=20)",
            "kept: masakhanews and seed back to cosine",
            z(plain, translated_only=True, shrinkage=20),
        ),
        (
            "  ... James-Stein weights instead of n/(n+c)",
            "lost: weights near 0, no correction",
            z(plain, translated_only=True, shrinkage=20, james_stein=True),
        ),
        ("catalog centring", "kept", lambda c: cosine(centred(c.vectors))),
        ("all-but-the-top, 1 direction removed", "lost everywhere", lambda c: cosine(all_but_the_top(c.vectors, 1))),
        (
            "whitening (covariance shrunk by its mean eigenvalue)",
            "lost everywhere but seed",
            lambda c: cosine(whitened(c.vectors)),
        ),
        ("CSLS hubness correction (k=10)", "lost on sib200", lambda c: csls(c.vectors, 10)),
        (
            "centring + title vector added (0.3)",
            "lost: translations no longer first on ntrex",
            lambda c: cosine(title_blend(c, encoder, 0.3)),
        ),
        (
            "late interaction (chunk max-sim, symmetric)",
            "lost on topics (ntrex P@1 up, below calibration's)",
            lambda c: late_interaction(c, centre=False),
        ),
        (
            "  ... on centred chunks",
            "lost: below centred mean pooling on topics",
            lambda c: late_interaction(c, centre=True),
        ),
        (
            "centring + BM25 fusion, all pairs (w=0.1)",
            "lost: translations pushed down on ntrex",
            lambda c: hybrid(c, cosine(centred(c.vectors)), 0.1, same_language_long=False),
        ),
        (
            "  ... BM25 on same-language long pairs only",
            "lost: a same-language boost, ntrex down",
            lambda c: hybrid(c, cosine(centred(c.vectors)), 0.1, same_language_long=True),
        ),
        (
            "  ... reordering query-language slots only (w=0.3)",
            "lost: no gain left without the boost",
            lambda c: language_slots_kept(c, cosine(centred(c.vectors)), 0.3),
        ),
        (
            "centring + document smoothing (k=5, 0.5)",
            "second to chunk smoothing",
            lambda c: cosine(smoothed(centred(c.vectors), 5, 0.5)),
        ),
        ("centring + chunk smoothing (k=5, 0.5)", "kept", lambda c: cosine(adapted(c))),
        ("  ... k=3", "within noise of k=5 (not tuned further)", lambda c: cosine(chunk_smoothed(c, 3))),
        ("  ... k=10", "within noise of k=5 (not tuned further)", lambda c: cosine(chunk_smoothed(c, 10))),
        ("  ... strength 1.0", "lost on seed", lambda c: cosine(chunk_smoothed(c, 5, 1.0))),
        (
            "chunk smoothing + z-score, all items",
            "lost on masakhanews",
            z(adapted, translated_only=False, shrinkage=20),
        ),
        (
            "chunk smoothing + z-score, translated items, c=20",
            "bias just above the 0.20 target",
            z(adapted, translated_only=True, shrinkage=20),
        ),
        ("  ... c=50", "bias above target, ntrex P@1 below 0.99", z(adapted, translated_only=True, shrinkage=50)),
    ]


def prepare(shape: Shape, encoder: Encoder, cache: EmbeddingCache) -> list[Catalog]:
    """Encode (or read from the cache) each catalog of a shape and score it with BM25."""
    catalogs = []
    for publications in shape.catalogs:
        publications = list(publications)
        texts = [publication_text(p) for p in publications]
        chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
        bm25 = bm25_ranker(publications)
        scores = np.stack([bm25.scores(i) for i in range(len(publications))])
        catalogs.append(Catalog(publications, chunks, chunks.pooled().astype(np.float64), scores, encoder.name))
    return catalogs


def measure(shape: Shape, catalog: Catalog, ranker: Ranker) -> dict[str, float]:
    """nDCG@10, P@1 and language bias of one ranker on one catalog."""
    report = evaluate_system(
        ranker, catalog.publications, relevance=shape.relevance, qrels_path=shape.qrels, pairs=False
    )
    return {"ndcg": report.overall["ndcg@10"], "p1": report.overall["p@1"], "bias": report.language_bias}


def main(argv: list[str] | None = None) -> int:
    """Run every attempt on every shape and write the Markdown table (and a JSON copy)."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=SHARED_DATA,
        help="the shared evaluation data (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=PROJECT_ROOT / "docs" / "quality-shapes.md", help="default: %(default)s"
    )
    parser.add_argument("--only", help="run only attempts whose name contains this text (quick checks)")
    args = parser.parse_args(argv)
    try:
        shapes = standard_shapes(args.shared_data)
    except MissingSharedDataError as exc:
        print(f"error: {exc} (--shared-data)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    encoder = open_encoder(settings)
    cache = EmbeddingCache.in_folder(settings.cache_dir)
    prepared = {shape.name: prepare(shape, encoder, cache) for shape in shapes}
    rows = []
    chosen = [a for a in attempts(encoder) if not args.only or args.only in a[0]]
    for name, verdict, attempt in [*chosen, (SERVED, "**shipped**", None)]:
        results = {}
        for shape in shapes:
            runs = [measure(shape, catalog, ranker_of(name, attempt, catalog)) for catalog in prepared[shape.name]]
            results[shape.name] = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        rows.append({"attempt": name, "verdict": verdict, **results})
        print(f"{name}: " + ", ".join(f"{k} {v['ndcg']:.3f}" for k, v in results.items()), flush=True)
    # How much of a difference is noise: paired bootstrap over masakhanews-dev's queries.
    masakhane = next(shape for shape in shapes if shape.name == "masakhanews-dev")
    catalog = prepared[masakhane.name][0]
    by_name = {name: attempt for name, _, attempt in attempts(encoder)}
    noise = []
    for first, second in [(SERVED, "plain cosine (the model's vectors)"), (CHUNKS, DOCUMENTS), (DOCUMENTS, CENTRING)]:
        noise.append(
            (
                first,
                second,
                *paired_bootstrap(
                    masakhane,
                    catalog,
                    ranker_of(first, by_name.get(first), catalog),
                    ranker_of(second, by_name[second], catalog),
                ),
            )
        )
    write_table(args.out, rows, noise)
    print(
        f"measured {len(rows)} attempts on {len(shapes)} shapes in {time.perf_counter() - started:.0f}s -> {args.out}"
    )
    return 0


SERVED = "**served: the engine** (chunk smoothing + z-score on translated items, c=10)"
CHUNKS, DOCUMENTS = "centring + chunk smoothing (k=5, 0.5)", "centring + document smoothing (k=5, 0.5)"
CENTRING = "catalog centring"


def ranker_of(name: str, attempt: Attempt | None, catalog: Catalog) -> Ranker:
    """The engine's ranking path for ``attempt`` None, else the attempt's score matrix with its exclusions."""
    if attempt is None:
        build = Build.assemble(catalog.publications, catalog.chunks, catalog.encoder_name, BuildOptions())
        return EngineRanker(Recommender(build))
    scores = attempt(catalog)
    return ScoreRanker(name, catalog.publications, lambda row: scores[row])


def paired_bootstrap(
    shape: Shape, catalog: Catalog, first: Ranker, second: Ranker, samples: int = 2000
) -> tuple[float, float, float, float, float, float]:
    """Mean difference first - second in nDCG@10 and in P@1 over the queries, with 95 % intervals from a
    seeded paired bootstrap: (nDCG, low, high, P@1, low, high)."""
    qrels = judgments_for(catalog.publications, shape.relevance, shape.qrels)
    queries = [q for q, judged in qrels.items() if any(g > 0 for g in judged.values())]
    include = shape.relevance == "group"
    differences = []
    for q in queries:
        a, b = (r.rank(q, 10, Exclusions(include_translations=include)) for r in (first, second))
        differences.append(
            (
                ndcg_at_k(a, qrels[q], 10) - ndcg_at_k(b, qrels[q], 10),
                precision_at_k(a, qrels[q], 1) - precision_at_k(b, qrels[q], 1),
            )
        )
    values = np.array(differences)
    rng = np.random.default_rng(0)
    means = np.array([values[rng.integers(0, len(values), len(values))].mean(axis=0) for _ in range(samples)])
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return (values[:, 0].mean(), low[0], high[0], values[:, 1].mean(), low[1], high[1])


COLUMNS = [
    ("sib200-dev", "ndcg", "sib200 nDCG"),
    ("sib200-dev", "bias", "sib200 bias"),
    ("masakhanews-dev", "ndcg", "masakha nDCG"),
    ("masakhanews-dev", "p1", "masakha P@1"),
    ("ntrex-dev", "p1", "ntrex P@1"),
    ("seed", "ndcg", "seed nDCG"),
    ("demo", "ndcg", "demo nDCG"),
    ("sib200 site sample", "ndcg", "site sample nDCG"),
    ("sib200 site sample, untranslated", "ndcg", "untranslated nDCG"),
]


def write_table(path: Path, rows: list[dict], noise: list[tuple]) -> None:
    """docs/quality-shapes.md: one row per attempt, one column per shape and figure; then the noise level."""
    header = "| attempt | " + " | ".join(label for _, _, label in COLUMNS) + " | verdict |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = [f"{r[shape][key]:.3f}" for shape, key, _ in COLUMNS]
        lines.append(f"| {r['attempt']} | " + " | ".join(cells) + f" | {r['verdict']} |")
    lines += [
        "",
        "Noise: paired bootstrap over masakhanews-dev's 683 queries (2,000 seeded resamples), the difference of",
        "the first system minus the second and its 95 % interval:",
        "",
        "| first | second | nDCG@10 | P@1 |",
        "|---|---|---|---|",
    ]
    for first, second, d, d_low, d_high, p, p_low, p_high in noise:
        ndcg, precision = f"{d:+.3f} ({d_low:+.3f} .. {d_high:+.3f})", f"{p:+.3f} ({p_low:+.3f} .. {p_high:+.3f})"
        lines.append(f"| {first} | {second} | {ndcg} | {precision} |")
    intro_path = PROJECT_ROOT / "docs" / "quality-shapes-intro.md"
    intro = intro_path.read_text(encoding="utf-8") if intro_path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(intro + "\n".join(lines) + "\n", encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
