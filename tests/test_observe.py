"""What operators use: metrics at /metrics, request ids, structured logs (service/observe.py) and the
settings file (serve.py --config, .env), shown at /ready."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from engine import BuildOptions, EmbeddingCache, build_index
from engine.settings import ConfigFileError, get_settings
from scripts import serve
from service.observe import reset_logging
from tests.fakes import FakeEncoder
from tests.test_e2e import SEED, Server
from tests.test_service import TOKEN, make_client

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RELATED = "/publications/{publication_id:path}/related"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client(small_index: Path) -> Iterator[TestClient]:
    with make_client(small_index) as client:
        yield client


def test_metrics_count_requests_cache_and_how_lists_were_found(client: TestClient) -> None:
    before = samples(client.get("/metrics").text)
    for _ in range(3):
        assert client.get("/publications/t2/related", params={"k": 3}).status_code == 200
    assert client.get("/publications/nope/related").status_code == 404
    assert client.head("/publications/t2/related.html").status_code == 200
    after = samples(client.get("/metrics").text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # By route template (never the raw path: ids would make a label per publication) and status.
    assert grew("rce_http_request_duration_seconds_count", route=RELATED, method="GET", status="200") == 3
    assert grew("rce_http_request_duration_seconds_count", route=RELATED, method="GET", status="404") == 1
    assert grew("rce_http_request_duration_seconds_count", route=RELATED + ".html", method="HEAD", status="200") == 1
    # The same query three times: computed once, then answered by the response cache.
    assert grew("rce_response_cache_total", result="miss") == 3  # the first GET, the 404, the HEAD
    assert grew("rce_response_cache_total", result="hit") == 2
    assert grew("rce_related_lists_total", source="neighbour_lists") == 2  # t2's list and its fragment
    # What describes the index in service.
    assert value(after, "rce_index_publications") == 9 and value(after, "rce_ready") == 1
    build_id = client.get("/ready").json()["build_id"]
    assert any(name == "rce_build_info" and dict(labels)["build_id"] == build_id for name, labels in after)
    assert 0 <= value(after, "rce_build_age_seconds") < 600


def test_a_live_search_a_reload_and_a_write_are_counted(tmp_path: Path, small_catalog: Path) -> None:
    index_dir = tmp_path / "no-lists"
    options = BuildOptions(neighbours=0)  # no stored lists: every list is an index search
    build_index([small_catalog], index_dir, FakeEncoder(), cache=EmbeddingCache(tmp_path / "c.sqlite"), options=options)
    with make_client(index_dir) as client:
        before = samples(client.get("/metrics").text)
        assert client.get("/publications/t2/related").status_code == 200
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
        written = client.post("/publications", json=[{"id": "n1", "abstract": "water water"}], headers=AUTH)
        assert written.status_code == 200, written.text
        after = samples(client.get("/metrics").text)
    assert (
        value(after, "rce_related_lists_total", source="index_search")
        - value(before, "rce_related_lists_total", source="index_search")
        == 1
    )
    assert value(after, "rce_reloads_total", outcome="ok") - value(before, "rce_reloads_total", outcome="ok") >= 1
    upserts = ("rce_written_publications_total", {"change": "upsert"})
    assert value(after, upserts[0], **upserts[1]) - value(before, upserts[0], **upserts[1]) == 1


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    given = client.get("/health", headers={"X-Request-ID": "edge-7f3a.1"})
    assert given.headers["x-request-id"] == "edge-7f3a.1"
    made = client.get("/health").headers["x-request-id"]
    assert len(made) == 32 and made != client.get("/health").headers["x-request-id"]
    # Not a plausible id (too long, or characters a log or header should not carry): a new one instead.
    for bad in ("x" * 200, "a b", "id;drop"):
        assert client.get("/health", headers={"X-Request-ID": bad}).headers["x-request-id"] != bad
    # Also on answers the middleware gives before any route: a refused write.
    refused = client.post("/publications", json=[], headers={"X-Request-ID": "w-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "w-1"


@pytest.fixture
def json_logs(small_index: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[TestClient, callable]]:
    logging.getLogger("service.access").setLevel(logging.INFO)
    with make_client(small_index, log_format="json") as client:

        def lines() -> list[dict]:
            logged = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
            # The service's lines (the test's own HTTP client logs its requests in this process too).
            return [line for line in logged if not line["logger"].startswith("httpx")]

        yield client, lines
    reset_logging()


def test_json_log_lines_for_requests_and_events_never_hold_the_token_or_bodies(json_logs) -> None:
    client, lines = json_logs
    lines()  # startup
    marker = "BODY-MARKER-91f2 water water"
    assert (
        client.get(
            "/publications/t2/related?k=2&secret_query=QUERY-MARKER", headers={"X-Request-ID": "r-1"}
        ).status_code
        == 200
    )
    assert client.post("/publications", json=[{"id": "n1", "abstract": marker}], headers=AUTH).status_code == 200
    assert (
        client.post(
            "/publications",
            json=[{"id": "n2", "abstract": marker}],
            headers={"Authorization": "Bearer wrong-token-value"},
        ).status_code
        == 401
    )
    logged = lines()
    requests = [line for line in logged if line.get("event") == "request"]
    first = requests[0]
    assert {"time", "level", "logger", "pid", "message"} <= set(first)
    assert (first["method"], first["route"], first["status"], first["request_id"]) == ("GET", RELATED, 200, "r-1")
    assert first["duration_ms"] > 0 and first["build_id"] == client.get("/ready").json()["build_id"]
    # The refused write (answered before routing) is still named by its route.
    assert [(r["route"], r["status"]) for r in requests[1:]] == [("/publications", 200), ("/publications", 401)]
    write = next(line for line in logged if line.get("event") == "write")
    assert (write["upserted"], write["deleted"], write["logger"]) == (1, 0, "engine.events")
    text = json.dumps(logged)
    for secret in (TOKEN, "wrong-token-value", "BODY-MARKER", "QUERY-MARKER"):
        assert secret not in text


def test_text_log_format(small_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("service.access").setLevel(logging.INFO)
    try:
        with make_client(small_index, log_format="text") as client:
            capsys.readouterr()
            client.get("/publications/t2/related", headers={"X-Request-ID": "r-2"})
            err = capsys.readouterr().err
    finally:
        reset_logging()
    assert f"service.access: GET {RELATED} 200" in err and "request_id=r-2" in err and not err.lstrip().startswith("{")


def test_settings_file_under_the_environment_and_shown_masked(
    tmp_path: Path, small_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "rce.env"
    config.write_text("RCE_CACHE_MAX_AGE=17\nRCE_WORK_QUEUE=3\nRCE_ADMIN_TOKEN=from-the-file\n", encoding="utf-8")
    monkeypatch.setenv("RCE_CONFIG", str(config))
    monkeypatch.setenv("RCE_WORK_QUEUE", "5")  # the environment wins over the file
    get_settings.cache_clear()
    try:
        settings = get_settings()
    finally:
        get_settings.cache_clear()
    assert (settings.cache_max_age, settings.work_queue, settings.admin_token.get_secret_value()) == (
        17,
        5,
        "from-the-file",
    )
    try:
        with make_client(small_index, cache_max_age=17) as client:
            ready = client.get("/ready").json()
    finally:
        get_settings.cache_clear()  # the next test reads its own environment
    assert ready["config"]["cache_max_age"] == 17 and ready["config"]["admin_token"] == "**********"
    assert TOKEN not in json.dumps(ready)
    monkeypatch.setenv("RCE_CONFIG", str(tmp_path / "missing.env"))
    with pytest.raises(ConfigFileError, match=r"missing\.env: no such file"):
        get_settings.__wrapped__()
    assert serve.main(["--config", str(tmp_path / "missing.env")]) == 2


@pytest.mark.model
def test_metrics_add_up_across_two_workers(demo_index: Path, tmp_path: Path) -> None:
    # Both workers read the settings file (--config): its max-age is on every answer.
    config = tmp_path / "rce.env"
    config.write_text("RCE_CACHE_MAX_AGE=123\n", encoding="utf-8")
    server = Server(demo_index, "--workers", "2", "--no-model", "--config", str(config))
    try:
        workers = set()
        for _ in range(40):  # a new connection each time: the kernel spreads them over the workers
            response = httpx.get(f"{server.base}/publications/{SEED}/related", params={"k": 5})
            assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=123"
            workers.add(httpx.get(f"{server.base}/ready").json()["worker"])
        assert len(workers) == 2, "both workers answered"
        # Each scrape is answered by one worker and sums both workers' counts: its own at once, the other's
        # within the flush interval (a second).
        time.sleep(1.5)
        for _ in range(6):
            scrape = samples(httpx.get(f"{server.base}/metrics").text)
            assert (
                value(scrape, "rce_http_request_duration_seconds_count", route=RELATED, method="GET", status="200")
                == 40
            )
            assert value(scrape, "rce_index_publications") == 136
    finally:
        server.stop()
