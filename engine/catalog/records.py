"""Publication records and catalog loading (JSON Lines or CSV) with per-line validation."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

KNOWN_FIELDS = ("id", "title", "abstract", "language", "type", "authors", "published", "url", "topics", "group")
_LIST_FIELDS = ("authors", "topics")
_STRING_FIELDS = ("title", "abstract", "language", "type", "url", "group")
# ISO 639-1/-3 code with optional subtags (en, ary, pt-BR, zh-Hant).
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_CSV_LIST_SEPARATOR = ";"
# Fields that are links: readers' browsers follow them, so only http(s) (no javascript:, data:, file:).
LINK_FIELDS = ("url", "image", "thumbnail", "link")
_LINK_SCHEMES = ("http", "https")
# A lone UTF-16 surrogate ("\ud800" in JSON) decodes to a str that cannot be written as UTF-8.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Far above any real abstract; a bigger field is a data error (a whole PDF pasted in), not an abstract.
MAX_FIELD_CHARS = {"title": 2_000, "abstract": 200_000}


@dataclass(frozen=True, slots=True)
class Publication:
    """One catalog item. Unknown input fields are kept in ``metadata``."""

    id: str
    title: str = ""
    abstract: str = ""
    language: str | None = None
    type: str | None = None
    authors: tuple[str, ...] = ()
    published: str | None = None
    url: str | None = None
    topics: tuple[str, ...] = ()
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the catalog format (metadata fields back at the top level)."""
        # Field by field rather than dataclasses.asdict, whose deep copies were most of catalog_hash's time.
        data = {name: getattr(self, name) for name in _RECORD_FIELDS}
        data["authors"], data["topics"] = list(self.authors), list(self.topics)
        return {k: v for k, v in {**data, **self.metadata}.items() if v is not None}


_RECORD_FIELDS = tuple(f.name for f in fields(Publication) if f.name != "metadata")


class UnknownPublicationError(KeyError):
    """No publication with this id in the index."""

    def __init__(self, publication_id: str) -> None:
        self.publication_id = publication_id
        super().__init__(publication_id)

    def __str__(self) -> str:
        return f"publication {self.publication_id!r} not found"


class CatalogError(ValueError):
    """A catalog line that cannot be used, located by file, line number and field."""

    def __init__(self, source: str, line: int, field_name: str, message: str) -> None:
        self.source, self.line, self.field, self.message = source, line, field_name, message
        super().__init__(f"{source}:{line}: field '{field_name}': {message}")


@dataclass(slots=True)
class LoadResult:
    """Publications that passed validation, and the errors of the lines that were skipped."""

    publications: list[Publication]
    errors: list[CatalogError]


@lru_cache(maxsize=1024)
def known_language(code: str) -> bool:
    """Whether the primary subtag is an ISO 639-1 or ISO 639-3 code (pycountry's tables)."""
    import pycountry

    primary = code.split("-", 1)[0]
    lookup = {"alpha_2": primary} if len(primary) == 2 else {"alpha_3": primary}
    return pycountry.languages.get(**lookup) is not None


def parse_record(record: Any, source: str, line: int) -> Publication:
    """Validate one decoded record and turn it into a :class:`Publication`.

    Raises :class:`CatalogError` naming the first field that is wrong.
    """
    if not isinstance(record, dict):
        raise CatalogError(source, line, "line", f"expected a JSON object, got {type(record).__name__}")
    for name, value in record.items():
        where = _lone_surrogate(value)
        if where is not None:
            raise CatalogError(
                source, line, str(name), f"holds a lone UTF-16 surrogate ({where}); send valid Unicode text"
            )
    pid = record.get("id")
    if pid is None or (isinstance(pid, str) and not pid.strip()):
        raise CatalogError(source, line, "id", "missing or empty; every publication needs a unique string id")
    if not isinstance(pid, str):
        raise CatalogError(source, line, "id", f"must be a string, got {type(pid).__name__} {pid!r}")
    control = next((i for i, ch in enumerate(pid) if unicodedata.category(ch) == "Cc"), None)
    if control is not None:
        # An id is a URL path segment and an export file's key: a newline or tab there cannot be requested.
        raise CatalogError(
            source,
            line,
            "id",
            f"holds a control character (U+{ord(pid[control]):04X} at position {control}) in {pid!r}: remove it",
        )
    values: dict[str, Any] = {}
    for name in _STRING_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise CatalogError(source, line, name, f"must be a string, got {type(value).__name__}")
        values[name] = value
    for name in _LIST_FIELDS:
        value = record.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CatalogError(source, line, name, "must be a list of strings")
        values[name] = tuple(v.strip() for v in value if v.strip())
    for name, limit in MAX_FIELD_CHARS.items():
        if values[name] and len(values[name]) > limit:
            raise CatalogError(
                source, line, name, f"is {len(values[name]):,} characters long; the limit is {limit:,}: shorten it"
            )
    title, abstract = (values["title"] or "").strip(), (values["abstract"] or "").strip()
    if not title and not abstract:
        raise CatalogError(source, line, "title/abstract", "both are empty; give a title or an abstract")
    language = values["language"]
    if language is not None and not (_LANGUAGE.match(language) and known_language(language)):
        raise CatalogError(source, line, "language", f"{language!r} is not an ISO 639 code such as 'en' or 'ary'")
    published = record.get("published")
    if published is not None and published != "":
        if not isinstance(published, str):
            raise CatalogError(source, line, "published", "must be a date string YYYY-MM-DD")
        try:
            dt.date.fromisoformat(published)
        except ValueError:
            raise CatalogError(source, line, "published", f"{published!r} is not a date YYYY-MM-DD") from None
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", published):
            raise CatalogError(source, line, "published", f"{published!r} is not a date YYYY-MM-DD")
    else:
        published = None
    metadata = {k: v for k, v in record.items() if k not in KNOWN_FIELDS}
    # Named links in metadata too: "pdf_url", "imageUrl", "PDF_URL".
    extra_links = tuple(
        k for k in metadata if isinstance(k, str) and (k.lower() in LINK_FIELDS or k.lower().endswith("url"))
    )
    for name in LINK_FIELDS + extra_links:
        problem = link_problem(record.get(name))
        if problem:
            raise CatalogError(source, line, name, problem)
    return Publication(
        id=pid.strip(),
        title=title,
        abstract=abstract,
        language=language or None,
        type=values["type"] or None,
        authors=values["authors"],
        published=published,
        url=(values["url"] or "").strip() or None,
        topics=values["topics"],
        group=values["group"] or None,
        metadata=metadata,
    )


def link_problem(value: Any) -> str | None:
    """Why ``value`` is not a usable link (an absolute http or https URL), or None when it is (or is empty)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return f"must be a URL string, got {type(value).__name__}"
    try:
        parts = urlsplit(value.strip())
        usable = parts.scheme.lower() in _LINK_SCHEMES and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        usable = False
    if usable:
        return None
    shown = value if len(value) <= 80 else value[:77] + "..."
    return f"{shown!r} is not an absolute http(s) URL; give one such as 'https://example.org/page'"


def _lone_surrogate(value: Any) -> str | None:
    """Where a lone surrogate is in a decoded JSON value (e.g. 'U+D800 at character 3'), else None."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return f"U+{ord(found.group()):04X} at character {found.start() + 1}" if found else None
    if isinstance(value, list):
        return next((w for w in map(_lone_surrogate, value) if w), None)
    if isinstance(value, dict):
        return next((w for w in map(_lone_surrogate, [*value.keys(), *value.values()]) if w), None)
    return None


def _jsonl_records(data: bytes, source: str) -> Iterator[tuple[int, Any]]:
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, CatalogError(source, number, "encoding", f"invalid UTF-8 at byte {exc.start}")
            continue
        if not text.strip():
            continue
        try:
            yield number, json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, CatalogError(source, number, "json", f"invalid JSON ({exc.msg} at column {exc.colno})")


def _csv_records(data: bytes, source: str) -> Iterator[tuple[int, Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        # The whole file is unusable: CSV rows cannot be resynchronised after a bad byte.
        raise CatalogError(source, line, "encoding", f"invalid UTF-8 at byte {exc.start}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    if "id" not in columns:
        raise CatalogError(source, 1, "id", f"the CSV header has no 'id' column (columns: {columns})")
    if "title" not in columns and "abstract" not in columns:
        raise CatalogError(source, 1, "title/abstract", "the CSV header needs a 'title' or 'abstract' column")
    for row in reader:
        if None in row:
            yield reader.line_num, CatalogError(source, reader.line_num, "line", "more values than header columns")
            continue
        record: dict[str, Any] = {k: (v if v != "" else None) for k, v in row.items()}
        for name in _LIST_FIELDS:
            if record.get(name):
                record[name] = [p for p in record[name].split(_CSV_LIST_SEPARATOR)]
        yield reader.line_num, record


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, decoded record or CatalogError)`` from a ``.jsonl`` or ``.csv`` catalog file.

    Errors that make the whole file unreadable (missing file, bad CSV header) are raised instead.
    """
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(source, 0, "file", f"cannot read the catalog: {exc.strerror}") from None
    if path.suffix.lower() == ".csv":
        return _csv_records(data, source)
    return _jsonl_records(data, source)


def load_catalog(paths: Sequence[Path | str] | Path | str, *, skip_invalid: bool = False) -> LoadResult:
    """Load and validate one or more catalog files.

    By default the first bad line raises :class:`CatalogError`; with ``skip_invalid`` bad lines are
    collected in ``LoadResult.errors`` and skipped. Ids must be unique across all files.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    publications: list[Publication] = []
    errors: list[CatalogError] = []
    seen: dict[str, str] = {}
    for path in map(Path, paths):
        try:
            records = list(iter_records(path))
        except CatalogError as exc:
            if not skip_invalid:
                raise
            errors.append(exc)
            continue
        for number, record in records:
            try:
                if isinstance(record, CatalogError):
                    raise record
                publication = parse_record(record, str(path), number)
                if publication.id in seen:
                    raise CatalogError(
                        str(path),
                        number,
                        "id",
                        f"duplicate id {publication.id!r} (first seen at {seen[publication.id]})",
                    )
            except CatalogError as exc:
                if not skip_invalid:
                    raise
                errors.append(exc)
                continue
            seen[publication.id] = f"{path}:{number}"
            publications.append(publication)
    return LoadResult(publications, errors)


def write_catalog(publications: Iterable[Publication], path: Path) -> None:
    """Write publications as JSON Lines (the format :func:`load_catalog` reads)."""
    with path.open("w", encoding="utf-8") as out:
        for publication in publications:
            out.write(json.dumps(publication.to_dict(), ensure_ascii=False) + "\n")


def catalog_hash(publications: Iterable[Publication]) -> str:
    """A stable SHA-256 of the catalog content, independent of line order."""
    digest = hashlib.sha256()
    for publication in sorted(publications, key=lambda p: p.id):
        digest.update(json.dumps(publication.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
