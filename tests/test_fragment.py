"""The server-rendered related block: escaping of hostile catalog text, lang/dir, locales, HTTP caching."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from engine import EngineHolder, build_index, get_settings
from service.app import create_app
from tests.conftest import SMALL_CATALOG
from tests.fakes import FakeEncoder, pub, write_jsonl

HOSTILE = pub(
    "x1",
    "trade finance <script>alert('snippet')</script> \" onmouseover=\"alert(1)",
    title='<img src=x onerror="alert(1)">Trade</a><script>alert(2)</script>',
    authors=['"><script>alert(3)</script>', "O'Brien & <b>Sons</b>"],
    url="https://example.org/x?a=1&b=<2>",
    language="ar",
    group="g-x",
)
HOSTILE_FR = pub(
    "x1-fr",
    "trade finance",
    title="Version",
    url="https://example.org/fr/x",
    image='https://example.org/img/x.jpg?"><script>alert(4)</script>',
    language="fr",
    group="g-x",
)


class Markup(HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Markup:
    markup = Markup()
    markup.feed(html)
    return markup


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    build_index(
        [write_jsonl(tmp_path / "c.jsonl", [*SMALL_CATALOG, HOSTILE, HOSTILE_FR])], tmp_path / "i", FakeEncoder()
    )
    holder = EngineHolder(tmp_path / "i", expected_model=None, encoder=FakeEncoder())
    holder.try_load()
    with TestClient(create_app(get_settings(), holder=holder)) as client:
        yield client


def test_catalog_text_never_becomes_markup(client: TestClient) -> None:
    response = client.get("/publications/t2/related.html", params={"k": 10})
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    markup = parsed(response.text)
    tags = [tag for tag, _ in markup.tags]
    assert "script" not in tags and "img" not in tags and "b" not in tags
    assert not [name for _, attrs in markup.tags for name in attrs if name.startswith("on")]
    hrefs = [attrs["href"] for tag, attrs in markup.tags if tag == "a"]
    assert hrefs and all(href.startswith(("https://", "http://")) for href in hrefs)
    text = "".join(markup.text)
    # The hostile text is shown as text, whole.
    assert '<img src=x onerror="alert(1)">Trade</a><script>alert(2)</script>' in text
    assert "O'Brien & <b>Sons</b>" in text and "https://example.org/x?a=1&b=<2>" in hrefs


def test_each_item_has_its_language_and_direction_and_the_block_the_readers(client: TestClient) -> None:
    markup = parsed(client.get("/publications/t2/related.html", params={"k": 10, "locale": "ar"}).text)
    section = next(attrs for tag, attrs in markup.tags if tag == "section")
    assert (section["lang"], section["dir"], section["class"]) == ("ar", "rtl", "rce-related")
    items = [attrs for tag, attrs in markup.tags if tag == "li"]
    assert {(i["lang"], i["dir"]) for i in items} >= {("ar", "rtl"), ("en", "ltr"), ("fr", "ltr")}
    text = "".join(markup.text)
    assert "محتوى ذو صلة" in text and "موجز سياسات" in text  # heading, and "policy-brief" in Arabic
    french = "".join(parsed(client.get("/publications/t2/related.html", params={"locale": "fr"}).text).text)
    assert "Contenus associés" in french and "Note de synthèse" in french and "Related content" not in french


def test_translations_link_to_their_pages_and_the_heading_level_fits_the_page(client: TestClient) -> None:
    markup = parsed(client.get("/publications/t2/related.html", params={"k": 10, "heading_level": 3}).text)
    assert any(tag == "h3" for tag, _ in markup.tags) and not any(tag == "h2" for tag, _ in markup.tags)
    versions = [a for tag, a in markup.tags if tag == "a" and a.get("class") == "rce-item__version"]
    assert {"href": "https://example.org/fr/x", "hreflang": "fr", "class": "rce-item__version"} in versions


def test_the_fragment_lists_what_the_json_route_lists(client: TestClient) -> None:
    for params in ({"k": 5}, {"k": 3, "language": "en", "language_policy": "prefer"}, {"k": 4, "offset": 2}):
        ids = [item["id"] for item in client.get("/publications/t2/related", params=params).json()["items"]]
        html = client.get("/publications/t2/related.html", params=params).text
        assert [attrs["data-id"] for tag, attrs in parsed(html).tags if tag == "li"] == ids


def test_errors_and_http_caching(client: TestClient) -> None:
    bad = client.get("/publications/t2/related.html", params={"locale": "de"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "locale"]
    missing = client.get("/publications/nope/related.html")
    assert missing.status_code == 404 and missing.json()["detail"] == "publication 'nope' not found"
    first = client.get("/publications/t2/related.html", params={"locale": "fr"})
    assert first.headers["cache-control"].startswith("public, max-age=")
    again = client.get(
        "/publications/t2/related.html", params={"locale": "fr"}, headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    other = client.get("/publications/t2/related.html", params={"locale": "ar"})
    assert other.headers["etag"] != first.headers["etag"]  # the locale is part of the cache key
    assert client.post("/publications/t2/related.html").status_code == 405
    empty = client.get("/publications/t2/related.html", params={"type": "no-such-type"})
    assert "No related content yet." in empty.text and "<ol" not in empty.text


def test_images_are_shown_on_request_lazily_with_alt_text_and_reach_the_json_route(client: TestClient) -> None:
    plain = parsed(client.get("/publications/t2/related.html", params={"k": 10}).text)
    assert not [tag for tag, _ in plain.tags if tag == "img"]
    markup = parsed(client.get("/publications/t2/related.html", params={"k": 10, "thumbnails": "true"}).text)
    images = [attrs for tag, attrs in markup.tags if tag == "img"]
    assert images == [
        {
            "class": "rce-item__image",
            "src": 'https://example.org/img/x.jpg?"><script>alert(4)</script>',
            "alt": "Version",
            "loading": "lazy",
            "decoding": "async",
        }
    ]
    assert "script" not in [tag for tag, _ in markup.tags]
    items = client.get("/publications/t2/related", params={"k": 10}).json()["items"]
    assert {i["id"]: i["image"] for i in items if i["image"]} == {"x1-fr": images[0]["src"]}


def test_a_javascript_image_never_enters_the_catalog(tmp_path: Path) -> None:
    from engine import CatalogError, load_catalog

    bad = write_jsonl(tmp_path / "bad.jsonl", [pub("b1", "trade", image="javascript:alert(1)")])
    with pytest.raises(CatalogError, match="image"):
        load_catalog(bad)
