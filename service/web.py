"""The demo page and the embeddable widget: static files that read the public JSON API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


def install_web(app: FastAPI) -> None:
    """Serve ``/`` (the related-content page), ``/widget.js``, ``/related.css`` and ``/static/*``."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    @router.get("/widget.js")
    def widget() -> FileResponse:
        # Short cache: sites embed a fixed URL, and fixes should reach them within minutes.
        return FileResponse(
            STATIC / "widget.js",
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    @router.get("/related.css")
    def stylesheet() -> FileResponse:
        return FileResponse(
            STATIC / "related.css",
            media_type="text/css; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300"},
        )

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
