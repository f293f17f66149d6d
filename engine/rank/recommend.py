"""Related items: nearest neighbours, then exclusions, filters, policies, re-ranking and editorial pins.

Every rule about what may appear in a related list lives here, never in a route.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from engine.catalog.browse import CatalogBrowser
from engine.catalog.records import Publication
from engine.catalog.text import publication_text
from engine.encode.chunks import ChunkVectors, normalize
from engine.encode.embed import EmbeddingCache, Encoder, encode_cached, encode_chunks
from engine.index.delta import Delta, DeltaIndex, outside_vectors
from engine.index.options import BuildOptions
from engine.index.overrides import Overrides
from engine.index.store import Build
from engine.index.vectors import VectorIndex
from engine.rank.candidates import Calibrator, Candidate, CandidateSearch
from engine.rank.catalog_view import BuildView
from engine.rank.explain import terms_of
from engine.rank.items import ItemBuilder, Seed, snippet
from engine.rank.query import InvalidQueryError, RelatedQuery
from engine.rank.rerank import keep_min_score, mmr_order
from engine.rank.results import (
    EncoderUnavailableError,
    Explanation,
    RelatedItem,
    RelatedResult,
    TextTooLongError,
    Translation,
    UnknownPublicationError,
)

# With diversity on, MMR chooses among this many times the needed number of candidates, but among at most
# _MMR_MAX_EXTRA more than needed: a deep page's cost then grows with its depth, not three times that.
_MMR_POOL_FACTOR = 3
_MMR_MAX_EXTRA = 200
# Collapsing translations: fetch enough for groups of up to three versions to leave one each.
_COLLAPSE_POOL_FACTOR = 3
MAX_TITLE_CHARS = 1_000
MAX_ABSTRACT_CHARS = 20_000
MAX_EXAMPLES = 50
# Weight of the negative examples in the query vector (Rocchio-style).
_UNLIKE_WEIGHT = 0.5


class Recommender:
    """A loaded build, the catalog changes made since (``delta``) and the overrides; answers related-items
    queries. Read-only once built: a later change makes a new one."""

    def __init__(
        self,
        build: Build,
        overrides: Overrides | None = None,
        encoder: Encoder | None = None,
        delta: Delta | None = None,
        previous: Recommender | None = None,
    ) -> None:
        """``previous``: a recommender of the same build, whose checks and per-build tables are reused (a
        write then costs what it changes, not a pass over the catalog)."""
        self.build = build
        view = previous._view if previous is not None and previous.build is build else BuildView(build)
        self._view = view
        if delta is None:
            delta = Delta(build.manifest.store_generation or 0 if build.manifest is not None else 0)
        self.delta = delta
        self.publications = view.by_id
        self.index: VectorIndex | DeltaIndex = build.index
        groups, languages = view.groups, view.languages
        if len(delta):
            self.publications = dict(view.by_id)  # a C-level copy: ms at 100k items
            for key in delta.deleted:
                self.publications.pop(key, None)
            self.publications.update((p.id, p) for p in delta.upserted)
            self.index = DeltaIndex(build.index, delta)
            groups = view.groups_with(delta, self.publications)
            languages = languages | {p.language for p in delta.upserted}
        self.overrides = overrides or Overrides()
        self.encoder = encoder
        self._search = CandidateSearch(self.index, self.publications, build.calibration, build.neighbours, languages)
        self._items = ItemBuilder(self.publications, groups)
        self._browser: CatalogBrowser | None = None
        self._warm = threading.Event()

    @classmethod
    def from_publications(
        cls,
        publications: Sequence[Publication],
        encoder: Encoder,
        *,
        cache: EmbeddingCache | None = None,
        options: BuildOptions | None = None,
    ) -> Recommender:
        """Encode and index publications in memory, exactly as a build would (evaluation, comparisons)."""
        texts = [publication_text(p) for p in publications]
        chunks, _ = encode_cached(encoder, texts, cache, languages=[p.language for p in publications])
        return cls(Build.assemble(publications, chunks, encoder.name, options or BuildOptions()), encoder=encoder)

    @classmethod
    def from_vectors(
        cls,
        publications: Sequence[Publication],
        vectors: np.ndarray,
        *,
        model: str = "in-memory",
        encoder: Encoder | None = None,
        options: BuildOptions | None = None,
    ) -> Recommender:
        """Index given document vectors (one row per publication, each taken as a text of one chunk) in memory."""
        build = Build.assemble(publications, ChunkVectors.of_documents(vectors), model, options or BuildOptions())
        return cls(build, encoder=encoder)

    def __len__(self) -> int:
        return len(self.publications)

    @property
    def group_count(self) -> int:
        """Number of translation groups."""
        return len(self._items.groups)

    @property
    def generation(self) -> int:
        """The catalog store's generation this recommender serves (its build's, plus the changes since)."""
        return self.delta.generation

    @property
    def version(self) -> str:
        """Identifies what answers are computed from (build, changes since, overrides), for cache validators."""
        return f"{self.build.build_id}.{self.generation}.{self.overrides.version}"

    def warm(self) -> None:
        """Compute now what the first request would otherwise pay for: the term statistics of explanations
        (seconds on a few thousand long texts) and the browsing order. Idempotent and thread-safe."""
        self._items.term_statistics()
        _ = self.browser
        self._warm.set()

    @property
    def warmed(self) -> bool:
        """Whether :meth:`warm` has completed."""
        return self._warm.is_set()

    @property
    def browser(self) -> CatalogBrowser:
        """Browsing over this catalog: title search and filters, newest first (built on first use, or by
        :meth:`warm`; a race at worst builds it twice)."""
        if self._browser is None:
            self._browser = CatalogBrowser(self.publications.values())
        return self._browser

    def get(self, publication_id: str) -> Publication:
        """The publication with this id, or :class:`UnknownPublicationError`."""
        try:
            return self.publications[publication_id]
        except KeyError:
            raise UnknownPublicationError(publication_id) from None

    def translations(self, publication_id: str) -> list[Translation]:
        """The other language versions of a publication (its translation group, itself excluded)."""
        publication = self.get(publication_id)
        if not publication.group:
            return []
        return list(self._items.translations_of(publication))

    def _group_of(self, publication_id: str) -> frozenset[str]:
        return frozenset([publication_id, *(t.id for t in self.translations(publication_id))])

    # ----- queries -----

    def related(self, publication_id: str, k: int = 10, **options: Any) -> list[RelatedItem]:
        """The ``k`` publications most related to ``publication_id``, best first (see :class:`RelatedQuery`).

        The item itself is always excluded; its translations are excluded unless ``include_translations``.
        Options given as lists (``languages``, ``types``, ...) are accepted as any sequence.
        """
        for name in ("languages", "types", "exclude_types", "exclude_languages"):
            if options.get(name) is not None:
                options[name] = tuple(options[name])
            else:
                options.pop(name, None)
        return self.recommend(publication_id, RelatedQuery(k=k, **options)).items

    def recommend(self, publication_id: str, query: RelatedQuery) -> RelatedResult:
        """Related items for a publication in the catalog."""
        query = query.validated()
        publication = self.get(publication_id)
        group = self._group_of(publication_id)
        seed = Seed(
            vector=self.index.vector(publication_id),
            language=publication.language,
            excluded=frozenset([publication_id]) if query.include_translations else group,
            group=group,
            source=publication_id,
            pins=self.overrides.pinned.get(publication_id, ()),
            topics=publication.topics,
            authors=publication.authors,
            terms=self._items.term_statistics().terms(publication_id) if query.explain else frozenset(),
        )
        return self._rank(seed, query)

    def recommend_text(self, title: str, abstract: str, language: str | None, query: RelatedQuery) -> RelatedResult:
        """Related items for a draft that is not in the catalog (free text)."""
        query = query.validated()
        if not (title.strip() or abstract.strip()):
            # Valid by the request schema, so not an error: an empty list that says what to send.
            return RelatedResult([], "nothing to relate to: send a title, an abstract or example ids (like)")
        vector = self.text_vector(title, abstract, language)
        seed = Seed(
            vector,
            language,
            frozenset(),
            frozenset(),
            terms=frozenset(terms_of(abstract, title=title, language=language)),
        )
        return self._rank(seed, query)

    def recommend_examples(
        self,
        like: Sequence[str],
        unlike: Sequence[str],
        query: RelatedQuery,
        *,
        text: tuple[str, str] | None = None,
        language: str | None = None,
    ) -> RelatedResult:
        """Items like the positive examples and unlike the negative ones (plus optional draft text)."""
        query = query.validated()
        if not like and text is None:
            raise InvalidQueryError("like", "give at least one positive example id (or a title/abstract)")
        if len(like) > MAX_EXAMPLES or len(unlike) > MAX_EXAMPLES:
            raise InvalidQueryError("like", f"at most {MAX_EXAMPLES} ids in like and in unlike")
        liked = [self.get(i) for i in like]
        disliked = [self.get(i) for i in unlike]
        positives = [self.index.vector(p.id) for p in liked]
        terms: set[str] = set()
        if text is not None:
            title, abstract = text
            draft = self.text_vector(title, abstract, language)
            positives.append(draft)
            terms |= terms_of(abstract, title=title, language=language)
        vector = np.mean(positives, axis=0)
        if disliked:
            vector = vector - _UNLIKE_WEIGHT * np.mean([self.index.vector(p.id) for p in disliked], axis=0)
        examples = [p.id for p in [*liked, *disliked]]
        group = frozenset().union(*(self._group_of(i) for i in examples)) if examples else frozenset()
        statistics = self._items.term_statistics() if query.explain else None
        seed = Seed(
            vector=normalize(vector[None, :])[0],
            language=Counter(p.language for p in liked).most_common(1)[0][0] if liked else language,
            excluded=frozenset(examples) if query.include_translations else group,
            group=group,
            topics=tuple(dict.fromkeys(t for p in liked for t in p.topics)),
            authors=tuple(dict.fromkeys(a for p in liked for a in p.authors)),
            terms=frozenset(terms.union(*(statistics.terms(p.id) for p in liked))) if statistics else frozenset(),
        )
        return self._rank(seed, query)

    def text_vector(self, title: str, abstract: str, language: str | None = None) -> np.ndarray:
        """The vector of a draft's title and abstract, after checking the documented limits."""
        if len(title) > MAX_TITLE_CHARS or len(abstract) > MAX_ABSTRACT_CHARS:
            raise TextTooLongError(
                f"the text is too long: title {len(title)} characters (limit {MAX_TITLE_CHARS}), "
                f"abstract {len(abstract)} characters (limit {MAX_ABSTRACT_CHARS})"
            )
        text = "\n".join(part for part in (title.strip(), abstract.strip()) if part)
        if not text:
            raise InvalidQueryError("title", "give a title or an abstract")
        if self.encoder is None:
            raise EncoderUnavailableError("this service was started without a model; free-text queries are off")
        chunks = encode_chunks(self.encoder, [text], languages=[language])
        return outside_vectors(self.build.adaptation, self.index, chunks)[0]

    # ----- ranking -----

    def _rank(self, seed: Seed, query: RelatedQuery) -> RelatedResult:
        banned = self.overrides.banned
        same_only = query.language_policy == "same" and seed.language is not None
        calibrate = self._search.calibrator(seed.vector)

        excluded, language = seed.excluded, seed.language
        # Runs for every candidate of every request: skip the filter checks when there are none.
        accepts = query.accepts if query.has_filters() else None

        def allowed(p: Publication) -> bool:
            return (
                p.id not in excluded
                and p.id not in banned
                and (accepts is None or accepts(p))
                and (not same_only or p.language == language)
            )

        pins = [self.publications[i] for i in seed.pins if allowed(self.publications[i])]
        pinned_ids = {p.id for p in pins}
        shown_groups = {p.group for p in pins if p.group}
        need = query.offset + query.k
        pool_size = need + min(need * (_MMR_POOL_FACTOR - 1), _MMR_MAX_EXTRA) if query.diversity > 0 else need

        searched = False

        def ranked_block(keep: Callable[[Publication], bool]) -> list[Candidate]:
            nonlocal searched
            size = pool_size * _COLLAPSE_POOL_FACTOR if query.collapse_translations else pool_size
            unpinned = (lambda p: keep(p) and p.id not in pinned_ids) if pinned_ids else keep
            pool, live = self._search.best(seed.vector, unpinned, size, calibrate, seed.source)
            searched = searched or live
            if query.collapse_translations:
                pool = self._one_per_group(pool, shown_groups, seed, keep, calibrate)
            if not pool or query.diversity <= 0:
                return pool[:need]
            # MMR mixes relevance with cosine redundancy: bring the calibrated scores to [0, 1] first.
            relevance = np.array([c.calibrated for c in pool], dtype=np.float32)
            spread = float(relevance.max() - relevance.min()) or 1.0
            relevance = (relevance - relevance.min()) / spread
            vectors = np.stack([self.index.vector(c.publication.id) for c in pool])
            return [replace(pool[i], redundancy=r) for i, r in mmr_order(relevance, vectors, query.diversity, need)]

        if query.language_policy == "prefer" and seed.language is not None:
            ranked = ranked_block(lambda p: allowed(p) and p.language == seed.language)
            if len(ranked) < need:
                ranked += ranked_block(lambda p: allowed(p) and p.language != seed.language)
        else:
            ranked = ranked_block(allowed)
        kept = keep_min_score([c.similarity for c in ranked], query.min_score, query.min_results)
        ranked = [ranked[i] for i in kept]
        pinned = []
        for p in pins:
            similarity = float(seed.vector @ self.index.vector(p.id))
            pinned.append(Candidate(p, similarity, calibrate(p.language, similarity), pinned=True))
        rows = [*pinned, *ranked]
        page = rows[query.offset : query.offset + query.k]
        items = [self._items.item(seed, query, c, rank) for rank, c in enumerate(page, query.offset + 1)]
        return RelatedResult(items, None if items else self._empty_reason(rows, query), searched)

    def _one_per_group(
        self,
        pool: list[Candidate],
        shown: set[str],
        seed: Seed,
        keep: Callable[[Publication], bool],
        calibrate: Calibrator,
    ) -> list[Candidate]:
        """One entry per translation group, at the rank of its best version; shown in the reader's language
        (the query's) when the group has an allowed version in it. ``shown`` carries groups across blocks."""
        kept = []
        for candidate in pool:
            group = candidate.publication.group
            if group is not None and group in shown:
                continue
            if group is not None:
                shown.add(group)
                if seed.language and candidate.publication.language != seed.language:
                    for member in self._items.groups[group]:
                        version = self.publications[member]
                        if version.language == seed.language and keep(version):
                            similarity = float(seed.vector @ self.index.vector(member))
                            candidate = Candidate(version, similarity, calibrate(version.language, similarity))
                            break
            kept.append(candidate)
        return kept

    def _empty_reason(self, rows: list[Any], query: RelatedQuery) -> str:
        if rows:
            return f"offset {query.offset} is past the last of the {len(rows)} results"
        return f"no publication passes the filters ({query.describe_filters()})"


__all__ = [
    "EncoderUnavailableError",
    "Explanation",
    "Recommender",
    "RelatedItem",
    "RelatedResult",
    "TextTooLongError",
    "Translation",
    "UnknownPublicationError",
    "snippet",
]
