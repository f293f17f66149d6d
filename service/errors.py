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

# Errors whose message is the whole answer: their status. Those with a ``retry_after`` also say when to retry.
_STATUS = {
    UnknownPublicationError: 404,
    TextTooLongError: 413,
    WriteRejectedError: 422,
    RateLimitedError: 429,
    NotReadyError: 503,
    BusyError: 503,
    StoreBusyError: 503,
    # A full or read-only disk, or a damaged store: the message names the path; nothing was written.
    StoreUnavailableError: 503,
    EncoderUnavailableError: 503,
}


def register_error_handlers(app: FastAPI) -> None:
    """Map engine exceptions to status codes with a fixed ``detail`` shape."""

    async def plain(_: Request, exc: Exception) -> JSONResponse:
        retry_after = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        status = next(code for error, code in _STATUS.items() if isinstance(exc, error))
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    for error in _STATUS:
        app.add_exception_handler(error, plain)

    @app.exception_handler(InvalidQueryError)
    async def invalid(_: Request, exc: InvalidQueryError) -> JSONResponse:
        # Same shape as FastAPI's own 422s, so clients parse one format.
        error = {"type": "value_error", "loc": ["query", exc.parameter], "msg": exc.message, "input": None}
        return JSONResponse({"detail": [error]}, status_code=422)
