"""Related items for a publication: nearest neighbours, then exclusions and filters, then ranks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.build import CATALOG_FILE, resolve_build
from engine.catalog import Publication, load_catalog
from engine.index import IndexLoadError, VectorIndex

# Extra candidates fetched beyond k + exclusions before filtering; grown when filters remove many.
_CANDIDATE_MARGIN = 20


class UnknownPublicationError(KeyError):
    """No publication with this id in the index."""

    def __init__(self, publication_id: str) -> None:
        self.publication_id = publication_id
        super().__init__(publication_id)

    def __str__(self) -> str:
        return f"publication {self.publication_id!r} not found"


@dataclass(frozen=True, slots=True)
class RelatedItem:
    """One ranked related publication."""

    id: str
    title: str
    language: str | None
    type: str | None
    published: str | None
    url: str | None
    score: float
    rank: int


class Recommender:
    """A loaded index plus its catalog; answers ``related`` queries. Read-only, safe to share across threads."""

    def __init__(self, publications: Sequence[Publication], index: VectorIndex, manifest: dict[str, Any]) -> None:
        self.publications = {p.id: p for p in publications}
        missing = [p for p in self.publications if p not in index]
        if missing or len(index) != len(self.publications):
            raise IndexLoadError(
                f"index and catalog disagree ({len(index)} vectors, {len(self.publications)} publications, "
                f"{len(missing)} without a vector); rebuild the index"
            )
        self.index = index
        self.manifest = manifest
        self._groups: dict[str, set[str]] = defaultdict(set)
        for p in publications:
            if p.group:
                self._groups[p.group].add(p.id)

    def __len__(self) -> int:
        return len(self.publications)

    def get(self, publication_id: str) -> Publication:
        """The publication with this id, or :class:`UnknownPublicationError`."""
        try:
            return self.publications[publication_id]
        except KeyError:
            raise UnknownPublicationError(publication_id) from None

    def translations(self, publication_id: str) -> set[str]:
        """Ids of the other language versions of a publication (its translation group, itself excluded)."""
        publication = self.get(publication_id)
        if not publication.group:
            return set()
        return self._groups[publication.group] - {publication_id}

    def related(
        self,
        publication_id: str,
        k: int = 10,
        *,
        include_translations: bool = False,
        languages: Collection[str] | None = None,
        exclude_languages: Collection[str] | None = None,
        types: Collection[str] | None = None,
    ) -> list[RelatedItem]:
        """The ``k`` publications most similar to ``publication_id``, best first.

        The item itself is always excluded; its translations are excluded unless ``include_translations``.
        ``languages``/``types`` keep only those values; ``exclude_languages`` drops those languages.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.get(publication_id)
        excluded = {publication_id} if include_translations else {publication_id, *self.translations(publication_id)}
        query = self.index.vector(publication_id)
        wanted_languages = set(languages) if languages else None
        dropped_languages = set(exclude_languages or ())
        wanted_types = set(types) if types else None

        def keep(candidate: Publication) -> bool:
            return (
                candidate.id not in excluded
                and (wanted_languages is None or candidate.language in wanted_languages)
                and candidate.language not in dropped_languages
                and (wanted_types is None or candidate.type in wanted_types)
            )

        fetch = k + len(excluded) + _CANDIDATE_MARGIN
        while True:
            hits = self.index.search(query, fetch)[0]
            kept = [(self.publications[key], score) for key, score in hits if keep(self.publications[key])]
            if len(kept) >= k or fetch >= len(self.index):
                break
            fetch *= 4
        return [
            RelatedItem(
                id=p.id,
                title=p.title,
                language=p.language,
                type=p.type,
                published=p.published,
                url=p.url,
                score=round(score, 6),
                rank=rank,
            )
            for rank, (p, score) in enumerate(kept[:k], start=1)
        ]


def load_recommender(index_dir: Path, expected_model: str | None = None) -> Recommender:
    """Load the current build of ``index_dir`` (index, manifest and catalog snapshot)."""
    folder = resolve_build(Path(index_dir))
    index, manifest = VectorIndex.load(folder, expected_model=expected_model)
    catalog = folder / CATALOG_FILE
    if not catalog.is_file():
        raise IndexLoadError(f"{catalog} is missing; rebuild the index with scripts/build_index.py")
    publications = load_catalog(catalog).publications
    return Recommender(publications, index, manifest)
