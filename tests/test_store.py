"""The catalog store, the delta served beside a build, and several workers following one store (in process)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine import (
    BuildLock,
    BuildLockedError,
    BuildOptions,
    CatalogStore,
    Delta,
    DeltaIndex,
    EmbeddingCache,
    EngineHolder,
    Publication,
    Recommender,
    RelatedQuery,
    ReloadError,
    StoreBusyError,
    StoreUnavailableError,
    UnknownPublicationError,
    VectorIndex,
    build_index,
    load_recommender,
)
from engine.catalog.records import parse_record
from engine.index.store import MANIFEST_FILE, resolve_build
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, pub, write_jsonl

EXACT = BuildOptions(adapt=False, calibrate=False)


def record(pid: str, abstract: str, **fields) -> Publication:
    return parse_record(pub(pid, abstract, **fields), "test", 1)


def unit_vectors(n: int, dimension: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# ----- the store -----


def test_the_store_keeps_versions_deletions_and_what_an_import_changes(tmp_path: Path) -> None:
    store = CatalogStore.of(tmp_path)
    first = store.import_catalog([record("a", "trade"), record("b", "water"), record("c", "youth")])
    assert (first.added, first.generation, len(store)) == (["a", "b", "c"], 1, 3)
    # The same file again changes nothing: no new generation, so no build is needed.
    again = store.import_catalog([record("a", "trade"), record("b", "water"), record("c", "youth")])
    assert (again.changes, again.unchanged, store.generation()) == (0, 3, 1)
    chunks = (np.ones((2, 8), np.float32), np.array([3.0, 1.0], np.float32))
    assert store.write([(record("d", "climate"), "fake@1", chunks)], deletes=["a"]) == 2
    # An upsert identical to the stored record is no change at all.
    assert store.write([(record("d", "climate"), "fake@1", chunks)]) == 2
    with pytest.raises(UnknownPublicationError, match="'zz'"):
        store.write([(record("e", "health"), "fake@1", chunks)], deletes=["zz"])
    assert store.generation() == 2 and "e" not in [p.id for p in store.snapshot().publications]
    generation, changes = store.changes_since(1)
    assert generation == 2 and [(c.id, c.publication is None) for c in changes] == [("a", True), ("d", False)]
    assert changes[1].model == "fake@1" and changes[1].chunks[0].shape == (2, 8)
    # A file that lacks items keeps them (API writes) unless --sync; a plan writes nothing.
    partial = [record("b", "water"), record("c", "youth youth")]
    plan = store.plan_import(partial, sync=True)
    assert (plan.changed, plan.deleted, store.generation()) == (["c"], ["d"], 2)
    kept = store.import_catalog(partial)
    assert (kept.changed, kept.kept, kept.deleted, kept.generation) == (["c"], 1, [], 3)
    synced = store.import_catalog(partial, sync=True)
    assert (synced.deleted, [p.id for p in store.snapshot().publications]) == (["d"], ["b", "c"])


def test_an_import_keeps_api_edits_and_deletions_of_items_its_file_has_not_changed(tmp_path: Path) -> None:
    store = CatalogStore.of(tmp_path)
    catalog = [record("a", "trade"), record("b", "water"), record("c", "youth")]
    store.import_catalog(catalog)
    store.write([(record("b", "water climate"), None, None)], deletes=["c"])  # an API edit and a deletion
    again = store.import_catalog(catalog)  # the same file, imported again (a nightly job)
    assert (again.kept_api, again.changes, again.unchanged) == (["b", "c"], 0, 1)
    assert {p.id: p.abstract for p in store.snapshot().publications} == {"a": "trade", "b": "water climate"}
    # A file that did change an item wins over the API's edit or deletion of it.
    edited = [record("a", "trade"), record("b", "water health"), record("c", "youth health")]
    plan = store.import_catalog(edited)
    assert (plan.added, plan.changed, plan.kept_api) == (["c"], ["b"], [])
    assert {p.id: p.abstract for p in store.snapshot().publications}["b"] == "water health"
    # --sync mirrors the file whatever the API did.
    store.write(deletes=["a"])
    assert store.import_catalog(edited, sync=True).added == ["a"]


def test_a_busy_store_says_so_and_a_full_one_writes_nothing(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "catalog.db", timeout=0.1)
    store.import_catalog([record("a", "trade")])
    other = sqlite3.connect(tmp_path / "catalog.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(StoreBusyError, match="busy"):
        store.write(deletes=["a"])
    other.execute("ROLLBACK")
    store._db.execute(f"PRAGMA max_page_count = {store._db.execute('PRAGMA page_count').fetchone()[0]}")
    big = record("b", "trade " * 20_000)
    with pytest.raises(StoreUnavailableError, match=r"catalog\.db cannot be used: database or disk is full"):
        store.write([(big, None, None)])
    assert store.generation() == 1 and len(store) == 1


# ----- the delta beside a build -----


def test_a_delta_index_searches_like_brute_force_over_what_is_live() -> None:
    ids = [f"i{n}" for n in range(300)]
    base = VectorIndex(16, "m").build(ids, unit_vectors(300, 16, 0))
    fresh = unit_vectors(12, 16, 1)
    delta = Delta(
        5,
        (*(Publication(f"n{n}") for n in range(10)), Publication("i3"), Publication("i4")),
        fresh,
        frozenset(["i7", "i8", "n99"]),
    )
    index = DeltaIndex(base, delta)
    live = {key: base.vector(key) for key in ids if key not in {"i3", "i4", "i7", "i8"}}
    live.update({p.id: fresh[row] for row, p in enumerate(delta.upserted)})
    assert len(index) == len(live) == 300 - 4 + 12 and "i7" not in index and "n3" in index and "i3" in index
    names, matrix = list(live), np.stack(list(live.values()))
    for query in unit_vectors(20, 16, 2):
        scores = matrix @ query
        expected = [names[i] for i in np.argsort(-scores)[:10]]
        got = index.search(query, 10)[0]
        assert [key for key, _ in got] == expected
        assert [s for _, s in got] == pytest.approx(np.sort(scores)[::-1][:10], abs=1e-5)
    assert index.vector("i3") == pytest.approx(fresh[10])
    with pytest.raises(KeyError):
        index.vector("i7")


def written_catalog(index_dir: Path, encoder: FakeEncoder, options: BuildOptions) -> EngineHolder:
    catalog = write_jsonl(index_dir.parent / "c.jsonl", SMALL_CATALOG)
    build_index([catalog], index_dir, encoder, options=options)
    holder = EngineHolder(index_dir, expected_model=None, encoder=encoder)
    holder.reload()
    return holder


WRITES = {
    "upserts": [record("n1", "trade finance finance"), record("t2", "water water climate")],  # one new, one edited
    "deletes": ["w1"],
}


@pytest.mark.parametrize("neighbours", [0, 50])
def test_writes_are_served_exactly_as_a_fresh_build_of_the_same_catalog(tmp_path: Path, neighbours: int) -> None:
    encoder = FakeEncoder()
    options = BuildOptions(adapt=False, calibrate=False, neighbours=neighbours)
    holder = written_catalog(tmp_path / "index", encoder, options)
    built = holder.current.build.build_id
    report = holder.write(**WRITES)
    served = holder.current
    assert served.build.build_id == built and resolve_build(tmp_path / "index").name == built  # nothing rebuilt
    assert report.generation == served.generation == 2 and len(served.delta) == 3
    fresh = Recommender.from_publications(list(served.publications.values()), encoder, options=options)
    for key in served.publications:
        for query in (RelatedQuery(k=4), RelatedQuery(k=3, languages=("fr",)), RelatedQuery(k=20)):
            got = [(round(i.score, 5), i.id) for i in served.recommend(key, query).items]
            expected = [(round(i.score, 5), i.id) for i in fresh.recommend(key, query).items]
            # Equal scores may come in another order (FAISS positions differ): compare the scores in order,
            # and the items wherever the list holds every item.
            assert [s for s, _ in got] == [s for s, _ in expected], (key, query)
            if query.k == 20:
                assert sorted(got) == sorted(expected), (key, query)
    with pytest.raises(UnknownPublicationError):
        served.get("w1")


def test_a_written_item_joins_the_lists_of_its_neighbours_with_the_default_options(small_index: Path) -> None:
    encoder = FakeEncoder()
    holder = EngineHolder(small_index, expected_model=None, encoder=encoder)
    holder.reload()
    holder.write(upserts=[record("n1", "trade finance")], deletes=["w1"])
    served = holder.current
    assert "n1" in [i.id for i in served.related("t2", 3)]  # t2 is "trade finance finance"
    assert all("w1" not in [i.id for i in served.related(key, 20)] for key in served.publications)
    # The answer survives a restart: the store holds it, not the memory of this worker.
    restarted = load_recommender(small_index, encoder=encoder)
    assert restarted.generation == served.generation and "n1" in [i.id for i in restarted.related("t2", 3)]


# ----- workers in step -----


def test_two_workers_follow_one_store(small_index: Path) -> None:
    encoder = FakeEncoder()
    first, second = (EngineHolder(small_index, expected_model=None, encoder=encoder) for _ in range(2))
    first.reload()
    second.reload()
    first.write(upserts=[record("n1", "trade finance")])
    second.write(upserts=[record("n2", "water climate")])  # from its own, older view: nothing of n1 is lost
    first.follow_once()
    second.follow_once()
    for holder in (first, second):
        assert {"n1", "n2"} <= set(holder.current.publications) and holder.generation == 3
    # A delete of an item written by the other worker a moment ago is not a 404: the store decides.
    second.write(deletes=["n1"])
    first.follow_once()
    assert "n1" not in first.current.publications
    # A reload asked of one worker reaches the other.
    before = second.loaded_at, id(second.current)
    first.reload(everywhere=True)
    second.follow_once()
    assert id(second.current) != before[1]


def test_a_batch_build_keeps_api_writes_and_sync_mirrors_the_file(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index_dir = tmp_path / "index"
    holder = written_catalog(index_dir, encoder, BuildOptions())
    holder.write(upserts=[record("n1", "trade finance")])
    catalog = write_jsonl(tmp_path / "c.jsonl", [*SMALL_CATALOG, pub("f1", "health youth")])
    report = build_index([catalog], index_dir, encoder)
    assert "import: 1 added, 0 changed, 9 unchanged; kept 1 that the files lack" in report.summary()
    # n1's chunk vectors came from the store: the build did not encode it again.
    assert report.items == 11 and "health youth" in encoder.calls[-1] and "trade finance" not in encoder.calls[-1]
    holder.follow_once()  # the build announced itself through the store
    assert {"n1", "f1"} <= set(holder.current.publications) and len(holder.current.delta) == 0
    dry = build_index([catalog], index_dir, encoder, sync=True, dry_run=True)
    assert "it would delete 1 absent from the files: n1" in dry.summary() and dry.build_dir is None
    assert "n1" in load_recommender(index_dir).publications
    synced = build_index([catalog], index_dir, encoder, sync=True)
    assert synced.imported.deleted == ["n1"] and "n1" not in load_recommender(index_dir).publications


def test_writes_made_while_a_build_runs_are_served_beside_it(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index_dir = tmp_path / "index"
    holder = written_catalog(index_dir, encoder, BuildOptions())
    store = CatalogStore.of(index_dir)
    snapshot_taken = store.snapshot  # the build reads the store, then a write lands before it is saved

    def snapshot_then_write():
        snapshot = snapshot_taken()
        holder.write(upserts=[record("late", "water water")])
        return snapshot

    from engine.index import build as build_module

    original = build_module.CatalogStore.snapshot
    build_module.CatalogStore.snapshot = lambda self: snapshot_then_write()
    try:
        build_index([], index_dir, encoder, force=True)
    finally:
        build_module.CatalogStore.snapshot = original
    holder.follow_once()
    assert "late" in holder.current.publications and len(holder.current.delta) == 1


# ----- builds -----


def test_one_build_at_a_time_and_leftovers_of_killed_builds_are_cleaned(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index_dir = tmp_path / "index"
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    build_index([catalog], index_dir, encoder)
    (index_dir / "builds" / ".staging-killed").mkdir()
    os.symlink("builds/x", index_dir / ".current-deadbeef")
    with BuildLock(index_dir), pytest.raises(BuildLockedError, match=f'running \\(.*"pid": {os.getpid()}'):
        build_index([catalog], index_dir, encoder, force=True)
    report = build_index([catalog], index_dir, encoder, force=True)
    assert report.cleaned == 2 and not list(index_dir.glob(".current-*"))
    assert not list((index_dir / "builds").glob(".staging-*"))
    # A service starting cleans them too, unless a build is running (it holds the lock and cleans up itself).
    (index_dir / "builds" / ".staging-killed").mkdir()
    with BuildLock(index_dir):
        EngineHolder(index_dir, expected_model=None).try_load()
    assert (index_dir / "builds" / ".staging-killed").is_dir()
    EngineHolder(index_dir, expected_model=None).try_load()
    assert not (index_dir / "builds" / ".staging-killed").exists()


def test_a_dangling_or_damaged_current_build_falls_back_to_the_newest_intact_one(tmp_path: Path) -> None:
    encoder = FakeEncoder()
    index_dir = tmp_path / "index"
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    build_index([catalog], index_dir, encoder)
    older = resolve_build(index_dir)
    build_index([catalog], index_dir, encoder, force=True)
    newest = resolve_build(index_dir)
    manifest = json.loads((newest / MANIFEST_FILE).read_text())
    del manifest["checksums"]  # a manifest without checksums is refused, not trusted
    (newest / MANIFEST_FILE).write_text(json.dumps(manifest))
    holder = EngineHolder(index_dir, expected_model=None, encoder=encoder)
    holder.reload()
    assert holder.current.build.build_id == older.name and "no checksum" in holder.fallback
    os.replace(index_dir / "current", index_dir / "gone")
    os.symlink("builds/missing", index_dir / "current")
    holder.reload()
    assert holder.current.build.build_id == older.name and older.name in holder.fallback


def test_a_bad_overrides_file_is_refused_and_the_follower_goes_on(small_index: Path) -> None:
    encoder = FakeEncoder()
    holder = EngineHolder(small_index, expected_model=None, encoder=encoder)
    holder.reload()
    served = holder.current
    (small_index / "overrides.json").write_text("{not json")
    with pytest.raises(ReloadError, match=r"overrides\.json is not valid JSON"):
        holder.reload()
    assert holder.current is served and "not valid JSON" in holder.last_error
    holder.write(upserts=[record("n1", "trade")])  # writes go on, with the overrides last read
    assert "n1" in holder.current.publications
    holder.start_following(0.02, watch=True)
    try:
        (small_index / "overrides.json").write_text(json.dumps({"banned": ["t1-fr"]}))
        deadline = __import__("time").monotonic() + 5
        while holder.current.overrides.banned != {"t1-fr"}:
            assert __import__("time").monotonic() < deadline, "the follower stopped"
    finally:
        holder.stop_following()
    assert holder.last_error is None


def test_a_damaged_or_locked_embedding_cache_never_stops_a_job(tmp_path: Path, caplog) -> None:
    path = tmp_path / "embeddings.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = EmbeddingCache(path)
    cache.put_many("m", {"k": (np.ones((1, 4), np.float32), np.ones(1, np.float32))})
    assert list(cache.get_many("m", ["k"], 4)) == ["k"] and list(tmp_path.glob("embeddings.sqlite.damaged-*"))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process writes for long
    locked = EmbeddingCache(path)
    assert locked.get_many("m", ["k"], 4) == {}
    locked.put_many("m", {"j": (np.ones((1, 4), np.float32), np.ones(1, np.float32))})
    assert "bypassed" in caplog.text
    other.execute("ROLLBACK")


def test_an_import_is_served_before_its_build_and_even_if_the_build_dies(
    small_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = FakeEncoder()
    holder = EngineHolder(small_index, expected_model=None, encoder=encoder)
    holder.reload()
    catalog = write_jsonl(tmp_path / "more.jsonl", [*SMALL_CATALOG, pub("f1", "water water climate")])
    from engine.index import store as store_module

    def dies(*args, **kwargs):
        raise OSError(28, "No space left on device", "vectors.faiss")

    monkeypatch.setattr(store_module.Build, "save", dies)
    with pytest.raises(OSError):
        build_index([catalog], small_index, encoder)
    holder.follow_once()  # the import committed with its vectors: every worker serves it now
    assert "f1" in holder.current.publications and holder.pending == 0
    assert "f1" in [i.id for i in holder.current.related("w1", 3)]


def test_a_build_that_died_before_announcing_itself_is_still_served(small_index: Path, tmp_path: Path) -> None:
    encoder = FakeEncoder()
    holder = EngineHolder(small_index, expected_model=None, encoder=encoder)
    holder.reload()
    from engine.index import build as build_module

    original = build_module._announce
    build_module._announce = lambda store: None  # killed between the `current` switch and the announcement
    try:
        report = build_index([write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)], small_index, encoder, force=True)
    finally:
        build_module._announce = original
    holder.follow_once()
    assert holder.current.build.build_id == report.build_dir.name


def test_a_failed_reload_is_tried_again(small_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.runtime import holder as holder_module

    monkeypatch.setattr(holder_module, "RETRY_DELAY", 0.0)
    encoder = FakeEncoder()
    holder = EngineHolder(small_index, expected_model=None, encoder=encoder)
    holder.reload()
    report = build_index([write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)], small_index, encoder, force=True)
    overrides = small_index / "overrides.json"
    overrides.write_text("{not json")  # the reload the build asks for fails...
    with pytest.raises(ReloadError):
        holder.follow_once()
    overrides.unlink()  # ...and once the cause is gone, the next look serves the build (no change needed)
    holder.follow_once()
    assert holder.current.build.build_id == report.build_dir.name and holder.last_error is None


def test_writes_go_on_while_a_worker_reloads(small_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    encoder = FakeEncoder()
    holder = EngineHolder(small_index, expected_model=None, encoder=encoder)
    holder.reload()
    started = threading.Event()
    slow_warm = Recommender.warm

    def warm(self):  # a large catalog's term statistics take a minute
        started.set()
        time.sleep(1.5)
        slow_warm(self)

    monkeypatch.setattr(Recommender, "warm", warm)
    reloading = threading.Thread(target=holder.reload)
    reloading.start()
    started.wait(5)
    began = time.monotonic()
    holder.write(upserts=[record("n1", "trade")])
    assert time.monotonic() - began < 0.5 and "n1" in holder.current.publications
    reloading.join()
    assert "n1" in holder.current.publications  # the reloaded build took the write along
