"""Write latency as an API client sees it, and how soon every worker serves a write, at several catalog sizes.

For each size a real service (``scripts/serve.py`` with the real model) takes one-item writes
(``POST /publications``), one at a time, each a new publication with its own ~150-word text. Printed per
size: the acknowledged write's latency (p50, p99, max) and the time from the acknowledgement until every
worker reports serving its generation (``/ready`` over fresh connections), with a bare ``GET /health`` on the
same server as the reference. The demo size is the bundled demo catalog; larger sizes are synthetic builds
(engine/eval/experiments/synthetic.py) recorded as made with the configured model.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from engine import expected_model_name, get_settings
from engine.eval.experiments.synthetic import synthetic_build
from engine.eval.serving import PROJECT, every_worker, serving_lag, start_server, stop_server

TOKEN = "write-latency-token"
WORDS = (PROJECT / "data" / "demo" / "catalog.jsonl").read_text(encoding="utf-8").split()


def percentiles(values: list[float]) -> dict:
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "max_ms": float(np.max(values)),
    }


def measure(index_dir: Path, writes: int, workers: int, seed: int) -> dict:
    """One-item writes against a real service on ``index_dir``."""
    rng = random.Random(seed)
    # A cache of its own: every write is encoded, as a new text would be.
    env = {"RCE_ADMIN_TOKEN": TOKEN, "RCE_CACHE_DIR": str(index_dir.parent / f"cache-{index_dir.name}")}
    server = start_server(index_dir, "--workers", str(workers), env=env)
    try:
        base = server["base"]
        if every_worker(base, workers, lambda ready: True, timeout=120) is None:
            raise RuntimeError("not every worker became ready")
        health = []
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(50):
                started = time.perf_counter()
                client.get("/health")
                health.append((time.perf_counter() - started) * 1000)
        latencies, visible, statuses = [], [], {}
        for number in range(writes):
            record = {
                "id": f"latency-{seed}-{number}",
                "title": " ".join(rng.choices(WORDS, k=10)),
                "abstract": " ".join(rng.choices(WORDS, k=150)),
                "language": "en",
            }
            started = time.perf_counter()
            response = httpx.post(
                f"{base}/publications", json=record, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600
            )
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                generation, acknowledged = response.json()["generation"], time.time()
                found = every_worker(base, workers, lambda ready, g=generation: ready["generation"] >= g)
                seconds = serving_lag(found, acknowledged)
                visible.append(seconds * 1000 if seconds is not None else float("inf"))
        ready = httpx.get(f"{base}/ready", timeout=5).json()
    finally:
        stop_server(server)
    return {
        "items": ready["publications"] - writes,
        "writes": writes,
        "workers": workers,
        "statuses": statuses,
        "write": percentiles(latencies),
        "every_worker_serves_it_after": percentiles(visible) if visible else None,
        "health_p50_ms": float(np.percentile(health, 50)),
    }


def demo_index(folder: Path) -> Path:
    index_dir = folder / "demo-index"
    script = PROJECT / "scripts" / "build_index.py"
    catalog = PROJECT / "data" / "demo" / "catalog.jsonl"
    subprocess.run(
        [sys.executable, str(script), "--catalog", str(catalog), "--index-dir", str(index_dir), "--quiet"],
        cwd=PROJECT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return index_dir


def main(argv: list[str] | None = None) -> int:
    """Measure each size; print one line per size and the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="*",
        default=[100_000],
        help="synthetic sizes besides the demo (default: %(default)s)",
    )
    parser.add_argument("--writes", type=int, default=30, help="writes per size (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.writes < 1 or args.workers < 1 or any(n < 10 for n in args.sizes):
        parser.error("--writes and --workers must be >= 1, and every size >= 10")
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        report["demo"] = measure(demo_index(Path(tmp)), args.writes, args.workers, seed=1)
        model = expected_model_name(get_settings())
        for size in args.sizes:
            index_dir = Path(tmp) / f"index-{size}"
            synthetic_build(index_dir, size, model=model)
            report[str(size)] = measure(index_dir, args.writes, args.workers, seed=size)
    for name, row in report.items():
        seen = row["every_worker_serves_it_after"] or {}
        print(
            f"{name} ({row['items']} items, {row['workers']} workers): write p50 {row['write']['p50_ms']:.0f} ms, "
            f"p99 {row['write']['p99_ms']:.0f} ms; every worker serves it {seen.get('p50_ms', float('nan')):.0f} ms "
            f"(p99 {seen.get('p99_ms', float('nan')):.0f} ms) after; /health {row['health_p50_ms']:.1f} ms; "
            f"statuses {row['statuses']}"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
