"""The related-items routes: ``GET /publications/{id}/related`` (the hottest route: every page view) and
``POST /related`` (drafts and examples).

Their query parameters are declared once, in :class:`RelatedParams`, which turns them into the engine's query
(:meth:`RelatedParams.to_query`, validated once, by the engine) and writes their OpenAPI entries; both
routes parse them with :func:`related_query`. The GET
route reads its path, query and recommender from the request itself rather than through FastAPI's parameter
and dependency layer, a measurable share of its cost (docs/performance.md); its parsed queries are
remembered per query string. This router is included before the catalog routes, so the GET route is tried
before their patterns (after only FastAPI's own /openapi.json and /docs routes).
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request, Response

from engine import Recommender, RelatedQuery
from engine.rank.recommend import RelatedResult
from service.dependencies import client_address, get_recommender, parse_query, recommender_of
from service.observe import count_related
from service.schemas import (
    BAD_BODY,
    INVALID,
    LIMITED,
    NOT_FOUND,
    PUBLICATION_ID_PARAMETER,
    RelatedParams,
    RelatedRequest,
    RelatedResponse,
    query_parameters,
)

router = APIRouter()
# Longer query strings are parsed each time: remembering them would let anyone fill the memo.
_REMEMBERED_QUERY_BYTES = 1_000


@router.get(
    "/publications/{publication_id:path}/related",
    response_model=RelatedResponse,
    responses={**NOT_FOUND, **LIMITED, **INVALID},
    openapi_extra={"parameters": [PUBLICATION_ID_PARAMETER, *query_parameters(RelatedParams)]},
)
async def related(request: Request) -> Response:
    """Publications related to ``publication_id``, across languages, best first."""
    publication_id = request.path_params["publication_id"]
    recommender = recommender_of(request)
    query = related_query(request.scope["query_string"])
    result = await recommend(request, recommender, publication_id, query)
    return related_response(publication_id, recommender, query, result)


async def recommend(
    request: Request, recommender: Recommender, publication_id: str, query: RelatedQuery
) -> RelatedResult:
    """The related list of a catalog item, for the JSON and the HTML routes alike. A light query (a lookup in
    the stored neighbour lists) runs on the event loop: cheaper than a hop to a thread. Any other is counted
    per client address and runs in the bounded work pool."""
    if query.light:
        result = recommender.recommend(publication_id, query)
    else:
        request.app.state.limits.check("heavy", client_address(request))
        result = await request.app.state.work.run(recommender.recommend, publication_id, query)
    count_related(result.searched)
    return result


async def draft_query(request: Request) -> RelatedQuery:
    """Dependency: the :class:`RelatedParams` of ``POST /related``, read like the GET route's (one parser, one
    OpenAPI declaration for both)."""
    return related_query(request.scope["query_string"])


@router.post(
    "/related",
    response_model=RelatedResponse,
    responses={**NOT_FOUND, **LIMITED, **BAD_BODY},
    openapi_extra={"parameters": query_parameters(RelatedParams)},
)
async def related_to_draft(
    request: Request,
    body: RelatedRequest,
    recommender: Annotated[Recommender, Depends(get_recommender)],
    query: Annotated[RelatedQuery, Depends(draft_query)],
) -> Response:
    """Related publications for a draft (title/abstract) and/or example ids (like/unlike).

    Filters are the query parameters of ``GET /publications/{id}/related``. Rate-limited per client
    address (429 with Retry-After); 503 with Retry-After when the service is busy.
    """
    request.app.state.limits.check("drafts", client_address(request))
    text = (body.title, body.abstract) if (body.title.strip() or body.abstract.strip()) else None
    work = request.app.state.work
    if body.like or body.unlike:
        examples = partial(recommender.recommend_examples, text=text, language=body.language)
        result = await work.run(examples, body.like, body.unlike, query)
    else:
        result = await work.run(recommender.recommend_text, body.title, body.abstract, body.language, query)
    return related_response(None, recommender, query, result)


def related_query(query_string: bytes) -> RelatedQuery:
    """The engine query of a raw query string (:class:`RelatedParams`; unknown parameters are ignored)."""
    if len(query_string) > _REMEMBERED_QUERY_BYTES:
        return _parse(query_string)
    return _remembered(query_string)


def _parse(query_string: bytes) -> RelatedQuery:
    return parse_query(RelatedParams, query_string).to_query()


# A site sends the same few query strings for every page (k=6, a type filter...): queries are immutable.
_remembered = lru_cache(maxsize=256)(_parse)


def related_response(
    publication_id: str | None, recommender: Recommender, query: RelatedQuery, result: RelatedResult
) -> Response:
    """The :class:`RelatedResponse` body, serialised straight from the engine's dataclasses by orjson.

    Skips re-validating what the engine built (the schema is declared on the route for OpenAPI and checked
    against real responses in the tests).
    """
    payload = result.payload(publication_id, recommender.build.build_id, query.offset, query.k)
    return Response(orjson.dumps(payload), media_type="application/json")
