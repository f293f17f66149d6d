"""End to end: scripts/serve.py as a real process with the real model, reloaded while it serves."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from engine import EmbeddingCache, build_index
from engine.eval.serving import every_worker, serving_lag, start_server, stop_server
from tests.conftest import DEMO_CATALOG

pytestmark = pytest.mark.model
SEED = "pcns-plan-b-like-minded-internationalism"
TOKEN = "e2e-token"
NEW_ITEM = {
    "id": "e2e-like-minded-coalitions-development",
    "title": "Like-Minded Internationalism: Coalitions of Countries for Global Development",
    "abstract": (
        "As the post-1945 multilateral system fragments and the United States withdraws from the Sustainable "
        "Development Goals, coalitions of like-minded countries offer a plan B for global development "
        "cooperation, climate action and global public goods, beyond universal consensus."
    ),
    "language": "en",
    "type": "policy-brief",
    "published": "2025-07-01",
    "topics": ["multilateralism", "development-finance"],
}


class Server:
    """scripts/serve.py as a real process on a free loopback port, ready when constructed."""

    def __init__(self, index_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        settings = {"RCE_ADMIN_TOKEN": TOKEN, **(env or {})}
        self._server = start_server(index_dir, *extra, env=settings)
        self.process = self._server["process"]
        self.base = self._server["base"]

    def stop(self) -> None:
        stop_server(self._server)


class RequestLoop(threading.Thread):
    """Sends related-items requests back to back and counts the outcomes."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.outcomes: Counter[str] = Counter()
        self.stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop_event.is_set():
                try:
                    response = client.get(f"/publications/{SEED}/related", params={"k": 10})
                    ok = response.status_code == 200 and len(response.json()["items"]) == 10
                    self.outcomes["ok" if ok else f"status {response.status_code}"] += 1
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1

    def finish(self) -> Counter[str]:
        self.stop_event.set()
        self.join(timeout=30)
        return self.outcomes


def rebuild_with_new_item(tmp_path: Path, index_dir: Path, encoder, cache: EmbeddingCache) -> None:
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps(NEW_ITEM) + "\n", encoding="utf-8")
    report = build_index([DEMO_CATALOG, extra], index_dir, encoder, cache=cache)
    assert report.encoded == 1  # everything else came from the cache


def test_a_build_under_load_is_served_without_a_failed_request(tmp_path: Path, real_encoder) -> None:
    index_dir = tmp_path / "index"
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build_index([DEMO_CATALOG], index_dir, real_encoder, cache=cache)
    server = Server(index_dir)
    try:
        before = httpx.get(f"{server.base}/ready").json()
        assert httpx.get(f"{server.base}/publications/{NEW_ITEM['id']}").status_code == 404
        loop = RequestLoop(server.base)
        loop.start()
        time.sleep(0.5)
        rebuild_with_new_item(tmp_path, index_dir, real_encoder, cache)
        # The build announces itself through the catalog store: served without a reload call.
        assert every_worker(server.base, 1, lambda ready: ready["build_id"] != before["build_id"], timeout=5)
        time.sleep(0.5)
        outcomes = loop.finish()
        assert set(outcomes) == {"ok"} and outcomes["ok"] >= 20, outcomes

        assert httpx.get(f"{server.base}/publications/{NEW_ITEM['id']}").json()["title"] == NEW_ITEM["title"]
        related = httpx.get(f"{server.base}/publications/{SEED}/related", params={"k": 10}).json()
        assert NEW_ITEM["id"] in [item["id"] for item in related["items"]]
        draft = httpx.post(f"{server.base}/related?k=3", json={"title": NEW_ITEM["title"], "language": "en"}).json()
        assert draft["items"][0]["id"] == NEW_ITEM["id"]  # free text goes through the real model
        assert httpx.post(f"{server.base}/admin/reload").status_code == 401
        reload = httpx.post(f"{server.base}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert reload.status_code == 200 and reload.json()["publications"] == 137
    finally:
        server.stop()


def test_two_workers_serve_every_write_build_and_reload_within_a_second(tmp_path: Path, real_encoder) -> None:
    index_dir = tmp_path / "index"
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build_index([DEMO_CATALOG], index_dir, real_encoder, cache=cache)
    server = Server(index_dir, "--workers", "2")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        assert every_worker(server.base, 2, lambda ready: True, timeout=60)  # both loaded
        written = httpx.post(f"{server.base}/publications", json=NEW_ITEM, headers=auth, timeout=60).json()
        acknowledged = time.time()
        found = every_worker(server.base, 2, lambda ready: ready["generation"] >= written["generation"])
        assert serving_lag(found, acknowledged) < 1.0
        for _ in range(6):  # fresh connections: both workers answer some
            assert httpx.get(f"{server.base}/publications/{NEW_ITEM['id']}").status_code == 200
        # A batch build from the catalog file keeps the API's write, and every worker serves it.
        report = build_index([DEMO_CATALOG], index_dir, real_encoder, cache=cache)
        built = time.time()
        assert report.imported.kept == 1 and report.items == 137
        found = every_worker(server.base, 2, lambda ready: ready["build_id"] == report.build_dir.name)
        assert serving_lag(found, built) < 1.0 and all(r["changes_since_build"] == 0 for r in found.values())
        # A reload asked of one worker reaches both.
        asked = time.time()
        assert httpx.post(f"{server.base}/admin/reload", headers=auth, timeout=60).status_code == 200
        found = every_worker(server.base, 2, lambda ready: ready["serving_since"] > asked)
        assert serving_lag(found, asked) < 1.0
        deleted = httpx.delete(f"{server.base}/publications/{NEW_ITEM['id']}", headers=auth).json()
        assert every_worker(server.base, 2, lambda ready: ready["generation"] >= deleted["generation"])
        assert all(httpx.get(f"{server.base}/publications/{NEW_ITEM['id']}").status_code == 404 for _ in range(6))
    finally:
        server.stop()


def test_watch_serves_an_edited_overrides_file_and_survives_a_bad_one(tmp_path: Path, real_encoder) -> None:
    index_dir = tmp_path / "index"
    build_index([DEMO_CATALOG], index_dir, real_encoder, cache=EmbeddingCache(tmp_path / "cache.sqlite"))
    server = Server(index_dir, "--watch", "--no-model")
    try:
        first = httpx.get(f"{server.base}/publications/{SEED}/related", params={"k": 1}).json()["items"][0]["id"]
        (index_dir / "overrides.json").write_text("{not json")
        deadline = time.monotonic() + 10
        while not (httpx.get(f"{server.base}/ready").json()["last_error"] or "").count("overrides.json"):
            assert time.monotonic() < deadline, "the bad overrides file was not reported"
            time.sleep(0.1)
        # The watcher went on: a fixed file is served.
        (index_dir / "overrides.json").write_text(json.dumps({"banned": [first]}))
        while (
            httpx.get(f"{server.base}/publications/{SEED}/related", params={"k": 1}).json()["items"][0]["id"] == first
        ):
            assert time.monotonic() < deadline, "the watcher stopped after the bad file"
            time.sleep(0.1)
        assert httpx.get(f"{server.base}/ready").json()["last_error"] is None
        # without a model, free-text queries are refused clearly
        assert httpx.post(f"{server.base}/related", json={"title": "x"}).status_code == 503
    finally:
        server.stop()
