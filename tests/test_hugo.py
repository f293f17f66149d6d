"""The static export read by a real Hugo site (Debian's hugo): tests/hugo-site renders the related block from
the exported data files. The build's output is kept in test-artifacts/hugo-build.txt."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from engine import BuildOptions, EmbeddingCache, build_index
from scripts import export_related
from tests.conftest import PROJECT_ROOT, SMALL_CATALOG
from tests.fakes import FakeEncoder, pub, write_jsonl

SITE = PROJECT_ROOT / "tests" / "hugo-site"
AWKWARD = "Reports/2024?id=7&lang=en"
HOSTILE = pub(
    "hostile",
    "trade trade finance",
    title='<script>alert(1)</script><img src=x onerror="alert(2)">Trade',
    authors=['"><script>alert(3)</script>'],
    url='https://example.org/?q="><script>alert(4)</script>',
)


class Blocks(HTMLParser):
    """The related items of a page (id, lang, dir, link) and every tag and attribute name seen."""

    def __init__(self) -> None:
        super().__init__()
        self.items: list[dict[str, str | None]] = []
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.section: dict[str, str | None] = {}
        self.links: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags.add(tag)
        self.attributes.update(values)
        if values.get("class") == "rce-related":
            self.section = values
        if values.get("class") == "rce-item":
            self.items.append(values)
        if values.get("class") == "rce-item__title" and tag == "a":
            self.links.append(values.get("href"))


def parse(path: Path) -> Blocks:
    blocks = Blocks()
    blocks.feed(path.read_text(encoding="utf-8"))
    return blocks


@pytest.fixture(scope="module")
def hugo() -> str:
    path = shutil.which("hugo")
    if path is None:
        pytest.skip("no hugo on this machine: install Debian's hugo (make test does, as root)")
    return path


def test_hugo_site_renders_the_related_block_from_the_export(hugo: str, tmp_path: Path) -> None:
    catalog = [*SMALL_CATALOG, pub(AWKWARD, "trade finance water", title="An awkward id"), HOSTILE]
    build_index(
        [write_jsonl(tmp_path / "catalog.jsonl", catalog)],
        tmp_path / "index",
        FakeEncoder(),
        cache=EmbeddingCache(tmp_path / "cache.sqlite"),
        options=BuildOptions.plain(),
    )
    site = tmp_path / "site"
    shutil.copytree(SITE, site)
    data = site / "exports" / "related"  # mounted as site.Data.related (hugo.toml)
    # Every format and the fragments in each language: the mount reads only the JSON it needs.
    args = ["--index-dir", str(tmp_path / "index"), "--out", str(data), "--k", "4", "--quiet"]
    assert export_related.main([*args, "--locale", "en", "--locale", "fr", "--locale", "ar"]) == 0
    # A staging folder left by an export that was killed mid-way, with a half-written file: outside the mount.
    dead = site / "exports" / ".related.part-999999-dead" / "items"
    dead.mkdir(parents=True)
    (dead / "t2.json").write_text('{"id": "t2", "ite', encoding="utf-8")
    built = subprocess.run(
        [hugo, "--source", str(site), "--destination", str(tmp_path / "public"), "--panicOnWarning"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    (PROJECT_ROOT / "test-artifacts").mkdir(exist_ok=True)
    (PROJECT_ROOT / "test-artifacts" / "hugo-build.txt").write_text(built.stdout + built.stderr, encoding="utf-8")
    assert built.returncode == 0, built.stdout + built.stderr
    public = tmp_path / "public"
    stems = json.loads((data / "ids.json").read_text(encoding="utf-8"))

    def exported(publication_id: str) -> list[str]:
        body = json.loads((data / "items" / f"{stems[publication_id]}.json").read_text(encoding="utf-8"))
        return [item["id"] for item in body["items"]]

    # Each page's block is its publication's exported list, in order, in the page's language and direction.
    pages = {
        "t2": (public / "trade-and-finance" / "index.html", "en", "ltr", "Related content"),
        "c2": (public / "fr" / "climat" / "index.html", "fr", "ltr", "Contenus associés"),
        "t3": (public / "ar" / "trade" / "index.html", "ar", "rtl", "محتوى ذو صلة"),
        AWKWARD: (public / "awkward" / "index.html", "en", "ltr", "Related content"),
    }
    for publication_id, (page, lang, direction, heading) in pages.items():
        blocks = parse(page)
        assert [item["data-id"] for item in blocks.items] == exported(publication_id), publication_id
        assert (blocks.section["lang"], blocks.section["dir"]) == (lang, direction)
        assert heading in page.read_text(encoding="utf-8")
    assert stems[AWKWARD].startswith("_")
    # Each item in its own language's direction, whatever the page's.
    items = [item for page, *_ in pages.values() for item in parse(page).items]
    assert {(i["lang"], i["dir"]) for i in items} == {("en", "ltr"), ("fr", "ltr"), ("ar", "rtl")}
    # The French page that includes the service's own fragment from the export, as it is.
    fragment = (data / "html" / "fr" / f"{stems['t2']}.html").read_text(encoding="utf-8")
    included = (public / "fr" / "trade-fragment" / "index.html").read_text(encoding="utf-8")
    assert fragment.startswith('<section class="rce-related" lang="fr"') and fragment in included
    # A page the export does not know gets no block, and the build does not fail.
    assert "rce-related" not in (public / "not-in-catalog" / "index.html").read_text(encoding="utf-8")
    # The hostile item is in t2's list: its markup is text, its link an escaped attribute.
    assert "hostile" in exported("t2")
    page = pages["t2"][0].read_text(encoding="utf-8")
    blocks = parse(pages["t2"][0])
    assert "<script" not in page and "onerror" not in blocks.attributes and "img" not in blocks.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert all(link and link.startswith("https://") for link in blocks.links)
    print(built.stdout)
