"""FastAPI app: the index loads in the lifespan and reaches routes through a dependency."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request

from engine import Recommender, Settings, UnknownPublicationError, expected_model_name, get_settings, load_recommender
from service.schemas import ErrorResponse, HealthResponse, RelatedResponse

logger = logging.getLogger("service")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = settings or get_settings()
        app.state.recommender = load_recommender(active.index_dir, expected_model_name(active))
        logger.info("serving %d publications from %s", len(app.state.recommender), active.index_dir)
        yield

    app = FastAPI(title="Related-content engine", version="0.1.0", lifespan=lifespan)

    @app.get("/health", response_model=HealthResponse)
    def health(recommender: Annotated[Recommender, Depends(get_recommender)]) -> HealthResponse:
        """Liveness, and which index is in service."""
        manifest = recommender.manifest
        return HealthResponse(
            status="ok",
            publications=len(recommender),
            model=manifest.get("model", ""),
            build_id=manifest.get("build_id"),
            build_time=manifest.get("build_time"),
        )

    @app.get(
        "/publications/{publication_id}/related",
        response_model=RelatedResponse,
        responses={404: {"model": ErrorResponse, "description": "unknown publication id"}},
    )
    def related(
        publication_id: str,
        recommender: Annotated[Recommender, Depends(get_recommender)],
        k: Annotated[int, Query(ge=1, le=100, description="number of items")] = 10,
        include_translations: Annotated[bool, Query(description="keep other language versions")] = False,
        language: Annotated[list[str] | None, Query(description="keep only these languages")] = None,
        types: Annotated[list[str] | None, Query(alias="type", description="keep only these types")] = None,
    ) -> RelatedResponse:
        """Publications related to ``publication_id``, across languages, best first."""
        try:
            items = recommender.related(
                publication_id, k, include_translations=include_translations, languages=language, types=types
            )
        except UnknownPublicationError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return RelatedResponse(id=publication_id, items=[asdict(item) for item in items])

    return app


def get_recommender(request: Request) -> Recommender:
    """Dependency: the recommender loaded at startup (tests override it)."""
    return request.app.state.recommender
