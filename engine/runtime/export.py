"""A static export of every publication's related list, for static sites and CMS tables.

Each list is the service's answer for that id (``GET /publications/{id}/related?k=K``: the same ranking,
overrides, translation grouping and API writes, from the stored neighbour lists), so a site can read the
files instead of calling the service. The export is written beside its destination and swapped in whole:
an export that fails or is killed half-way never replaces a good one.

Layout of the destination folder::

    manifest.json        build, store generation, k, count, formats, file naming, time
    ids.json             {publication id: file stem}, for every id
    items/<stem>.json    the JSON API's body for that id (json)
    related.jsonl        the same bodies, one per line (jsonl)
    related.csv          one row per (publication, related item) (csv)
    html/<locale>/<stem>.html   the server-rendered fragment, per locale asked for

File stems: an id made of ASCII letters, digits, ``-`` and ``_`` that begins with a letter or digit (at most
100 characters, not a reserved Windows device name, and not equal to another id but for letter case) is its
own stem. Any other id gets ``_`` and the start of its SHA-256: no id can then name a path outside the
folder or clash on a case-insensitive disk, and static site generators keep the name as a data key (Jekyll
drops other punctuation from data file names). ``ids.json`` and the ``id`` inside each file say which is
which.
"""

from __future__ import annotations

import csv
import ctypes
import ctypes.util
import datetime as dt
import glob
import hashlib
import os
import re
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from tqdm.auto import tqdm

from engine.index.folder import fsync_directory
from engine.rank.query import RelatedQuery
from engine.rank.recommend import Recommender
from engine.rank.results import RelatedResult

FORMATS = ("json", "jsonl", "csv")
# What marks a folder as an export (in its manifest.json): only such a folder is ever replaced.
EXPORT_KIND = "related-content-export"
CSV_COLUMNS = (
    "publication_id",
    "rank",
    "related_id",
    "score",
    "title",
    "url",
    "language",
    "type",
    "published",
    "is_translation",
    "pinned",
    "image",
    "snippet",
)
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
# Renders one list as an HTML fragment in one locale: (publication id, result) -> HTML.
Renderer = Callable[[str, RelatedResult], str]


class ExportError(ValueError):
    """An export that cannot be written as asked (the destination is not an export folder, a bad format)."""


@dataclass
class ExportReport:
    """What an export wrote."""

    out: Path
    count: int
    k: int
    formats: tuple[str, ...]
    locales: tuple[str, ...]
    hashed_names: int
    seconds: float
    replaced: bool
    empty_lists: int = 0

    def summary(self) -> str:
        """One line: what was written, where, and how fast."""
        what = ", ".join([*self.formats, *(f"html/{locale}" for locale in self.locales)])
        rate = self.count / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"exported the related lists (k={self.k}) of {self.count} publications to {self.out} ({what}) "
            f"in {self.seconds:.1f} s, {rate:,.0f}/s; {self.hashed_names} ids named by hash (see ids.json); "
            f"{self.empty_lists} empty lists; {'replaced the previous export' if self.replaced else 'new folder'}"
        )


def file_stems(ids: Iterable[str]) -> dict[str, str]:
    """The file stem of every id (see the module docstring): the id itself where that is safe on any disk."""
    ids = list(ids)
    folded = Counter(i.lower() for i in ids)
    stems = {}
    for publication_id in ids:
        safe = (
            _SAFE_ID.fullmatch(publication_id) is not None
            and publication_id.lower() not in _WINDOWS_DEVICES
            and folded[publication_id.lower()] == 1
        )
        stems[publication_id] = publication_id if safe else "_" + _digest(publication_id)
    return stems


def _digest(publication_id: str) -> str:
    return hashlib.sha256(publication_id.encode("utf-8")).hexdigest()[:32]


def export_related(
    recommender: Recommender,
    out: Path,
    *,
    k: int = 10,
    formats: Sequence[str] = FORMATS,
    renderers: Mapping[str, Renderer] | None = None,
    collapse_translations: bool = False,
    progress: bool = True,
) -> ExportReport:
    """Write every publication's related list to ``out`` (see the module docstring), atomically.

    ``collapse_translations``: one entry per translation group, as the widget asks (the route's parameter).
    """
    formats = tuple(dict.fromkeys(formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(f"unknown export format {unknown or formats}: choose from {', '.join(FORMATS)}")
    renderers = dict(renderers or {})
    query = RelatedQuery(k=k, collapse_translations=collapse_translations).validated()
    out = Path(os.path.abspath(out))  # `.` has no name to put a staging folder beside
    _check_destination(out)
    started = time.perf_counter()
    # The process id tells a later run whether this one is still alive; the token keeps two processes with
    # the same id (containers sharing a volume) apart.
    staging = out.with_name(f".{out.name}.part-{os.getpid()}-{secrets.token_hex(4)}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        ids = list(recommender.publications)
        stems = file_stems(ids)
        report = _write(recommender, staging, ids, stems, query, formats, renderers, progress)
        report.out = out
        # One sync of the file system, not an fsync per file: ~100k files at 100k publications.
        os.sync()
        report.replaced = _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _write(
    recommender: Recommender,
    folder: Path,
    ids: list[str],
    stems: dict[str, str],
    query: RelatedQuery,
    formats: tuple[str, ...],
    renderers: dict[str, Renderer],
    progress: bool,
) -> ExportReport:
    report = ExportReport(folder, len(ids), query.k, formats, tuple(renderers), 0, 0.0, False)
    report.hashed_names = sum(1 for i, stem in stems.items() if stem != i)
    if "json" in formats:
        (folder / "items").mkdir()
    for locale in renderers:
        (folder / "html" / locale).mkdir(parents=True)
    jsonl = (folder / "related.jsonl").open("wb") if "jsonl" in formats else None
    csv_file = (folder / "related.csv").open("w", encoding="utf-8", newline="") if "csv" in formats else None
    rows = csv.writer(csv_file) if csv_file is not None else None
    if rows is not None:
        rows.writerow(CSV_COLUMNS)
    build_id = recommender.build.build_id
    try:
        for publication_id in tqdm(ids, desc="export", unit="list", disable=not progress):
            result = recommender.recommend(publication_id, query)
            if not result.items:
                report.empty_lists += 1
            body = orjson.dumps(result.payload(publication_id, build_id, query.offset, query.k))
            stem = stems[publication_id]
            if "json" in formats:
                (folder / "items" / f"{stem}.json").write_bytes(body)
            if jsonl is not None:
                jsonl.write(body + b"\n")
            if rows is not None:
                rows.writerows(_csv_rows(publication_id, result))
            for locale, render in renderers.items():
                (folder / "html" / locale / f"{stem}.html").write_text(render(publication_id, result), encoding="utf-8")
    finally:
        for handle in (jsonl, csv_file):
            if handle is not None:
                handle.close()
    (folder / "ids.json").write_bytes(orjson.dumps(stems, option=orjson.OPT_INDENT_2))
    manifest = {
        "kind": EXPORT_KIND,
        "build_id": build_id,
        "store_generation": recommender.generation,
        "version": recommender.version,
        "k": query.k,
        "collapse_translations": query.collapse_translations,
        "count": len(ids),
        "formats": list(formats),
        "locales": list(renderers),
        "file_names": "the id where it is [A-Za-z0-9][A-Za-z0-9_-]{0,99}, no Windows device name and unique "
        "but for case; else _ and the first 32 hex digits of its SHA-256 (ids.json maps every id)",
        "exported": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (folder / "manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return report


def _csv_rows(publication_id: str, result: RelatedResult) -> Iterable[list[object]]:
    for item in result.items:
        yield [
            publication_id,
            item.rank,
            item.id,
            f"{item.score:.4f}",
            item.title,
            item.url or "",
            item.language or "",
            item.type or "",
            item.published or "",
            int(item.is_translation),
            int(item.pinned),
            item.image or "",
            item.snippet,
        ]


def _check_destination(out: Path) -> None:
    """Refuse to replace a folder that is not an earlier export: a typo must not delete someone's files."""
    if not out.name or out.name in (".", ".."):
        raise ExportError(f"--out {out} names no folder: give a folder such as site/related-export")
    _recover(out)
    if out.is_symlink():
        raise ExportError(f"--out {out} is a symbolic link: give the folder itself ({os.path.realpath(out)})")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder: give a new or an earlier export's folder")
    if out.is_dir() and any(out.iterdir()) and not _is_export(out):
        raise ExportError(
            f"--out {out} holds files and is not an earlier export (its manifest.json, if any, has no "
            f'"kind": "{EXPORT_KIND}"): give a new or empty folder, so that no other files are replaced'
        )


def _is_export(folder: Path) -> bool:
    try:
        manifest = orjson.loads((folder / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(manifest, dict) and manifest.get("kind") == EXPORT_KIND


def _recover(out: Path) -> None:
    """Remove the staging folders of exports that died, and put back the previous export if a swap was
    interrupted between its two renames (see :func:`_swap_in`)."""
    for staging in out.parent.glob(f".{glob.escape(out.name)}.part-*"):
        pid = staging.name.split("-")[-2] if staging.name.count("-") >= 2 else ""
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)
    old = out.with_name(f".{out.name}.old")
    if old.is_dir() and not out.exists():
        os.rename(old, out)
    elif old.is_dir():
        shutil.rmtree(old, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _swap_in(staging: Path, out: Path) -> bool:
    """Make ``staging`` the folder at ``out``; True when it replaced an earlier export."""
    parent = out.parent
    if not out.exists():
        os.rename(staging, out)
        fsync_directory(parent)
        return False
    if not _exchange(staging, out):
        # Without an atomic exchange, two renames: a kill between them leaves `.NAME.old`, which the next run
        # (or a reader following the docs) puts back; `out` is never a half-written folder.
        old = out.with_name(f".{out.name}.old")
        os.rename(out, old)
        os.rename(staging, out)
    fsync_directory(parent)
    shutil.rmtree(staging if staging.exists() else out.with_name(f".{out.name}.old"), ignore_errors=True)
    return True


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where unsupported.

    The standard library has no renameat2; with it, a reader of ``b`` sees the old export or the new, never
    neither."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0
