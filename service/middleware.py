"""HTTP-only concerns as plain ASGI middleware (no per-request task or body copy, unlike Starlette's
BaseHTTPMiddleware, which cost several milliseconds a request here): conditional GETs (ETag /
If-None-Match) and the request body limit."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from engine.runtime import EngineHolder

CACHED_PREFIX = "/publications"
_MAX_CACHED_BODY = 256_000
Scope = dict[str, Any]
Message = dict[str, Any]


class HttpCacheMiddleware:
    """ETag + Cache-Control on catalog and related GETs, 304 on a matching If-None-Match; 413 on big bodies.

    Also keeps the last ``cache_size`` such responses in memory, keyed like the ETag (build, overrides,
    URL), so a popular publication page costs a dictionary lookup: answers cannot go stale, since a new
    build or overrides file changes the key. Runs on the event loop only, so it needs no lock.
    """

    def __init__(
        self,
        app: Any,
        holder_of: Callable[[], EngineHolder | None],
        max_age: int,
        max_body: int,
        cache_size: int = 0,
    ) -> None:
        self.app = app
        self.holder_of = holder_of
        self.cache_control = f"public, max-age={max_age}".encode()
        self.max_body = max_body
        self.cache_size = cache_size
        self._responses: OrderedDict[bytes, tuple[list, bytes]] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            detail = f"request body of {int(length)} bytes is over the limit of {self.max_body} bytes"
            await _send_json(send, 413, {"detail": detail})
            return
        holder = self.holder_of()
        if scope["method"] != "GET" or not scope["path"].startswith(CACHED_PREFIX) or not holder or not holder.ready:
            await self.app(scope, receive, send)
            return
        # The answer depends only on the index build, the overrides and the URL: that is the validator.
        key = f"{holder.current.version}|{scope['path']}|{scope['query_string'].decode('latin-1')}"
        etag = f'W/"{hashlib.sha256(key.encode()).hexdigest()[:24]}"'.encode()
        extra = [(b"etag", etag), (b"cache-control", self.cache_control)]
        if etag in _etags(headers.get(b"if-none-match", b"")):
            await send({"type": "http.response.start", "status": 304, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return
        cached = self._responses.get(etag)
        if cached is not None:
            self._responses.move_to_end(etag)
            await send({"type": "http.response.start", "status": 200, "headers": cached[0]})
            await send({"type": "http.response.body", "body": cached[1]})
            return
        start: Message = {}
        chunks: list[bytes] = []

        async def send_with_validators(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 200:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                start = message
            elif message["type"] == "http.response.body" and start and self.cache_size:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._remember(etag, start["headers"], b"".join(chunks))
            await send(message)

        await self.app(scope, receive, send_with_validators)

    def _remember(self, key: bytes, headers: list, body: bytes) -> None:
        if len(body) > _MAX_CACHED_BODY:
            return
        self._responses[key] = (headers, body)
        while len(self._responses) > self.cache_size:
            self._responses.popitem(last=False)


async def _send_json(send: Callable, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _etags(header: bytes) -> set[bytes]:
    tags = {tag.strip() for tag in header.split(b",") if tag.strip()}
    # Weak comparison (RFC 9110): W/"x" and "x" match.
    return tags | {t[2:] for t in tags if t.startswith(b"W/")} | {b"W/" + t for t in tags if not t.startswith(b"W/")}
