"""Builds: atomic, cached, and a bad catalog touches nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from engine import (
    BuildOptions,
    CatalogError,
    EmbeddingCache,
    build_index,
    encode_documents,
    load_recommender,
    resolve_build,
)
from engine.index.store import Build, BuildManifest
from engine.index.vectors import IndexLoadError
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, pub, write_jsonl


def test_build_writes_a_current_build_with_manifest_and_catalog(small_index: Path) -> None:
    current = small_index / "current"
    assert current.is_symlink()
    build = resolve_build(small_index)
    assert {p.name for p in build.iterdir()} == {
        "vectors.faiss",
        "ids.json",
        "manifest.json",
        "catalog.jsonl",
        "neighbours.npz",
        "embeddings.npz",  # the model's chunk vectors: writes adapt again from them
    }
    manifest = load_recommender(small_index).build.manifest
    assert manifest.model == "fake@1" and manifest.count == len(SMALL_CATALOG) and manifest.dimension == 8
    assert len(manifest.catalog_hash) == 64 and set(manifest.checksums) == {p.name for p in build.iterdir()} - {
        "manifest.json"
    }


def test_a_build_made_with_another_model_or_a_damaged_manifest_is_refused(small_index: Path) -> None:
    with pytest.raises(IndexLoadError, match=r"built with model 'fake@1'.*uses 'other@2'"):
        Build.load(small_index, expected_model="other@2")
    (resolve_build(small_index) / "manifest.json").write_text("{not json")
    with pytest.raises(IndexLoadError, match="damaged"):
        Build.load(small_index)
    with pytest.raises(IndexLoadError, match="no index"):
        BuildManifest.read(small_index.parent)


def test_rebuild_of_unchanged_catalog_encodes_nothing_and_one_edit_encodes_one(tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    first = build_index([catalog], tmp_path / "index", FakeEncoder(), cache=cache)
    # t1-en and t1-fr share a text: encoded once, but both counted as not cached
    assert (first.items, first.encoded, first.cached) == (9, 9, 0)
    encoder = FakeEncoder()
    link = os.readlink(tmp_path / "index" / "current")
    second = build_index([catalog], tmp_path / "index", encoder, cache=cache)
    # The current build holds this catalog already: nothing encoded, nothing written.
    assert second.up_to_date and (second.encoded, encoder.encoded_texts) == (0, 0)
    assert os.readlink(tmp_path / "index" / "current") == link and "index up to date" in second.summary()
    forced = build_index([catalog], tmp_path / "index", encoder, cache=cache, force=True)
    assert not forced.up_to_date and (forced.encoded, forced.cached, encoder.encoded_texts) == (0, 9, 0)
    assert os.readlink(tmp_path / "index" / "current") != link
    edited = [*SMALL_CATALOG[:-1], pub("h1", "health youth water", type="video")]
    write_jsonl(catalog, edited)
    third = build_index([catalog], tmp_path / "index", encoder, cache=cache)
    assert (third.encoded, third.cached) == (1, 8)
    assert encoder.calls == [["health youth water"]]
    assert "import: 0 added, 1 changed, 8 unchanged" in third.summary()
    assert "indexed 9 items at store generation 2 (1 encoded, 8 from the store or cache)" in third.summary()


def test_up_to_date_needs_the_same_options_and_an_intact_build(tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    index_dir = tmp_path / "index"
    build_index([catalog], index_dir, FakeEncoder())
    assert build_index([catalog], index_dir, FakeEncoder()).up_to_date
    assert not build_index([catalog], index_dir, FakeEncoder(), options=BuildOptions(neighbours=0)).up_to_date
    assert not build_index(
        [catalog], index_dir, FakeEncoder(name="fake@2"), options=BuildOptions(neighbours=0)
    ).up_to_date
    (resolve_build(index_dir) / "catalog.jsonl").write_text("damaged", encoding="utf-8")
    rebuilt = build_index([catalog], index_dir, FakeEncoder(name="fake@2"), options=BuildOptions(neighbours=0))
    assert not rebuilt.up_to_date and rebuilt.encoded == 9


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build_index([catalog], tmp_path / "index", FakeEncoder(name="fake@1"), cache=cache)
    other = build_index([catalog], tmp_path / "index", FakeEncoder(name="fake@2"), cache=cache)
    assert other.encoded == 9


def test_bad_catalog_leaves_the_current_index_untouched(tmp_path: Path, small_index: Path) -> None:
    before = os.readlink(small_index / "current")
    builds = sorted(p.name for p in (small_index / "builds").iterdir())
    bad = write_jsonl(tmp_path / "bad.jsonl", [*SMALL_CATALOG, '{"id": "x", "published": "yesterday"}'])
    with pytest.raises(CatalogError) as caught:
        build_index([bad], small_index, FakeEncoder())
    assert (caught.value.line, caught.value.field) == (10, "title/abstract")
    assert os.readlink(small_index / "current") == before
    assert sorted(p.name for p in (small_index / "builds").iterdir()) == builds
    assert len(load_recommender(small_index)) == len(SMALL_CATALOG)


def test_skip_invalid_builds_the_valid_lines(tmp_path: Path) -> None:
    bad = write_jsonl(tmp_path / "bad.jsonl", [*SMALL_CATALOG, "{oops"])
    report = build_index([bad], tmp_path / "index", FakeEncoder(), skip_invalid=True)
    assert report.items == len(SMALL_CATALOG) and [e.line for e in report.skipped] == [10]


def test_failed_write_leaves_the_current_index(tmp_path: Path, small_index: Path, monkeypatch) -> None:
    before = os.readlink(small_index / "current")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.index.store.write_catalog", full_disk)
    with pytest.raises(OSError, match="No space"):
        build_index([write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)], small_index, FakeEncoder())
    assert os.readlink(small_index / "current") == before
    assert not list((small_index / "builds").glob(".staging-*"))


def test_old_builds_are_pruned(tmp_path: Path) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    for _ in range(5):
        build_index([catalog], tmp_path / "index", FakeEncoder(), force=True)
    assert len(list((tmp_path / "index" / "builds").iterdir())) == 3


def test_long_documents_are_chunked_and_pooled_not_cut() -> None:
    encoder = FakeEncoder(max_tokens=5)  # the fake raises if it is given more than 5 tokens
    long_text = "trade trade trade. water."  # 4 words + 2 > 5: two chunks, "trade trade trade." and "water."
    (vector,) = encode_documents(encoder, [long_text])
    assert encoder.calls == [["trade trade trade.", "water."]]
    # chunk vectors trade and water, weighted by length 18 and 6 characters: (18, 6) normalised
    expected = np.zeros(encoder.dimension, dtype=np.float32)
    expected[0], expected[2] = 18, 6
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), rtol=1e-6)


def test_an_older_manifest_gets_the_rebuild_command_not_damaged(small_index: Path) -> None:
    path = resolve_build(small_index) / "manifest.json"
    manifest = json.loads(path.read_text())
    for recorded_later in ("storage", "options"):  # fields format 1 builds did not record
        del manifest[recorded_later]
    manifest["format_version"], manifest["dimension"] = 1, str(manifest["dimension"])
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match=r"has format 1, .*rebuild it: python scripts/build_index.py --catalog"):
        Build.load(small_index)
