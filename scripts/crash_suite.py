"""Crash-consistency suite: is every acknowledged write still there after kill -9, in every worker?

Real processes on loopback: ``scripts/serve.py --workers 2`` with the real model, several writer threads
adding and deleting publications through the API, ``scripts/build_index.py`` runs between and during the
writes (some killed with SIGKILL at a random point), and the whole service killed with SIGKILL at a random
point of each round. After every restart (and once live, at the end) every acknowledged write is checked:
present (or, for a deletion, absent) through fresh connections, with every worker at or past its generation.
Writes whose answer was lost to a kill are not acknowledged: they may or may not be there, and are not counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from engine.eval.serving import PROJECT, every_worker, serving_lag, start_server

TOKEN = "crash-suite-token"
DEMO_CATALOG = PROJECT / "data" / "demo" / "catalog.jsonl"
BUILD = [sys.executable, str(PROJECT / "scripts" / "build_index.py"), "--catalog", str(DEMO_CATALOG)]
WORDS = [
    "trade", "climate", "water", "migration", "finance", "health", "security", "youth", "energy", "food",
    "debt", "cities", "ports", "coalitions", "elections", "borders", "fisheries", "drought", "vaccines", "tariffs",
]  # fmt: skip


@dataclass
class Ledger:
    """What the writers were told: acknowledged upserts and deletions, and the generation of the last."""

    present: dict[str, int] = field(default_factory=dict)  # id -> generation of its acknowledged upsert
    deleted: dict[str, int] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)  # an answer lost to a kill: either state is right
    acknowledged: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # status or error -> count
    latest: int = 0
    latest_at: float = 0.0  # Unix time the latest generation was acknowledged
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, publication_id: str, deleting: bool, outcome: int | str, generation: int = 0) -> None:
        with self.lock:
            if outcome != 200:
                self.refused[str(outcome)] = self.refused.get(str(outcome), 0) + 1
                if not isinstance(outcome, int):  # no answer: the write may have committed
                    self.unknown.add(publication_id)
                return
            self.acknowledged += 1
            if generation >= self.latest:
                self.latest, self.latest_at = generation, time.time()
            self.unknown.discard(publication_id)
            if deleting:
                self.present.pop(publication_id, None)
                self.deleted[publication_id] = generation
            else:
                self.present[publication_id] = generation
                self.deleted.pop(publication_id, None)


class Writer(threading.Thread):
    """Adds publications (and deletes some of its own) through the API until stopped."""

    def __init__(self, base: str, number: int, ledger: Ledger, seed: int) -> None:
        super().__init__(daemon=True, name=f"writer-{number}")
        self.base, self.number, self.ledger = base, number, ledger
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.count = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while not self.stop_event.is_set():
            with self.ledger.lock:
                own = [key for key in self.ledger.present if key.startswith(f"crash-{self.number}-")]
            deleting = bool(own) and self.rng.random() < 0.2
            if deleting:
                key = self.rng.choice(own)
                request = {"method": "DELETE", "url": f"{self.base}/publications/{key}"}
            else:
                self.count += 1
                key = f"crash-{self.number}-{self.count}-{self.rng.randrange(10**6)}"
                words = " ".join(self.rng.choices(WORDS, k=40))
                record = {"id": key, "title": f"On {words[:40]}", "abstract": words, "language": "en"}
                request = {"method": "POST", "url": f"{self.base}/publications", "json": record}
            try:
                # A fresh connection each time, so the writes spread over the workers.
                response = httpx.request(**request, headers=headers, timeout=30)
            except httpx.HTTPError as exc:
                self.ledger.record(key, deleting, type(exc).__name__)
                time.sleep(0.05)
                continue
            generation = response.json().get("generation", 0) if response.status_code == 200 else 0
            self.ledger.record(key, deleting, response.status_code, generation)


def start_service(index_dir: Path, workers: int) -> dict:
    """The service in its own process group, so one SIGKILL reaches the master and every worker."""
    return start_server(index_dir, "--workers", str(workers), env={"RCE_ADMIN_TOKEN": TOKEN}, start_new_session=True)


def kill_service(server: dict) -> None:
    """kill -9 of the master and every worker."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server["process"].pid, signal.SIGKILL)
    server["process"].wait(timeout=30)


def check(base: str, ledger: Ledger, workers: int, since: float, reads: int = 4) -> dict:
    """Every acknowledged upsert answered 200, every acknowledged deletion 404, ``reads`` times each over fresh
    connections, once every worker has reached the last acknowledged generation; with the seconds from
    ``since`` (Unix time) until the last worker served it."""
    found = every_worker(base, workers, lambda ready: ready["generation"] >= ledger.latest)
    in_step = serving_lag(found, since)
    checked = 0

    def answered_otherwise(keys: set[str], status: int) -> list[str]:
        nonlocal checked
        wrong = []
        for key in sorted(keys - ledger.unknown):
            for _ in range(reads):
                checked += 1
                if httpx.get(f"{base}/publications/{key}", timeout=10).status_code != status:
                    wrong.append(key)
                    break
        return wrong

    missing = answered_otherwise(set(ledger.present), 200)
    resurrected = answered_otherwise(set(ledger.deleted), 404)
    return {"workers_in_step_s": in_step, "reads": checked, "missing": missing, "resurrected": resurrected}


def run_build(index_dir: Path) -> subprocess.Popen:
    """scripts/build_index.py importing the demo catalog (its items stay; the API's stay too) and building."""
    return subprocess.Popen(
        [*BUILD, "--index-dir", str(index_dir), "--quiet", "--force"],
        cwd=PROJECT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run_suite(index_dir: Path, rounds: int, seconds: float, writers: int, workers: int, seed: int) -> dict:
    """Rounds of concurrent writes, builds (some killed) and a kill -9 of the service; checks after each."""
    rng = random.Random(seed)
    ledger = Ledger()
    report: dict = {"rounds": [], "builds": {"finished": 0, "killed": 0, "failed": 0}}
    if not (index_dir / "current").exists():
        subprocess.run(
            [*BUILD, "--index-dir", str(index_dir), "--quiet"],
            cwd=PROJECT,
            check=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    for number in range(rounds + 1):
        restarted = time.time()
        server = start_service(index_dir, workers)
        after_restart = check(server["base"], ledger, workers, restarted)
        if number == rounds:  # the last start: only the check after the restart, then a live round below
            final = server
            break
        team = [Writer(server["base"], n, ledger, rng.randrange(10**9)) for n in range(writers)]
        for writer in team:
            writer.start()
        build = None
        kill_at = rng.uniform(seconds / 2, seconds)
        build_at = rng.uniform(0, kill_at)
        # A build takes some 10 s here (most of it loading the model): some are killed, some finish.
        build_kill_at = build_at + rng.uniform(0.5, 12) if rng.random() < 0.6 else None
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < kill_at:
            if build is None and elapsed >= build_at:
                build = run_build(index_dir)
            if build is not None and build_kill_at is not None and elapsed >= build_kill_at and build.poll() is None:
                build.send_signal(signal.SIGKILL)
                report["builds"]["killed"] += 1
                build_kill_at = None
            time.sleep(0.02)
        kill_service(server)  # in the middle of the writes
        for writer in team:
            writer.stop_event.set()
        for writer in team:
            writer.join(timeout=60)
        if build is not None:
            if build_kill_at is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    build.wait(timeout=max(0.0, build_kill_at - (time.monotonic() - started)))
                if build.poll() is None:
                    build.send_signal(signal.SIGKILL)
                    report["builds"]["killed"] += 1
            code = build.wait(timeout=300)
            if code == 0:
                report["builds"]["finished"] += 1
            elif code != -signal.SIGKILL:
                report["builds"]["failed"] += 1
                report.setdefault("build_errors", []).append(build.stderr.read().decode()[-500:])
        report["rounds"].append({"check_after_restart": summarize(after_restart), "killed_after_s": kill_at})
    report["final_check_after_restart"] = summarize(after_restart)
    # Live: writes to both workers, then both must serve all of them within a second, without a restart.
    team = [Writer(final["base"], writers + n, ledger, rng.randrange(10**9)) for n in range(writers)]
    for writer in team:
        writer.start()
    time.sleep(seconds / 2)
    for writer in team:
        writer.stop_event.set()
    for writer in team:
        writer.join(timeout=60)
    report["live_check"] = summarize(check(final["base"], ledger, workers, ledger.latest_at))
    kill_service(final)
    checks = [report["live_check"], report["final_check_after_restart"]]
    checks += [r["check_after_restart"] for r in report["rounds"]]
    lost = [key for c in checks for key in c["missing"]]
    resurrected = [key for c in checks for key in c["resurrected"]]
    report.update(
        acknowledged=ledger.acknowledged,
        present_expected=len(set(ledger.present) - ledger.unknown),
        deleted_expected=len(set(ledger.deleted) - ledger.unknown),
        unknown_outcome=len(ledger.unknown),
        refused=ledger.refused,
        lost=sorted(set(lost)),
        resurrected=sorted(set(resurrected)),
    )
    return report


def summarize(result: dict) -> dict:
    return {**result, "missing": result["missing"][:20], "resurrected": result["resurrected"][:20]}


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the counts as JSON; exit 1 if an acknowledged write was lost or came back."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index-dir", type=Path, help="index folder (default: a new temporary one, demo catalog)")
    parser.add_argument("--rounds", type=int, default=3, help="kill -9 rounds (default: %(default)s)")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="longest round before its kill (default: %(default)s)"
    )
    parser.add_argument("--writers", type=int, default=4, help="concurrent writer threads (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="service worker processes (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.writers < 1 or args.workers < 1 or args.seconds <= 0:
        parser.error("--rounds, --writers and --workers must be >= 1 and --seconds > 0")
    with tempfile.TemporaryDirectory() as tmp:
        index_dir = args.index_dir or Path(tmp) / "index"
        report = run_suite(index_dir, args.rounds, args.seconds, args.writers, args.workers, args.seed)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    failed = report["lost"] or report["resurrected"] or report["builds"]["failed"]
    print(
        f"{report['acknowledged']} writes acknowledged, {report['present_expected']} present and "
        f"{report['deleted_expected']} deleted as acknowledged in every check, {len(report['lost'])} lost; "
        f"{report['builds']['killed']} builds killed, {report['builds']['finished']} finished; "
        f"{args.rounds} kill -9 of the service",
        file=sys.stderr,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
