"""Stress the service on loopback: many concurrent requests while the index is rebuilt and swapped.

Starts its own server (scripts/serve.py) on a free loopback port over a temporary copy of the demo
index, sends --requests requests at --concurrency (related lists, records, browsing, bad ids and
parameters), rebuilds and swaps the index --swaps times meanwhile, and checks every response: the
status is the one expected for that request and the body is well-formed. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx

from engine import EmbeddingCache, Encoder, build_index, get_settings, load_catalog, open_encoder
from engine.eval.serving import start_server, stop_server

PROJECT = Path(__file__).resolve().parent.parent
DEMO = PROJECT / "data" / "demo" / "catalog.jsonl"


def request_plan(ids: list[str], n: int, seed: int) -> list[tuple[str, int]]:
    """(path, expected status) pairs: mostly valid related lists, plus records, browsing and errors."""
    rng = random.Random(seed)
    kinds = [
        (0.70, lambda: (f"/publications/{rng.choice(ids)}/related?k={rng.randint(1, 20)}", 200)),
        (0.08, lambda: (f"/publications/{rng.choice(ids)}/related?language_policy=prefer&diversity=0.3", 200)),
        (0.07, lambda: (f"/publications/{rng.choice(ids)}", 200)),
        (0.05, lambda: ("/publications?query=" + rng.choice(["multilat", "climat", "الطاقة", "sahel"]), 200)),
        (0.05, lambda: (f"/publications/no-such-{rng.randint(0, 999)}/related", 404)),
        (0.05, lambda: (f"/publications/{rng.choice(ids)}/related?k=0", 422)),
    ]
    weights = [w for w, _ in kinds]
    return [rng.choices(kinds, weights)[0][1]() for _ in range(n)]


def well_formed(path: str, status: int, body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    if status != 200:
        return "detail" in data
    if "/related" in path:
        return isinstance(data.get("items"), list) and all({"id", "score", "rank"} <= set(i) for i in data["items"])
    if path.startswith("/publications?"):
        return isinstance(data.get("items"), list) and isinstance(data.get("total"), int)
    return "id" in data and "abstract" in data


async def load(base: str, plan: list[tuple[str, int]], concurrency: int, deadline: float) -> dict:
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)
    latencies: list[float] = []
    failures: list[str] = []

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty() and time.monotonic() < deadline:
            path, expected = queue.get_nowait()
            started = time.perf_counter()
            try:
                response = await client.get(path)
            except httpx.HTTPError as exc:
                failures.append(f"{path}: {type(exc).__name__}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != expected or not well_formed(path, response.status_code, response.content):
                failures.append(f"{path}: {response.status_code} (expected {expected})")

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    latencies.sort()
    return {
        "answered": len(latencies),
        "failures": failures,
        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] if latencies else None,
    }


async def swapper(
    base: str, token: str, index_dir: Path, catalogs: list[Path], swaps: int, encoder: Encoder, cache: EmbeddingCache
) -> list[int]:
    """Rebuild the index from alternating catalogs and reload it, ``swaps`` times."""
    results = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for swap in range(swaps):
            await asyncio.sleep(0.3)
            catalog = catalogs[swap % len(catalogs)]
            await asyncio.to_thread(build_index, [catalog], index_dir, encoder, cache=cache)
            response = await client.post("/admin/reload", headers={"Authorization": f"Bearer {token}"})
            results.append(response.status_code)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the stress test and print one summary line; exit 1 if any request failed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--swaps", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=300, help="stop sending after this long")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 256 and 0 <= args.swaps <= 50):
        parser.error("--requests 1..100000, --concurrency 1..256, --swaps 0..50")
    settings = get_settings()
    encoder = open_encoder(settings)
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache = EmbeddingCache.in_folder(settings.cache_dir)
        build_index([DEMO], folder / "index", encoder, cache=cache)
        publications = load_catalog(DEMO).publications
        smaller = folder / "smaller.jsonl"  # the demo minus its last ten items: ids appear and disappear
        smaller.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in publications[:-10]), encoding="utf-8")
        stable_ids = [p.id for p in publications[:-10]]
        # One loopback client stands for many readers: per-address rate limits would refuse it.
        limits_off = {"RCE_RATE_LIMIT_HEAVY": "off", "RCE_RATE_LIMIT_DRAFTS": "off"}
        server = start_server(folder / "index", "--no-model", env={"RCE_ADMIN_TOKEN": token, **limits_off})
        try:
            plan = request_plan(stable_ids, args.requests, args.seed)
            started = time.monotonic()

            async def run() -> tuple[dict, list]:
                return await asyncio.gather(
                    load(server["base"], plan, args.concurrency, started + args.max_seconds),
                    swapper(server["base"], token, folder / "index", [smaller, DEMO], args.swaps, encoder, cache),
                )

            outcome, swaps = asyncio.run(run())
            seconds = time.monotonic() - started
        finally:
            stop_server(server)
    failed = len(outcome["failures"])
    print(
        f"stress: {outcome['answered']} answered of {len(plan)} planned at concurrency {args.concurrency} in "
        f"{seconds:.1f}s; {len(swaps)} index swaps (statuses {swaps}); {failed} failures; "
        f"p50 {outcome['p50_ms']:.1f} ms, p99 {outcome['p99_ms']:.1f} ms"
    )
    for failure in outcome["failures"][:10]:
        print(f"  failure: {failure}", file=sys.stderr)
    ok = failed == 0 and outcome["answered"] == len(plan) and all(s == 200 for s in swaps)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
