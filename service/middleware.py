"""HTTP-only concerns: conditional GETs (ETag / If-None-Match) and the request body limit."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from engine.runtime import EngineHolder

CACHED_PREFIX = "/publications"


def install_middleware(app: FastAPI, holder_of: Callable[[], EngineHolder | None], max_age: int, max_body: int) -> None:
    """ETag + Cache-Control on catalog and related GETs, 304 on a matching If-None-Match; 413 on big bodies."""

    @app.middleware("http")
    async def conditional_get(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body:
            return JSONResponse(
                {"detail": f"request body of {length} bytes is over the limit of {max_body} bytes"}, status_code=413
            )
        holder = holder_of()
        if request.method != "GET" or not request.url.path.startswith(CACHED_PREFIX) or not holder or not holder.ready:
            return await call_next(request)
        # The answer depends only on the index build, the overrides and the URL: that is the validator.
        key = f"{holder.current.version}|{request.url.path}|{request.url.query}"
        etag = f'W/"{hashlib.sha256(key.encode()).hexdigest()[:24]}"'
        headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
        if etag in _etags(request.headers.get("if-none-match", "")):
            return Response(status_code=304, headers=headers)
        response = await call_next(request)
        if response.status_code == 200:
            response.headers.update(headers)
        return response


def _etags(header: str) -> set[str]:
    tags = {tag.strip() for tag in header.split(",") if tag.strip()}
    # Weak comparison (RFC 9110): W/"x" and "x" match.
    return tags | {t[2:] for t in tags if t.startswith("W/")} | {f"W/{t}" for t in tags if not t.startswith("W/")}
