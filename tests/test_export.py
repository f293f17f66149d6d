"""The static export (engine/runtime/export.py, scripts/export_related.py): the service's lists, written whole."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from engine import BuildOptions, EmbeddingCache, build_index, load_recommender
from engine.runtime.export import ExportError, export_related, file_stems
from scripts import export_related as export_script
from tests.conftest import PROJECT_ROOT, SMALL_CATALOG
from tests.fakes import FakeEncoder, pub, write_jsonl
from tests.test_service import make_client

# Ids a CMS may well have, none of them a safe file name as it is.
AWKWARD_IDS = [
    "../../etc/passwd",
    "a/b?c=d&e",
    "CON",
    "Report-7",
    "report-7",  # the same as the one above on a case-insensitive disk
    "مقال-عن-التعددية",
    "x" * 150,
    ".hidden",
    "with space",
]
HOSTILE = pub(
    "hostile",
    "trade finance",
    title='<script>alert(1)</script><img src=x onerror="alert(2)">',
    authors=['"><script>alert(3)</script>'],
    url="https://example.org/?q=<script>alert(4)</script>",
    image='https://example.org/i.png?"><script>alert(5)</script>',
)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    catalog = SMALL_CATALOG + [pub(pid, "trade finance water") for pid in AWKWARD_IDS] + [HOSTILE]
    index = tmp_path / "index"
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    build_index(
        [write_jsonl(tmp_path / "c.jsonl", catalog)], index, FakeEncoder(), cache=cache, options=BuildOptions.plain()
    )
    return index


@pytest.mark.parametrize("collapse", [False, True], ids=["versions", "collapsed"])
def test_every_list_is_the_services_answer(index_dir: Path, tmp_path: Path, collapse: bool) -> None:
    out = tmp_path / "export"
    report = export_related(load_recommender(index_dir), out, k=4, collapse_translations=collapse, progress=False)
    stems = json.loads((out / "ids.json").read_text(encoding="utf-8"))
    assert report.count == len(stems) == len(SMALL_CATALOG) + len(AWKWARD_IDS) + 1
    bulk = [json.loads(line) for line in (out / "related.jsonl").read_text(encoding="utf-8").splitlines()]
    with make_client(index_dir) as client:
        for line in bulk:
            served = client.get(
                f"/publications/{quote(line['id'], safe='')}/related",
                params={"k": 4, "collapse_translations": collapse},
            )
            assert served.status_code == 200, line["id"]
            assert line == served.json()  # the same body, build id included
            assert (out / "items" / f"{stems[line['id']]}.json").read_bytes() == served.content  # byte for byte
    # t1-en and t1-fr are versions of one publication: collapsed, never both in one list.
    assert any({"t1-en", "t1-fr"} <= {i["id"] for i in line["items"]} for line in bulk) is not collapse
    with (out / "related.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    # One row per (publication, related item), in rank order.
    assert len(rows) == sum(len(line["items"]) for line in bulk)
    first = bulk[0]
    assert [(r["related_id"], int(r["rank"])) for r in rows if r["publication_id"] == first["id"]] == [
        (item["id"], item["rank"]) for item in first["items"]
    ]


def test_ids_that_are_not_safe_file_names_get_hashed_names_inside_the_folder(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    report = export_related(load_recommender(index_dir), out, k=3, formats=["json"], progress=False)
    stems = json.loads((out / "ids.json").read_text(encoding="utf-8"))
    # Every awkward id is hashed: a path, a query, a Windows device, a case clash, non-ASCII, too long, a dot.
    assert all(stems[i].startswith("_") for i in AWKWARD_IDS)
    assert stems["t1-en"] == "t1-en" and stems["hostile"] == "hostile"
    assert report.hashed_names == len(AWKWARD_IDS)
    assert len(set(stems.values())) == len(stems)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["ids.json", "manifest.json", *(f"items/{s}.json" for s in stems.values())])
    assert not (tmp_path / "etc").exists()
    for publication_id, stem in stems.items():
        assert json.loads((out / "items" / f"{stem}.json").read_text(encoding="utf-8"))["id"] == publication_id
    # Deterministic: the same id gets the same name in every export.
    assert file_stems(AWKWARD_IDS) == file_stems(reversed(AWKWARD_IDS))


def test_fragments_in_the_export_carry_no_markup_from_the_catalog(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    args = ["--index-dir", str(index_dir), "--out", str(out), "--k", "5", "--format", "json", "--thumbnails"]
    assert export_script.main([*args, "--locale", "ar", "--locale", "fr", "--quiet"]) == 0
    stems = json.loads((out / "ids.json").read_text(encoding="utf-8"))
    related_to_hostile = [
        stem
        for pid, stem in stems.items()
        if any(i["id"] == "hostile" for i in json.loads((out / "items" / f"{stem}.json").read_text())["items"])
    ]
    assert related_to_hostile
    for locale in ("ar", "fr"):
        for stem in related_to_hostile:
            html = (out / "html" / locale / f"{stem}.html").read_text(encoding="utf-8")
            assert f'lang="{locale}"' in html and "&lt;script&gt;alert(1)" in html
            assert 'class="rce-item__image" src="https://example.org/i.png?&#34;&gt;&lt;script&gt;' in html
            assert "<script" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert (out / "html" / "ar" / "t2.html").read_text(encoding="utf-8").startswith('<section class="rce-related"')


def test_a_failed_export_leaves_the_previous_one(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    recommender = load_recommender(index_dir)
    export_related(recommender, out, k=3, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def failing(publication_id: str, result: object) -> str:
        calls.append(publication_id)
        if len(calls) == 5:
            raise OSError(28, "No space left on device", str(out / "html"))
        return '<section class="rce-related"></section>'

    with pytest.raises(OSError):
        export_related(recommender, out, k=5, renderers={"en": failing}, progress=False)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "cache.sqlite", "export", "index"]  # no leftovers


def test_a_second_export_replaces_the_first_whole(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    recommender = load_recommender(index_dir)
    export_related(recommender, out, k=3, progress=False)
    report = export_related(recommender, out, k=6, formats=["csv"], progress=False)
    assert report.replaced and "replaced the previous export" in report.summary()
    assert sorted(p.name for p in out.iterdir()) == ["ids.json", "manifest.json", "related.csv"]
    assert json.loads((out / "manifest.json").read_text())["k"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "cache.sqlite", "export", "index"]


KILLED_EXPORT = """
import sys, time
from pathlib import Path
from engine import load_recommender
from engine.runtime.export import export_related

def slow(publication_id, result):
    time.sleep(0.05)
    return "<section></section>"

export_related(load_recommender(Path(sys.argv[1])), Path(sys.argv[2]), renderers={"en": slow}, progress=False)
"""


def test_a_killed_export_leaves_the_previous_one(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_related(load_recommender(index_dir), out, k=3, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(index_dir), str(out)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".export.part") and (p / "html").exists() for p in tmp_path.iterdir()):
        assert child.poll() is None and time.monotonic() < deadline, "the export ended before it could be killed"
        time.sleep(0.02)
    time.sleep(0.2)  # some lists written
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # The next export removes the dead one's staging folder and replaces the old export.
    report = export_related(load_recommender(index_dir), out, k=2, progress=False)
    assert report.replaced and json.loads((out / "manifest.json").read_text())["k"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "cache.sqlite", "export", "index"]


def test_an_interrupted_swap_is_put_back(index_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    export_related(load_recommender(index_dir), out, k=3, progress=False)
    # A kill between the two renames of a swap without RENAME_EXCHANGE: only `.export.old` is left.
    os.rename(out, tmp_path / ".export.old")
    report = export_related(load_recommender(index_dir), out, k=2, progress=False)
    assert report.replaced and not (tmp_path / ".export.old").exists()


def test_never_replaces_a_folder_that_is_not_an_export(
    index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recommender = load_recommender(index_dir)
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("precious")
    with pytest.raises(ExportError, match="is not an earlier export"):
        export_related(recommender, site, progress=False)
    # A manifest.json is not enough: a web app's static folder and an index build have one too.
    (site / "manifest.json").write_text('{"name": "A web app"}')
    build = index_dir / "builds" / os.listdir(index_dir / "builds")[0]
    for folder in (site, build):
        with pytest.raises(ExportError, match="is not an earlier export"):
            export_related(recommender, folder, progress=False)
    assert (site / "index.html").read_text() == "precious"
    load_recommender(index_dir)  # the build is intact
    (tmp_path / "link").symlink_to(site)
    with pytest.raises(ExportError, match="is a symbolic link"):
        export_related(recommender, tmp_path / "link", progress=False)
    with pytest.raises(ExportError, match="names no folder"):
        export_related(recommender, Path("/"), progress=False)
    monkeypatch.chdir(tmp_path / "site")
    with pytest.raises(ExportError, match="is not an earlier export"):  # `.` is the folder it names
        export_related(recommender, Path("."), progress=False)
    assert export_script.main(["--index-dir", str(index_dir), "--out", str(site), "--quiet"]) == 2
    assert export_script.main(["--index-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2


def test_sigterm_stops_the_export_and_leaves_the_previous_one(
    index_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    args = ["--index-dir", str(index_dir), "--out", str(out), "--quiet"]
    assert export_script.main(args) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def terminated_half_way(recommender, destination, **options):
        def render(publication_id: str, result: object) -> str:
            calls.append(publication_id)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGTERM)  # as cron or systemd would stop it
            return "<section></section>"

        return export_related(recommender, destination, **{**options, "renderers": {"en": render}})

    monkeypatch.setattr(export_script, "export_related", terminated_half_way)
    assert export_script.main(args) == 130
    assert "interrupted: no export was written" in capsys.readouterr().err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "cache.sqlite", "export", "index"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the script's only while it runs


def test_script_prints_a_summary_and_refuses_bad_options(
    index_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export"
    assert export_script.main(["--index-dir", str(index_dir), "--out", str(out), "--format", "jsonl", "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"exported the related lists (k=10) of {len(SMALL_CATALOG) + len(AWKWARD_IDS) + 1} ")
    assert "(jsonl)" in line and "9 ids named by hash" in line
    with pytest.raises(SystemExit):
        export_script.main(["--index-dir", str(index_dir), "--out", str(out), "--k", "0"])
    with pytest.raises(SystemExit):
        export_script.main(["--index-dir", str(index_dir), "--out", str(out), "--format", "xml"])
