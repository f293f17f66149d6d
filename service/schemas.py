"""Response models of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RelatedItemOut(BaseModel):
    """One related publication, ranked."""

    id: str
    title: str
    language: str | None
    type: str | None
    published: str | None = Field(description="ISO date YYYY-MM-DD")
    url: str | None
    score: float = Field(description="cosine similarity to the query publication")
    rank: int = Field(ge=1)


class RelatedResponse(BaseModel):
    """Related items for one publication."""

    id: str
    items: list[RelatedItemOut]


class HealthResponse(BaseModel):
    """Liveness plus a summary of the index in service."""

    status: str
    publications: int
    model: str
    build_id: str | None
    build_time: str | None


class ErrorResponse(BaseModel):
    """Error body (FastAPI's ``detail``)."""

    detail: str
