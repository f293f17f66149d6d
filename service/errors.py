"""Domain errors -> HTTP errors, in one place, so routes stay one engine call each."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from engine import InvalidQueryError, UnknownPublicationError
from engine.index.catalog_store import StoreBusyError, StoreUnavailableError
from engine.rank.recommend import EncoderUnavailableError, TextTooLongError
from engine.runtime.holder import NotReadyError
from engine.runtime.writes import WriteRejectedError
from service.limits import RateLimitedError
from service.work import BusyError


def register_error_handlers(app: FastAPI) -> None:
    """Map engine exceptions to status codes with a fixed ``detail`` shape."""

    @app.exception_handler(UnknownPublicationError)
    async def unknown(_: Request, exc: UnknownPublicationError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(InvalidQueryError)
    async def invalid(_: Request, exc: InvalidQueryError) -> JSONResponse:
        # Same shape as FastAPI's own 422s, so clients parse one format.
        error = {"type": "value_error", "loc": ["query", exc.parameter], "msg": exc.message, "input": None}
        return JSONResponse({"detail": [error]}, status_code=422)

    @app.exception_handler(TextTooLongError)
    async def too_long(_: Request, exc: TextTooLongError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(WriteRejectedError)
    async def bad_write(_: Request, exc: WriteRejectedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(NotReadyError)
    async def not_ready(_: Request, exc: NotReadyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(StoreBusyError)
    async def store_busy(_: Request, exc: StoreBusyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StoreUnavailableError)
    async def store_unavailable(_: Request, exc: StoreUnavailableError) -> JSONResponse:
        # A full or read-only disk, or a damaged store: the message names the path; nothing was written.
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(BusyError)
    async def busy(_: Request, exc: BusyError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(RateLimitedError)
    async def limited(_: Request, exc: RateLimitedError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=429, headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(EncoderUnavailableError)
    async def no_model(_: Request, exc: EncoderUnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)
