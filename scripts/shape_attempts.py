"""Measure every ranking idea tried for issue 12 on every catalog shape; write docs/quality-shapes.md.

Research code, not the product: each attempt is a score matrix over a catalog, computed here with numpy
from the model's chunk vectors, and ranked with the engine's exclusions (engine.baselines.ScoreRanker);
the last row is the engine's own ranking path. Shapes: engine/shapes.py (sib200-dev, masakhanews-dev,
ntrex-dev, seed, demo, sib200 site samples with and without translations). About two minutes on 2 cores
once the embedding cache holds the texts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import EmbeddingCache, EngineRanker, Recommender, evaluate_system, get_settings, open_encoder
from engine.adapt import CatalogAdaptation
from engine.baselines import ScoreRanker, bm25_ranker
from engine.catalog import Publication
from engine.embed import ChunkVectors, encode_cached, normalize
from engine.pipeline import BuildOptions, derive
from engine.settings import PROJECT_ROOT
from engine.shapes import Shape, standard_shapes
from engine.text import publication_text


@dataclass
class Catalog:
    """One catalog of a shape with what the attempts need: chunks, pooled vectors, BM25 scores."""

    publications: list[Publication]
    chunks: ChunkVectors
    vectors: np.ndarray
    bm25: np.ndarray
    encoder_name: str


Attempt = Callable[[Catalog], np.ndarray]  # a score matrix: row = query, column = candidate


# ----- score matrices -----


def cosine(vectors: np.ndarray) -> np.ndarray:
    return vectors @ vectors.T


def centred(vectors: np.ndarray) -> np.ndarray:
    return normalize(vectors - vectors.mean(axis=0))


def z_key(
    c: Catalog,
    vectors: np.ndarray,
    *,
    translated_only: bool,
    shrinkage: float,
    strength: float = 1.0,
    james_stein: bool = False,
) -> np.ndarray:
    """Per-language z-scores of the cosine, statistics from all items or from translated items only; weights
    n / (n + shrinkage), or positive-part James-Stein weights on each language's mean offset."""
    languages = np.array([p.language or "" for p in c.publications])
    n = len(vectors)
    pooled_mean, pooled_cov = _moments(vectors)
    m0, s0 = vectors @ pooled_mean, np.sqrt(np.einsum("nd,de,ne->n", vectors, pooled_cov, vectors))
    means, spreads = np.repeat(m0[:, None], n, 1), np.repeat(s0[:, None], n, 1)
    subset = _translated(c.publications) if translated_only else np.ones(n, dtype=bool)
    if subset.sum() >= 2:
        sub_mean, sub_cov = _moments(vectors[subset])
        s_sub = np.sqrt(np.einsum("nd,de,ne->n", vectors, sub_cov, vectors))
        for language in set(languages):
            chosen = subset & (languages == language)
            if chosen.sum() < 2:
                continue
            weight = strength * chosen.sum() / (chosen.sum() + shrinkage)
            lang_mean, lang_cov = _moments(vectors[chosen])
            if james_stein:
                offset = lang_mean - sub_mean
                weight = max(0.0, 1 - np.trace(lang_cov) / chosen.sum() / max(offset @ offset, 1e-12))
            s_lang = np.sqrt(np.einsum("nd,de,ne->n", vectors, lang_cov, vectors))
            column = languages == language
            means[:, column] = (m0 + weight * (vectors @ (lang_mean - sub_mean)))[:, None]
            spreads[:, column] = (s0 * (1 + weight * (s_lang / s_sub - 1)))[:, None]
    return (cosine(vectors) - means) / spreads


def _moments(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = vectors.mean(axis=0)
    return mean, (vectors - mean).T @ (vectors - mean) / len(vectors)


def _translated(publications: list[Publication]) -> np.ndarray:
    languages: dict[str, set[str]] = defaultdict(set)
    for p in publications:
        if p.group and p.language:
            languages[p.group].add(p.language)
    return np.array([bool(p.group) and len(languages[p.group]) > 1 for p in publications])


def smoothed(vectors: np.ndarray, k: int, weight: float) -> np.ndarray:
    """Document-level neighbour smoothing (database-side augmentation)."""
    scores = cosine(vectors)
    np.fill_diagonal(scores, -np.inf)
    best = np.argsort(-scores, axis=1)[:, : min(k, len(vectors) - 1)]
    w = np.maximum(np.take_along_axis(scores, best, 1), 0)
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-9)
    return normalize(vectors + weight * np.einsum("nk,nkd->nd", w, vectors[best]))


def chunk_smoothed(c: Catalog, k: int = 5, weight: float = 0.5) -> np.ndarray:
    """The engine's adaptation (centring + chunk-level smoothing) with other parameters."""
    return CatalogAdaptation.fit(c.chunks, neighbours=k, weight=weight).document_vectors(c.chunks)


def late_interaction(c: Catalog, centre: bool) -> np.ndarray:
    """Each chunk's best match in the other document, length-weighted mean, symmetrised."""
    chunks = c.chunks.vectors.astype(np.float64)
    if centre:
        chunks = normalize(chunks - chunks.mean(axis=0))
    n, owners, weights = len(c.publications), c.chunks.owners, c.chunks.weights
    products = chunks @ chunks.T
    best = np.stack([products[:, owners == j].max(axis=1) for j in range(n)], axis=1)  # (chunks, documents)
    totals = np.zeros((n, n))
    np.add.at(totals, owners, best * weights[:, None])
    one_way = totals / np.bincount(owners, weights=weights, minlength=n)[:, None]
    return (one_way + one_way.T) / 2


def row_z(scores: np.ndarray) -> np.ndarray:
    """Scores standardised per query (the query itself left out)."""
    values = scores.astype(np.float64).copy()
    np.fill_diagonal(values, np.nan)
    z = (values - np.nanmean(values, axis=1, keepdims=True)) / (np.nanstd(values, axis=1, keepdims=True) + 1e-9)
    return np.nan_to_num(z)


def hybrid(c: Catalog, dense: np.ndarray, weight: float, *, same_language_long: bool) -> np.ndarray:
    """Dense and BM25 scores standardised per query and mixed; optionally BM25 only for same-language pairs of
    long texts (150+ words)."""
    lexical = row_z(c.bm25)
    if same_language_long:
        languages = np.array([p.language for p in c.publications])
        long = np.array([len(f"{p.title} {p.abstract}".split()) >= 150 for p in c.publications])
        mask = (languages[:, None] == languages[None, :]) & long[:, None] & long[None, :]
        lexical = np.where(mask, lexical, 0.0)
    return (1 - weight) * row_z(dense) + weight * lexical


def language_slots_kept(c: Catalog, dense: np.ndarray, weight: float, pool: int = 50) -> np.ndarray:
    """Reorder only the query-language items of the top ``pool`` by dense + BM25, each keeping a slot of its
    language, so the language mix of the list stays the dense one."""
    scores = dense.copy()
    languages = np.array([p.language for p in c.publications])
    for q in range(len(scores)):
        row = scores[q].copy()
        row[q] = -np.inf
        top = np.argsort(-row)[:pool]
        same = top[languages[top] == languages[q]]
        if len(same) < 2:
            continue
        mix = (1 - weight) * _z(scores[q, same]) + weight * _z(c.bm25[q, same])
        scores[q, same[np.argsort(-mix, kind="stable")]] = np.sort(scores[q, same])[::-1]
    return scores


def _z(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-9)


def all_but_the_top(vectors: np.ndarray, d: int) -> np.ndarray:
    x = vectors - vectors.mean(axis=0)
    _, _, top = np.linalg.svd(x, full_matrices=False)
    return normalize(x - (x @ top[:d].T) @ top[:d])


def csls(vectors: np.ndarray, k: int) -> np.ndarray:
    scores = cosine(vectors)
    masked = scores.copy()
    np.fill_diagonal(masked, -np.inf)
    hub = -np.partition(-masked, min(k, len(vectors) - 1) - 1, axis=1)[:, :k].mean(axis=1)
    return 2 * scores - hub[None, :]


def title_blend(c: Catalog, encoder, weight: float) -> np.ndarray:
    titles = encoder.encode(
        [p.title or p.abstract[:200] for p in c.publications], languages=[p.language for p in c.publications]
    )
    return centred(normalize(c.vectors + weight * titles))


def attempts(encoder) -> list[tuple[str, str, Attempt]]:
    """(name, verdict, score matrix) in the order they were tried."""
    zc = lambda v, c, **kw: z_key(c, v, **kw)  # noqa: E731
    final = lambda c: chunk_smoothed(c)  # noqa: E731
    return [
        ("plain cosine (the model's vectors)", "reference", lambda c: cosine(c.vectors)),
        (
            "per-language z-score, all items (shipped before)",
            "lost: masakhanews -0.040",
            lambda c: zc(c.vectors, c, translated_only=False, shrinkage=20),
        ),
        (
            "  ... shrunk halfway toward the catalog",
            "lost: masakhanews still -0.010, bias 0.219",
            lambda c: zc(c.vectors, c, translated_only=False, shrinkage=20, strength=0.5),
        ),
        (
            "per-language z-score, translated items only (c=20)",
            "kept (masakhanews and seed back to cosine)",
            lambda c: zc(c.vectors, c, translated_only=True, shrinkage=20),
        ),
        (
            "  ... James-Stein weights instead of n/(n+c)",
            "lost: weights ~0 (offsets within noise)",
            lambda c: zc(c.vectors, c, translated_only=True, shrinkage=20, james_stein=True),
        ),
        ("catalog centring", "kept", lambda c: cosine(centred(c.vectors))),
        ("all-but-the-top, 1 direction removed", "lost everywhere", lambda c: cosine(all_but_the_top(c.vectors, 1))),
        ("CSLS hubness correction (k=10)", "lost: sib200 -0.05", lambda c: csls(c.vectors, 10)),
        (
            "centring + title vector added (0.3)",
            "lost: ntrex P@1 -0.018 vs centring, gains within noise",
            lambda c: cosine(title_blend(c, encoder, 0.3)),
        ),
        (
            "late interaction (chunk max-sim, symmetric)",
            "lost: within 0.004 of mean pooling",
            lambda c: late_interaction(c, centre=False),
        ),
        ("  ... on centred chunks", "lost: below centred mean pooling", lambda c: late_interaction(c, centre=True)),
        (
            "centring + BM25 fusion, all pairs (w=0.1)",
            "lost: ntrex P@1 0.965 -> 0.860, sib200 -0.009",
            lambda c: hybrid(c, cosine(centred(c.vectors)), 0.1, same_language_long=False),
        ),
        (
            "  ... BM25 on same-language long pairs only",
            "lost: ntrex P@1 0.965 -> 0.901 (a same-language boost)",
            lambda c: hybrid(c, cosine(centred(c.vectors)), 0.1, same_language_long=True),
        ),
        (
            "  ... reordering query-language slots only (w=0.3)",
            "lost: no gain left without the boost; site samples -0.01/-0.02",
            lambda c: language_slots_kept(c, cosine(centred(c.vectors)), 0.3),
        ),
        (
            "centring + document smoothing (k=5, 0.5)",
            "second: masakhanews 0.789 / P@1 0.823",
            lambda c: cosine(smoothed(centred(c.vectors), 5, 0.5)),
        ),
        ("centring + chunk smoothing (k=5, 0.5)", "kept", lambda c: cosine(final(c))),
        ("  ... k=3", "within noise of k=5 (not tuned further)", lambda c: cosine(chunk_smoothed(c, 3))),
        ("  ... k=10", "within noise of k=5 (not tuned further)", lambda c: cosine(chunk_smoothed(c, 10))),
        ("  ... weight 1.0", "lost: seed -0.020", lambda c: cosine(chunk_smoothed(c, 5, 1.0))),
        (
            "chunk smoothing + z-score, all items",
            "lost: masakhanews -0.043",
            lambda c: zc(final(c), c, translated_only=False, shrinkage=20),
        ),
        (
            "chunk smoothing + z-score, translated items, c=20",
            "bias 0.205 > 0.20",
            lambda c: zc(final(c), c, translated_only=True, shrinkage=20),
        ),
        ("  ... c=50", "bias 0.216, ntrex P@1 0.988", lambda c: zc(final(c), c, translated_only=True, shrinkage=50)),
    ]


def prepare(shape: Shape, encoder, cache: EmbeddingCache) -> list[Catalog]:
    catalogs = []
    for publications in shape.catalogs:
        publications = list(publications)
        texts = [publication_text(p) for p in publications]
        chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
        bm25 = bm25_ranker(publications)
        scores = np.stack([bm25._scores(i) for i in range(len(publications))])
        catalogs.append(Catalog(publications, chunks, chunks.pooled().astype(np.float64), scores, encoder.name))
    return catalogs


def measure(shape: Shape, catalog: Catalog, ranker) -> dict[str, float]:
    report = evaluate_system(
        ranker, catalog.publications, relevance=shape.relevance, qrels_path=shape.qrels, pairs=False
    )
    return {"ndcg": report.overall["ndcg@10"], "p1": report.overall["p@1"], "bias": report.language_bias}


def main(argv: list[str] | None = None) -> int:
    """Run every attempt on every shape and write the Markdown table (and a JSON copy)."""
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "docs" / "quality-shapes.md")
    parser.add_argument("--only", help="run only attempts whose name contains this text")
    args = parser.parse_args(argv)
    if not (args.shared_data / "masakhanews-dev" / "catalog.jsonl").is_file():
        print(f"error: {args.shared_data} does not hold the shared evaluation data", file=sys.stderr)
        return 2
    started = time.perf_counter()
    encoder = open_encoder(settings)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite")
    shapes = standard_shapes(args.shared_data, PROJECT_ROOT / "data" / "demo" / "catalog.jsonl")
    prepared = {shape.name: prepare(shape, encoder, cache) for shape in shapes}
    rows = []
    chosen = [a for a in attempts(encoder) if not args.only or args.only in a[0]]
    final = ("**served: the engine** (chunk smoothing + z-score on translated items, c=10)", "**shipped**", None)
    for name, verdict, attempt in [*chosen, final]:
        results = {}
        for shape in shapes:
            runs = []
            for catalog in prepared[shape.name]:
                if attempt is None:
                    contents = derive(catalog.publications, catalog.chunks, encoder.name, BuildOptions())
                    ranker = EngineRanker(Recommender.from_contents(contents))
                else:
                    scores = attempt(catalog)
                    ranker = ScoreRanker(name, catalog.publications, lambda row, s=scores: s[row])
                runs.append(measure(shape, catalog, ranker))
            results[shape.name] = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        rows.append({"attempt": name, "verdict": verdict, **results})
        print(f"{name}: " + ", ".join(f"{k} {v['ndcg']:.3f}" for k, v in results.items()), flush=True)
    write_table(args.out, rows)
    print(
        f"measured {len(rows)} attempts on {len(shapes)} shapes in {time.perf_counter() - started:.0f}s -> {args.out}"
    )
    return 0


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


def write_table(path: Path, rows: list[dict]) -> None:
    """docs/quality-shapes.md: one row per attempt, one column per shape and figure."""
    header = "| attempt | " + " | ".join(label for _, _, label in COLUMNS) + " | verdict |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = [f"{r[shape][key]:.3f}" for shape, key, _ in COLUMNS]
        lines.append(f"| {r['attempt']} | " + " | ".join(cells) + f" | {r['verdict']} |")
    intro_path = PROJECT_ROOT / "docs" / "quality-shapes-intro.md"
    intro = intro_path.read_text(encoding="utf-8") if intro_path.is_file() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(intro + "\n".join(lines) + "\n", encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    sys.exit(main())
