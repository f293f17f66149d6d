"""The HTTP API through TestClient, on the fake-encoder index (exact, hand-checkable rankings)."""

from __future__ import annotations

import gc
import json
import sqlite3
import threading
import tomllib
import warnings
import weakref
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from engine import CatalogStore, EngineHolder, RelatedQuery, build_index, get_settings, load_recommender
from service.app import create_app
from service.schemas import RelatedParams, RelatedResponse
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, pub, write_jsonl

TOKEN = "s3cret-token"


def make_client(index_dir: Path, **settings) -> TestClient:
    holder = EngineHolder(index_dir, expected_model=None, encoder=FakeEncoder())
    holder.try_load()
    active = get_settings().model_copy(update={"admin_token": SecretStr(TOKEN), **settings})
    return TestClient(create_app(active, holder=holder))


@pytest.fixture
def client(small_index: Path) -> TestClient:
    with make_client(small_index) as client:
        yield client


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_related_items_carry_translation_links(client: TestClient) -> None:
    body = client.get("/publications/t2/related", params={"k": 3, "explain": True}).json()
    RelatedResponse.model_validate(body)  # the route serialises with orjson: check it against its schema
    assert (body["id"], body["k"], body["offset"], body["reason"]) == ("t2", 3, 0, None)
    first = body["items"][0]
    # t2 = (1 trade, 2 finance)/sqrt5; t1-en and t1-fr = (2, 1)/sqrt5: 4/5 = 0.8 each
    assert {i["id"] for i in body["items"][:2]} == {"t1-en", "t1-fr"} and first["score"] == pytest.approx(0.8)
    other = "t1-fr" if first["id"] == "t1-en" else "t1-en"
    assert first["translations"] == [{"id": other, "language": "fr" if other == "t1-fr" else "en"}]
    assert first["is_translation"] is False and first["pinned"] is False and first["explanation"]["similarity"] > 0


def test_include_translations_marks_them(client: TestClient) -> None:
    items = client.get("/publications/t1-en/related?include_translations=true&k=1").json()["items"]
    assert items[0]["id"] == "t1-fr" and items[0]["is_translation"] is True


def test_pagination_with_k_and_offset(client: TestClient) -> None:
    assert ids(client.get("/publications/t1-en/related?k=2")) == ["t3", "t2"]
    page = client.get("/publications/t1-en/related?k=1&offset=1").json()
    assert [(i["id"], i["rank"]) for i in page["items"]] == [("t2", 2)]
    past = client.get("/publications/t1-en/related?k=5&offset=50").json()
    assert past["items"] == [] and "offset 50 is past the last" in past["reason"]


def test_language_filter_and_policies(client: TestClient) -> None:
    assert set(ids(client.get("/publications/t1-en/related?language=ar&language=fr&k=10"))) == {"t3", "c2", "w1"}
    same = ids(client.get("/publications/t1-en/related?language_policy=same&k=10"))
    assert same[0] == "t2" and set(same) == {"t2", "c1", "m1", "h1"}
    prefer = ids(client.get("/publications/t1-en/related?language_policy=prefer&k=10"))
    # English first (t2 best), then the other languages, t3 (0.894) best among them
    assert prefer[:1] == ["t2"] and set(prefer[:4]) == {"t2", "c1", "m1", "h1"} and prefer[4] == "t3"
    assert len(prefer) == 7


def test_type_filters(client: TestClient) -> None:
    assert ids(client.get("/publications/t1-en/related?type=op-ed&type=video")) == ["t2", "h1"]
    assert "t3" not in ids(client.get("/publications/t1-en/related?exclude_type=podcast"))
    assert "t2" not in ids(client.get("/publications/t1-en/related?exclude_type=op-ed&exclude_type=podcast"))


def test_date_filters_are_inclusive_and_drop_undated_items(client: TestClient) -> None:
    assert ids(client.get("/publications/t1-en/related?published_after=2023-06-01")) == ["t2", "c1"]
    assert ids(client.get("/publications/t1-en/related?published_before=2023-06-01")) == ["t3", "t2"]
    both = "published_after=2022-01-16&published_before=2024-05-04"
    assert ids(client.get(f"/publications/t1-en/related?{both}")) == ["t2"]


def test_diversity_spreads_near_duplicates(client: TestClient) -> None:
    plain = ids(client.get("/publications/t2/related?include_translations=true&k=3"))
    assert set(plain[:2]) == {"t1-en", "t1-fr"}  # identical texts, both 0.8
    diverse = client.get("/publications/t2/related?include_translations=true&k=3&diversity=0.5&explain=true").json()
    top_two = {i["id"] for i in diverse["items"][:2]}
    assert len(top_two & {"t1-en", "t1-fr"}) == 1
    assert all(i["score"] <= 0.8 + 1e-6 for i in diverse["items"])


def test_min_score_with_min_results(client: TestClient) -> None:
    assert ids(client.get("/publications/t1-en/related?min_score=0.85")) == ["t3"]
    assert ids(client.get("/publications/t1-en/related?min_score=0.99&min_results=2")) == ["t3", "t2"]
    empty = client.get("/publications/t1-en/related?min_score=0.99").json()
    assert empty["items"] == [] and "min_score=0.99" in empty["reason"]


def test_explain(client: TestClient) -> None:
    items = client.get("/publications/t2/related?explain=true&k=3").json()["items"]
    t1 = next(i for i in items if i["id"] == "t1-en")
    explanation = t1["explanation"]
    assert explanation["shared_topics"] == ["trade"]
    assert explanation["shared_authors"] == ["Amal Idrissi"]
    assert set(explanation["shared_terms"]) == {"trade", "finance"}
    assert explanation["similarity"] == pytest.approx(0.8) and explanation["same_language"] is True
    assert explanation["pinned"] is False and explanation["redundancy"] == 0.0


def test_empty_result_after_filters_is_200_with_reason(client: TestClient) -> None:
    body = client.get("/publications/t1-en/related?language=xx").json()
    assert body["items"] == [] and body["reason"] == "no publication passes the filters (languages=['xx'])"


def test_unknown_ids_are_404_naming_them(client: TestClient) -> None:
    for path, name in [
        ("/publications/nope/related", "nope"),
        ("/publications/a/b/related", "a/b"),
        ("/publications/..%2F..%2Fetc%2Fpasswd", "../../etc/passwd"),
        ("/publications/caf%C3%A9", "café"),
    ]:
        response = client.get(path)
        assert response.status_code == 404 and response.json() == {"detail": f"publication '{name}' not found"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("k=0", "k"),
        ("k=101", "k"),
        ("k=ten", "k"),
        ("offset=-1", "offset"),
        ("diversity=1.5", "diversity"),
        ("language_policy=mine", "language_policy"),
        ("published_after=yesterday", "published_after"),
        ("published_after=2025-01-01&published_before=2024-01-01", "published_after"),
        ("min_score=2", "min_score"),
        ("min_results=-1", "min_results"),
        ("include_translations=maybe", "include_translations"),
    ],
)
def test_invalid_parameters_are_422_naming_the_parameter(client: TestClient, query: str, parameter: str) -> None:
    response = client.get(f"/publications/t1-en/related?{query}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", parameter]


def test_post_related_free_text(client: TestClient) -> None:
    body = client.post("/related?k=3", json={"title": "trade finance", "language": "en"}).json()
    # (1 trade, 1 finance)/sqrt2 against t1 and t2: 3/sqrt10 = 0.949 each
    assert body["id"] is None and {i["id"] for i in body["items"]} == {"t1-en", "t1-fr", "t2"}
    assert body["items"][0]["score"] == pytest.approx(0.948683, abs=1e-5)
    same = client.post("/related?language_policy=same", json={"abstract": "trade finance", "language": "fr"}).json()
    assert {i["language"] for i in same["items"]} == {"fr"}


def test_post_related_like_and_unlike(client: TestClient) -> None:
    assert ids(client.post("/related?k=1", json={"like": ["c1"]})) == ["c2"]
    # t1 - 0.5 * t3 leans to finance: t2 first; the examples and t1-en's translation t1-fr are left out
    liked = ids(client.post("/related?k=10", json={"like": ["t1-en"], "unlike": ["t3"]}))
    assert liked[0] == "t2" and not {"t1-en", "t1-fr", "t3"} & set(liked)
    assert client.post("/related", json={"like": ["ghost"]}).json() == {"detail": "publication 'ghost' not found"}


def test_post_related_errors(client: TestClient) -> None:
    empty = client.post("/related", json={}).json()
    assert empty["items"] == [] and "send a title, an abstract or example ids" in empty["reason"]
    response = client.post("/related", json={"title": "t", "abstract": "x" * 20_001})
    assert response.status_code == 413 and "limit 20000" in response.json()["detail"]
    response = client.post(
        "/related", content=b'{"title": "' + b"x" * 70_000 + b'"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and "over the limit of 64000 bytes" in response.json()["detail"]
    assert client.post("/related?k=0", json={"title": "trade"}).status_code == 422


def test_publication_record_and_browse(client: TestClient) -> None:
    record = client.get("/publications/t1-en").json()
    assert record["abstract"] == "trade trade finance" and record["translations"] == [{"id": "t1-fr", "language": "fr"}]
    page = client.get("/publications?limit=2").json()
    assert page["total"] == 9 and [i["id"] for i in page["items"]] == ["c1", "t1-en"]  # newest first
    # accent- and case-insensitive title search
    assert [i["id"] for i in client.get("/publications?query=CLIMAT ete").json()["items"]] == ["c1"]
    assert client.get("/publications?query=climat").json()["total"] == 2  # untitled c2 matches its abstract
    assert [i["id"] for i in client.get("/publications?language=ar&type=podcast").json()["items"]] == ["t3"]
    assert client.get("/publications?limit=0").status_code == 422


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["publications"] == 9 and ready["translation_groups"] == 1
    assert ready["model"] == "fake@1" and ready["build_id"] and ready["text_queries"] is True


def test_etag_and_conditional_get(client: TestClient) -> None:
    first = client.get("/publications/t1-en/related?k=3")
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=300"
    again = client.get("/publications/t1-en/related?k=3", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert client.get("/publications/t1-en/related?k=4").headers["etag"] != etag
    assert client.get("/publications/t1-en/related?k=3", headers={"If-None-Match": '"other"'}).status_code == 200
    assert "etag" not in client.post("/related", json={"title": "trade"}).headers


def test_overrides_pin_and_ban_after_reload(client: TestClient, small_index: Path) -> None:
    etag = client.get("/publications/t1-en/related").headers["etag"]
    (small_index / "overrides.json").write_text(json.dumps({"pinned": {"t1-en": ["h1", "ghost"]}, "banned": ["t3"]}))
    report = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert report["changed"] is True and "ghost" in report["warnings"][0]
    items = client.get("/publications/t1-en/related?k=3&explain=true").json()["items"]
    assert [(i["id"], i["pinned"]) for i in items[:2]] == [("h1", True), ("t2", False)]
    # then the best of the rest: c1, c2 and w1 all have cosine 0 to t1-en (orthogonal topics), so any of them
    assert items[2]["id"] in {"c1", "c2", "w1"} and items[2]["pinned"] is False
    assert items[0]["rank"] == 1 and items[0]["explanation"]["pinned"] is True
    assert "t3" not in ids(client.get("/publications/w1/related?k=20"))
    assert client.get("/publications/t3").status_code == 200  # banned from lists, still readable
    assert ids(client.get("/publications/t1-en/related?language=ar")) == ["w1"]  # pins obey explicit filters
    assert client.get("/publications/t1-en/related").headers["etag"] != etag


def test_admin_reload_requires_the_token(client: TestClient, small_index: Path) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    with make_client(small_index, admin_token=None) as open_client:
        response = open_client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 403 and "disabled" in response.json()["detail"]


def test_a_damaged_current_build_falls_back_to_the_newest_intact_one(
    client: TestClient, small_index: Path, tmp_path: Path
) -> None:
    before = client.get("/ready").json()["build_id"]
    catalog = write_jsonl(tmp_path / "c.jsonl", [*SMALL_CATALOG, pub("new", "water water")])
    build_index([catalog], small_index, FakeEncoder())
    current = (small_index / "current").resolve()
    (current / "manifest.json").write_text("{broken")
    response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.json()["build_id"] == before
    ready = client.get("/ready").json()
    assert ready["build_id"] == before and "damaged" in ready["fallback"] and before in ready["fallback"]
    # "new" was imported with its vectors: served beside the older build until a build holds it.
    assert ready["changes_since_build"] == 1 and client.get("/publications/new").status_code == 200
    assert ids(client.get("/publications/t1-en/related?k=2")) == ["t3", "t2"]


def test_a_bad_overrides_file_is_refused_with_409_and_changes_nothing(client: TestClient, small_index: Path) -> None:
    version = client.get("/ready").json()["overrides"]
    (small_index / "overrides.json").write_text('{"pinned": {"t1-en": "t2"}}')
    response = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 409 and "'pinned' must map publication ids to lists" in response.json()["detail"]
    ready = client.get("/ready").json()
    assert ready["overrides"] == version and "pinned" in ready["last_error"]
    assert ids(client.get("/publications/t1-en/related?k=2")) == ["t3", "t2"]


def test_cors_is_off_by_default_and_configurable(small_index: Path) -> None:
    origin = {"Origin": "https://site.example"}
    with make_client(small_index) as plain:
        assert "access-control-allow-origin" not in plain.get("/publications/t1-en/related", headers=origin).headers
    with make_client(small_index, cors_origins=["https://site.example"]) as cors:
        response = cors.get("/publications/t1-en/related", headers=origin)
        assert response.headers["access-control-allow-origin"] == "https://site.example"


def test_not_ready_without_an_index(tmp_path: Path) -> None:
    with make_client(tmp_path / "missing") as client:
        assert client.get("/health").status_code == 200
        response = client.get("/ready")
        assert response.status_code == 503 and "no index" in response.json()["detail"]
        assert client.get("/publications/x/related").status_code == 503


def test_startup_refuses_an_index_built_with_another_model(small_index: Path) -> None:
    settings = get_settings().model_copy(update={"index_dir": small_index, "load_model": False})
    with TestClient(create_app(settings)) as client:  # the real lifespan, expecting the real model
        response = client.get("/ready")
        assert response.status_code == 503 and "built with model 'fake@1'" in response.json()["detail"]


def test_openapi_lists_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    endpoints = {
        "/health",
        "/ready",
        "/publications",
        "/publications/{publication_id}",
        "/publications/{publication_id}/related",
        "/publications/{publication_id}/related.html",
        "/related",
        "/admin/reload",
    }
    # Every endpoint under /v1, and at its old path, deprecated, for one release.
    assert set(paths) == {f"/v1{p}" for p in endpoints} | endpoints
    operations = [(p, m, op) for p, item in paths.items() for m, op in item.items()]
    assert all(op.get("deprecated", False) is not p.startswith("/v1/") for p, m, op in operations)
    # Readable operation ids: the handler's name (the old paths: with _unversioned), unique.
    ids = {p: op["operationId"] for p, m, op in operations if m == "get"}
    assert ids["/v1/publications/{publication_id}/related"] == "related"
    assert ids["/publications/{publication_id}/related"] == "related_unversioned"
    assert len({op["operationId"] for _, _, op in operations}) == len(operations)
    # The admin token is an HTTP bearer scheme on the admin and write operations, and only there.
    assert schema["components"]["securitySchemes"]["adminToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The service's RCE_ADMIN_TOKEN, for /v1/admin/* and catalog writes.",
    }
    secured = {(p, m) for p, m, op in operations if op.get("security")}
    assert secured == {
        (f"{v}{p}", m)
        for v in ("", "/v1")
        for p, m in (("/admin/reload", "post"), ("/publications", "post"), ("/publications/{publication_id}", "delete"))
    }
    # The app's version is the package's (pyproject.toml).
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    assert schema["info"]["version"] == project["project"]["version"]
    assert client.get("/docs").status_code == 200
    assert client.get("/v1/publications/t2/related").json() == client.get("/publications/t2/related").json()
    # The GET route reads its parameters itself (for speed) and declares them from RelatedParams; the POST route
    # takes RelatedParams through FastAPI: both must document exactly the model's parameters and bounds.
    declared = RelatedParams.model_json_schema()["properties"]
    for path, method in (("/publications/{publication_id}/related", "get"), ("/related", "post")):
        operation = paths[path][method]
        parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert set(parameters) == set(RelatedParams.model_fields) == set(declared), path

        def essential(schema: dict) -> dict:  # types, bounds, patterns, enums and real defaults
            return {k: v for k, v in schema.items() if k != "description" and not (k == "default" and v is None)}

        for name, parameter in parameters.items():
            assert essential(parameter["schema"]) == essential(declared[name]), (path, name)
            assert parameter["description"] == declared[name]["description"], (path, name)
    assert paths["/publications/{publication_id}/related"]["get"]["parameters"][0]["in"] == "path"
    assert paths["/publications/{publication_id}/related"]["get"]["parameters"][1]["schema"]["maximum"] == 100
    related = paths["/publications/{publication_id}/related"]["get"]
    assert set(related["responses"]) == {"200", "404", "422", "429", "503"}


def test_a_repeated_query_string_gives_the_same_answers_and_errors(client: TestClient) -> None:
    # Parsed query strings are remembered: a remembered query must not leak between ids, nor an error be lost.
    for _ in range(2):
        assert ids(client.get("/publications/t2/related?k=2&language=en")) == ids(
            client.get("/publications/t2/related?language=en&k=2")
        )
        assert "t1-en" not in ids(client.get("/publications/t1-en/related?k=2&language=en"))
        response = client.get("/publications/t2/related?k=0")
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "k"]
    long_query = "language=en&pad=" + "x" * 1_100  # over the remembered size: parsed each time
    assert {i["language"] for i in client.get(f"/publications/t2/related?{long_query}").json()["items"]} == {"en"}


def test_collapse_translations_keeps_one_entry_per_publication(client: TestClient) -> None:
    plain = ids(client.get("/publications/t2/related?k=3"))
    assert {"t1-en", "t1-fr"} <= set(plain)
    body = client.get("/publications/t2/related?k=3&collapse_translations=true").json()
    collapsed = [i["id"] for i in body["items"]]
    assert len({"t1-en", "t1-fr"} & set(collapsed)) == 1 and len(collapsed) == 3
    entry = next(i for i in body["items"] if i["id"] in {"t1-en", "t1-fr"})
    assert entry["id"] == "t1-en"  # the reader's (query's) language version stands for the group
    assert entry["translations"] == [{"id": "t1-fr", "language": "fr"}]
    # a French reader gets the French version
    from_fr = client.post("/related?k=3&collapse_translations=true", json={"title": "trade finance", "language": "fr"})
    assert "t1-fr" in ids(from_fr) and "t1-en" not in ids(from_fr)
    assert entry["snippet"] == "trade trade finance"


def test_page_and_widget_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<ol id="related-list"' in page.text
    widget = client.get("/widget.js")
    assert widget.headers["content-type"].startswith("text/javascript") and "data-publication" in widget.text
    assert client.get("/static/app.js").status_code == 200
    # One default stylesheet for the widget (which links it) and the fragment (whose host page links it).
    stylesheet = client.get("/related.css")
    assert stylesheet.headers["content-type"].startswith("text/css") and ".rce-item__title" in stylesheet.text
    assert "/related.css" in widget.text


def test_response_cache_never_serves_a_stale_list(client: TestClient, small_index: Path) -> None:
    url = "/publications/t1-en/related?k=2"
    first = client.get(url)
    assert client.get(url).content == first.content  # served from the in-memory cache
    (small_index / "overrides.json").write_text(json.dumps({"banned": ["t3"]}))
    assert client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert "t3" not in ids(client.get(url)) and client.get(url).headers["etag"] != first.headers["etag"]


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_writes_upsert_and_delete_are_persisted(client: TestClient, small_index: Path) -> None:
    new = {"id": "n1", "title": "", "abstract": "water water climate", "language": "fr", "type": "op-ed"}
    assert client.post("/publications", json=new).status_code == 401
    response = client.post(
        "/publications", json=[new, {**SMALL_CATALOG[-1], "abstract": "health youth water"}], headers=AUTH
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["upserted"] == ["n1", "h1"] and body["publications"] == 10
    assert ids(client.get("/publications/w1/related?k=1")) == ["n1"]  # searchable at once
    assert client.get("/publications/h1").json()["abstract"] == "health youth water"
    assert client.delete("/publications/t3", headers=AUTH).json()["deleted"] == ["t3"]
    assert client.get("/publications/t3").status_code == 404
    assert client.delete("/publications/t3", headers=AUTH).status_code == 404
    # what was acknowledged is on disk: a fresh load (a restart) sees it
    restarted = load_recommender(small_index)
    assert "n1" in restarted.publications and "t3" not in restarted.publications
    assert restarted.publications["h1"].abstract == "health youth water"


def test_a_busy_or_full_store_answers_503_and_writes_nothing(client: TestClient, small_index: Path) -> None:
    holder = client.app.state.holder
    holder.store = CatalogStore(small_index / "catalog.db", timeout=0.1)
    other = sqlite3.connect(small_index / "catalog.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # a batch import holds the write lock
    response = client.post("/publications", json={"id": "n1", "abstract": "water"}, headers=AUTH)
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert "busy" in response.json()["detail"]
    other.execute("ROLLBACK")
    store_db = holder.store._db
    store_db.execute(f"PRAGMA max_page_count = {store_db.execute('PRAGMA page_count').fetchone()[0]}")
    response = client.post("/publications", json={"id": "n2", "abstract": "water " * 3_000}, headers=AUTH)
    assert response.status_code == 503 and "catalog.db cannot be used: database or disk is full" in response.text
    assert client.get("/ready").json()["generation"] == 1 and client.get("/publications/n2").status_code == 404


def test_bad_writes_are_422_naming_item_and_field(client: TestClient) -> None:
    response = client.post(
        "/publications", json=[{"id": "ok", "abstract": "x"}, {"id": "bad", "published": "May"}], headers=AUTH
    )
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", 1, "title/abstract"]
    response = client.post(
        "/publications", json=[{"id": "x", "abstract": "a"}, {"id": "x", "abstract": "b"}], headers=AUTH
    )
    assert response.status_code == 422 and "duplicate" in response.json()["detail"][0]["msg"]
    too_many = [{"id": f"m{i}", "abstract": "trade"} for i in range(101)]
    response = client.post("/publications", json=too_many, headers=AUTH)
    assert response.status_code == 422 and "at most 100" in response.json()["detail"]
    assert client.get("/ready").json()["publications"] == 9  # nothing was written


def test_writes_are_disabled_without_a_token(small_index: Path) -> None:
    with make_client(small_index, admin_token=None) as open_client:
        assert open_client.post("/publications", json={"id": "x", "abstract": "y"}, headers=AUTH).status_code == 403
        assert open_client.delete("/publications/t3", headers=AUTH).status_code == 403


def test_the_token_never_reaches_the_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client.post("/admin/reload", headers={"Authorization": "Bearer wrong-token-value"})
    client.post("/admin/reload", headers=AUTH)
    client.post("/publications", json={"id": "z", "abstract": "water"}, headers=AUTH)
    assert caplog.records  # the reload and the write were logged
    assert TOKEN not in caplog.text and "wrong-token-value" not in caplog.text


def test_replaced_builds_are_freed_though_frozen(small_index: Path) -> None:
    # Loaded builds go to the garbage collector's permanent generation (gc.freeze), which is only safe if a
    # replaced build is still freed by reference counting: it must hold no reference cycles.
    # Earlier tests' writes leave warm-ups due within WARM_DELAY (threading.Timer): let them run first, or the
    # objects they make would be counted here.
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(timeout=10)
    holder = EngineHolder(small_index, expected_model=None, encoder=FakeEncoder())
    holder.try_load()
    recommender = holder.current
    recommender.recommend("t1-en", RelatedQuery(k=5, explain=True))  # fill the per-item caches too
    replaced = weakref.ref(recommender)
    del recommender
    holder.reload()
    assert replaced() is None

    def tracked() -> Counter[str]:
        gc.unfreeze()
        gc.collect()
        # sqlite3 keeps a weak reference to each cursor of the store's connection and drops them 200 at a time.
        with warnings.catch_warnings():  # isinstance() on every object touches torch's deprecated aliases
            warnings.simplefilter("ignore", FutureWarning)
            return Counter(type(o).__name__ for o in gc.get_objects() if not isinstance(o, weakref.ReferenceType))

    before = tracked()
    for _ in range(5):
        holder.reload()
        holder.current.recommend("t1-en", RelatedQuery(k=5, explain=True))
    grown = tracked() - before
    assert sum(grown.values()) < 20, grown  # a build is ~1,000 objects here: none stays behind
