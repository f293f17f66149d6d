"""Catalog shapes for evaluation: the shared dev sets, the bundled catalogs, and reproducible unbalanced samples.

A ranking that wins on balanced parallel data can lose on what sites publish (mostly one language, long
texts, some items translated), so every change is measured on every shape here, served ranking next to
the model's plain cosine and BM25 (``scripts/evaluate.py --shapes``).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import numpy as np

from engine.catalog.records import Publication, load_catalog
from engine.catalog.text import publication_text
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.eval.baselines import bm25_ranker, random_ranker, recency_ranker
from engine.eval.evaluate import EngineRanker, Ranker, evaluate_system
from engine.index.options import BuildOptions
from engine.index.store import Build
from engine.rank.recommend import Recommender
from engine.settings import PROJECT_ROOT

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEMO_CATALOG = PROJECT_ROOT / "data" / "demo" / "catalog.jsonl"
SHARED_SETS = ("sib200-dev", "masakhanews-dev", "ntrex-dev", "seed")

# A think tank's site: mostly English, some French, fewer Arabic (the example shape).
SITE_SHARES: Mapping[str, float] = MappingProxyType({"en": 0.7, "fr": 0.2, "ar": 0.1})
SITE_TRANSLATED = 1 / 3
SAMPLE_SEEDS = (0, 1, 2, 3, 4)
# Seeds of the untranslated samples: other draws than the translated ones, so the two rows are not the same
# sentences with and without their translations.
_UNTRANSLATED_SEED_OFFSET = 100
SYSTEMS = ("served", "plain cosine", "bm25", "recency", "random")


@dataclass(frozen=True, slots=True)
class Shape:
    """One catalog shape: one catalog, or several samples of one kind whose figures are averaged."""

    name: str
    kind: str  # what the shape stands for; :func:`composition` says what it holds
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
    translated: float = SITE_TRANSLATED,
) -> list[Publication]:
    """A site-like sample of a parallel catalog: each translation group becomes one publication in a language
    drawn by ``shares``, and about a ``translated`` share of the sample's items are in translation groups of
    two versions (the original and one translation, in another language drawn by ``shares``): an English-first
    site translates into French and Arabic. With the default shares a third translated gives about en 62 % /
    fr 25 % / ar 13 % of items. Reproducible: the same seed gives the same sample."""
    if not 0 <= translated < 1:
        raise ValueError(f"translated must be at least 0 and below 1, got {translated}")
    rng = random.Random(seed)
    versions: dict[str, dict[str, Publication]] = defaultdict(dict)
    for p in publications:
        if p.group and p.language in shares:
            versions[p.group][p.language] = p
    # Groups of two: a share t of the groups gives 2t items in groups out of 1 + t, so t = x / (2 - x).
    groups_translated = translated / (2 - translated)
    sample: list[Publication] = []
    for group in sorted(versions):
        present = versions[group]
        languages = [lang for lang in shares if lang in present]
        primary = rng.choices(languages, [shares[lang] for lang in languages])[0]
        others = [lang for lang in languages if lang != primary]
        if others and rng.random() < groups_translated:
            second = rng.choices(others, [shares[lang] for lang in others])[0]
            sample.extend([present[primary], present[second]])
        else:
            sample.append(replace(present[primary], group=None))
    return sample


def composition(catalogs: Sequence[Sequence[Publication]]) -> str:
    """What a shape's catalogs hold, on average: items, language shares, share in translation groups."""
    items = [p for catalog in catalogs for p in catalog]
    languages = Counter(p.language or "?" for p in items)
    groups = Counter(p.group for p in items if p.group)
    translated = sum(1 for p in items if p.group and groups[p.group] > 1)
    mix = " / ".join(f"{lang} {100 * n / len(items):.0f} %" for lang, n in languages.most_common())
    return f"{len(items) / len(catalogs):.0f} items, {mix}, {100 * translated / len(items):.0f} % translated"


class MissingSharedDataError(FileNotFoundError):
    """The shared evaluation data is not where it was looked for."""


def standard_shapes(
    shared: Path = SHARED_DATA, demo: Path = DEMO_CATALOG, seeds: Sequence[int] = SAMPLE_SEEDS
) -> list[Shape]:
    """The shapes of the shared dev sets (``shared``: the ``../shared/data`` folder) and the demo catalog.

    Raises :class:`MissingSharedDataError` naming the first set missing from ``shared``.
    """
    for name in SHARED_SETS:
        if not (shared / name / "catalog.jsonl").is_file():
            raise MissingSharedDataError(f"{shared / name / 'catalog.jsonl'} is absent: pass the shared data folder")
    sib = [
        p for p in load_catalog(shared / "sib200-dev" / "catalog.jsonl").publications if p.metadata["split"] == "dev"
    ]

    def one(path: Path) -> tuple[tuple[Publication, ...], ...]:
        return (tuple(load_catalog(path).publications),)

    return [
        Shape("sib200-dev", "balanced and parallel (sentences)", (tuple(sib),)),
        Shape(
            "masakhanews-dev",
            "unbalanced, long news, no translations",
            one(shared / "masakhanews-dev" / "catalog.jsonl"),
        ),
        Shape(
            "ntrex-dev",
            "articles and their translations (relevance: the translations)",
            one(shared / "ntrex-dev" / "catalog.jsonl"),
            relevance="group",
        ),
        Shape(
            "seed",
            "the product's page, graded judgments",
            one(shared / "seed" / "catalog.jsonl"),
            qrels=shared / "seed" / "qrels.tsv",
        ),
        Shape("demo", "a think tank's catalog, partly translated", one(demo)),
        Shape(
            "sib200 site sample",
            f"sib200-dev as an English-first site, a third of items translated ({len(seeds)} samples)",
            tuple(tuple(site_sample(sib, seed)) for seed in seeds),
        ),
        Shape(
            "sib200 site sample, untranslated",
            f"sib200-dev as a site without translations ({len(seeds)} samples)",
            tuple(tuple(site_sample(sib, _UNTRANSLATED_SEED_OFFSET + seed, translated=0.0)) for seed in seeds),
        ),
    ]


def evaluate_shape(shape: Shape, encoder: Encoder, cache: EmbeddingCache | None = None, k: int = 10) -> list[ShapeRow]:
    """Every system of :data:`SYSTEMS` on every catalog of ``shape``; figures averaged over the catalogs."""
    totals: dict[str, list[dict[str, float]]] = defaultdict(list)
    for publications in shape.catalogs:
        texts = [publication_text(p) for p in publications]
        chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
        rankers: dict[str, Ranker] = {
            "served": EngineRanker(Recommender(Build.assemble(publications, chunks, encoder.name, BuildOptions()))),
            "plain cosine": EngineRanker(
                Recommender(Build.assemble(publications, chunks, encoder.name, BuildOptions.plain()))
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
            name = f"**{shape.name}**: {shape.kind}; {composition(shape.catalogs)}" if row.system == SYSTEMS[0] else ""
            lines.append(
                f"| {name} | {row.system} | {m[f'ndcg@{k}']:.3f} | {m[f'mrr@{k}']:.3f} | {m['p@1']:.3f} | "
                f"{m[f'cross-lingual ndcg@{k}']:.3f} | {m['language bias']:.3f} | {m['items']:.0f} |"
            )
    return "\n".join(lines)
