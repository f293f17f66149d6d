"""FastAPI app: routes translate HTTP to one engine call each; the engine loads in the lifespan."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import metadata
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, HTTPException, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine import EmbeddingCache, Recommender, Settings, expected_model_name, get_settings, open_encoder
from engine.catalog.browse import BrowsePage
from engine.catalog.records import CatalogError, parse_record
from engine.rank.query import InvalidQueryError
from engine.runtime.holder import EngineHolder, ReloadError
from engine.settings import effective_config
from service.dependencies import client_address, get_holder, get_recommender, parse_query
from service.errors import register_error_handlers
from service.fragment import fragment_options
from service.fragment import router as fragment_router
from service.limits import ClientLimits
from service.middleware import HttpCacheMiddleware, RequestGuardMiddleware, route_path
from service.observe import (
    TALLY,
    ObservabilityMiddleware,
    TimedEncoder,
    configure_logging,
    exposition,
    flush_every,
    install_event_metrics,
    note_cache,
)
from service.related import related_query
from service.related import router as related_router
from service.schemas import (
    LIMITED,
    NOT_FOUND,
    UNAVAILABLE,
    BrowseParams,
    BrowseResponse,
    ErrorResponse,
    HealthResponse,
    PublicationOut,
    PublicationSummary,
    ReadyResponse,
    ReloadResponse,
    WriteResponse,
)
from service.web import install_web
from service.work import WorkPool

logger = logging.getLogger("service")
# How late another worker's request counts may reach a scrape (the answering worker's are always exact).
METRICS_FLUSH_SECONDS = 1.0


def create_app(settings: Settings | None = None, holder: EngineHolder | None = None) -> FastAPI:
    """Build the app. Nothing heavy happens here: the model and index load in the lifespan.

    ``holder`` lets tests serve a prepared engine (the lifespan then loads nothing).
    """
    active = settings or get_settings()
    config = effective_config(active)
    if active.log_format is not None:
        configure_logging(active.log_format, active.log_level)
    if active.metrics:
        install_event_metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.info("effective configuration (secrets masked)", extra={"event": "config", "config": config})
        if app.state.holder is None:
            encoder = await run_in_threadpool(open_encoder, active) if active.load_model else None
            if encoder is not None and active.metrics:
                encoder = TimedEncoder(encoder)
            cache = EmbeddingCache.in_folder(active.cache_dir) if encoder is not None else None
            app.state.holder = EngineHolder(active.index_dir, expected_model_name(active), encoder, cache)
            await run_in_threadpool(app.state.holder.try_load)
        app.state.holder.start_following(active.follow_interval, watch=active.watch)
        flushing = asyncio.create_task(flush_every(METRICS_FLUSH_SECONDS)) if active.metrics else None
        try:
            yield
        finally:
            app.state.holder.stop_following()
            if flushing is not None:
                flushing.cancel()
                TALLY.flush()

    app = FastAPI(
        title="Related-content engine",
        version=metadata.version("related-content-engine"),  # pyproject.toml's
        summary="Ranked related publications across languages for a think tank's website and CMS.",
        lifespan=lifespan,
    )
    app.state.holder = holder
    # The CPU-heavy part of requests runs off the event loop in this bounded pool; the expensive anonymous
    # requests are also counted per client address.
    app.state.work = WorkPool(active.work_threads, active.work_queue)
    app.state.limits = ClientLimits(drafts=active.rate_limit_drafts, heavy=active.rate_limit_heavy)
    register_error_handlers(app)
    app.add_middleware(
        HttpCacheMiddleware,
        holder_of=lambda: app.state.holder,
        key_of=cache_key,
        prefixes=("/publications", API_PREFIX + "/publications"),
        max_age=active.cache_max_age,
        cache_size=active.response_cache_size,
        cache_bytes=active.response_cache_bytes,
        on_cache=note_cache if active.metrics else None,
    )
    # Added last, so it runs first: nothing reads a body before it.
    app.add_middleware(RequestGuardMiddleware, max_body=active.max_body_bytes, refuse_write=write_refusal(active))
    if active.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=active.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "If-None-Match"],
            expose_headers=["ETag", "X-Request-ID"],
        )
    # Outermost: every answer, even a refusal by the guard or the cache, is counted, logged and given an id.
    app.add_middleware(
        ObservabilityMiddleware,
        holder_of=lambda: app.state.holder,
        template_of=route_template,
        metrics=active.metrics,
        access_log=active.access_log and active.log_format is not None,
    )

    # Every API route is on one router, served under /v1 and, deprecated, at its old path for one release.
    # The related routes first, so the hottest route is tried before the catalog patterns (none of them ends
    # in /related, so none is shadowed).
    api = APIRouter()
    api.include_router(related_router)
    api.include_router(fragment_router)
    install_web(app)
    admin = require_admin(active)
    admin_errors = {
        401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
        403: {"model": ErrorResponse, "description": "admin endpoints and writes disabled (no token configured)"},
    }

    if active.metrics:

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            """Prometheus metrics: every worker's counters, this worker's index gauges."""
            body, content_type = exposition(lambda: app.state.holder)
            return Response(body, media_type=content_type)

    @api.get("/health", response_model=HealthResponse)
    async def health() -> HealthResponse:
        """Liveness: the process answers (the index may still be loading; see /ready)."""
        return HealthResponse(status="ok")

    @api.get("/ready", response_model=ReadyResponse, responses=UNAVAILABLE)
    async def ready(holder: Annotated[EngineHolder, Depends(get_holder)]) -> ReadyResponse:
        """Readiness: the index in service, its size, model, build and store generation, and this worker."""
        recommender = holder.current
        manifest = recommender.build.manifest  # None only for a build assembled in memory
        return ReadyResponse(
            status="ready",
            publications=len(recommender),
            translation_groups=recommender.group_count,
            model=recommender.index.model,
            build_id=recommender.build.build_id,
            build_time=manifest.build_time if manifest else None,
            loaded_at=holder.loaded_at,
            catalog_hash=manifest.catalog_hash if manifest else None,
            overrides=recommender.overrides.version,
            text_queries=recommender.encoder is not None,
            generation=recommender.generation,
            build_generation=manifest.store_generation if manifest else None,
            changes_since_build=len(recommender.delta),
            pending_build=holder.pending,
            worker=holder.worker,
            serving_since=holder.serving_since,
            fallback=holder.fallback,
            last_error=holder.last_error,
            config=config,
        )

    @api.get(
        "/publications/{publication_id:path}", response_model=PublicationOut, responses={**NOT_FOUND, **UNAVAILABLE}
    )
    async def publication(
        publication_id: str, recommender: Annotated[Recommender, Depends(get_recommender)]
    ) -> PublicationOut:
        """One catalog record, with its other language versions."""
        record = recommender.get(publication_id)
        return PublicationOut(
            **{**asdict(record), "translations": [asdict(t) for t in recommender.translations(publication_id)]}
        )

    @api.get("/publications", response_model=BrowseResponse, responses=LIMITED)
    async def publications(
        request: Request,
        recommender: Annotated[Recommender, Depends(get_recommender)],
        params: Annotated[BrowseParams, Query()],
    ) -> BrowseResponse:
        """Browse the catalog, newest first, with a simple accent-insensitive title search."""
        request.app.state.limits.check("heavy", client_address(request))

        def one_page() -> BrowsePage:
            # In the pool, browser included: right after a write it may still have to be built.
            return recommender.browser.page(
                query=params.query,
                languages=params.language,
                types=params.type,
                limit=params.limit,
                offset=params.offset,
            )

        page = await request.app.state.work.run(one_page)
        items = [
            PublicationSummary(**{k: v for k, v in asdict(p).items() if k in PublicationSummary.model_fields})
            for p in page.items
        ]
        return BrowseResponse(total=page.total, offset=params.offset, limit=params.limit, items=items)

    @api.post(
        "/admin/reload",
        response_model=ReloadResponse,
        responses={
            **admin_errors,
            409: {"model": ErrorResponse, "description": "the new index was refused; the old one is still served"},
        },
        dependencies=[Depends(admin)],
    )
    async def reload(holder: Annotated[EngineHolder, Depends(get_holder)]) -> ReloadResponse:
        """Load the index folder's current build in the background and swap it in atomically, in this worker
        and then (within a second) in every other."""
        try:
            report = await run_in_threadpool(holder.reload, everywhere=True)
        except ReloadError as exc:
            raise HTTPException(409, detail=f"reload refused, the previous index is still served: {exc}") from None
        return ReloadResponse(**{**asdict(report), "warnings": list(report.warnings)})

    write_errors = {
        **admin_errors,
        400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
        503: {
            "model": ErrorResponse,
            "description": "no index or no model loaded, or the catalog store busy (Retry-After) or unwritable "
            "(nothing written)",
        },
    }

    @api.post("/publications", response_model=WriteResponse, responses=write_errors, dependencies=[Depends(admin)])
    def upsert_publications(
        body: Annotated[list[dict[str, Any]] | dict[str, Any], Body(description="one catalog record or a list")],
        holder: Annotated[EngineHolder, Depends(get_holder)],
    ) -> WriteResponse:
        """Add or replace publications (catalog format); only they are encoded. Committed to the catalog store when
        acknowledged, and served by every worker within a second."""
        records = body if isinstance(body, list) else [body]
        publications = []
        for number, record in enumerate(records):
            try:
                publications.append(parse_record(record, "request body", number + 1))
            except CatalogError as exc:
                raise RequestValidationError(
                    [{"type": "value_error", "loc": ["body", number, exc.field], "msg": exc.message, "input": None}]
                ) from None
        if len({p.id for p in publications}) != len(publications):
            raise RequestValidationError(
                [{"type": "value_error", "loc": ["body", "id"], "msg": "duplicate ids in one request", "input": None}]
            )
        return WriteResponse(**asdict(holder.write(upserts=publications)))

    def method_not_allowed(allow: str) -> Callable[..., None]:
        def handler() -> None:
            raise HTTPException(status_code=405, detail="method not allowed", headers={"Allow": allow})

        return handler

    # Ids may hold slashes, so e.g. DELETE /publications/x/related would otherwise reach the delete route,
    # and Starlette's own 405s list only the first route's methods: answer every other method here.
    for path, allow in (
        ("/publications/{publication_id:path}/related", "GET"),
        ("/publications/{publication_id:path}/related.html", "GET"),
        ("/publications/{publication_id:path}", "GET, DELETE"),
        ("/publications", "GET, POST"),
    ):
        others = [m for m in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS") if m not in allow.split(", ")]
        api.add_api_route(path, method_not_allowed(allow), methods=others, include_in_schema=False)

    @api.delete(
        "/publications/{publication_id:path}",
        response_model=WriteResponse,
        responses={**write_errors, **NOT_FOUND},
        dependencies=[Depends(admin)],
    )
    def delete_publication(publication_id: str, holder: Annotated[EngineHolder, Depends(get_holder)]) -> WriteResponse:
        """Remove a publication from the catalog and the index. Committed to the catalog store when acknowledged,
        and served by every worker within a second."""
        return WriteResponse(**asdict(holder.write(deletes=[publication_id])))

    app.include_router(api, prefix=API_PREFIX, generate_unique_id_function=lambda route: route.name)
    app.include_router(api, deprecated=True, generate_unique_id_function=lambda route: f"{route.name}_unversioned")
    return app


API_PREFIX = "/v1"
RELATED_ROUTE = "/publications/{publication_id:path}/related"
FRAGMENT_ROUTE = "/publications/{publication_id:path}/related.html"
RECORD_ROUTE = "/publications/{publication_id:path}"


def route_template(scope: dict[str, Any]) -> str:
    """A request's route, as a metrics label and in log lines: the template, never the path (an id would
    make a label per publication), with its API version. Also for answers given before routing."""
    path = route_path(scope)
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        version = _version(path)
        return route.path if route.path.startswith(version) else version + route.path
    return _path_template(path)


def _version(path: str) -> str:
    return API_PREFIX if path.startswith(API_PREFIX + "/") else ""


def _path_template(path: str) -> str:
    """The route template a path falls under, with its version (before or without routing)."""
    version = _version(path)
    path = path.removeprefix(version)
    if path.startswith("/publications/"):
        suffix = next((s for s in ("/related", "/related.html") if path.endswith(s)), "")
        return version + {"": RECORD_ROUTE, "/related": RELATED_ROUTE, "/related.html": FRAGMENT_ROUTE}[suffix]
    if path in ("/publications", "/related", "/admin/reload"):
        return version + path
    return "unmatched"


def cache_key(scope: dict[str, Any]) -> tuple[str, str] | None:
    """A GET's route template and response-cache key: its path and validated, normalised query, without
    unknown parameters (so ``?junk=1`` and ``?junk=2`` share one entry); None when the query is invalid (the
    route answers it)."""
    path = route_path(scope)
    template = _path_template(path)
    query_string = scope["query_string"]
    # repr of a tuple quotes the path, so no path (an id may hold "?" or "/related") spells another's key.
    try:
        if template.endswith(RELATED_ROUTE):
            return template, repr(("related", path, related_query(query_string)))
        if template.endswith(FRAGMENT_ROUTE):
            return template, repr(("fragment", path, related_query(query_string), fragment_options(query_string)))
        if template.endswith("/publications"):
            return template, repr(("browse", parse_query(BrowseParams, query_string)))
    except (RequestValidationError, InvalidQueryError):
        return None
    return template, repr(("record", path))  # one record: its path is all there is


def bearer_refusal(settings: Settings, authorization: str | None) -> tuple[int, str, dict[str, str]] | None:
    """Why a request is refused for its credentials (status, detail, headers), or None when its bearer token
    is the configured one (compared in constant time). No configured token: admin and writes are disabled."""
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not token:
        return 403, "admin endpoints are disabled: set RCE_ADMIN_TOKEN to enable", {}
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        return 401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"}
    return None


def write_refusal(settings: Settings) -> Callable[[str, str, str | None], tuple | None]:
    """For :class:`RequestGuardMiddleware`: refuses admin calls and catalog writes without a valid token,
    before their body is read. The routes check the same through :func:`require_admin`."""

    def refuse(method: str, path: str, authorization: str | None) -> tuple | None:
        path = path.removeprefix(API_PREFIX)
        protected = (method == "POST" and (path.startswith("/admin/") or path == "/publications")) or (
            method == "DELETE"
            and path.startswith("/publications/")
            and not path.endswith(("/related", "/related.html"))
        )
        return bearer_refusal(settings, authorization) if protected else None

    return refuse


# Declared in OpenAPI as an HTTP bearer scheme, so generated clients send the token; checked by bearer_refusal.
ADMIN_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="The service's RCE_ADMIN_TOKEN, for /v1/admin/* and catalog writes.",
)


def require_admin(settings: Settings) -> Callable[..., None]:
    """Dependency factory: the bearer token of admin routes and writes (see :func:`bearer_refusal`)."""

    def check(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(ADMIN_BEARER)] = None) -> None:
        authorization = f"{credentials.scheme} {credentials.credentials}" if credentials is not None else None
        refusal = bearer_refusal(settings, authorization)
        if refusal is not None:
            status, detail, headers = refusal
            raise HTTPException(status_code=status, detail=detail, headers=headers or None)

    return check
