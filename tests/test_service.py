"""The HTTP service: routes through TestClient with an overridden dependency, and a real uvicorn process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from engine import IndexLoadError, get_settings, load_recommender
from service.app import create_app, get_recommender
from tests.conftest import PROJECT_ROOT


@pytest.fixture
def client(small_index: Path) -> TestClient:
    app = create_app()
    recommender = load_recommender(small_index)
    app.dependency_overrides[get_recommender] = lambda: recommender
    return TestClient(app)  # no `with`: the lifespan (which loads the real index) does not run


def test_related_returns_ranked_items(client: TestClient) -> None:
    response = client.get("/publications/t1-en/related", params={"k": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "t1-en"
    assert [(i["id"], i["rank"]) for i in body["items"]] == [("t3", 1), ("t2", 2)]
    assert set(body["items"][0]) == {"id", "title", "language", "type", "published", "url", "score", "rank"}


def test_related_filters_and_translations(client: TestClient) -> None:
    body = client.get("/publications/t1-en/related?include_translations=true&k=1").json()
    assert [i["id"] for i in body["items"]] == ["t1-fr"]
    body = client.get("/publications/t1-en/related?type=op-ed&type=video").json()
    assert [i["id"] for i in body["items"]] == ["t2", "h1"]
    body = client.get("/publications/t1-en/related?language=ar").json()
    assert [i["id"] for i in body["items"]][:1] == ["t3"]


def test_unknown_id_is_404_naming_it(client: TestClient) -> None:
    response = client.get("/publications/no-such-paper/related")
    assert response.status_code == 404
    assert response.json() == {"detail": "publication 'no-such-paper' not found"}


@pytest.mark.parametrize("k", ["0", "101", "ten"])
def test_bad_k_is_422(client: TestClient, k: str) -> None:
    response = client.get(f"/publications/t1-en/related?k={k}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "k"]


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["publications"] == 9 and body["model"] == "fake@1"


def test_startup_refuses_an_index_built_with_another_model(small_index: Path) -> None:
    app = create_app(get_settings().model_copy(update={"index_dir": small_index}))
    with pytest.raises(IndexLoadError, match="built with model 'fake@1'"), TestClient(app):
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.model
def test_real_server_process_serves_the_demo_index(demo_index: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "scripts/serve.py",
            "--index-dir",
            str(demo_index),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start (exit code {process.poll()})")
            time.sleep(0.2)
        response = httpx.get(f"{base}/publications/pcns-plan-b-like-minded-internationalism/related", params={"k": 10})
        assert response.status_code == 200
        items = response.json()["items"]
        assert len(items) == 10 and [i["rank"] for i in items] == list(range(1, 11))
        assert {i["language"] for i in items} >= {"en", "fr", "ar"}  # related content across languages
        assert all(items[n]["score"] >= items[n + 1]["score"] for n in range(9))
        missing = httpx.get(f"{base}/publications/does-not-exist/related")
        assert missing.status_code == 404 and "does-not-exist" in missing.json()["detail"]
        assert httpx.get(f"{base}/publications/pcns-plan-b-like-minded-internationalism/related?k=0").status_code == 422
    finally:
        process.terminate()
        process.wait(timeout=20)
