"""Shared fixtures: fake encoder catalogs, the real model, and the shared evaluation data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine import BuildOptions, EmbeddingCache, build_index, get_settings, open_encoder
from tests.fakes import FakeEncoder, pub, write_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RCE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
DEMO_CATALOG = PROJECT_ROOT / "data" / "demo" / "catalog.jsonl"


def shared_file(*parts: str) -> Path:
    """A file under ../shared/data, or a skip naming what is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared evaluation data is not on this machine")
    return path


# A small catalog in which rankings can be worked out by hand (see tests/fakes.py).
SMALL_CATALOG = [
    pub(
        "t1-en", "trade trade finance", group="g-t1", topics=["trade"], published="2024-01-01", authors=["Amal Idrissi"]
    ),
    pub("t1-fr", "trade trade finance", language="fr", group="g-t1", topics=["trade"]),
    pub(
        "t2",
        "trade finance finance",
        type="op-ed",
        topics=["trade", "finance"],
        published="2023-06-01",
        authors=["Amal Idrissi", "Jean Martin"],
    ),
    pub("t3", "trade", language="ar", type="podcast", topics=["trade"], published="2022-01-15"),
    pub("c1", "climate water", topics=["climate"], published="2024-05-05", title="Climat et eau : l'été"),
    pub("c2", "climate climate water", language="fr", topics=["climate"]),
    pub("w1", "water", language="ar", topics=["water"]),
    pub("m1", "migration security", topics=["migration"]),
    pub("h1", "health youth", type="video", topics=["health"]),
]


@pytest.fixture
def small_catalog(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "catalog.jsonl", SMALL_CATALOG)


@pytest.fixture
def fake_encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture
def small_index(tmp_path: Path, small_catalog: Path, fake_encoder: FakeEncoder) -> Path:
    index_dir = tmp_path / "index"
    # Plain cosines, so rankings follow the ones worked out by hand (adaptation and calibration have their own
    # tests).
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build_index([small_catalog], index_dir, fake_encoder, cache=cache, options=BuildOptions.plain())
    return index_dir


@pytest.fixture(scope="session")
def real_encoder():
    """The configured real model; fails (not skips) when it is not prepared: `make test` prepares it."""
    return open_encoder(get_settings())


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory: pytest.TempPathFactory, real_encoder) -> Path:
    """The bundled demo catalog indexed with the real model."""
    index_dir = tmp_path_factory.mktemp("demo") / "index"
    build_index([DEMO_CATALOG], index_dir, real_encoder)
    return index_dir
