"""HTTP-only concerns as plain ASGI middleware (no per-request task or body copy, unlike Starlette's
BaseHTTPMiddleware, which cost more than the related route itself: docs/performance.md).

:class:`RequestGuardMiddleware` stands in front of everything: HEAD as GET without a body, the bearer token of
write routes checked before their body is read, and bodies read from the stream up to the limit (chunked or
not) and checked to be JSON before any route parses them. :class:`HttpCacheMiddleware` answers conditional
GETs (ETag, If-None-Match) and keeps recent answers in memory.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from engine.runtime.holder import EngineHolder

Scope = dict[str, Any]
Message = dict[str, Any]
# Methods whose request carries a body our routes read.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_CACHED_BODY = 256_000
# Where the cache middleware leaves the recommender it keyed a request with (in ``scope["state"]``).
PINNED_RECOMMENDER = "rce_recommender"


def route_path(scope: Scope) -> str:
    """The path as the routes see it: without the ``root_path`` a proxy mounts the service under."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestGuardMiddleware:
    """HEAD on every GET route, tokens before bodies, and body limits on the stream.

    ``refuse_write(method, path, authorization)`` returns ``(status, detail, headers)`` when a request must be
    refused for its credentials (a write without a valid token), or None; such a request is answered without
    reading a byte of its body. Any other body is read up to ``max_body`` bytes: one byte more and the answer
    is 413 (the rest is never read: the connection is closed). A body that is not JSON (bad syntax, invalid
    UTF-8, a lone surrogate) gets a 400 naming the problem.
    """

    def __init__(self, app: Any, max_body: int, refuse_write: Callable[[str, str, str | None], tuple | None]) -> None:
        self.app = app
        self.max_body = max_body
        self.refuse_write = refuse_write

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            # Every GET route answers HEAD: the same status and headers, no body. A copy of the scope: uvicorn
            # reads the method in its own to send no body. The route found is handed back for the outer
            # middleware (metrics and logs by route).
            as_get = {**scope, "method": "GET"}
            try:
                await self.app(as_get, receive, _without_body(send))
            finally:
                if "route" in as_get:
                    scope["route"] = as_get["route"]
            return
        headers = dict(scope["headers"])
        reads_body = scope["method"] in _BODY_METHODS
        if reads_body:
            authorization = headers.get(b"authorization")
            refusal = self.refuse_write(
                scope["method"], route_path(scope), authorization.decode("latin-1") if authorization else None
            )
            if refusal is not None:
                status, detail, extra = refusal
                await _refuse(send, status, detail, extra)
                return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await _refuse(send, 413, self._over(int(length)))
            return
        if not reads_body:
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(send, 413, self._over(size, streamed=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                await _refuse(send, 400, f"the body is not valid JSON: {exc}", close=False)
                return
        await self.app(scope, _replay(body, receive), send)

    def _over(self, size: int, streamed: bool = False) -> str:
        got = f"more than {self.max_body} bytes (read so far: {size})" if streamed else f"{size} bytes"
        return f"request body of {got} is over the limit of {self.max_body} bytes"


class HttpCacheMiddleware:
    """ETag + Cache-Control on catalog and related GETs, 304 on a matching If-None-Match; a response cache.

    ``key_of(scope)`` gives a GET's route template and cache key (its path and validated, normalised query;
    unknown parameters are not part of it), or None when the request is not cacheable (an invalid query: the
    route answers it). ``on_cache(scope, result, route)`` hears of every hit, miss and 304 (metrics).
    The last answers are kept in memory, at most ``cache_size`` of them and ``cache_bytes`` bytes of bodies,
    keyed like the ETag (build, overrides, key): answers cannot go stale, since a new build or overrides file
    changes the key. ``If-None-Match: *`` gets a 304 whenever there is a representation (any GET that would
    answer 200). Runs on the event loop only, so it needs no lock.
    """

    def __init__(
        self,
        app: Any,
        holder_of: Callable[[], EngineHolder | None],
        key_of: Callable[[Scope], tuple[str, str] | None],
        max_age: int,
        cache_size: int = 0,
        cache_bytes: int = 0,
        prefixes: tuple[str, ...] = ("/publications",),
        on_cache: Callable[[Scope, str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.on_cache = on_cache or (lambda scope, result, route: None)
        self.holder_of = holder_of
        self.key_of = key_of
        self.cache_control = f"public, max-age={max_age}".encode()
        self.cache_size = cache_size
        self.cache_bytes = cache_bytes
        self.prefixes = prefixes
        self._responses: OrderedDict[bytes, tuple[list, bytes]] = OrderedDict()
        self._bytes = 0

    @property
    def cached_bytes(self) -> int:
        """Bytes of response bodies held in the cache."""
        return self._bytes

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        conditions = _etags(dict(scope["headers"]).get(b"if-none-match", b""))
        any_tag = b"*" in conditions
        holder = self.holder_of()
        keyed = self.key_of(scope) if route_path(scope).startswith(self.prefixes) and holder and holder.ready else None
        if keyed is None:
            await self.app(scope, receive, _as_not_modified(send, []) if any_tag else send)
            return
        route, key = keyed
        recommender = holder.current
        scope.setdefault("state", {})[PINNED_RECOMMENDER] = recommender  # the route answers from this one
        # The answer depends only on the index build, the overrides and the normalised query: the validator.
        etag = f'W/"{hashlib.sha256(f"{recommender.version}|{key}".encode()).hexdigest()[:24]}"'.encode()
        extra = [(b"etag", etag), (b"cache-control", self.cache_control)]
        cached = self._responses.get(etag)
        if etag in conditions or (any_tag and cached is not None):
            self.on_cache(scope, "not_modified", route)
            await send({"type": "http.response.start", "status": 304, "headers": extra})
            await send({"type": "http.response.body", "body": b""})
            return
        if cached is not None:
            self.on_cache(scope, "hit", route)
            self._responses.move_to_end(etag)
            await send({"type": "http.response.start", "status": 200, "headers": cached[0]})
            await send({"type": "http.response.body", "body": cached[1]})
            return
        self.on_cache(scope, "miss", route)
        start: Message = {}
        chunks: list[bytes] = []

        async def send_with_validators(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] == 200:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                start = message
            elif message["type"] == "http.response.body" and start and self.cache_size and self.cache_bytes:
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._remember(etag, start["headers"], b"".join(chunks))
            await send(message)

        await self.app(
            scope, receive, _as_not_modified(send_with_validators, extra) if any_tag else send_with_validators
        )

    def _remember(self, key: bytes, headers: list, body: bytes) -> None:
        if len(body) > min(_MAX_CACHED_BODY, self.cache_bytes) or key in self._responses:
            return
        self._responses[key] = (headers, body)
        self._bytes += len(body)
        while len(self._responses) > self.cache_size or self._bytes > self.cache_bytes:
            _, (_, dropped) = self._responses.popitem(last=False)
            self._bytes -= len(dropped)


def _without_body(send: Callable) -> Callable:
    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return send_headers_only


def _as_not_modified(send: Callable, extra: list) -> Callable:
    """A ``send`` that turns a 200 into a 304 without body (``If-None-Match: *`` and a representation)."""
    passing = True

    async def send_or_304(message: Message) -> None:
        nonlocal passing
        if message["type"] == "http.response.start" and message["status"] == 200:
            passing = False
            kept = [(k, v) for k, v in message.get("headers", []) if k.lower() in (b"etag", b"cache-control")]
            await send({"type": "http.response.start", "status": 304, "headers": kept or extra})
            await send({"type": "http.response.body", "body": b""})
        elif passing:
            await send(message)

    return send_or_304


def _replay(body: bytes, receive: Callable) -> Callable:
    """A ``receive`` that gives the app the body already read, then whatever comes next (a disconnect)."""
    given = False

    async def receive_body() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_body


async def _refuse(
    send: Callable, status: int, detail: str, headers: dict[str, str] | None = None, close: bool = True
) -> None:
    """A JSON error answered by the middleware; ``close`` ends the connection, so an unread body is never read."""
    payload = orjson.dumps({"detail": detail})
    sent = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    sent += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        sent.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": payload})


def _etags(header: bytes) -> set[bytes]:
    tags = {tag.strip() for tag in header.split(b",") if tag.strip()}
    # Weak comparison (RFC 9110): W/"x" and "x" match.
    return tags | {t[2:] for t in tags if t.startswith(b"W/")} | {b"W/" + t for t in tags if not t.startswith(b"W/")}
