"""The related-content page and the widget in a real headless Chromium (Debian's), via Playwright.

Skips, saying why, where no Chromium is installed (`make test` installs it when it runs as root).
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from engine import build_index
from tests.conftest import DEMO_CATALOG, PROJECT_ROOT
from tests.test_e2e import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.model
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
# axe-core from npm (tests/browser/package.json, installed by `make test` with `npm ci`).
AXE = PROJECT_ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = {"serious", "critical"}
SEED = "pcns-plan-b-like-minded-internationalism"
ARABIC = "demo-multilateralism-at-crossroads-podcast"
EVIL_TITLE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> Ports and fisheries'
EVIL_ABSTRACT = (
    "Atlantic ports, fisheries and maritime security: how West African coastal states can cooperate on "
    "illegal fishing, port competition and the blue economy."
)
EVIL_URL = 'https://example.org/evil?a="><script>window.__pwned = 3</script>'
EXTRA = [
    {
        "id": "evil-title",
        "title": EVIL_TITLE,
        "abstract": EVIL_ABSTRACT,
        "language": "en",
        "type": "op-ed",
        "published": "2025-01-02",
        "topics": ["maritime-atlantic"],
        # The catalog refuses javascript: links; an http(s) one may still try to break out of an attribute.
        "url": EVIL_URL,
    },
    {
        "id": "twin-of-evil",
        "title": "Ports and fisheries in the Atlantic",
        "abstract": EVIL_ABSTRACT,
        "language": "en",
        "type": "policy-brief",
        "published": "2025-01-03",
        "topics": ["maritime-atlantic"],
    },
]


def chromium_path() -> str:
    path = os.environ.get("RCE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no Chromium on this machine: install Debian's chromium (make test does, as root)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    with playwright_api.sync_playwright() as playwright:
        # Flags as on this workplace's machines: no sandbox as root, no background network calls.
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, real_encoder) -> Iterator[dict[str, str]]:
    """The service on the demo catalog plus two hostile items, and a plain site that embeds the widget."""
    folder = tmp_path_factory.mktemp("browser")
    extra = folder / "extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in EXTRA), encoding="utf-8")
    build_index([DEMO_CATALOG, extra], folder / "index", real_encoder)
    host_dir = folder / "host"
    host_dir.mkdir()
    handler = functools.partial(QuietHandler, directory=str(host_dir))
    host = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    host_origin = f"http://127.0.0.1:{host.server_address[1]}"
    threading.Thread(target=host.serve_forever, daemon=True).start()
    server = Server(folder / "index", "--no-model", env={"RCE_CORS_ORIGINS": json.dumps([host_origin])})
    try:
        (host_dir / "article.html").write_text(
            f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A partner site</title></head>
<body><main><h1>An article on a partner site</h1><p>Text of the article.</p>
<div id="first"><script src="{server.base}/widget.js" data-publication="twin-of-evil" data-k="4"></script></div>
<div id="second"><script src="{server.base}/widget.js" data-publication="{SEED}" data-k="4"
  data-api="http://127.0.0.1:9"></script></div>
</main></body></html>""",
            encoding="utf-8",
        )
        (host_dir / "article-fr.html").write_text(
            f"""<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>Un site partenaire</title></head>
<body><main><h1>Un article</h1><h2>Sur le même sujet</h2>
<div id="fr"><script src="{server.base}/widget.js" data-publication="{SEED}" data-k="4"
  data-heading-level="3"></script></div>
<div id="ar"><script src="{server.base}/widget.js" data-publication="{SEED}" data-k="4" data-locale="ar"
  data-heading-level="3"></script></div>
</main></body></html>""",
            encoding="utf-8",
        )
        yield {"base": server.base, "host": host_origin}
    finally:
        server.stop()
        host.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def page(browser: Browser, site: dict[str, str]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def related_ids(page: Page) -> list[str]:
    return page.eval_on_selector_all("#related-list li", "items => items.map(li => li.dataset.id)")


def test_search_open_a_publication_and_see_related_content(page: Page, site: dict[str, str]) -> None:
    page.goto(site["base"] + "/")
    page.wait_for_selector("#results li")
    page.fill("#query", "multilatéralisme")
    page.select_option("#language", "fr")
    page.click("#search-form button")
    page.wait_for_function("document.querySelector('#result-count').textContent.startsWith('1 ')")
    assert "multilatéralisme" in page.inner_text("#results")
    page.click("#results a")
    page.wait_for_selector("#related-list li")
    assert "Multilatéralisme" in page.inner_text("#pub-title") or "multilatéralisme" in page.inner_text("#pub-title")
    items = related_ids(page)
    assert 3 <= len(items) <= 6 and len(set(items)) == len(items)
    # one entry per publication: no two entries are versions of each other
    versions = page.eval_on_selector_all(".related-item .item-versions a", "links => links.map(a => a.textContent)")
    assert all(v in {"EN", "FR", "AR"} for v in versions)
    assert page.get_attribute("#related-list li .title", "title").startswith("similarity ")
    assert "Why:" in page.inner_text("#related-list")
    shot(page, "page-search-and-related")


def test_language_policy_changes_the_list(page: Page, site: dict[str, str]) -> None:
    page.goto(site["base"] + f"/?id={SEED}")
    page.wait_for_selector("#related-list li")
    shot(page, "page-seed-publication")
    before = related_ids(page)
    languages_before = page.eval_on_selector_all("#related-list li", "items => items.map(li => li.lang)")
    assert set(languages_before) - {"en"}, "with policy 'any' the seed paper has related items in other languages"
    page.check("input[name=language_policy][value=same]")
    page.wait_for_function(
        "[...document.querySelectorAll('#related-list li')].every(li => li.lang === 'en')"
        " && document.querySelector('#related-list').getAttribute('aria-busy') === 'false'",
        timeout=10_000,
    )
    after = related_ids(page)
    assert after and after != before
    shot(page, "page-language-policy-same")


def test_arabic_renders_right_to_left(page: Page, site: dict[str, str]) -> None:
    page.goto(site["base"] + f"/?id={ARABIC}")
    page.wait_for_selector("#related-list li")
    assert page.get_attribute("#pub-abstract", "dir") == "rtl" and page.get_attribute("#pub-abstract", "lang") == "ar"
    title = page.inner_text("#pub-title")
    assert any("\u0600" <= ch <= "\u06ff" for ch in title)
    assert all(li.get_attribute("dir") == "ltr" for li in page.query_selector_all("#related-list li[lang=en]"))
    page.check("input[name=language_policy][value=same]")
    page.wait_for_function("[...document.querySelectorAll('#related-list li')].every(li => li.lang === 'ar')")
    arabic_items = page.query_selector_all("#related-list li")
    assert arabic_items and all(item.get_attribute("dir") == "rtl" for item in arabic_items)
    shot(page, "page-arabic-rtl")


def test_catalog_markup_is_shown_as_text(page: Page, site: dict[str, str]) -> None:
    page.goto(site["base"] + "/?id=evil-title")
    page.wait_for_selector("#related-list li")
    assert page.inner_text("#pub-title").startswith("<script>window.__pwned = 1</script>")
    page.fill("#query", "fisheries")
    page.click("#search-form button")
    page.wait_for_selector("#results a[data-id=evil-title]")
    assert page.evaluate("window.__pwned") is None
    assert page.query_selector("#pub-title script") is None and page.query_selector("img[src=x]") is None
    shot(page, "page-markup-as-text")


def test_widget_on_a_partner_site(page: Page, site: dict[str, str]) -> None:
    page.goto(site["host"] + "/article.html")
    page.wait_for_selector("#first .rce-item")
    items = page.query_selector_all("#first .rce-item")
    assert 1 <= len(items) <= 4
    ids = [item.get_attribute("data-id") for item in items]
    assert ids[0] == "evil-title"  # the near-duplicate, with hostile markup in its title
    assert page.inner_text("#first .rce-item__title").startswith("<script>")
    assert page.evaluate("window.__pwned") is None and page.query_selector("#first img") is None
    assert page.get_attribute("#first .rce-item__title", "href") == EVIL_URL  # an attribute value, not markup
    assert page.text_content("#first .rce-related__heading") == "Related content"
    # the second widget points at a closed port: a quiet empty state, no error
    page.wait_for_selector("#second .rce-related--empty")
    assert "unavailable" in page.inner_text("#second")
    shot(page, "widget-on-partner-site")


def test_widget_speaks_the_readers_language(page: Page, site: dict[str, str]) -> None:
    page.goto(site["host"] + "/article-fr.html")
    page.wait_for_selector("#fr .rce-item")
    page.wait_for_selector("#ar .rce-item")
    # The host page is French: the widget follows <html lang>; the second one asks for Arabic.
    assert page.text_content("#fr h3.rce-related__heading") == "Contenus associés"
    assert page.get_attribute("#fr .rce-related", "lang") == "fr"
    assert page.text_content("#ar h3.rce-related__heading") == "محتوى ذو صلة"
    assert page.get_attribute("#ar .rce-related", "dir") == "rtl"
    # The score is shown, not only in a tooltip; type labels are translated.
    assert page.inner_text("#fr .rce-item__score").startswith("Similarité ")
    assert page.inner_text("#ar .rce-item__score").startswith("درجة التشابه ")
    types_fr = {t.inner_text() for t in page.query_selector_all("#fr .rce-item__type")}
    assert types_fr and types_fr <= {
        "Document d’orientation",
        "Note de synthèse",
        "Tribune",
        "Entretien",
        "Podcast",
        "Vidéo",
    }
    assert page.get_attribute("#ar .rce-related", "aria-busy") is None  # loaded: no longer busy
    shot(page, "widget-in-french-and-arabic")


def host_page(page: Page, site: dict[str, str], locale: str, **params: object) -> None:
    """A host page that includes the fragment server-side, as a CMS does, and links the default stylesheet."""
    fragment = httpx.get(f"{site['base']}/publications/{SEED}/related.html", params={"locale": locale, **params}).text
    direction = "rtl" if locale == "ar" else "ltr"
    page.set_content(
        f"""<!doctype html><html lang="{locale}" dir="{direction}"><head><meta charset="utf-8"><title>Article</title>
<link rel="stylesheet" href="{site["base"]}/related.css">
<style>body {{ font: 16px/1.5 system-ui, "Noto Sans", "Noto Naskh Arabic", sans-serif; max-width: 46rem;
margin: 2rem auto; color: #1d2433; }}</style></head>
<body><main><h1>Article</h1><p>Text of the article.</p>{fragment}</main></body></html>""",
        wait_until="load",
    )


def test_server_rendered_block_in_arabic_and_french(page: Page, site: dict[str, str]) -> None:
    for locale, heading in (("ar", "محتوى ذو صلة"), ("fr", "Contenus associés")):
        page.goto(f"{site['base']}/publications/{SEED}/related.html?k=4&locale={locale}")
        assert page.text_content(".rce-related__heading") == heading
        assert page.get_attribute(".rce-related", "dir") == ("rtl" if locale == "ar" else "ltr")
        assert len(page.query_selector_all(".rce-item")) == 4 and page.evaluate("window.__pwned") is None
        # Included in a page with the default stylesheet: the screenshots in docs/screenshots come from here.
        host_page(page, site, locale, k=4)
        assert page.evaluate("getComputedStyle(document.querySelector('.rce-related__list')).listStyleType") == "none"
        shot(page, f"fragment-{locale}")


def axe_violations(page: Page, name: str) -> list[dict]:
    """Serious and critical axe-core violations on the page; every result, by impact, goes to
    test-artifacts/axe-<name>.json."""
    if not AXE.is_file():
        pytest.skip(f"axe-core is not installed at {AXE}: run `npm ci --prefix tests/browser` (make test does)")
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    violations = [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"][:120] for n in v["nodes"]]}
        for v in results["violations"]
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    summary = {
        "axe": results["testEngine"]["version"],
        "url": page.url,
        "rules_passed": len(results["passes"]),
        "violations": violations,
    }
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    return [v for v in violations if v["impact"] in SERIOUS]


@pytest.mark.parametrize("publication", [SEED, ARABIC], ids=["en", "ar"])
def test_page_has_no_serious_accessibility_violations(page: Page, site: dict[str, str], publication: str) -> None:
    page.goto(site["base"] + f"/?id={publication}")
    page.wait_for_selector("#related-list li")
    assert axe_violations(page, f"page-{'en' if publication == SEED else 'ar'}") == []


def test_widget_has_no_serious_accessibility_violations(page: Page, site: dict[str, str]) -> None:
    page.goto(site["host"] + "/article-fr.html")  # one widget in French (the page's language), one in Arabic
    page.wait_for_selector("#fr .rce-item")
    page.wait_for_selector("#ar .rce-item")
    assert axe_violations(page, "widget-fr-ar") == []
    page.goto(site["host"] + "/article.html")  # English, and the quiet state of a widget whose service is down
    page.wait_for_selector("#first .rce-item")
    page.wait_for_selector("#second .rce-related--empty")
    assert axe_violations(page, "widget-en-and-unavailable") == []


@pytest.mark.parametrize("locale", ["en", "ar"])
def test_fragment_in_a_page_has_no_serious_accessibility_violations(
    page: Page, site: dict[str, str], locale: str
) -> None:
    host_page(page, site, locale, k=6, thumbnails="true")  # as a CMS includes it, with the default stylesheet
    assert page.query_selector_all(".rce-item")
    assert axe_violations(page, f"fragment-{locale}") == []
