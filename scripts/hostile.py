"""Attack the service as a hostile anonymous client would (loopback only) and measure what it costs the
legitimate traffic beside it: /health p99, legitimate requests/s and latency, drafts' latency, the server's
memory growth, and the status codes the attacks get.

Builds a synthetic exact index of --items publications (recorded with the configured model, so drafts are
encoded by the real model), starts scripts/serve.py on a free loopback port with an admin token, measures a
quiet baseline, then runs each attack for --seconds while a health prober and a legitimate client (two
separate processes, so neither is slowed by the attacker's own work) measure. The attacker connects from
127.0.0.2, the legitimate clients from 127.0.0.1: two client addresses, as per-address rate limits see them.
Prints a table; --json writes the figures. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ATTACKER = "127.0.0.2"
TOKEN = "hostile-test-token"  # the server's admin token: the attacks never send it
MB = 1024 * 1024


@dataclass(frozen=True)
class Attack:
    """One hostile pattern: ``run(client, base, ids, deadline)`` returns the statuses it got."""

    name: str
    what: str
    run: Callable[[httpx.AsyncClient, str, list[str], float], Awaitable[Counter[str]]]
    expected: frozenset[str]  # the statuses a hardened server answers


async def _repeat(
    client: httpx.AsyncClient, deadline: float, connections: int, request: Callable[[int], Awaitable[str]]
) -> Counter[str]:
    """``connections`` loops, each sending ``request(i)`` (i counts across loops) until the deadline."""
    statuses: Counter[str] = Counter()
    counter = iter(range(10**9))

    async def loop() -> None:
        while time.monotonic() < deadline:
            statuses[await request(next(counter))] += 1

    await asyncio.gather(*(loop() for _ in range(connections)))
    return statuses


async def _get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> str:
    try:
        return str((await client.get(url, **kwargs)).status_code)
    except httpx.HTTPError as exc:
        return type(exc).__name__


async def deep_offset(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    pid = ids[0]
    return await _repeat(
        client,
        deadline,
        2,
        lambda i: _get(client, f"{base}/publications/{pid}/related?k=100&offset={9001 + i}&diversity=1"),
    )


async def deepest_page(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    # The most a valid query may ask: the last page of the window, diverse and explained, never cached.
    return await _repeat(
        client,
        deadline,
        2,
        lambda i: _get(
            client, f"{base}/publications/{ids[i % len(ids)]}/related?k=100&offset=900&diversity=1&explain=true"
        ),
    )


async def first_explain(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    await asyncio.sleep(0.5)
    statuses = Counter([await _get(client, f"{base}/publications/{ids[1]}/related?explain=true")])
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    return statuses


async def _chunked(size: int) -> AsyncIterator[bytes]:
    block = b"[" + b'{"id": "x", "title": "' + b"a" * (64 * 1024)
    sent = 0
    while sent < size:
        yield block
        sent += len(block)


async def _post_chunked(client: httpx.AsyncClient, url: str, size: int) -> str:
    try:
        response = await client.post(url, content=_chunked(size), headers={"content-type": "application/json"})
        return str(response.status_code)
    except httpx.HTTPError as exc:  # the server may close the connection once it has answered
        return type(exc).__name__


async def _three_huge_bodies(client: httpx.AsyncClient, url: str, deadline: float) -> Counter[str]:
    """Three 100 MB chunked bodies to ``url`` at once, then quiet until the deadline."""
    results = await asyncio.gather(*(_post_chunked(client, url, 100 * MB) for _ in range(3)))
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    return Counter(results)


async def chunked_write(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    return await _three_huge_bodies(client, f"{base}/publications", deadline)


async def chunked_draft(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    return await _three_huge_bodies(client, f"{base}/related", deadline)


async def junk_params(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    pid = ids[2]
    return await _repeat(
        client, deadline, 4, lambda i: _get(client, f"{base}/publications/{pid}/related?k=100&junk={i}")
    )


async def distinct_queries(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    # Valid, different, light (never rate-limited) and as large as light answers get: what the response
    # cache's byte bound is for.
    return await _repeat(
        client,
        deadline,
        4,
        lambda i: _get(client, f"{base}/publications/{ids[i % len(ids)]}/related?k={50 - i // len(ids) % 50}"),
    )


async def draft_flood(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    async def draft(i: int) -> str:
        body = {"title": f"Flood {i}", "abstract": f"word{i} " * 300, "language": "en"}
        try:
            return str((await client.post(f"{base}/related", json=body)).status_code)
        except httpx.HTTPError as exc:
            return type(exc).__name__

    return await _repeat(client, deadline, 8, draft)


async def browse_flood(client: httpx.AsyncClient, base: str, ids: list[str], deadline: float) -> Counter[str]:
    return await _repeat(
        client, deadline, 2, lambda i: _get(client, f"{base}/publications?query=word{i % 5000}&offset={i % 100}")
    )


ATTACKS = (
    Attack("first_explain", "the first explain=true request after a load", first_explain, frozenset({"200"})),
    Attack("deep_offset", "k=100&offset=9001+i&diversity=1, 2 connections", deep_offset, frozenset({"422"})),
    Attack(
        "deepest_page",
        "k=100&offset=900&diversity=1&explain=true, 2 connections",
        deepest_page,
        frozenset({"200", "429", "503"}),
    ),
    Attack(
        "chunked_write",
        "3 x 100 MB chunked POST /publications, no token",
        chunked_write,
        frozenset({"401", "RemoteProtocolError", "WriteError", "ReadError"}),
    ),
    Attack(
        "chunked_draft",
        "3 x 100 MB chunked POST /related",
        chunked_draft,
        frozenset({"413", "RemoteProtocolError", "WriteError", "ReadError"}),
    ),
    Attack("junk_params", "k=100&junk=i on one publication, 4 connections", junk_params, frozenset({"200"})),
    Attack("distinct_queries", "valid distinct k=50 queries, 4 connections", distinct_queries, frozenset({"200"})),
    Attack("draft_flood", "unique 300-word drafts, 8 connections", draft_flood, frozenset({"200", "429", "503"})),
    Attack(
        "browse_flood",
        "GET /publications?query=word{i}&offset=..., 2 connections",
        browse_flood,
        frozenset({"200", "429", "503"}),
    ),
)


# ----- the measuring processes -----


def health_prober(host: str, port: int, seconds: float, start_at: float) -> list[float]:
    """Latencies (ms) of GET /health, one at a time every 20 ms, on one kept-alive connection."""
    time.sleep(max(0.0, start_at - time.time()))
    latencies = []
    connection = http.client.HTTPConnection(host, port, timeout=30)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            connection.request("GET", "/health")
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=30)
            latencies.append(30_000.0)
            continue
        latencies.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)
    return latencies


def legitimate_client(base: str, ids: list[str], seconds: float, drafts: bool, start_at: float) -> dict[str, Any]:
    """A site's traffic: 4 connections of related lists (k=6, random publications), and with ``drafts``
    an editor sending a new draft every 1.25 s (under the default drafts limit of 10 per 10 s)."""
    time.sleep(max(0.0, start_at - time.time()))
    return asyncio.run(_legitimate(base, ids, seconds, drafts))


async def _legitimate(base: str, ids: list[str], seconds: float, drafts: bool) -> dict[str, Any]:
    rng = random.Random(0)
    deadline = time.monotonic() + seconds
    pages: list[float] = []
    draft_latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def reader() -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                statuses[await _get(client, f"{base}/publications/{rng.choice(ids)}/related?k=6")] += 1
                pages.append((time.perf_counter() - start) * 1000)

        async def editor() -> None:
            i = 0
            while time.monotonic() < deadline:
                i += 1
                body = {"title": f"Draft {i} on word{i}", "abstract": f"word{i} word{i + 1} " * 60, "language": "en"}
                start = time.perf_counter()
                try:
                    status = str((await client.post(f"{base}/related", json=body)).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                statuses["draft " + status] += 1
                draft_latencies.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(max(0.0, 1.25 - (time.perf_counter() - start)))

        await asyncio.gather(*(reader() for _ in range(4)), *([editor()] if drafts else []))
    return {"pages": pages, "drafts": draft_latencies, "statuses": dict(statuses), "seconds": seconds}


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` now (Linux)."""
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1)) / 1024


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def attacker(name: str, base: str, ids: list[str], seconds: float, start_at: float) -> dict[str, int]:
    """Run the attack called ``name`` from 127.0.0.2 for ``seconds``, starting at wall-clock ``start_at``."""
    attack = next(a for a in ATTACKS if a.name == name)
    time.sleep(max(0.0, start_at - time.time()))

    async def run() -> Counter[str]:
        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(transport=transport, timeout=60, limits=limits) as client:
            return await attack.run(client, base, ids, time.monotonic() + seconds)

    return dict(asyncio.run(run()))


class Measurers:
    """Three processes, spawned so they share nothing with the caller: the /health prober, the legitimate
    client (niced, so it takes the CPU the server leaves) and the attacker (niced further, as if it ran on
    another machine: on two cores, a loopback attacker otherwise competes with the server for CPU)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.prober = context.Pool(1)
        self.legit = context.Pool(1, initializer=os.nice, initargs=(5,))
        self.attack = context.Pool(1, initializer=os.nice, initargs=(10,))

    def __enter__(self) -> Measurers:
        return self

    def __exit__(self, *exc: object) -> None:
        for pool in (self.prober, self.legit, self.attack):
            pool.terminate()


def run_phase(
    measurers: Measurers, server: dict, ids: list[str], attack: Attack | None, seconds: float, drafts: bool = True
) -> dict[str, Any]:
    """Run one attack (None: a quiet baseline) while the prober and the legitimate client measure."""
    base, pid = server["base"], server["process"].pid
    host, port = base.removeprefix("http://").split(":")
    start_at = time.time() + 1.0  # every process starts together, once spawned and imported
    health = measurers.prober.apply_async(health_prober, (host, int(port), seconds, start_at))
    legit = measurers.legit.apply_async(legitimate_client, (base, ids, seconds, drafts, start_at))
    hostile = measurers.attack.apply_async(attacker, (attack.name, base, ids, seconds, start_at)) if attack else None
    before = rss_mb(pid)
    peak = before
    while not (health.ready() and legit.ready() and (hostile is None or hostile.ready())):
        peak = max(peak, rss_mb(pid))
        time.sleep(0.05)
    statuses = hostile.get() if hostile else {}
    latencies, traffic = health.get(), legit.get()
    after = rss_mb(pid)
    return {
        "attack": attack.name if attack else "none",
        "what": attack.what if attack else "quiet baseline",
        "attack_statuses": statuses,
        "unexpected": sorted(set(statuses) - attack.expected) if attack else [],
        "health_p50_ms": percentile(latencies, 0.5),
        "health_p99_ms": percentile(latencies, 0.99),
        "health_max_ms": max(latencies, default=0.0),
        "legit_requests_per_s": len(traffic["pages"]) / seconds,
        "legit_p50_ms": percentile(traffic["pages"], 0.5),
        "legit_p99_ms": percentile(traffic["pages"], 0.99),
        "draft_p50_ms": percentile(traffic["drafts"], 0.5),
        "draft_max_ms": max(traffic["drafts"], default=0.0),
        "legit_statuses": traffic["statuses"],
        "rss_before_mb": before,
        "rss_growth_mb": max(peak, after) - before,
    }


def prepare(index_dir: Path, items: int) -> list[str]:
    """A synthetic build of ``items`` publications recorded with the configured model; returns its ids."""
    from engine import expected_model_name, get_settings
    from engine.eval.experiments.synthetic import synthetic_build

    synthetic_build(index_dir, items, model=expected_model_name(get_settings()))
    return [f"pub-{i}" for i in range(items)]


def render(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the phases."""
    lines = [
        "| attack | its statuses | /health p99 (max) ms | legit req/s | legit p99 ms | draft p50 / max ms "
        "| RSS growth MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["attack_statuses"].items())) or "-"
        lines.append(
            f"| {r['attack']} | {statuses} | {r['health_p99_ms']:.1f} ({r['health_max_ms']:.0f}) | "
            f"{r['legit_requests_per_s']:.0f} | {r['legit_p99_ms']:.1f} | {r['draft_p50_ms']:.0f} / "
            f"{r['draft_max_ms']:.0f} | {r['rss_growth_mb']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build, serve, attack, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=4990, help="synthetic publications (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per attack (default: %(default)s)")
    parser.add_argument("--only", default="", help="comma-separated attack names (default: all)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    names = [a.name for a in ATTACKS]
    chosen = [a for a in ATTACKS if not args.only or a.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - set(names)
    if unknown:
        parser.error(f"unknown attack(s) {sorted(unknown)}; choose among {names}")

    from engine.eval.serving import start_server, stop_server

    with tempfile.TemporaryDirectory() as tmp:
        ids = prepare(Path(tmp) / "index", args.items)
        server = start_server(Path(tmp) / "index", env={"RCE_ADMIN_TOKEN": TOKEN})
        rows = []
        try:
            with Measurers() as measurers:
                for attack in [None, *chosen]:
                    row = run_phase(measurers, server, ids, attack, args.seconds)
                    rows.append(row)
                    print(f"{row['attack']}: /health p99 {row['health_p99_ms']:.1f} ms", file=sys.stderr)
        finally:
            stop_server(server)
    print(render(rows))
    if args.json:
        args.json.write_text(json.dumps({"items": args.items, "seconds": args.seconds, "phases": rows}, indent=1))
    worst = max(rows, key=lambda r: r["health_p99_ms"])
    print(f"{len(rows) - 1} attacks on {args.items} items; worst /health p99 {worst['health_p99_ms']:.1f} ms", end="")
    print(f" ({worst['attack']}); largest memory growth {max(r['rss_growth_mb'] for r in rows):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
