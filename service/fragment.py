"""``GET /publications/{id}/related.html``: the related block as an HTML fragment, in the reader's language.

What a CMS includes server-side (search engines and readers without JavaScript see it): the related route's
query, plus ``locale`` (the block's words) and ``heading_level``. Rendered by Jinja2 with autoescaping, a
well-kept escaper rather than hand-written one: no catalog field can become markup, and links are http(s)
only (checked when the catalog is loaded). Each item carries its own ``lang`` and ``dir``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from jinja2 import Environment, FileSystemLoader, Template, select_autoescape
from pydantic import BaseModel, Field

from engine import Recommender
from engine.rank.recommend import RelatedResult
from service.dependencies import parse_query, recommender_of
from service.locales import LOCALES, direction, strings
from service.related import recommend, related_query
from service.schemas import INVALID, LIMITED, NOT_FOUND, PUBLICATION_ID_PARAMETER, RelatedParams, query_parameters

router = APIRouter()


class FragmentParams(BaseModel):
    """How the fragment is written (its list is the related route's)."""

    locale: Literal[LOCALES] = Field("en", description="language of the block's words; `ar` is right to left")
    heading_level: int = Field(2, ge=2, le=6, description="the heading's level, h2 to h6, to fit the host page")
    thumbnails: bool = Field(False, description="show each item's catalog image, where it has one")


@router.get(
    "/publications/{publication_id:path}/related.html",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}, **NOT_FOUND, **LIMITED, **INVALID},
    openapi_extra={
        "parameters": [
            PUBLICATION_ID_PARAMETER,
            *query_parameters(RelatedParams),
            *query_parameters(FragmentParams),
        ]
    },
)
async def related_fragment(request: Request) -> Response:
    """The related block of ``publication_id`` as an HTML fragment (no script needed)."""
    publication_id = request.path_params["publication_id"]
    recommender = recommender_of(request)
    query = related_query(request.scope["query_string"])
    options = fragment_options(request.scope["query_string"])
    result = await recommend(request, recommender, publication_id, query)
    body = render_fragment(recommender, publication_id, result, options)
    return Response(body, media_type="text/html; charset=utf-8")


def fragment_options(query_string: bytes) -> FragmentParams:
    """The fragment's own parameters (422 naming a bad one)."""
    return parse_query(FragmentParams, query_string)


def render_fragment(
    recommender: Recommender, publication_id: str, result: RelatedResult, options: FragmentParams
) -> str:
    """The fragment's HTML."""
    words = strings(options.locale)
    items = []
    for item in result.items:
        versions = []
        for version in item.translations:
            url = recommender.publications[version.id].url if version.id in recommender.publications else None
            label = words["languages"].get(version.language or "", version.language or "?")
            versions.append({"href": url, "language": version.language, "label": label})
        items.append(
            {
                "id": item.id,
                # An untitled item (a podcast episode, a snippet) is named by the start of its text, as in the widget.
                "title": item.title or item.snippet,
                "url": item.url,
                "language": item.language,
                "dir": direction(item.language),
                "type": item.type,
                "type_label": words["types"].get(item.type or "", item.type),
                "language_label": words["languages"].get(item.language or "", item.language or ""),
                "published": item.published,
                "authors": item.authors,
                "snippet": item.snippet if item.title else "",
                "score_percent": round(100 * max(item.score, 0.0)),
                "translations": [v for v in versions if v["href"]],
                "image": item.image if options.thumbnails else None,
                # Described by the catalog's `image_alt`, else by the title it illustrates.
                "image_alt": _image_alt(recommender, item.id, item.title or item.snippet),
            }
        )
    return _template().render(
        items=items,
        t=words,
        locale=options.locale,
        page_dir=direction(options.locale),
        level=options.heading_level,
        anchor=quote(publication_id, safe=""),
    )


def _image_alt(recommender: Recommender, publication_id: str, fallback: str) -> str:
    publication = recommender.publications.get(publication_id)
    alt = publication.metadata.get("image_alt") if publication is not None else None
    return alt if isinstance(alt, str) and alt.strip() else fallback


@cache
def _template() -> Template:
    environment = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    return environment.get_template("related.html")
