"""Catalog loading: every kind of bad line is reported with its line number and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import CatalogError, catalog_hash, load_catalog
from tests.fakes import pub, write_jsonl

GOOD = pub("a", "trade finance", authors=["A. Author"], published="2024-02-29", topics=["trade"], source="x")


def test_valid_catalog_keeps_fields_and_unknown_metadata(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [GOOD, "", pub("b", "", title="Only a title", language="ary")])
    result = load_catalog(path)
    a, b = result.publications
    assert (a.id, a.authors, a.topics, a.published, a.metadata) == (
        "a",
        ("A. Author",),
        ("trade",),
        "2024-02-29",
        {"source": "x"},
    )
    assert b.title == "Only a title" and b.language == "ary"
    assert result.errors == []


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        ('{"id": "x", "abstract": "text"', "json", "invalid JSON"),
        ('["not", "an", "object"]', "line", "JSON object"),
        ('{"abstract": "no id"}', "id", "missing"),
        ('{"id": "  ", "abstract": "blank id"}', "id", "missing"),
        ('{"id": 7, "abstract": "numeric id"}', "id", "must be a string"),
        ('{"id": "p\\nq", "abstract": "an id no URL can name"}', "id", "control character (U+000A at position 1)"),
        ('{"id": "x", "title": "", "abstract": "  "}', "title/abstract", "both are empty"),
        ('{"id": "x", "abstract": "t", "published": "2024-13-01"}', "published", "not a date"),
        ('{"id": "x", "abstract": "t", "published": "12/05/2025"}', "published", "not a date"),
        ('{"id": "x", "abstract": "t", "published": 2024}', "published", "date string"),
        ('{"id": "x", "abstract": "t", "authors": "A. Author"}', "authors", "list of strings"),
        ('{"id": "x", "abstract": "t", "topics": [1, 2]}', "topics", "list of strings"),
        ('{"id": "x", "abstract": ["t"]}', "abstract", "must be a string"),
        ('{"id": "x", "abstract": "t", "language": "English"}', "language", "ISO 639"),
        ('{"id": "x", "abstract": "t", "language": "xx"}', "language", "ISO 639"),
        ('{"id": "x", "abstract": "t", "language": "qqq-FR"}', "language", "ISO 639"),
    ],
)
def test_bad_line_names_line_and_field(tmp_path: Path, line: str, field: str, fragment: str) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [GOOD, line])
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    error = caught.value
    assert (error.line, error.field) == (2, field)
    assert fragment in str(error) and f"{path}:2" in str(error)


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [GOOD, pub("b", "t"), pub("a", "again")])
    with pytest.raises(CatalogError, match=r"duplicate id 'a' \(first seen at .*c.jsonl:1\)") as caught:
        load_catalog(path)
    assert (caught.value.line, caught.value.field) == (3, "id")


def test_duplicate_id_across_files(tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "one.jsonl", [GOOD])
    second = write_jsonl(tmp_path / "two.jsonl", [pub("a", "other")])
    with pytest.raises(CatalogError, match="duplicate id 'a'"):
        load_catalog([first, second])


def test_invalid_utf8_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"id": "a", "abstract": "ok"}\n{"id": "b", "abstract": "caf\xe9"}\n')
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert (caught.value.line, caught.value.field) == (2, "encoding")


def test_skip_invalid_reports_every_bad_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        b'{"id": "a", "abstract": "ok"}\n{broken\n\xff\xfe\n{"id": "a", "abstract": "dup"}\n'
        b'{"id": "c", "abstract": "fine"}\n'
    )
    result = load_catalog(path, skip_invalid=True)
    assert [p.id for p in result.publications] == ["a", "c"]
    assert [(e.line, e.field) for e in result.errors] == [(2, "json"), (3, "encoding"), (4, "id")]


def test_csv_catalog_with_list_columns(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "id,title,abstract,language,authors,topics,published,extra\n"
        'p1,Titre,"Résumé, avec virgule",fr,A. Un;B. Deux,trade;water,2023-05-01,kept\n',
        encoding="utf-8",
    )
    (p1,) = load_catalog(path).publications
    assert (p1.abstract, p1.authors, p1.topics, p1.metadata) == (
        "Résumé, avec virgule",
        ("A. Un", "B. Deux"),
        ("trade", "water"),
        {"extra": "kept"},
    )


def test_csv_without_id_column_fails_on_header(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("title,abstract\nA,B\n", encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert (caught.value.line, caught.value.field) == (1, "id")


def test_csv_bad_date_reports_csv_line(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,title,published\np1,A,2023-05-01\np2,B,May 2023\n", encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert (caught.value.line, caught.value.field) == (3, "published")


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "nope.jsonl")


def test_catalog_hash_ignores_order_but_not_content(tmp_path: Path) -> None:
    one = load_catalog(write_jsonl(tmp_path / "1.jsonl", [GOOD, pub("b", "t")])).publications
    two = load_catalog(write_jsonl(tmp_path / "2.jsonl", [pub("b", "t"), GOOD])).publications
    three = load_catalog(write_jsonl(tmp_path / "3.jsonl", [pub("b", "t2"), GOOD])).publications
    assert catalog_hash(one) == catalog_hash(two) != catalog_hash(three)
