"""Fine-tuning the whole encoder (every float weight of ``UseNetwork``; the uint8 table stays frozen), measured
on every catalog shape against the served model (docs/finetune.md); research code, not served.

Training data: the *training* split of a labelled catalog only (SIB-200 ``split == "train"``), as
(anchor, positive) pairs: translation pairs (two languages of one ``group``) and same-topic pairs (two items of
one topic in different groups). ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` (the other
positives of the batch are the negatives) trains from the plain encoder's folder; the result is an ordinary
``SentenceTransformer`` folder. :class:`FolderEncoder` turns such a folder (plus, optionally, an adapter trained
on top of it with :mod:`engine.encode.adapter`) into an :class:`~engine.encode.embed.Encoder` for
:func:`engine.eval.shapes.evaluate_shape`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.catalog.records import Publication, load_catalog
from engine.catalog.text import publication_text
from engine.encode.adapter import AdapterConfig, apply_adapter, load_adapter, save_adapter, train_adapter
from engine.encode.chunks import ChunkVectors, normalize
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached
from engine.encode.models import sha256_file
from engine.eval.evaluate import EngineRanker, Exclusions
from engine.eval.metrics import judgments_for, ndcg_at_k
from engine.eval.shapes import Shape, ShapeRow, composition, evaluate_shape
from engine.index.options import BuildOptions
from engine.index.store import Build
from engine.rank.recommend import Recommender

WEIGHTS_FILE = "model.safetensors"  # what engine.encode.use_module saves
INFO_FILE = "finetune.json"


@dataclass(frozen=True, slots=True)
class FinetuneConfig:
    """Hyper-parameters of one fine-tuning run (short: a few minutes of two CPU cores)."""

    epochs: float = 1.0
    batch_size: int = 64
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0  # MultipleNegativesRankingLoss: cosine similarities times this are the logits
    topic_pairs_per_item: int = 1  # same-topic pairs drawn per training item (0: translation pairs only)
    translation_pairs: bool = True
    max_steps: int = -1  # > 0: stop after this many optimiser steps (tests)
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (in-batch negatives), got {self.batch_size}")
        if self.epochs <= 0 or self.learning_rate <= 0:
            raise ValueError(f"epochs and learning_rate must be positive, got {self.epochs}, {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.topic_pairs_per_item < 0 or self.threads < 1:
            raise ValueError("topic_pairs_per_item must be >= 0 and threads >= 1")
        if not self.translation_pairs and self.topic_pairs_per_item == 0:
            raise ValueError("no training pairs asked for: keep translation pairs or draw topic pairs")


@dataclass(frozen=True, slots=True)
class TrainingPairs:
    """(anchor, positive) texts and how many of each kind."""

    anchors: list[str]
    positives: list[str]
    translation: int
    topic: int

    def __len__(self) -> int:
        return len(self.anchors)


@dataclass(frozen=True, slots=True)
class FinetuneResult:
    """What one run did: pairs, steps, time, final training loss, and where the model is."""

    folder: Path
    pairs: int
    translation_pairs: int
    topic_pairs: int
    steps: int
    seconds: float
    loss: float
    config: dict[str, Any]


def training_publications(catalog: Path, split: str = "train") -> list[Publication]:
    """The items of ``catalog`` whose ``split`` is ``split`` (never any other: the dev split is evaluated on)."""
    publications = [p for p in load_catalog(catalog).publications if p.metadata.get("split") == split]
    if len(publications) < 2:
        raise ValueError(f"{catalog} has {len(publications)} items with split {split!r}; at least 2 are needed")
    return publications


def training_pairs(publications: Sequence[Publication], config: FinetuneConfig | None = None) -> TrainingPairs:
    """Translation pairs (each two languages of a ``group``, in a random order) and ``topic_pairs_per_item``
    same-topic pairs per item (a random partner of the item's first topic from another group), shuffled."""
    config = config or FinetuneConfig()
    rng = random.Random(config.seed)
    pairs: list[tuple[str, str]] = []
    translation = 0
    if config.translation_pairs:
        groups: dict[str, list[Publication]] = defaultdict(list)
        for p in publications:
            if p.group:
                groups[p.group].append(p)
        for group in sorted(groups):
            for a, b in itertools.combinations(groups[group], 2):
                if a.language != b.language:
                    pairs.append(
                        (publication_text(a), publication_text(b))
                        if rng.random() < 0.5
                        else (publication_text(b), publication_text(a))
                    )
                    translation += 1
    by_topic: dict[str, list[Publication]] = defaultdict(list)
    for p in publications:
        if p.topics:
            by_topic[p.topics[0]].append(p)
    topic = 0
    for p in publications if config.topic_pairs_per_item else ():
        partners = [
            q for q in by_topic.get(p.topics[0] if p.topics else "", []) if (q.group or q.id) != (p.group or p.id)
        ]
        for q in rng.sample(partners, min(config.topic_pairs_per_item, len(partners))):
            pairs.append((publication_text(p), publication_text(q)))
            topic += 1
    if not pairs:
        raise ValueError("no training pairs: the items share no translation group and no topic")
    rng.shuffle(pairs)
    return TrainingPairs([a for a, _ in pairs], [b for _, b in pairs], translation, topic)


def load_folder(folder: Path, threads: int = 2) -> Any:
    """A ``SentenceTransformer`` folder (this project's module code), on the CPU, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from sentence_transformers import SentenceTransformer

    if not (Path(folder) / "modules.json").is_file():
        raise FileNotFoundError(f"{folder} is not a sentence-transformers folder (no modules.json)")
    torch.set_num_threads(threads)
    # trust_remote_code: the module class is engine.encode.use_module, named in a folder this project wrote.
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=True)
    if hasattr(model[0], "threads"):
        model[0].threads = threads
    return model


def finetune(base: Path, pairs: TrainingPairs, output: Path, config: FinetuneConfig | None = None) -> FinetuneResult:
    """Train every float parameter of the model in ``base`` on ``pairs``; save it to ``output`` (with
    ``finetune.json`` describing the run). The model's buffers (the uint8 embedding table) are not trained."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    config = config or FinetuneConfig()
    torch.manual_seed(config.seed)
    model = load_folder(base, config.threads)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    dataset = Dataset.from_dict({"anchor": pairs.anchors, "positive": pairs.positives})
    loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    with tempfile.TemporaryDirectory(prefix="finetune-") as scratch:
        arguments = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,  # a float below 1: a share of the steps (Transformers 5)
            weight_decay=config.weight_decay,
            batch_sampler=BatchSamplers.NO_DUPLICATES,
            seed=config.seed,
            data_seed=config.seed,
            use_cpu=True,
            dataloader_num_workers=0,
            save_strategy="no",
            report_to="none",
            logging_steps=10,
            disable_tqdm=True,
        )
        trainer = SentenceTransformerTrainer(model=model, args=arguments, train_dataset=dataset, loss=loss)
        started = time.perf_counter()
        outcome = trainer.train()
        seconds = time.perf_counter() - started
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.save(str(output))
    return FinetuneResult(
        folder=output,
        pairs=len(pairs),
        translation_pairs=pairs.translation,
        topic_pairs=pairs.topic,
        steps=int(outcome.global_step),
        seconds=round(seconds, 1),
        loss=round(float(outcome.training_loss), 4),
        config=dataclasses.asdict(config),
    )


def write_info(result: FinetuneResult, base: Path, trained_on: str) -> None:
    """``finetune.json`` in the output folder: the run's settings and figures."""
    info = {**dataclasses.asdict(result), "folder": str(result.folder), "base": str(base), "trained_on": trained_on}
    (result.folder / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


class FolderEncoder:
    """An :class:`~engine.encode.embed.Encoder` over a ``SentenceTransformer`` folder outside ``models/``.

    ``name`` carries a hash of the weights, so cached vectors of two runs are never mixed.
    """

    def __init__(self, folder: Path, label: str, *, threads: int = 2, batch_size: int = 64) -> None:
        self.folder = Path(folder)
        self._model = load_folder(self.folder, threads)
        self.name = f"{label}@{sha256_file(self.folder / WEIGHTS_FILE)[:12]}"
        self.dimension = int(self._model.get_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``."""
        return int(self._model[0].count_tokens(text))

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Unit vectors of ``texts``."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(list(texts), batch_size=self.batch_size, show_progress_bar=show_progress)
        return normalize(np.asarray(vectors, dtype=np.float32))


class AdaptedEncoder:
    """``inner``'s vectors through offsets and an adapter (a folder written by
    :func:`engine.encode.adapter.save_adapter`): ``normalize(center(v) @ W)`` per chunk, as the served tuned
    model computes them. Chunks come from ``inner`` through ``cache``, so nothing is encoded twice."""

    def __init__(self, inner: Encoder, adapter: Path, cache: EmbeddingCache | None = None) -> None:
        self.inner = inner
        self.cache = cache
        self.weight, self.means = load_adapter(Path(adapter))
        digest = hashlib.sha256("".join(sha256_file(p) for p in sorted(Path(adapter).glob("*"))).encode())
        self.name = f"{inner.name}+adapter@{digest.hexdigest()[:12]}"
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens the inner model sees for ``text``."""
        return self.inner.count_tokens(text)

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Adapted unit vectors of ``texts`` (the offsets need ``languages``)."""
        vectors = self.inner.encode(texts, languages=languages, show_progress=show_progress)
        return apply_adapter(vectors, languages or [None] * len(texts), self.weight, self.means)

    def encode_chunks(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> ChunkVectors:
        """The inner model's (cached) chunks of ``texts``, each adapted with its document's language."""
        languages = list(languages) if languages is not None else [None] * len(texts)
        chunks, _ = encode_cached(self.inner, texts, self.cache, languages=languages, show_progress=show_progress)
        chunk_languages = [languages[owner] for owner in chunks.owners.tolist()]
        vectors = apply_adapter(chunks.vectors, chunk_languages, self.weight, self.means)
        return ChunkVectors(vectors, chunks.owners, chunks.weights, chunks.documents)


def train_adapter_on(
    encoder: Encoder,
    publications: Sequence[Publication],
    folder: Path,
    cache: EmbeddingCache | None = None,
    config: AdapterConfig | None = None,
) -> None:
    """Fit per-language offsets and the topic adapter on ``encoder``'s vectors of ``publications`` (as
    scripts/train_adapter.py does for the served model on the plain encoder's) and save them in ``folder``."""
    texts = [publication_text(p) for p in publications]
    chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
    config = config or AdapterConfig()
    weight, means = train_adapter(chunks.pooled(), publications, config)
    info = {"base": encoder.name, "items": len(publications), "config": dataclasses.asdict(config)}
    save_adapter(Path(folder), weight, means, info)


# The metrics compared, as evaluate_shape names them for k = 10.
METRICS = ("ndcg@{k}", "mrr@{k}", "p@1")


def measure(
    encoder: Encoder, shapes: Sequence[Shape], cache: EmbeddingCache | None = None, k: int = 10
) -> dict[str, dict[str, dict[str, float]]]:
    """``{shape: {system: metrics}}`` of ``encoder`` on every shape (the served ranking and plain cosine)."""
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for shape in shapes:
        rows: list[ShapeRow] = evaluate_shape(shape, encoder, cache, k=k)
        figures[shape.name] = {
            row.system: {name: round(value, 4) for name, value in row.metrics.items()}
            for row in rows
            if row.system in ("served", "plain cosine")
        }
    return figures


def comparison_table(
    shapes: Sequence[Shape], results: dict[str, dict[str, dict[str, dict[str, float]]]], k: int = 10
) -> str:
    """Markdown: one line per shape, variant and system; nDCG@k, MRR@k and P@1."""
    names = [m.format(k=k) for m in METRICS]
    lines = [
        f"| shape | variant | system | nDCG@{k} | MRR@{k} | P@1 |",
        "|---|---|---|---|---|---|",
    ]
    for shape in shapes:
        first = True
        for variant, figures in results.items():
            for system, metrics in figures[shape.name].items():
                label = f"**{shape.name}** ({composition(shape.catalogs)})" if first else ""
                first = False
                values = " | ".join(f"{metrics[name]:.3f}" for name in names)
                lines.append(f"| {label} | {variant} | {system} | {values} |")
    return "\n".join(lines)


def verdict(
    reference: dict[str, dict[str, dict[str, float]]],
    candidate: dict[str, dict[str, dict[str, float]]],
    k: int = 10,
    system: str = "served",
) -> dict[str, dict[str, float]]:
    """Per shape, ``candidate - reference`` of each metric for ``system``; the candidate wins a shape when its
    nDCG@k is higher there (the other metrics are reported, not voted on)."""
    names = [m.format(k=k) for m in METRICS]
    return {
        shape: {name: round(candidate[shape][system][name] - reference[shape][system][name], 4) for name in names}
        for shape in reference
    }


def paired_bootstrap(
    shape: Shape,
    first: Encoder,
    second: Encoder,
    cache: EmbeddingCache | None = None,
    k: int = 10,
    samples: int = 2000,
) -> tuple[float, float, float]:
    """Mean per-query difference first - second of the served ranking's nDCG@k on ``shape`` (the queries of
    all its catalogs pooled), with the 95 % interval of a seeded paired bootstrap: ``(mean, low, high)``."""
    differences: list[float] = []
    exclusions = Exclusions(include_translations=shape.relevance == "group")
    for publications in shape.catalogs:
        texts = [publication_text(p) for p in publications]
        languages = [p.language for p in publications]
        rankers = []
        for encoder in (first, second):
            chunks, _ = encode_cached(encoder, texts, cache, languages=languages)
            build = Build.assemble(publications, chunks, encoder.name, BuildOptions())
            rankers.append(EngineRanker(Recommender(build)))
        qrels = judgments_for(publications, shape.relevance, shape.qrels)
        for query, judged in qrels.items():
            if any(grade > 0 for grade in judged.values()):
                a, b = (ranker.rank(query, k, exclusions) for ranker in rankers)
                differences.append(ndcg_at_k(a, judged, k) - ndcg_at_k(b, judged, k))
    values = np.asarray(differences)
    rng = np.random.default_rng(0)
    means = np.array([values[rng.integers(0, len(values), len(values))].mean() for _ in range(samples)])
    low, high = np.percentile(means, [2.5, 97.5])
    return round(float(values.mean()), 4), round(float(low), 4), round(float(high), 4)
