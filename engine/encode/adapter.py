"""Training the topic adapter: per-language centring plus a linear map on top of the frozen encoder.

Trained on the *training* split of a labelled catalog only (SIB-200 ``split == "train"``): translation
pairs (same ``group``) and same-topic pairs are pulled together with a supervised contrastive loss,
and the map is kept close to the identity so what the encoder already knows is not lost.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.catalog.records import Publication

if TYPE_CHECKING:
    import torch

ADAPTER_FILE = "adapter.safetensors"
OFFSETS_FILE = "language_offsets.json"


@dataclass(frozen=True, slots=True)
class AdapterConfig:
    """Hyper-parameters, chosen on the dev split (docs/quality.md lists the alternatives tried)."""

    temperature: float = 0.05
    identity_weight: float = 0.1  # penalty on ||W - I||^2
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    seed: int = 0
    center: bool = True  # remove per-language means before the map


def language_means(vectors: np.ndarray, languages: Sequence[str | None]) -> dict[str, np.ndarray]:
    """Mean vector per language (the language component that centring removes)."""
    langs = np.array([lang or "" for lang in languages])
    return {lang: vectors[langs == lang].mean(axis=0) for lang in sorted(set(langs)) if lang}


def center(vectors: np.ndarray, languages: Sequence[str | None], means: dict[str, np.ndarray]) -> np.ndarray:
    """Subtract each row's language mean (rows of unknown languages stay as they are), re-normalised."""
    out = np.array(vectors, dtype=np.float32, copy=True)
    for row, lang in enumerate(languages):
        if lang in means:
            out[row] -= means[lang]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def train_adapter(
    vectors: np.ndarray, publications: Sequence[Publication], config: AdapterConfig | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fit language means and a square map ``W`` (apply as ``normalize(center(v) @ W)``)."""
    import torch

    config = config or AdapterConfig()
    if len(vectors) != len(publications) or len(vectors) < 2:
        raise ValueError(f"need matching vectors and publications (got {len(vectors)} and {len(publications)})")
    languages = [p.language for p in publications]
    means = language_means(vectors, languages) if config.center else {}
    x = torch.tensor(center(vectors, languages, means))
    topics = {t: i for i, t in enumerate(sorted({p.topics[0] for p in publications if p.topics}))}
    groups = {g: i for i, g in enumerate(sorted({p.group or p.id for p in publications}))}
    topic = torch.tensor([topics[p.topics[0]] if p.topics else -1 for p in publications])
    group = torch.tensor([groups[p.group or p.id] for p in publications])
    generator = torch.Generator().manual_seed(config.seed)
    dimension = x.shape[1]
    identity = torch.eye(dimension)
    weight = torch.nn.Parameter(identity.clone())
    optimizer = torch.optim.Adam([weight], lr=config.learning_rate)
    for _ in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            batch = order[start : start + config.batch_size]
            z = torch.nn.functional.normalize(x[batch] @ weight, dim=1)
            logits = (z @ z.T / config.temperature).fill_diagonal_(-1e9)
            log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            not_self = ~torch.eye(len(batch), dtype=torch.bool)
            same_topic = (topic[batch, None] == topic[None, batch]) & (topic[batch, None] >= 0) & not_self
            same_group = (group[batch, None] == group[None, batch]) & not_self
            loss = _supervised_contrastive(log_p, same_topic) + _supervised_contrastive(log_p, same_group)
            loss = loss + config.identity_weight * ((weight - identity) ** 2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return weight.detach().numpy().astype(np.float32), means


def _supervised_contrastive(log_p: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    has = positives.any(dim=1)
    if not has.any():
        return log_p.new_zeros(())
    per_row = -(log_p * positives).sum(dim=1) / positives.sum(dim=1).clamp(min=1)
    return per_row[has].mean()


def save_adapter(folder: Path, weight: np.ndarray, means: dict[str, np.ndarray], info: dict) -> None:
    """Write ``adapter.safetensors`` (the map) and ``language_offsets.json`` (base-space means)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {"weight": np.ascontiguousarray(weight, dtype=np.float32)},
        str(folder / ADAPTER_FILE),
        metadata={"info": json.dumps(info)},
    )
    offsets = {lang: [round(float(v), 7) for v in mean] for lang, mean in means.items()}
    (folder / OFFSETS_FILE).write_text(json.dumps(offsets), encoding="utf-8")


def load_adapter(folder: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read what :func:`save_adapter` wrote."""
    from safetensors.numpy import load_file

    weight = load_file(str(folder / ADAPTER_FILE))["weight"]
    offsets = json.loads((folder / OFFSETS_FILE).read_text(encoding="utf-8"))
    return weight, {lang: np.asarray(v, dtype=np.float32) for lang, v in offsets.items()}


def apply_adapter(
    vectors: np.ndarray, languages: Sequence[str | None], weight: np.ndarray, means: dict[str, np.ndarray]
) -> np.ndarray:
    """What the tuned model computes from base vectors: ``normalize(center(v) @ W)``."""
    mapped = center(vectors, languages, means) @ weight
    return (mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-12)).astype(np.float32)
