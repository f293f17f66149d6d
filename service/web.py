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
        return _embedded(STATIC / "widget.js", "text/javascript; charset=utf-8")

    @router.get("/related.css")
    def stylesheet() -> FileResponse:
        return _embedded(STATIC / "related.css", "text/css; charset=utf-8")

    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _embedded(path: Path, media_type: str) -> FileResponse:
    """A file other sites load from a fixed URL: a short cache, so fixes reach them within minutes."""
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=300"})
