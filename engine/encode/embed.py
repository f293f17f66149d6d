"""The only code that touches the model: texts in, L2-normalised float32 arrays out.

Also holds what sits right around the model: cutting long texts into chunks for it, and the embedding
cache keyed by (model fingerprint, text hash), so a rebuild of an unchanged catalog encodes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.catalog.text import chunk_text
from engine.encode.chunks import ChunkVectors, normalize
from engine.encode.models import check_prepared, load_sentence_transformer, read_manifest, read_offsets

logger = logging.getLogger(__name__)


class Encoder(Protocol):
    """What the engine needs from an embedding model."""

    name: str  # model name plus fingerprint: vectors from different names are never mixed
    dimension: int
    max_tokens: int

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``."""
        ...

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Encode texts to an ``(n, dimension)`` float32 array of unit vectors (``languages``: one per text,
        for models that correct for language)."""
        ...


class SentenceTransformerEncoder:
    """An :class:`Encoder` over a prepared ``SentenceTransformer`` folder under ``models/``."""

    def __init__(self, models_dir: Path, model: str, *, threads: int = 1, batch_size: int = 256) -> None:
        manifest = read_manifest(models_dir, model)
        self.model_name = manifest.name
        self.name = manifest.vectors_name
        self.dimension = manifest.dimension
        self.max_tokens = manifest.max_seq_length
        self.batch_size = batch_size
        self._model = load_sentence_transformer(models_dir, model, threads=threads)
        # Per-language means in the output space: removing them stops same-language items from
        # outranking better matches in other languages (see models/README.md).
        self.offsets = read_offsets(check_prepared(models_dir, model))
        first = self._model[0]
        self._count = getattr(first, "count_tokens", None) or (lambda text: len(first.tokenizer.tokenize(text)))

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text`` (special tokens included)."""
        return int(self._count(text))

    def forget_tokenizations(self) -> None:
        """Drop remembered tokenizations, where the model's first module keeps any."""
        forget = getattr(self._model[0], "forget_tokenizations", None)
        if forget is not None:
            forget()

    def encode(
        self, texts: Sequence[str], *, languages: Sequence[str | None] | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Encode through ``SentenceTransformer.encode`` (length-sorted batches, optional progress bar),
        remove the language offset of each text's language if the model has offsets, and normalise."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=False,
        )
        vectors = np.array(vectors, dtype=np.float32)
        if self.offsets and languages is not None:
            for row, language in enumerate(languages):
                offset = self.offsets.get(language or "")
                if offset is not None:
                    vectors[row] -= offset
        return normalize(vectors)


def encode_chunks(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    languages: Sequence[str | None] | None = None,
    show_progress: bool = False,
) -> ChunkVectors:
    """Encode whole documents without cutting any text off: a text longer than the encoder's limit is split
    into chunks on sentence boundaries, and every chunk is encoded.

    An encoder that chunks documents itself (one spread over a Ray cluster, engine/runtime/cluster.py, whose
    workers run this function) is handed the whole list."""
    own = getattr(encoder, "encode_chunks", None)
    if own is not None:
        return own(texts, languages=languages, show_progress=show_progress)
    chunks: list[str] = []
    owners: list[int] = []
    weights: list[float] = []
    chunk_languages: list[str | None] = []
    for row, text in enumerate(texts):
        pieces = chunk_text(text, encoder.count_tokens, encoder.max_tokens)
        chunks.extend(pieces)
        owners.extend([row] * len(pieces))
        chunk_languages.extend([languages[row] if languages is not None else None] * len(pieces))
        # Weight by length in characters: close to token counts, without tokenizing every chunk again.
        weights.extend(float(len(p)) if len(pieces) > 1 else 1.0 for p in pieces)
    vectors = encoder.encode(chunks, languages=chunk_languages, show_progress=show_progress)
    return ChunkVectors(
        np.ascontiguousarray(vectors, dtype=np.float32),
        np.asarray(owners, dtype=np.int64),
        np.asarray(weights, dtype=np.float32),
        len(texts),
    )


def encode_documents(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    languages: Sequence[str | None] | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """One vector per document: the length-weighted mean of its chunk vectors (:func:`encode_chunks`),
    re-normalised."""
    return encode_chunks(encoder, texts, languages=languages, show_progress=show_progress).pooled()


def text_key(text: str, language: str | None = None) -> str:
    """Cache key of one document text in a language (a model may encode the same text differently)."""
    return hashlib.sha256(f"{language or ''}\0{text}".encode()).hexdigest()


class EmbeddingCache:
    """Chunk vectors of documents in SQLite, keyed by (model name, text hash). Raw float32 bytes, no pickle.

    A cache only saves work, so it never stops a job or a write: a damaged file is moved aside and started
    afresh, and a cache another process holds locked, or that cannot be written, is bypassed (with a warning).
    """

    FILE = "embeddings.sqlite"
    # A lookup or store waits at most this long for another process's lock before bypassing the cache.
    TIMEOUT = 0.5

    @classmethod
    def in_folder(cls, folder: Path) -> EmbeddingCache:
        """The cache file of a cache folder (``RCE_CACHE_DIR``)."""
        return cls(Path(folder) / cls.FILE)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None
        self._ready = False
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = self._connect()
        except (OSError, sqlite3.Error) as exc:
            self._warn("open", exc)

    def _connect(self) -> sqlite3.Connection:
        # Shared by the service's worker threads (each call holds the lock).
        db = sqlite3.connect(self.path, timeout=self.TIMEOUT, check_same_thread=False)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return db
            db.close()
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            self.path.rename(aside)
            logger.warning("embedding cache %s is damaged (%s): moved to %s, starting a new one", self.path, exc, aside)
            db = sqlite3.connect(self.path, timeout=self.TIMEOUT, check_same_thread=False)
        return db

    def _usable(self) -> sqlite3.Connection | None:
        """The connection, with its table made on first use (retried while another process holds a lock)."""
        if self._db is not None and not self._ready:
            # One row per document: its chunk vectors side by side and their weights. (A table of an older
            # version, ``vectors``, held pooled document vectors only; it is left alone and no longer read.)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS chunks (model TEXT, key TEXT, vectors BLOB, weights BLOB, "
                "PRIMARY KEY (model, key))"
            )
            self._ready = True
        return self._db

    def _warn(self, action: str, exc: BaseException) -> None:
        if action not in self._warned:  # once per kind of failure, not once per call
            self._warned.add(action)
            logger.warning("embedding cache %s bypassed (%s failed: %s); texts are encoded", self.path, action, exc)

    def get_many(self, model: str, keys: Sequence[str], dimension: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``(chunk vectors, weights)`` found for ``keys`` (missing or malformed rows are absent)."""
        found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            try:
                db = self._usable()
                for start in range(0, len(unique) if db is not None else 0, 500):
                    batch = unique[start : start + 500]
                    marks = ",".join("?" * len(batch))
                    rows = db.execute(
                        f"SELECT key, vectors, weights FROM chunks WHERE model = ? AND key IN ({marks})",
                        [model, *batch],
                    )
                    for key, blob, weight_blob in rows:
                        weights = np.frombuffer(weight_blob, dtype=np.float32)
                        vectors = np.frombuffer(blob, dtype=np.float32)
                        if len(weights) >= 1 and vectors.size == len(weights) * dimension:
                            found[key] = (vectors.reshape(len(weights), dimension), weights)
            except sqlite3.Error as exc:
                self._warn("read", exc)
        return found

    def put_many(self, model: str, items: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Store ``key -> (chunk vectors, weights)`` (one transaction)."""
        rows = [
            (model, key, np.asarray(v, np.float32).tobytes(), np.asarray(w, np.float32).tobytes())
            for key, (v, w) in items.items()
        ]
        with self._lock:
            try:
                db = self._usable()
                if db is not None:
                    with db:
                        db.executemany(
                            "INSERT OR REPLACE INTO chunks (model, key, vectors, weights) VALUES (?, ?, ?, ?)", rows
                        )
            except sqlite3.Error as exc:
                self._warn("write", exc)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    cache: EmbeddingCache | None,
    *,
    languages: Sequence[str | None] | None = None,
    show_progress: bool = False,
) -> tuple[ChunkVectors, int]:
    """:func:`encode_chunks`, reusing cached chunk vectors. Returns ``(chunks, number of texts not found in the
    cache)``. Identical texts are encoded once."""
    languages = list(languages) if languages is not None else [None] * len(texts)
    keys = [text_key(t, lang) for t, lang in zip(texts, languages, strict=True)]
    found = cache.get_many(encoder.name, keys, encoder.dimension) if cache else {}
    missing = [i for i, key in enumerate(keys) if key not in found]
    if missing:
        todo = list(dict.fromkeys(keys[i] for i in missing))
        row_of = {keys[i]: i for i in missing}
        fresh = encode_chunks(
            encoder,
            [texts[row_of[k]] for k in todo],
            languages=[languages[row_of[k]] for k in todo],
            show_progress=show_progress,
        )
        for key, (vectors, weights) in zip(todo, fresh.split(), strict=True):
            found[key] = (vectors, weights)
        if cache:
            cache.put_many(encoder.name, {key: found[key] for key in todo})
    chunks = ChunkVectors.of_parts([found[key] for key in keys], encoder.dimension)
    return chunks, len(missing)
