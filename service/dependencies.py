"""What routes take from a request: the engine holder, the recommender in service, the client's address and
query models parsed from the query string."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import QueryParams

from engine import Recommender
from engine.runtime.holder import EngineHolder
from service.middleware import PINNED_RECOMMENDER

ModelT = TypeVar("ModelT", bound=BaseModel)


async def get_holder(request: Request) -> EngineHolder:
    """Dependency: the engine holder created in the lifespan (or given to ``create_app``)."""
    return request.app.state.holder


async def get_recommender(request: Request) -> Recommender:
    """Dependency: the recommender in service for this whole request (a reload cannot swap it mid-request)."""
    return recommender_of(request)


def recommender_of(request: Request) -> Recommender:
    """The recommender in service, or the one the cache middleware keyed this request's ETag with, so a reload
    in between cannot file one build's answer under another's key."""
    pinned = request.scope.get("state", {}).get(PINNED_RECOMMENDER)
    return pinned if pinned is not None else request.app.state.holder.current


def client_address(request: Request) -> str | None:
    """The client's address, as rate limits count it (a proxy's, unless uvicorn trusts its forwarded headers)."""
    return request.client.host if request.client else None


def parse_query(model: type[ModelT], query_string: bytes) -> ModelT:
    """``model``'s parameters from a raw query string; unknown parameters are ignored. Errors keep FastAPI's 422
    shape (``loc`` = ``["query", name]``)."""
    given = QueryParams(query_string)
    data = {
        name: given.getlist(name) if field.annotation == list[str] else given[name]
        for name, field in model.model_fields.items()
        if name in given
    }
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("query", *e["loc"])} for e in errors]) from None
