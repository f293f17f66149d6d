"""Request and response models of the HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_type_hints

from pydantic import BaseModel, Field, create_model

from engine.catalog.browse import MAX_LIMIT, MAX_OFFSET
from engine.catalog.records import Publication
from engine.rank.query import MAX_K, MAX_WINDOW, RelatedQuery

# Values of one repeatable parameter: a site filters on a few languages or types, and every value costs work.
MAX_VALUES = 20
# Dates are ISO YYYY-MM-DD strings (the engine checks they exist): no lenient parsing of "0" as 1970-01-01.
DATE = r"^\d{4}-\d{2}-\d{2}$"


def _bounds(minimum: float, maximum: float) -> Callable[[dict[str, Any]], None]:
    """OpenAPI bounds of a parameter whose range the engine checks (:meth:`RelatedQuery.validated`): declared
    here for the schema, checked once, there."""

    def extra(schema: dict[str, Any]) -> None:
        target = next((s for s in schema.get("anyOf", []) if s.get("type") != "null"), schema)
        target.update(minimum=minimum, maximum=maximum)

    return extra


class RelatedParams(BaseModel):
    """The query parameters of the related-items routes (GET by id and POST for drafts): parsed here, turned
    into the engine's :class:`RelatedQuery` by :meth:`to_query`, which checks every range once."""

    k: int = Field(10, description="items per page", json_schema_extra=_bounds(1, MAX_K))
    offset: int = Field(
        0,
        description=f"items to skip (pagination); offset + k is at most {MAX_WINDOW}",
        json_schema_extra=_bounds(0, MAX_WINDOW - 1),
    )
    language: list[str] = Field(
        default_factory=list, max_length=MAX_VALUES, description="keep only these languages (repeatable)"
    )
    language_policy: Literal["any", "same", "prefer"] = Field(
        "any", description="any; same = only the query's language; prefer = the query's language first"
    )
    type: list[str] = Field(
        default_factory=list, max_length=MAX_VALUES, description="keep only these types (repeatable)"
    )
    exclude_type: list[str] = Field(
        default_factory=list, max_length=MAX_VALUES, description="drop these types (repeatable)"
    )
    published_after: str | None = Field(None, pattern=DATE, description="on or after this date")
    published_before: str | None = Field(None, pattern=DATE, description="on or before this date")
    include_translations: bool = Field(False, description="keep the query's other language versions")
    diversity: float = Field(
        0.0, description="MMR trade-off; 0 = off, 1 = novelty only", json_schema_extra=_bounds(0, 1)
    )
    min_score: float | None = Field(
        None, description="drop items below this similarity", json_schema_extra=_bounds(-1, 1)
    )
    min_results: int = Field(
        0, description="keep at least this many despite min_score", json_schema_extra=_bounds(0, MAX_K)
    )
    explain: bool = Field(False, description="add shared topics, authors, terms and score parts")
    collapse_translations: bool = Field(
        False, description="one entry per publication: its best language version, linking the others"
    )

    def to_query(self) -> RelatedQuery:
        """The engine's query for these parameters, validated (:class:`InvalidQueryError` names a bad one)."""
        return RelatedQuery(
            k=self.k,
            offset=self.offset,
            languages=tuple(self.language),
            language_policy=self.language_policy,
            types=tuple(self.type),
            exclude_types=tuple(self.exclude_type),
            published_after=self.published_after,
            published_before=self.published_before,
            include_translations=self.include_translations,
            diversity=self.diversity,
            min_score=self.min_score,
            min_results=self.min_results,
            explain=self.explain,
            collapse_translations=self.collapse_translations,
        ).validated()


class BrowseParams(BaseModel):
    """The query parameters of ``GET /publications``."""

    query: str | None = Field(None, max_length=200, description="words that must all be in the title")
    language: list[str] = Field(
        default_factory=list, max_length=MAX_VALUES, description="keep these languages (repeatable)"
    )
    type: list[str] = Field(default_factory=list, max_length=MAX_VALUES, description="keep these types (repeatable)")
    limit: int = Field(20, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI ``parameters`` for a model read from the query string (lists are repeated parameters)."""
    schema = model.model_json_schema()
    parameters = []
    for name, field in schema["properties"].items():
        description = field.get("description")
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": description,
                "schema": {k: v for k, v in field.items() if k != "description"},
            }
        )
    return parameters


class ErrorResponse(BaseModel):
    """Error body."""

    detail: str


# Error answers declared in OpenAPI, shared by the routes.
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse, "description": "unknown publication id"}}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {503: {"model": ErrorResponse, "description": "no index loaded yet"}}
LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorResponse, "description": "this client address is over its rate limit (Retry-After)"},
    503: {"model": ErrorResponse, "description": "no index loaded yet, or the service is busy (Retry-After)"},
}
BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
    413: {"model": ErrorResponse, "description": "text or body over the limit"},
}
# Declared by hand where a route reads its query itself (FastAPI adds it to routes with parameters).
INVALID: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "Validation Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    }
}
PUBLICATION_ID_PARAMETER = {
    "name": "publication_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "title": "Publication Id"},
}


class TranslationOut(BaseModel):
    """Another language version of a publication."""

    id: str
    language: str | None


class ExplanationOut(BaseModel):
    """Why an item is related, and the parts of its position (``explain=true``)."""

    shared_topics: list[str]
    shared_authors: list[str]
    shared_terms: list[str] = Field(
        description="what both texts name: countries (across en/fr/ar), acronyms and names first, then words one "
        "of them dwells on; rarest in the catalog first; empty when they share nothing telling"
    )
    similarity: float = Field(description="cosine similarity to the query, of the catalog-adapted vectors")
    calibrated: float = Field(
        description="the ranking key: the similarity as a z-score, corrected for the item's language where the "
        "catalog's translations measure a language effect"
    )
    redundancy: float = Field(description="max cosine to the items ranked above (what diversity penalises)")
    pinned: bool = Field(description="placed by an editorial pin")
    same_language: bool | None = Field(description="in the query's language (null when it is unknown)")


class RelatedItemOut(BaseModel):
    """One related publication, ranked."""

    id: str
    title: str
    language: str | None
    type: str | None
    published: str | None = Field(description="ISO date YYYY-MM-DD")
    url: str | None
    authors: list[str]
    snippet: str = Field(description="the start of the abstract")
    score: float = Field(description="cosine similarity to the query, of the catalog-adapted vectors")
    rank: int = Field(ge=1, description="position in the whole list (offset + 1 for the first of a page)")
    is_translation: bool = Field(description="a language version of the query publication itself")
    translations: list[TranslationOut] = Field(description="the other language versions of this item")
    pinned: bool
    explanation: ExplanationOut | None = None
    image: str | None = Field(None, description="the catalog's optional image URL (http/https)")


class RelatedResponse(BaseModel):
    """A page of related items."""

    id: str | None = Field(description="the query publication, null for a free-text or example query")
    build_id: str | None
    offset: int
    k: int
    items: list[RelatedItemOut]
    reason: str | None = Field(default=None, description="why the list is empty")


class RelatedRequest(BaseModel):
    """A query that is not one catalog item: a draft's text, and/or example ids."""

    title: str = Field(default="", description="draft title (at most 1,000 characters, else 413)")
    abstract: str = Field(default="", description="draft abstract (at most 20,000 characters, else 413)")
    language: str | None = Field(default=None, description="language of the draft, for language_policy")
    like: list[str] = Field(default_factory=list, description="ids of publications to find more of (at most 50)")
    unlike: list[str] = Field(default_factory=list, description="ids of publications to move away from (at most 50)")


class PublicationOut(BaseModel):
    """A catalog record."""

    id: str
    title: str
    abstract: str
    language: str | None
    type: str | None
    authors: list[str]
    published: str | None
    url: str | None
    topics: list[str]
    group: str | None
    translations: list[TranslationOut]
    metadata: dict[str, Any]


# A browse entry is a projection of the catalog record: these of its fields, typed as the record types them
# (one declaration, engine/catalog/records.py), all required in the answer.
SUMMARY_FIELDS = ("id", "title", "language", "type", "published", "url", "authors")
_RECORD_TYPES = get_type_hints(Publication)
PublicationSummary = create_model(
    "PublicationSummary",
    __doc__="A catalog entry in a browse list.",
    **{name: (_RECORD_TYPES[name], ...) for name in SUMMARY_FIELDS},
)


class BrowseResponse(BaseModel):
    """A page of catalog entries."""

    total: int = Field(description="all matches, not only this page")
    offset: int
    limit: int
    items: list[PublicationSummary]


class HealthResponse(BaseModel):
    """Liveness."""

    status: str


class ReadyResponse(BaseModel):
    """The index in service."""

    status: str
    publications: int
    translation_groups: int
    model: str
    build_id: str | None
    build_time: str | None
    loaded_at: str | None
    catalog_hash: str | None
    overrides: str = Field(description="content hash of overrides.json ('none' without one)")
    text_queries: bool = Field(description="whether POST /related accepts free text (model loaded)")
    generation: int = Field(description="the catalog store generation served (every write makes one)")
    build_generation: int | None = Field(description="the store generation the build holds")
    changes_since_build: int = Field(description="publications written or deleted since the build, served beside it")
    pending_build: int = Field(description="changes encoded with another model than the build's, waiting for a build")
    worker: int = Field(description="process id of the worker that answered")
    serving_since: float | None = Field(description="when this worker began serving this generation (Unix time)")
    fallback: str | None = Field(description="why an older build is served, when the current one is unusable")
    last_error: str | None = Field(description="the last reload or catch-up that failed (the previous state is served)")
    config: dict[str, Any] = Field(description="the service's effective settings, secrets masked")


class ReloadResponse(BaseModel):
    """Outcome of POST /admin/reload."""

    build_id: str | None
    previous_build_id: str | None
    publications: int
    changed: bool
    warnings: list[str]


class WriteResponse(BaseModel):
    """Outcome of a catalog write (committed to the catalog store when this is returned)."""

    build_id: str
    generation: int = Field(description="the store generation holding the write; /ready shows each worker's")
    upserted: list[str]
    deleted: list[str]
    publications: int
