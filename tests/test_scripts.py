"""Every script through its main(argv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import load_recommender
from engine.eval.experiments.synthetic import synthetic_build
from engine.eval.shapes import SHARED_SETS
from scripts import (
    benchmark,
    build_index,
    compare_models,
    crash_suite,
    delta_quality,
    evaluate,
    export_related,
    hostile,
    prepare_model,
    quality_attempts,
    sample_catalog,
    serve,
    shape_attempts,
    stress,
    train_adapter,
    write_latency,
)
from tests.conftest import SMALL_CATALOG
from tests.fakes import write_jsonl


@pytest.mark.parametrize(
    "script",
    [
        build_index,
        evaluate,
        serve,
        prepare_model,
        compare_models,
        benchmark,
        stress,
        train_adapter,
        quality_attempts,
        sample_catalog,
        shape_attempts,
        hostile,
        crash_suite,
        write_latency,
        delta_quality,
        export_related,
    ],
)
def test_help(script, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        script.main(["--help"])
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out


# build_index.main with the fake encoder, for a child process with limits of its own.
FAKE_BUILD = """
import sys
from scripts import build_index
from tests.fakes import FakeEncoder
build_index.open_encoder = lambda settings: FakeEncoder()
sys.exit(build_index.main(sys.argv[1:]))
"""


def fake_build(args: list[str], file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-c", FAKE_BUILD, *args],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit if file_size_limit else None,
    )


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_the_build_in_service(tmp_path: Path) -> None:
    words = ["trade", "climate", "water", "migration", "finance", "health", "security", "youth"]
    records = [{"id": f"b{i}", "abstract": " ".join(words[j % 8] for j in range(i, i + 5))} for i in range(3000)]
    catalog = write_jsonl(tmp_path / "c.jsonl", records)
    args = ["--catalog", str(catalog), "--index-dir", str(tmp_path / "index"), "--no-cache", "--quiet"]
    assert fake_build(args).returncode == 0
    before = os.readlink(tmp_path / "index" / "current")
    # No file may grow past 64 KiB (the vectors are 96 KB): as a full disk would, the build's writes fail.
    failed = fake_build([*args, "--force"], file_size_limit=64 * 1024)
    lines = failed.stderr.strip().splitlines()
    assert failed.returncode == 4 and len(lines) == 1, failed.stderr
    assert "vectors.faiss" in lines[0] and "no build was written, the one in service is unchanged" in lines[0]
    assert os.readlink(tmp_path / "index" / "current") == before
    assert not list((tmp_path / "index" / "builds").glob(".staging-*"))
    assert len(load_recommender(tmp_path / "index")) == 3000


def test_a_second_build_names_the_one_running_and_dry_runs_write_nothing(tmp_path: Path, capsys) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    index_dir = tmp_path / "index"
    args = ["--catalog", str(catalog), "--index-dir", str(index_dir), "--no-cache", "--quiet"]
    assert fake_build(args).returncode == 0
    from engine import BuildLock

    with BuildLock(index_dir):
        second = fake_build([*args, "--force"])
    assert second.returncode == 5 and "another build of" in second.stderr and '"pid"' in second.stderr
    smaller = write_jsonl(tmp_path / "d.jsonl", SMALL_CATALOG[:-1])
    dry = fake_build(["--catalog", str(smaller), "--index-dir", str(index_dir), "--sync", "--dry-run"])
    assert dry.returncode == 0 and "it would delete 1 absent from the files: h1" in dry.stdout
    assert "dry run: nothing was written" in dry.stdout and len(load_recommender(index_dir)) == len(SMALL_CATALOG)
    with pytest.raises(SystemExit):
        build_index.main(["--index-dir", str(index_dir), "--sync"])
    assert "--sync mirrors catalog files" in capsys.readouterr().err


def test_a_build_on_an_unreachable_ray_cluster_fails_at_once_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the Ray extra is not installed")
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    args = ["--catalog", str(catalog), "--index-dir", str(tmp_path / "index"), "--no-cache", "--quiet"]
    assert fake_build(args).returncode == 0
    before = os.readlink(tmp_path / "index" / "current")
    refused = fake_build([*args, "--force", "--ray", "127.0.0.1:9"])  # port 9: nothing listens (discard)
    assert refused.returncode == 6, refused.stderr
    assert "cannot reach the Ray cluster at '127.0.0.1:9'" in refused.stderr and "--ray local" in refused.stderr
    assert "the one in service is unchanged" in refused.stderr
    assert os.readlink(tmp_path / "index" / "current") == before
    bad = fake_build([*args, "--ray", "head-without-port"])
    assert bad.returncode == 6 and "is not host:port" in bad.stderr
    with pytest.raises(SystemExit):
        build_index.main([*args, "--ray", "local", "--ray-batch-size", "0"])


@pytest.mark.model
def test_build_then_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    args = ["--catalog", str(catalog), "--index-dir", str(tmp_path / "index"), "--cache-dir", str(tmp_path), "--quiet"]
    assert build_index.main(args) == 0
    assert "indexed 9 items at store generation 1 (9 encoded, 0 from the store or cache)" in capsys.readouterr().out
    assert build_index.main(args) == 0
    assert "index up to date" in capsys.readouterr().out
    assert build_index.main([*args, "--force", "--neighbours", "3", "--storage", "float16"]) == 0
    assert "(0 encoded, 9 from the store or cache)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        build_index.main([*args, "--neighbours", "-1"])
    assert exit_info.value.code == 2 and "--neighbours must be >= 0" in capsys.readouterr().err

    assert evaluate.main(["--index-dir", str(tmp_path / "index"), "--json", "--k", "5"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) >= {"ndcg@5", "mrr@5", "recall@5", "map@5", "n_queries"}
    assert metrics["n_queries"] == 6  # w1, m1 and h1 share no topic with any other item
    assert evaluate.main(["--index-dir", str(tmp_path / "index"), "--relevance", "group"]) == 0
    assert "n_queries  2" in capsys.readouterr().out


@pytest.mark.model
def test_build_with_a_bad_line_fails_and_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", [*SMALL_CATALOG, '{"id": "t2", "abstract": "dup"}'])
    args = ["--catalog", str(catalog), "--index-dir", str(tmp_path / "index"), "--no-cache", "--quiet"]
    assert build_index.main(args) == 2
    assert "c.jsonl:10: field 'id': duplicate id 't2'" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()
    assert build_index.main([*args, "--skip-invalid"]) == 0
    captured = capsys.readouterr()
    assert "skipped:" in captured.err and "1 invalid lines skipped" in captured.out


def test_evaluate_without_an_index_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate.main(["--index-dir", str(tmp_path)]) == 2
    assert "no index" in capsys.readouterr().err


@pytest.mark.model
def test_prepare_model_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "use-multilingual-v3").mkdir()
    manifest = Path(prepare_model.get_settings().models_dir) / "use-multilingual-v3" / "manifest.json"
    (tmp_path / "use-multilingual-v3" / "manifest.json").write_bytes(manifest.read_bytes())
    assert prepare_model.main(["--models-dir", str(tmp_path), "--model", "use-multilingual-v3"]) == 0
    assert "prepared in" in capsys.readouterr().out
    assert prepare_model.main(["--models-dir", str(tmp_path), "--model", "use-multilingual-v3"]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert prepare_model.main(["--models-dir", str(tmp_path), "--model", "nope"]) == 2


@pytest.mark.model
def test_compare_models_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = write_jsonl(tmp_path / "c.jsonl", SMALL_CATALOG)
    assert compare_models.main(["--catalog", str(catalog), "--candidate", "use-multilingual-v3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["candidate"] == "use-multilingual-v3" and 0.0 <= result["all:ndcg@10"] <= 1.0


def test_benchmark_scale_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert benchmark.main(["--only", "scale", "--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    exact, half = report["scale"]["2000-float32"], report["scale"]["2000-float16"]
    assert exact["index"] == "flat" and exact["search_recall_at_10"] == 1.0
    assert half["storage"] == "float16" and half["search_recall_at_10"] >= 0.95
    assert exact["live_search_p50_ms"] > 0 and exact["lists_p50_ms"] > 0 and exact["lists_s"] > 0
    out = capsys.readouterr().out
    assert "2000-float32 (flat): build" in out and "2000-float16 (flat): build" in out


def test_benchmark_quantisation_section_measures_pq_against_exact_search(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert benchmark.main(["--only", "quantisation", "--quick", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["quantisation"]["20000"]
    assert row["index"] == "IVF200,PQ64" and row["items"] == 20_000
    # 64 bytes a vector and the coarse centroids, against 2 KB a vector in float32 (39 MB here).
    assert row["memory_mb"] < 0.1 * 20_000 * 512 * 4 / 2**20
    assert 0.0 < row["recall_at_10"] <= row["recall_at_10_reranked_100"] <= 1.0
    assert "quantisation    20000 items IVF200,PQ64" in capsys.readouterr().out


def test_recall_at_10_is_the_share_of_the_true_ten_found() -> None:
    from engine.eval.experiments.quantisation import recall_at

    truth = np.array([list(range(10)), list(range(10))])
    # Row 1: 8 of the true 10 (two replaced by 98, 99); row 2: all 10 in another order: (0.8 + 1.0) / 2 = 0.9.
    found = np.array([[*range(8), 98, 99], list(range(9, -1, -1))])
    assert recall_at(found, truth) == pytest.approx(0.9)


@pytest.mark.model
def test_stress_short_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert stress.main(["--requests", "600", "--concurrency", "16", "--swaps", "2"]) == 0
    out = capsys.readouterr().out
    assert "600 answered of 600 planned" in out and "0 failures" in out and "[200, 200]" in out


def test_benchmark_synthetic_build_loads_like_any_build(tmp_path: Path) -> None:
    synthetic_build(tmp_path / "index", 300, model="m@1")
    recommender = load_recommender(tmp_path / "index", expected_model="m@1")
    assert len(recommender) == 300 and recommender.build.neighbours is not None
    items = recommender.related("pub-0", 5)
    assert len(items) == 5 and "pub-0" not in {i.id for i in items}


def test_benchmark_measures_a_server_with_its_worker_processes(tmp_path: Path) -> None:
    # Server CPU and peak RSS must count uvicorn's worker processes, children of the server's pid. Here a
    # small parent waits while its child allocates 200 MB and spins for 0.3 s of CPU.
    done = tmp_path / "done"
    worker = (
        "import time, pathlib; x = bytearray(200_000_000); t = time.process_time()\n"
        "while time.process_time() - t < 0.3: pass\n"
        f"pathlib.Path({str(done)!r}).touch(); time.sleep(30)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {worker!r}])"]
    )
    try:
        for _ in range(300):
            if done.exists():
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert done.exists() and len(benchmark._process_tree(parent.pid)) == 2
        assert benchmark.peak_rss_mb(parent.pid) >= 200
        assert benchmark.process_tree_cpu_s(parent.pid) >= 0.3
    finally:
        for process in benchmark._process_tree(parent.pid):
            os.kill(process, 9)
        parent.wait()


def parallel_catalog(path: Path, groups: int = 60) -> Path:
    """Every group in en, fr, ar and ary, topics alternating (the shape of sib200-dev)."""
    topics = ("trade", "climate", "water")
    records = [
        {
            "id": f"s{g}-{lang}",
            "abstract": f"{topics[g % 3]} text number {g}",
            "language": lang,
            "group": f"s{g}",
            "topics": [topics[g % 3]],
            "split": "dev",
        }
        for g in range(groups)
        for lang in ("en", "fr", "ar", "ary")
    ]
    return write_jsonl(path, records)


def stand_in_shared_data(tmp_path: Path) -> Path:
    """A stand-in for ../shared/data with the same folders and tiny catalogs, so a whole path runs quickly."""
    shared = tmp_path / "shared"
    for name in SHARED_SETS:
        (shared / name).mkdir(parents=True)
        parallel_catalog(shared / name / "catalog.jsonl", groups=12)
    (shared / "seed" / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\ns0-en\ts3-en\t2\n", encoding="utf-8")
    return shared


def test_sample_catalog_is_reproducible_and_site_like(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = parallel_catalog(tmp_path / "parallel.jsonl", groups=300)
    args = ["--catalog", str(catalog), "--split", "dev", "--seed", "3"]
    assert sample_catalog.main([*args, "--out", str(tmp_path / "a.jsonl")]) == 0
    assert sample_catalog.main([*args, "--out", str(tmp_path / "b.jsonl")]) == 0
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    sample = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    untranslated = [r for r in sample if "group" not in r]
    translated = [r for r in sample if "group" in r]
    # one item per untranslated group, in en 70 % / fr 20 % / ar 10 % (300 groups: wide bounds), never ary
    assert {r["language"] for r in sample} <= {"en", "fr", "ar"}
    share_en = sum(r["language"] == "en" for r in untranslated) / len(untranslated)
    assert 0.6 < share_en < 0.8
    # about a third of the items in groups of two versions in two languages
    assert 0.25 < len(translated) / len(sample) < 0.42
    pairs: dict[str, set[str]] = {}
    for r in translated:
        pairs.setdefault(r["group"], set()).add(r["language"])
    assert all(len(languages) == 2 for languages in pairs.values()) and len(translated) == 2 * len(pairs)
    assert "% translated" in capsys.readouterr().out
    assert sample_catalog.main([*args, "--translated", "0", "--out", str(tmp_path / "c.jsonl")]) == 0
    assert all("group" not in json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines())
    for shares in ("en=x", "en=nan", "en=inf", "en=-1"):
        with pytest.raises(SystemExit):
            sample_catalog.main([*args, "--shares", shares, "--out", str(tmp_path / "d.jsonl")])
    capsys.readouterr()
    assert sample_catalog.main([*args, "--shares", "en=0.5,de=0.5", "--out", str(tmp_path / "d.jsonl")]) == 2
    assert "no translated item" in capsys.readouterr().err and not (tmp_path / "d.jsonl").exists()
    assert sample_catalog.main([*args[:2], "--split", "nosuch", "--out", str(tmp_path / "d.jsonl")]) == 2
    assert "split 'nosuch'" in capsys.readouterr().err


@pytest.mark.model
def test_evaluate_shapes_writes_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shared = stand_in_shared_data(tmp_path)
    report = tmp_path / "report"
    assert evaluate.main(["--shapes", "--shared-data", str(shared), "--report", str(report)]) == 0
    table = capsys.readouterr().out
    assert table.count("| served |") == 7 and "plain cosine" in table and "bm25" in table
    rows = json.loads((report / "shapes.json").read_text())
    assert {r["shape"] for r in rows} >= {"sib200-dev", "demo", "sib200 site sample, untranslated"}
    assert (report / "shapes.md").read_text().startswith("# Catalog shapes")
    assert evaluate.main(["--shapes", "--shared-data", str(tmp_path / "nowhere")]) == 2


@pytest.mark.model
def test_shape_attempts_writes_the_table_and_the_noise_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = stand_in_shared_data(tmp_path)
    out = tmp_path / "attempts.md"
    assert shape_attempts.main(["--shared-data", str(shared), "--out", str(out), "--only", "centring"]) == 0
    table = out.read_text(encoding="utf-8")
    assert (
        "| catalog centring |" in table and "**shipped**" in table and "| plain cosine" not in table.split("Noise")[0]
    )
    assert "paired bootstrap" in table and table.count(" .. ") == 6
    rows = json.loads(out.with_suffix(".json").read_text())
    assert {r["attempt"] for r in rows} >= {"catalog centring", shape_attempts.SERVED}
