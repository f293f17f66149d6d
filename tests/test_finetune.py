"""Fine-tuning the whole encoder (engine/eval/experiments/finetune.py, scripts/finetune_encoder.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine import get_settings
from engine.encode.models import prepared_path
from engine.eval.experiments.finetune import FinetuneConfig, training_pairs, training_publications
from scripts.finetune_encoder import main
from tests.fakes import pub, write_jsonl

SENTENCES = {
    "trade": ("Exports of grain rose this year.", "Les exportations de céréales ont augmenté cette année."),
    "water": ("The river dried up in August.", "La rivière s'est asséchée en août."),
    "health": ("The clinic opened a new ward.", "La clinique a ouvert un nouveau service."),
    "climate": ("Summers are getting hotter.", "Les étés sont de plus en plus chauds."),
}


def _catalog(tmp_path: Path) -> Path:
    """Four translation groups (en + fr) in the training split, two topics, plus one dev item never trained on."""
    records = []
    for i, (topic, (en, fr)) in enumerate(SENTENCES.items()):
        shared = "economy" if topic == "trade" or topic == "water" else "society"
        for language, text in (("en", en), ("fr", fr)):
            records.append(
                pub(f"g{i}-{language}", text, language=language, group=f"g{i}", topics=[shared], split="train")
            )
    records.append(pub("dev-en", "A held-out sentence.", group="g9", topics=["economy"], split="dev"))
    return write_jsonl(tmp_path / "catalog.jsonl", records)


def test_training_pairs_use_the_training_split_only(tmp_path: Path) -> None:
    publications = training_publications(_catalog(tmp_path))
    assert {p.id for p in publications} == {f"g{i}-{lang}" for i in range(4) for lang in ("en", "fr")}
    pairs = training_pairs(publications, FinetuneConfig(topic_pairs_per_item=1))
    assert (pairs.translation, pairs.topic, len(pairs)) == (4, 8, 12)
    texts = set(pairs.anchors) | set(pairs.positives)
    assert "A held-out sentence." not in texts
    en_to_fr = {en: fr for en, fr in SENTENCES.values()} | {fr: en for en, fr in SENTENCES.values()}
    translations = [(a, b) for a, b in zip(pairs.anchors, pairs.positives, strict=True) if en_to_fr.get(a) == b]
    assert len(translations) == 4


def test_bad_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = write_jsonl(tmp_path / "dev-only.jsonl", [pub("a", "text", split="dev"), pub("b", "text", split="dev")])
    assert main(["--catalog", str(empty), "--output", str(tmp_path / "out")]) == 2
    assert "with split 'train'" in capsys.readouterr().err
    assert main(["--catalog", str(tmp_path / "absent.jsonl")]) == 2
    with pytest.raises(SystemExit):
        main(["--catalog", str(empty), "--batch-size", "1"])
    with pytest.raises(ValueError, match="no training pairs"):
        FinetuneConfig(translation_pairs=False, topic_pairs_per_item=0)


@pytest.mark.model
def test_finetune_trains_the_network_and_saves_a_loadable_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer

    output = tmp_path / "ft"
    argv = ["--catalog", str(_catalog(tmp_path)), "--output", str(output), "--max-steps", "2", "--batch-size", "4"]
    argv += ["--learning-rate", "1e-3"]
    assert main(argv) == 0
    assert "2 steps" in capsys.readouterr().out

    info = json.loads((output / "finetune.json").read_text(encoding="utf-8"))
    assert (info["steps"], info["translation_pairs"], info["topic_pairs"]) == (2, 4, 8)
    model = SentenceTransformer(str(output), device="cpu", local_files_only=True, trust_remote_code=True)
    vectors = model.encode(["Exports of grain rose.", "La rivière s'est asséchée."], convert_to_numpy=True)
    assert vectors.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    base = load_file(str(prepared_path(get_settings().models_dir, "use-multilingual-v3") / "model.safetensors"))
    trained = load_file(str(output / "model.safetensors"))
    assert set(trained) == set(base)
    assert base["table"].dtype == trained["table"].dtype
    assert bool((base["table"] == trained["table"]).all()), "the uint8 table must stay frozen"
    changed = {name for name in base if name != "table" and not bool((base[name] == trained[name]).all())}
    for prefix in ("projection.", "first.", "second.", "pool."):
        assert any(name.startswith(prefix) for name in changed), f"no weight of {prefix} was trained"
