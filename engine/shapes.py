"""Catalog shapes for evaluation: the shared dev sets, the bundled catalogs, and reproducible unbalanced samples.

A ranking that wins on balanced parallel data can lose on what sites publish (mostly one language, long
texts, some items translated), so every change is measured on every shape here, served ranking next to
the model's plain cosine and BM25 (``scripts/evaluate.py --shapes``).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.baselines import bm25_ranker, random_ranker, recency_ranker
from engine.catalog import Publication, load_catalog
from engine.embed import EmbeddingCache, Encoder, encode_cached
from engine.evaluate import EngineRanker, Ranker, evaluate_system
from engine.pipeline import BuildOptions, derive
from engine.recommend import Recommender
from engine.text import publication_text

# A think tank's site: mostly English, some French, fewer Arabic (the example shape).
SITE_SHARES: Mapping[str, float] = {"en": 0.7, "fr": 0.2, "ar": 0.1}
SAMPLE_SEEDS = (0, 1, 2, 3, 4)
SYSTEMS = ("served", "plain cosine", "bm25", "recency", "random")


@dataclass(frozen=True, slots=True)
class Shape:
    """One catalog shape: one catalog, or several samples of one kind whose figures are averaged."""

    name: str
    description: str
    catalogs: tuple[tuple[Publication, ...], ...]
    relevance: str = "topics"
    qrels: Path | None = None


@dataclass(slots=True)
class ShapeRow:
    """The figures of one system on one shape (means over the shape's catalogs)."""

    shape: str
    system: str
    metrics: dict[str, float] = field(default_factory=dict)


def site_sample(
    publications: Sequence[Publication],
    seed: int,
    *,
    shares: Mapping[str, float] = SITE_SHARES,
    translated: float = 1 / 3,
) -> list[Publication]:
    """A site-like sample of a parallel catalog: each translation group becomes one publication in a language
    drawn by ``shares``; a ``translated`` share of the groups keeps its versions in all those languages (a
    site that translates some of its publications). Reproducible: the same seed gives the same sample."""
    rng = random.Random(seed)
    versions: dict[str, dict[str, Publication]] = defaultdict(dict)
    for p in publications:
        if p.group and p.language in shares:
            versions[p.group][p.language] = p
    languages, weights = list(shares), list(shares.values())
    sample: list[Publication] = []
    for group in sorted(versions):
        primary = rng.choices(languages, weights)[0]
        if rng.random() < translated:
            sample.extend(versions[group][lang] for lang in languages if lang in versions[group])
        elif primary in versions[group]:
            sample.append(replace(versions[group][primary], group=None))
    return sample


def standard_shapes(shared: Path, demo: Path, seeds: Sequence[int] = SAMPLE_SEEDS) -> list[Shape]:
    """The shapes of the shared dev sets (``shared``: the ``../shared/data`` folder) and the demo catalog."""
    sib = [
        p for p in load_catalog(shared / "sib200-dev" / "catalog.jsonl").publications if p.metadata["split"] == "dev"
    ]
    one = (tuple(load_catalog(shared / "masakhanews-dev" / "catalog.jsonl").publications),)
    return [
        Shape("sib200-dev", "balanced, parallel: 99 sentences x en, fr, ar, ary", (tuple(sib),)),
        Shape("masakhanews-dev", "unbalanced (69 % en), long news, no translations", one),
        Shape(
            "ntrex-dev",
            "articles with translations (relevance: the translations)",
            (tuple(load_catalog(shared / "ntrex-dev" / "catalog.jsonl").publications),),
            relevance="group",
        ),
        Shape(
            "seed",
            "the product's page: 11 items, graded judgments",
            (tuple(load_catalog(shared / "seed" / "catalog.jsonl").publications),),
            qrels=shared / "seed" / "qrels.tsv",
        ),
        Shape(
            "demo",
            "think-tank catalog: en 45 %, fr 30 %, ar 25 %, 32 translation groups",
            (tuple(load_catalog(demo).publications),),
        ),
        Shape(
            "sib200 site sample",
            f"sib200-dev as a site: en/fr/ar 70/20/10 %, a third translated ({len(seeds)} samples)",
            tuple(tuple(site_sample(sib, seed)) for seed in seeds),
        ),
        Shape(
            "sib200 site sample, untranslated",
            f"the same without translation groups ({len(seeds)} samples)",
            tuple(tuple(site_sample(sib, 100 + seed, translated=0.0)) for seed in seeds),
        ),
    ]


def evaluate_shape(shape: Shape, encoder: Encoder, cache: EmbeddingCache | None = None, k: int = 10) -> list[ShapeRow]:
    """Every system of :data:`SYSTEMS` on every catalog of ``shape``; figures averaged over the catalogs."""
    totals: dict[str, list[dict[str, float]]] = defaultdict(list)
    for publications in shape.catalogs:
        texts = [publication_text(p) for p in publications]
        chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
        rankers: dict[str, Ranker] = {
            "served": EngineRanker(
                Recommender.from_contents(derive(publications, chunks, encoder.name, BuildOptions()))
            ),
            "plain cosine": EngineRanker(
                Recommender.from_contents(derive(publications, chunks, encoder.name, BuildOptions.plain()))
            ),
            "bm25": bm25_ranker(publications),
            "recency": recency_ranker(publications),
            "random": random_ranker(publications),
        }
        for system, ranker in rankers.items():
            report = evaluate_system(
                ranker, list(publications), relevance=shape.relevance, qrels_path=shape.qrels, k=k, pairs=False
            )
            totals[system].append(
                {
                    f"ndcg@{k}": report.overall[f"ndcg@{k}"],
                    f"mrr@{k}": report.overall[f"mrr@{k}"],
                    "p@1": report.overall["p@1"],
                    f"cross-lingual ndcg@{k}": report.cross_lingual[f"ndcg@{k}"],
                    "language bias": report.language_bias,
                    "items": float(len(publications)),
                }
            )
    return [
        ShapeRow(shape.name, system, {name: float(np.mean([t[name] for t in runs])) for name in runs[0]})
        for system, runs in totals.items()
    ]


def shapes_table(shapes: Sequence[Shape], rows: Sequence[ShapeRow], k: int = 10) -> str:
    """Markdown: one line per shape and system, the served ranking first."""
    lines = [
        f"| shape | system | nDCG@{k} | MRR@{k} | P@1 | cross-lingual nDCG@{k} | language bias | items |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for shape in shapes:
        for row in (r for r in rows if r.shape == shape.name):
            m = row.metrics
            name = f"**{shape.name}** ({shape.description})" if row.system == SYSTEMS[0] else ""
            lines.append(
                f"| {name} | {row.system} | {m[f'ndcg@{k}']:.3f} | {m[f'mrr@{k}']:.3f} | {m['p@1']:.3f} | "
                f"{m[f'cross-lingual ndcg@{k}']:.3f} | {m['language bias']:.3f} | {m['items']:.0f} |"
            )
    return "\n".join(lines)
