"""The WordPress plugin (integrations/wordpress/related-content-engine) under Debian's php-cli, on the real service.

tests/wordpress/harness.php stands in for WordPress (hooks, options, transients, shortcodes, blocks) and runs the
plugin's code unchanged; its wp_remote_get really talks HTTP, here to scripts/serve.py on the demo catalog. Each
harness run is a fresh PHP process, as each WordPress request is: the transient cache lives in a JSON file.

Skips, saying why, where no `php` is installed (`apt-get install php-cli`).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from engine import build_index
from tests.conftest import DEMO_CATALOG, PROJECT_ROOT
from tests.test_e2e import NEW_ITEM, Server

pytestmark = pytest.mark.model
PLUGIN = PROJECT_ROOT / "integrations" / "wordpress" / "related-content-engine"
HARNESS = Path(__file__).parent / "wordpress" / "harness.php"
LOCALES = json.loads((PROJECT_ROOT / "service" / "static" / "locales.json").read_text(encoding="utf-8"))
SEED = "pcns-plan-b-like-minded-internationalism"
ARABIC = "demo-multilateralism-at-crossroads-podcast"
# A catalog id that is not a plain path segment, close to SEED (so among its related items) and with an image.
ODD_ID = "dossier/like-minded?x=1&y=2#été"
ODD_ITEM = {**NEW_ITEM, "id": ODD_ID, "image": "https://images.example.org/like-minded.jpg"}


def php() -> str:
    path = shutil.which("php")
    if not path:
        pytest.skip("no php on this machine: install Debian's php-cli (apt-get install php-cli) for the plugin tests")
    return path


class Fragment(HTMLParser):
    """What a test needs of a fragment: the section's attributes, the heading (tag, text), the items' ids."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.section: dict[str, str | None] = {}
        self.heading: tuple[str, str] | None = None
        self.items: list[str | None] = []
        self.images = 0
        self._in_heading: str | None = None
        self._heading_text = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "section" and "rce-related" in classes and not self.section:
            self.section = attributes
        elif "rce-related__heading" in classes:
            self._in_heading = tag
        elif "rce-item" in classes:
            self.items.append(attributes.get("data-id"))
        elif "rce-item__image" in classes:
            self.images += 1

    def handle_data(self, data: str) -> None:
        if self._in_heading:
            self._heading_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in_heading:
            self.heading = (tag, self._heading_text.strip())
            self._in_heading = None

    @property
    def publication(self) -> str:
        """The id the service was asked about, as its heading anchor spells it (percent-encoded)."""
        return (self.section.get("aria-labelledby") or "").removeprefix("rce-heading-")


class Site:
    """One WordPress site for the harness: its options, transients, current post and request log in a JSON file."""

    def __init__(self, folder: Path, service_url: str, **options: object) -> None:
        self.state_file = folder / "wordpress-state.json"
        self.write(options={"rce_service_url": service_url, **options})

    def write(self, **parts: object) -> None:
        state = self.state if self.state_file.exists() else {}
        state.update(parts)
        self.state_file.write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    def set_options(self, **options: object) -> None:
        self.write(options={**self.state["options"], **options})

    @property
    def state(self) -> dict:
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    @property
    def requests(self) -> list[dict]:
        return self.state.get("requests", []) if self.state_file.exists() else []

    def run(
        self, *args: str, wp_locale: str = "en_US", constants: dict[str, object] | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "RCE_WP_STATE": str(self.state_file),
            "RCE_WP_LOCALE": wp_locale,
            "RCE_WP_CONSTANTS": json.dumps(constants or {}),
        }
        return subprocess.run(
            [php(), str(HARNESS), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def fetch(self, publication_id: str, *, wp_locale: str = "en_US", constants=None, **args: object) -> str:
        """rce_fetch_related_html(publication_id, args): its output, after checking the run printed nothing else."""
        done = self.run("fetch", publication_id, json.dumps(args), wp_locale=wp_locale, constants=constants)
        assert done.returncode == 0, done.stderr
        if not (constants or {}).get("WP_DEBUG"):
            assert done.stderr == "", done.stderr  # quiet: no log, no PHP notice
        return done.stdout


def output(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0 and done.stderr == "", (done.returncode, done.stderr)
    return done.stdout


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """The demo catalog plus ODD_ID, indexed with the real model."""
    php()  # skip before loading the model
    real_encoder = request.getfixturevalue("real_encoder")
    folder = tmp_path_factory.mktemp("wordpress")
    extra = folder / "extra.jsonl"
    extra.write_text(json.dumps(ODD_ITEM) + "\n", encoding="utf-8")
    build_index([DEMO_CATALOG, extra], folder / "index", real_encoder)
    return folder / "index"


@pytest.fixture(scope="module")
def service(index: Path) -> Iterator[str]:
    server = Server(index, "--no-model")
    try:
        yield server.base
    finally:
        server.stop()


@pytest.fixture
def site(tmp_path: Path, service: str) -> Site:
    return Site(tmp_path, service)


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_every_php_file_of_the_plugin_is_valid_and_exits_outside_wordpress() -> None:
    files = sorted(PLUGIN.rglob("*.php"))
    names = {path.relative_to(PLUGIN).as_posix() for path in files}
    assert {"related-content-engine.php", "uninstall.php", "block/editor.asset.php"} <= names
    for path in [*files, HARNESS]:
        done = subprocess.run([php(), "-l", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "No syntax errors" in done.stdout, (path, done.stdout, done.stderr)
    for path in files:  # the ABSPATH / WP_UNINSTALL_PLUGIN guard: run outside WordPress, a file does nothing
        done = subprocess.run([php(), str(path)], capture_output=True, text=True, check=False)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), path
    header = (PLUGIN / "related-content-engine.php").read_text(encoding="utf-8")[:2000]
    assert "Plugin Name: " in header and "Text Domain:       related-content-engine" in header
    block = json.loads((PLUGIN / "block" / "block.json").read_text(encoding="utf-8"))
    assert block["name"] == "related-content-engine/related"
    assert (PLUGIN / "block" / block["editorScript"].removeprefix("file:./")).is_file()
    assert "=== Related Content Engine ===" in (PLUGIN / "readme.txt").read_text(encoding="utf-8")


def test_the_arabic_block_is_the_services_fragment_right_to_left(site: Site, service: str) -> None:
    html = site.fetch(SEED, wp_locale="en_US", locale="ar", k=4)
    fragment = Fragment(html)
    assert fragment.section["lang"] == "ar" and fragment.section["dir"] == "rtl"
    assert fragment.heading == ("h2", LOCALES["ar"]["heading"])
    assert len(fragment.items) == 4 and SEED not in fragment.items
    assert fragment.publication == SEED
    # Printed as the service wrote it.
    direct = httpx.get(
        f"{service}/v1/publications/{SEED}/related.html",
        params={"locale": "ar", "k": 4, "heading_level": 2, "thumbnails": "false"},
    )
    assert html == direct.text.strip()
    assert [r["status"] for r in site.requests] == [200]


@pytest.mark.parametrize(
    ("wp_locale", "setting", "argument", "expected"),
    [
        ("fr_FR", "auto", "", "fr"),  # the page's WordPress locale
        ("fr_CA", "auto", "", "fr"),
        ("ary", "auto", "", "ar"),  # Moroccan Arabic
        ("de_DE", "auto", "", "en"),
        ("en_US", "fr", "", "fr"),  # the setting wins over the page's locale
        ("fr_FR", "en", "ar", "ar"),  # and the shortcode's or block's own over both
        ("fr_FR", "auto", "de", "fr"),  # a locale the service does not have is ignored
    ],
)
def test_the_blocks_language_follows_the_page_the_setting_and_the_argument(
    site: Site, wp_locale: str, setting: str, argument: str, expected: str
) -> None:
    site.set_options(rce_locale=setting)
    fragment = Fragment(site.fetch(SEED, wp_locale=wp_locale, **({"locale": argument} if argument else {})))
    assert fragment.section["lang"] == expected
    assert fragment.section["dir"] == ("rtl" if expected == "ar" else "ltr")
    assert fragment.heading == ("h2", LOCALES[expected]["heading"])
    assert fragment.items


def test_a_fragment_is_served_from_the_transient_cache_until_it_is_cleared(tmp_path: Path, index: Path) -> None:
    server = Server(index, "--no-model")
    try:
        site = Site(tmp_path, server.base, rce_cache_ttl=300)
        first = site.fetch(SEED, k=3)
        assert len(Fragment(first).items) == 3
        assert site.fetch(SEED, k=3) == first
        assert len(site.requests) == 1  # the second page asked nothing of the service
        [entry] = site.state["transients"].values()
        assert entry["ttl"] == 300 and entry["value"] == {"html": first}
    finally:
        server.stop()
    assert site.fetch(SEED, k=3) == first  # the service is down: the cache still answers
    assert len(site.requests) == 1
    # Another URL is another entry: not cached, so nothing, quietly.
    assert site.fetch(SEED, k=4) == ""
    # A cache lifetime of 0 turns the cache off (neither read nor written): nothing, quietly.
    site.set_options(rce_cache_ttl=0)
    assert site.fetch(SEED, k=3) == ""
    assert len(site.requests) == 3
    # The cache cleared: nothing, quietly, and that failure is remembered for a minute.
    site.set_options(rce_cache_ttl=300)
    site.write(transients={})
    assert site.fetch(SEED, k=3) == ""
    [entry] = site.state["transients"].values()
    assert entry["ttl"] == 60 and entry["value"] == {"html": ""}


def test_an_unknown_id_gives_nothing_quietly_and_is_logged_only_with_wp_debug(site: Site) -> None:
    assert site.fetch("no-such-publication") == ""
    assert [r["status"] for r in site.requests] == [404]
    [entry] = site.state["transients"].values()
    assert entry["ttl"] == 60 and entry["value"] == {"html": ""}  # not asked again for a minute
    assert site.fetch("no-such-publication") == "" and len(site.requests) == 1

    done = site.run("fetch", "another-unknown-one", "{}", constants={"WP_DEBUG": True})
    assert done.returncode == 0 and done.stdout == ""
    assert "Related Content Engine: HTTP 404 for http://" in done.stderr and "another-unknown-one" in done.stderr


def test_ids_are_percent_encoded_into_one_path_segment(site: Site) -> None:
    assert site.fetch("a/b?c=d&e") == ""
    [request] = site.requests
    assert "/v1/publications/a%2Fb%3Fc%3Dd%26e/related.html?locale=en&k=5&" in request["url"]
    assert request["status"] == 404
    # An id of the catalog holding "/", "?", "&", "#" and "é" reaches the service whole.
    fragment = Fragment(site.fetch(ODD_ID, k=3))
    assert fragment.publication == quote(ODD_ID, safe="")
    assert len(fragment.items) == 3 and ODD_ID not in fragment.items
    encoded = "/v1/publications/dossier%2Flike-minded%3Fx%3D1%26y%3D2%23%C3%A9t%C3%A9/related.html?"
    assert encoded in site.requests[-1]["url"]


def test_a_down_service_gives_nothing_within_the_timeout_and_the_failure_is_remembered(tmp_path: Path) -> None:
    (tmp_path / "refused").mkdir()
    refused = Site(tmp_path / "refused", f"http://127.0.0.1:{free_port()}")
    assert refused.fetch(SEED) == ""
    assert refused.fetch(SEED) == ""
    [request] = refused.requests  # the second page did not try again
    assert request["status"] is None and "refused" in request["error"].lower()

    # A service that accepts the connection and never answers: one page waits the timeout (2 s), not the next.
    (tmp_path / "hanging").mkdir()
    with socket.socket() as hanging:
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        site = Site(tmp_path / "hanging", f"http://127.0.0.1:{hanging.getsockname()[1]}")
        started = time.monotonic()
        assert site.fetch(SEED) == ""
        first = time.monotonic() - started
        started = time.monotonic()
        assert site.fetch(SEED) == ""
        second = time.monotonic() - started
    assert 1.5 <= first < 4.0, first
    assert second < 1.0, second
    assert len(site.requests) == 1


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_only_a_related_content_fragment_is_printed(tmp_path: Path) -> None:
    """Defence in depth: a 200 answer that is not the service's fragment (a wrong URL, a proxy's page) is dropped."""
    root = tmp_path / "www"
    for name, body in {
        "evil": '<script>alert(1)</script><section class="rce-related">',
        "empty": "",
        "page": "<!doctype html><html><body>Welcome to nginx!</body></html>",
        "fine": '<section class="rce-related" lang="en" dir="ltr"><h2>Related</h2></section>',
    }.items():
        (root / "v1" / "publications" / name).mkdir(parents=True)
        (root / "v1" / "publications" / name / "related.html").write_text(body, encoding="utf-8")
    (root / "v1" / "publications" / "moved" / "related.html").mkdir(parents=True)  # answered by a 301 to ".../"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = Site(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        assert site.fetch("fine").startswith('<section class="rce-related" lang="en"')  # the server works
        for name in ("evil", "empty", "page", "moved"):
            assert site.fetch(name) == "", name
        assert [r["status"] for r in site.requests] == [200, 200, 200, 200, 301]
    finally:
        server.shutdown()
        server.server_close()


def test_the_shortcode_and_the_block_print_the_fragment(site: Site) -> None:
    # No post and no id: nothing.
    assert output(site.run("shortcode", "{}")) == ""
    assert output(site.run("block", "{}")) == ""
    assert site.requests == []

    # The post's slug by default.
    site.write(post={"ID": 7, "post_name": SEED, "meta": {}})
    direct = site.fetch(SEED)
    assert Fragment(direct).publication == SEED
    assert output(site.run("shortcode", "{}")) == direct
    assert output(site.run("block", "{}")) == f'<div class="wp-block-related-content-engine-related">{direct}</div>'

    # Its rce_publication_id field before the slug; the shortcode's attributes.
    site.write(post={"ID": 7, "post_name": SEED, "meta": {"rce_publication_id": ARABIC}})
    atts = {"locale": "fr", "k": "10", "heading_level": "4", "thumbnails": "true"}
    fragment = Fragment(output(site.run("shortcode", json.dumps(atts))))
    assert fragment.publication == ARABIC and fragment.section["lang"] == "fr"
    assert fragment.heading == ("h4", LOCALES["fr"]["heading"]) and len(fragment.items) == 10
    # A given id before the post's; thumbnails on: ODD_ID, close to SEED, shows its image.
    atts = {"id": SEED, "locale": "ar", "k": "10", "thumbnails": "true"}
    fragment = Fragment(output(site.run("shortcode", json.dumps(atts))))
    assert fragment.publication == SEED and ODD_ID in fragment.items and fragment.images == 1
    assert Fragment(output(site.run("shortcode", json.dumps({**atts, "thumbnails": "false"})))).images == 0

    # The block's attributes (as block.json names them).
    attributes = {"publicationId": ARABIC, "locale": "ar", "k": 3, "headingLevel": 3}
    html = output(site.run("block", json.dumps(attributes)))
    assert html.startswith('<div class="wp-block-related-content-engine-related"><section class="rce-related" ')
    fragment = Fragment(html)
    assert fragment.publication == ARABIC and fragment.section["dir"] == "rtl"
    assert fragment.heading == ("h3", LOCALES["ar"]["heading"]) and len(fragment.items) == 3
    # The block prints nothing, not an empty wrapper, when the service has nothing.
    assert output(site.run("block", json.dumps({"publicationId": "no-such-publication"}))) == ""


def test_wp_config_constants_override_the_options(site: Site, service: str) -> None:
    site.set_options(rce_service_url=f"http://127.0.0.1:{free_port()}", rce_k=2)
    constants = {"RCE_SERVICE_URL": service + "/", "RCE_K": 3, "RCE_LOCALE": "fr"}
    fragment = Fragment(site.fetch(SEED, constants=constants))
    assert len(fragment.items) == 3 and fragment.section["lang"] == "fr"
    assert site.requests[-1]["url"].startswith(f"{service}/v1/publications/{SEED}/related.html?locale=fr&k=3&")
    # Without a service URL, nothing, and no request.
    site.set_options(rce_service_url="")
    assert site.fetch(SEED) == "" and len(site.requests) == 1


def test_the_settings_sanitize_callbacks(tmp_path: Path) -> None:
    site = Site(tmp_path, "")
    site.set_options(rce_service_url="https://saved.example.org", rce_k=7)
    values = {
        "rce_service_url": "javascript:alert(1)",
        "rce_locale": "FR",
        "rce_k": "500",
        "rce_cache_ttl": "-5",
    }
    result = json.loads(output(site.run("sanitize", json.dumps(values))))
    assert result["values"] == {
        "rce_service_url": "https://saved.example.org",  # refused, the saved one kept, and the user told
        "rce_locale": "fr",
        "rce_k": 100,
        "rce_cache_ttl": 0,
    }
    assert [e["setting"] for e in result["errors"]] == ["rce_service_url"]
    assert {s["group"] for s in result["settings"].values()} == {"rce_settings"}
    assert set(result["settings"]) == {"rce_service_url", "rce_locale", "rce_k", "rce_cache_ttl"}

    values = {"rce_service_url": " http://rce.internal:8000/base/ ", "rce_locale": "de", "rce_k": None}
    result = json.loads(output(site.run("sanitize", json.dumps(values))))
    # None: a field the form left out (fixed by a constant) keeps the saved value.
    assert result["values"] == {"rce_service_url": "http://rce.internal:8000/base", "rce_locale": "auto", "rce_k": 7}
    assert result["errors"] == []


def test_uninstall_deletes_the_options(tmp_path: Path) -> None:
    site = Site(tmp_path, "https://rce.example.org")
    site.set_options(rce_locale="ar", rce_k=4, rce_cache_ttl=60, blogname="A site")
    assert output(site.run("uninstall")) == ""
    assert site.state["options"] == {"blogname": "A site"}
    site.set_options(blogname=None)
    assert output(site.run("uninstall")) == ""  # nothing left to delete: still quiet
    assert site.state["options"] == {"blogname": None}
