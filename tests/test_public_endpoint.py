"""What an anonymous client can and cannot make the service do (TestClient, fake-encoder index): bounded
pages, body limits before parsing, tokens before bodies, the response cache's key and bounds, rate limits,
a full work pool, HEAD and If-None-Match, invalid Unicode and links. The same attacks against a real server
process, under load and measured, are in test_hostile.py."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from engine import EngineHolder
from engine.catalog.records import CatalogError, load_catalog, parse_record
from engine.rank.query import MAX_WINDOW, RelatedQuery
from service.app import cache_key
from service.work import BusyError, WorkPool
from tests.fakes import FakeEncoder, pub
from tests.test_service import TOKEN, make_client

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(small_index: Path) -> TestClient:
    with make_client(small_index) as client:
        yield client


def test_offset_plus_k_over_the_window_is_422_naming_both(client: TestClient) -> None:
    response = client.get(f"/publications/t1-en/related?k=100&offset={MAX_WINDOW - 99}")
    assert response.status_code == 422
    message = response.json()["detail"][0]["msg"]
    assert f"at most {MAX_WINDOW}" in message and f"offset={MAX_WINDOW - 99}" in message and "k=100" in message
    # the deepest allowed page is answered (past the end of this small catalog: empty, with a reason)
    deepest = client.get(f"/publications/t1-en/related?k=100&offset={MAX_WINDOW - 100}&diversity=0.5")
    assert deepest.status_code == 200 and deepest.json()["items"] == []


def test_light_queries_are_shallow_plain_lists() -> None:
    assert RelatedQuery(k=10).light and RelatedQuery(k=25, offset=25).light
    assert not RelatedQuery(k=10, offset=41).light
    assert not RelatedQuery(k=10, diversity=0.2).light and not RelatedQuery(k=10, explain=True).light
    # a filter few items pass widens the search to the whole index: not on the event loop
    assert not RelatedQuery(types=("nope",)).light and not RelatedQuery(language_policy="same").light


def test_a_validated_query_changed_with_replace_is_checked_again() -> None:
    from dataclasses import replace

    from engine.rank.query import InvalidQueryError

    valid = RelatedQuery(k=5).validated()
    assert valid.validated() is valid and valid == RelatedQuery(k=5)  # the mark is not part of equality
    with pytest.raises(InvalidQueryError, match="k"):
        replace(valid, k=0).validated()


def test_repeatable_parameters_are_capped(client: TestClient) -> None:
    many = "&".join(f"type=t{i}" for i in range(21))
    for path in (f"/publications/t1-en/related?{many}", f"/publications?{many}"):
        response = client.get(path)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "type"], path


def test_a_body_over_the_limit_is_413_chunked_or_not(client: TestClient) -> None:
    big = b'{"title": "' + b"a" * 70_000 + b'"}'
    declared = client.post("/related", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "over the limit of 64000 bytes" in declared.json()["detail"]

    def chunks():
        for start in range(0, len(big), 8_192):
            yield big[start : start + 8_192]

    # A generator body is sent chunked, without Content-Length: the limit holds on the stream.
    streamed = client.post("/related", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "more than 64000 bytes" in streamed.json()["detail"]


def test_a_write_without_a_valid_token_is_refused_before_its_body(client: TestClient) -> None:
    read = []

    def chunks():
        read.append(1)  # TestClient pulls the body only if the app reads it
        yield b"[" * 10

    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = client.post("/publications", content=chunks(), headers=headers)
        assert response.status_code == 401 and response.json()["detail"] == "a valid bearer token is required"
    assert client.delete("/publications/t2").status_code == 401
    assert read == []
    # with the token, the same bad body is read and refused as JSON
    response = client.post("/publications", content=b"[[[", headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [b'{"title": "\\ud800 drafts"}', b'{"title": "caf\xe9"}', b'{"title": "unclosed', b'{"title": "a",}'],
    ids=["lone-surrogate", "invalid-utf8", "unclosed", "trailing-comma"],
)
def test_invalid_unicode_and_malformed_json_are_400_naming_the_problem(client: TestClient, body: bytes) -> None:
    response = client.post("/related", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["detail"].startswith("the body is not valid JSON: ")
    write = client.post("/publications", content=body, headers={**AUTH, "content-type": "application/json"})
    assert write.status_code == 400


def test_links_must_be_http_or_https(client: TestClient, tmp_path: Path) -> None:
    record = {"id": "x1", "title": "Sahel", "url": "javascript:alert(document.cookie)"}
    response = client.post("/publications", json=record, headers=AUTH)
    assert response.status_code == 422
    assert (
        response.json()["detail"][0]["loc"] == ["body", 0, "url"] and "http(s)" in response.json()["detail"][0]["msg"]
    )
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        '{"id": "a", "title": "A", "url": "https://example.org/a"}\n'
        '{"id": "b", "title": "B", "image": "data:image/png;base64,AAAA"}\n'
    )
    with pytest.raises(CatalogError, match=r"catalog.jsonl:2: field 'image': 'data:image"):
        load_catalog(catalog)


def test_a_lone_surrogate_in_a_catalog_file_names_line_and_field(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "a", "title": "A"}\n{"id": "b", "title": "B", "abstract": "x\\udc00y"}\n')
    with pytest.raises(CatalogError, match=r":2: field 'abstract': holds a lone UTF-16 surrogate \(U\+DC00"):
        load_catalog(catalog)


def test_head_answers_every_get_route(client: TestClient) -> None:
    def routes(container) -> list:  # routers included with include_router hold their own routes
        found = []
        for route in container:
            inner = getattr(route, "original_router", None)
            found += routes(inner.routes) if inner is not None else [route]
        return found

    paths = {
        route.path.replace("{publication_id:path}", "t1-en").replace("{path:path}", "app.js")
        for route in routes(client.app.routes)
        if isinstance(route, APIRoute) and "GET" in route.methods
    }
    assert {"/health", "/ready", "/publications", "/publications/t1-en", "/publications/t1-en/related"} <= paths
    for path in sorted(paths):
        get, head = client.get(path), client.head(path)
        assert head.status_code == get.status_code, path
        assert head.content == b"" and head.headers.get("etag") == get.headers.get("etag"), path
    assert client.head("/publications/nope/related").status_code == 404


def test_if_none_match_star_is_304_when_there_is_a_representation(client: TestClient) -> None:
    star = {"If-None-Match": "*"}
    for path in ("/publications/t1-en/related?k=3", "/publications/t1-en", "/publications", "/health"):
        first = client.get(path, headers=star)  # not cached yet
        assert first.status_code == 304 and first.content == b"", path
        client.get(path)
        again = client.get(path, headers=star)  # cached
        assert again.status_code == 304, path
    assert client.get("/publications/t1-en/related?k=3", headers=star).headers["etag"].startswith('W/"')
    assert client.get("/publications/nope/related", headers=star).status_code == 404
    assert client.get("/publications/t1-en/related?k=0", headers=star).status_code == 422


def test_no_path_spells_another_requests_cache_key() -> None:
    def scope(path: str, query: bytes = b"") -> dict:
        return {"path": path, "query_string": query, "root_path": ""}

    browse = cache_key(scope("/publications"))
    related = cache_key(scope("/publications/t1-en/related", b"k=3"))
    assert browse[0] == "/publications" and related[0] == "/publications/{publication_id:path}/related"
    # a record path that spells those keys (an id decoded from %3F...) gets a key of its own
    for _, key in (browse, related):
        assert cache_key(scope(key)) not in (browse, related)
        assert cache_key(scope("/publications/" + key)) not in (browse, related)
    assert cache_key(scope("/publications/t1-en/related", b"k=3&junk=1")) == related
    assert cache_key(scope("/publications/t1-en/related", b"k=0")) is None  # invalid: the route answers


def test_a_root_path_keeps_tokens_before_bodies(small_index: Path) -> None:
    with make_client(small_index) as client:
        client.app.root_path = "/api"
        read = []

        def chunks():
            read.append(1)
            yield b"[]"

        response = client.post("/api/publications", content=chunks())
        assert response.status_code == 401 and read == []
        assert client.get("/api/publications/t1-en/related?k=2").headers["etag"].startswith('W/"')


def _cache(client: TestClient):
    app = client.app.middleware_stack
    while not hasattr(app, "cached_bytes"):
        app = app.app
    return app


def test_unknown_parameters_are_ignored_and_not_part_of_the_cache_key(client: TestClient) -> None:
    plain = client.get("/publications/t1-en/related?k=3")
    cache = _cache(client)
    held = cache.cached_bytes
    for i in range(50):
        junk = client.get(f"/publications/t1-en/related?k=3&junk={i}&utm_source=x{i}")
        assert junk.status_code == 200 and junk.headers["etag"] == plain.headers["etag"]
    assert cache.cached_bytes == held  # one entry for all of them
    # a different valid query is a different entry, with its own ETag
    other = client.get("/publications/t1-en/related?k=4")
    assert other.headers["etag"] != plain.headers["etag"] and cache.cached_bytes > held


def test_the_response_cache_is_bounded_in_bytes(small_index: Path) -> None:
    with make_client(small_index, response_cache_bytes=6_000, response_cache_size=1_000) as client:
        cache = _cache(client)
        sizes = [len(client.get(f"/publications/t1-en/related?k={k}").content) for k in range(1, 11)]
        assert sum(sizes) > 6_000 and 0 < cache.cached_bytes <= 6_000
        # the newest answers are the ones kept
        assert client.get("/publications/t1-en/related?k=10", headers={"If-None-Match": "*"}).status_code == 304


def test_drafts_are_rate_limited_per_client_address(small_index: Path) -> None:
    with make_client(small_index, rate_limit_drafts="2/minute") as client:
        draft = {"title": "Trade and finance", "language": "en"}
        assert [client.post("/related", json=draft).status_code for _ in range(2)] == [200, 200]
        refused = client.post("/related", json=draft)
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert "rate limit of 2 per 1 minute" in refused.json()["detail"]
        # light related lists are never limited; heavy ones count on their own limit
        assert client.get("/publications/t1-en/related?k=3").status_code == 200
    with make_client(small_index, rate_limit_drafts="off", rate_limit_heavy="1/minute") as client:
        assert all(client.post("/related", json=draft).status_code == 200 for _ in range(5))
        assert client.get("/publications/t1-en/related?explain=true").status_code == 200
        assert client.get("/publications/t1-en/related?diversity=0.5").status_code == 429


def test_a_full_work_pool_answers_503_with_retry_after_at_once() -> None:
    release = threading.Event()
    outcomes: list[str] = []

    async def scenario() -> None:
        pool = WorkPool(workers=1, queue=1)

        async def run() -> None:
            try:
                await pool.run(release.wait, 10)
                outcomes.append("done")
            except BusyError as exc:
                outcomes.append(f"busy {exc.retry_after}")

        async with anyio.create_task_group() as tasks:
            for _ in range(3):  # one runs, one waits, one is refused
                tasks.start_soon(run)
                await anyio.sleep(0.05)
            assert outcomes == ["busy 1"] and pool.waiting == 1
            release.set()

    anyio.run(scenario)
    assert sorted(outcomes) == ["busy 1", "done", "done"]


def test_a_full_work_pool_is_a_503_over_http(small_index: Path) -> None:
    with make_client(small_index, work_threads=1, work_queue=0) as client:
        release = threading.Event()
        recommender = client.app.state.holder.current
        original = recommender.recommend

        def slow(*args, **kwargs):
            release.wait(10)
            return original(*args, **kwargs)

        recommender.recommend = slow
        try:
            results: list[int] = []
            first = threading.Thread(
                target=lambda: results.append(client.get("/publications/t1-en/related?explain=true").status_code)
            )
            first.start()
            for _ in range(100):  # until the first holds the only worker
                if client.app.state.work._limiter and client.app.state.work._limiter.borrowed_tokens:
                    break
                threading.Event().wait(0.01)
            busy = client.get("/publications/t2/related?explain=true")
            assert busy.status_code == 503 and busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
            assert client.get("/health").status_code == 200
            assert client.get("/publications/t2/related?k=3").status_code == 200  # light: on the loop
        finally:
            release.set()
            first.join(10)
            recommender.recommend = original
        assert results == [200]


def test_a_burst_in_one_tick_cannot_overfill_the_queue() -> None:
    release = threading.Event()
    outcomes: list[str] = []

    async def scenario() -> None:
        pool = WorkPool(workers=1, queue=2)

        async def run() -> None:
            try:
                await pool.run(release.wait, 10)
                outcomes.append("done")
            except BusyError:
                outcomes.append("busy")

        async with anyio.create_task_group() as tasks:
            for _ in range(20):  # all started before any of them reaches the pool's limiter
                tasks.start_soon(run)
            await anyio.sleep(0.1)
            release.set()

    anyio.run(scenario)
    assert outcomes.count("done") == 3 and outcomes.count("busy") == 17


def test_a_build_is_warm_before_it_serves_and_soon_after_a_write(small_index: Path) -> None:
    holder = EngineHolder(small_index, expected_model=None, encoder=FakeEncoder())
    holder.reload()
    assert holder.current.warmed  # warmed before the swap: the first explanation pays nothing
    holder.write(upserts=[parse_record(pub("new-1", "trade trade finance"), "test", 1)])
    fresh = holder.current
    deadline = time.monotonic() + 20
    while not fresh.warmed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fresh.warmed and "new-1" in fresh.publications
