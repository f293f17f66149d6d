"""What an operator watches: Prometheus metrics at ``/metrics``, one log line per request and per engine
event (JSON or text), and a request id on every answer.

Metrics are prometheus-client's. Under several uvicorn workers each one writes its counters to the folder
named by ``PROMETHEUS_MULTIPROC_DIR`` (``scripts/serve.py`` makes one per run) and a scrape of any worker sums
them all (the library's multiprocess mode). What describes the index in service (publications, build, age)
is read at scrape time from the answering worker: every worker serves the same build within a second.
"""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from pythonjsonlogger.json import JsonFormatter

from engine import events
from engine.runtime.holder import EngineHolder

# One histogram counts and times the requests: its _count is the request count by route, method and status
# (a separate counter cost 2.8 us more a request, 2 % of a cached related answer: docs/deploy.md).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY = Histogram(
    "rce_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer; its _count: the requests answered.",
    ["route", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
RESPONSE_CACHE = Counter(
    "rce_response_cache", "GET answers by the response cache: hit, miss (computed) or not_modified (304).", ["result"]
)
RELATED_LISTS = Counter(
    "rce_related_lists",
    "Related lists of catalog items, by how they were found: neighbour_lists (stored) or index_search (live).",
    ["source"],
)
RELOADS = Counter("rce_reloads", "Reloads of the build in service, by outcome (ok, failed).", ["outcome"])
WRITES = Counter("rce_written_publications", "Publications written through the API, by change.", ["change"])
ENCODER_CALLS = Counter("rce_encoder_calls", "Calls of the embedding model (drafts, API writes).")
ENCODED_TEXTS = Counter("rce_encoded_texts", "Texts encoded by the embedding model.")
ENCODER_SECONDS = Histogram(
    "rce_encoder_seconds",
    "Time of one call of the embedding model.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
# A request id from the client is kept if it looks like one (no header injection, no unbounded label).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TRACE = "rce_trace"  # where a request's trace dict sits in scope["state"] (shared by every copy of the scope)
access_logger = logging.getLogger("service.access")


def on_event(event: str, fields: dict[str, Any]) -> None:
    """Count the engine's events (engine/events.py)."""
    if event == "reload":
        RELOADS.labels(fields.get("outcome", "ok")).inc()
    elif event == "write":
        WRITES.labels("upsert").inc(fields.get("upserted", 0))
        WRITES.labels("delete").inc(fields.get("deleted", 0))


class Tally:
    """What requests count, kept in plain Python on the event loop and added to the metrics by :meth:`flush`
    (every second, and before a scrape). In the multiprocess mode each metric update is a locked write to a
    shared file, 3-6 us; per request they cost 10 % of a cached related answer (docs/deploy.md)."""

    def __init__(self) -> None:
        self.latency: dict[tuple[str, str, int], list[float]] = {}  # [sum, count per bucket..., +Inf]
        self.cache: dict[str, int] = {}
        self.related: dict[bool, int] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        entry = self.latency.get((route, method, status))
        if entry is None:
            entry = self.latency[(route, method, status)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        entry[0] += seconds
        entry[1 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        """Add what was counted since the last flush to the metrics."""
        latency, self.latency = self.latency, {}
        cache, self.cache = self.cache, {}
        related, self.related = self.related, {}
        for (route, method, status), entry in latency.items():
            child = LATENCY.labels(route, method, str(status))
            # prometheus-client has no public call to add many observations at once: its sum and bucket values
            # take the aggregated counts (each bucket holds its own count; the exposition accumulates them).
            child._sum.inc(entry[0])
            for bucket, count in enumerate(entry[1:]):
                if count:
                    child._buckets[bucket].inc(count)
        for result, count in cache.items():
            RESPONSE_CACHE.labels(result).inc(count)
        for searched, count in related.items():
            RELATED_LISTS.labels("index_search" if searched else "neighbour_lists").inc(count)


TALLY = Tally()


async def flush_every(seconds: float) -> None:
    """Flush :data:`TALLY` every ``seconds`` (a task of the app's lifespan, on the event loop)."""
    while True:
        await asyncio.sleep(seconds)
        TALLY.flush()


def count_related(searched: bool) -> None:
    """One related list of a catalog item was served."""
    TALLY.related[searched] = TALLY.related.get(searched, 0) + 1


class TimedEncoder:
    """The service's encoder, counted and timed (drafts and API writes call it; requests by id never do)."""

    def __init__(self, encoder: Any) -> None:
        self._encoder = encoder

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, texts: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._encoder.encode(texts, **options)
        finally:
            ENCODER_SECONDS.observe(time.perf_counter() - started)
            ENCODER_CALLS.inc()
            ENCODED_TEXTS.inc(len(texts))


class IndexCollector:
    """Gauges of the index this worker serves, read at scrape time."""

    def __init__(self, holder_of: Callable[[], EngineHolder | None]) -> None:
        self.holder_of = holder_of

    def collect(self) -> Iterator[Any]:
        holder = self.holder_of()
        ready = holder is not None and holder.ready
        yield GaugeMetricFamily("rce_ready", "1 when an index is in service.", value=1 if ready else 0)
        if not ready:
            return
        recommender = holder.current
        manifest = recommender.build.manifest
        yield GaugeMetricFamily("rce_index_publications", "Publications in service.", value=len(recommender))
        yield GaugeMetricFamily(
            "rce_index_translation_groups", "Translation groups in service.", value=recommender.group_count
        )
        yield GaugeMetricFamily(
            "rce_store_generation", "Catalog store generation in service.", value=recommender.generation
        )
        yield GaugeMetricFamily(
            "rce_changes_since_build", "API writes served beside the build.", value=len(recommender.delta)
        )
        yield InfoMetricFamily(
            "rce_build",
            "The build in service.",
            value={"build_id": recommender.build.build_id, "model": recommender.index.model},
        )
        if manifest is not None and manifest.build_time:
            built = dt.datetime.fromisoformat(manifest.build_time)
            if built.tzinfo is None:
                built = built.replace(tzinfo=dt.UTC)
            age = (dt.datetime.now(dt.UTC) - built).total_seconds()
            yield GaugeMetricFamily("rce_build_age_seconds", "Seconds since the build in service was made.", value=age)


class _ThisProcess:
    """The default registry's metrics (one process: no multiprocess folder)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def exposition(holder_of: Callable[[], EngineHolder | None]) -> tuple[bytes, str]:
    """The body and content type of a scrape: every worker's counters and this worker's index gauges."""
    TALLY.flush()  # this worker's counts are exact; the others' are at most a flush interval behind
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(IndexCollector(holder_of))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's ``X-Request-ID`` when it is a plausible id, else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
            break
    return uuid.uuid4().hex


class ObservabilityMiddleware:
    """Outermost: gives every request an id (``X-Request-ID``, echoed), counts and times it by route
    template (``template_of(scope)``, after the request) and status, and logs one line for it. Never reads
    bodies, query strings or headers but the id."""

    def __init__(
        self,
        app: Any,
        holder_of: Callable[[], EngineHolder | None],
        template_of: Callable[[dict[str, Any]], str],
        *,
        metrics: bool,
        access_log: bool,
    ) -> None:
        self.app = app
        self.holder_of = holder_of
        self.template_of = template_of
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = scope["method"]
        request_id = request_id_of(scope["headers"])
        trace: dict[str, Any] = {}
        scope.setdefault("state", {})[TRACE] = trace
        status = 500
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            logged = self.access_log and access_logger.isEnabledFor(logging.INFO)
            template = (trace.get("route") or self.template_of(scope)) if self.metrics or logged else ""
            if self.metrics:
                TALLY.request(template, method, status, seconds)
            if logged:
                holder = self.holder_of()
                build_id = holder.current.build.build_id if holder is not None and holder.ready else None
                access_logger.info(
                    "%s %s %d %.1f ms",
                    method,
                    template,
                    status,
                    seconds * 1000,
                    extra={
                        "event": "request",
                        "method": method,
                        "route": template,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 3),
                        "request_id": request_id,
                        "build_id": build_id,
                        **({"cache": trace["cache"]} if "cache" in trace else {}),
                    },
                )


def note_cache(scope: dict[str, Any], result: str, route: str) -> None:
    """The response cache answered (or will compute) this request: counted, and named in its log line."""
    trace = scope.get("state", {}).get(TRACE)
    if trace is not None:
        trace["cache"] = result
        trace.setdefault("route", route)
    TALLY.cache[result] = TALLY.cache.get(result, 0) + 1


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class _TextFormatter(logging.Formatter):
    """Text lines with the event's fields after the message (key=value), for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        return line + "".join(f" {k}={v}" for k, v in fields.items() if v is not None)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is written (as logging's last-resort handler)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def reset_logging() -> None:
    """Undo :func:`configure_logging`: its handler removed, the root level and uvicorn's loggers as before."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "rce", False)]
    for handler in ours:
        root.removeHandler(handler)
    if ours:
        root.setLevel(ours[0].previous_level)
        logging.getLogger("uvicorn.access").disabled = False


def configure_logging(log_format: str, level: str = "info") -> None:
    """One handler on the root logger, to stderr: JSON objects (time, level, logger, message and the event's
    fields) or text. Idempotent: a second call replaces the handler it made."""
    reset_logging()
    root = logging.getLogger()
    handler = _StderrHandler()
    handler.rce = True  # type: ignore[attr-defined]
    handler.previous_level = root.level  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter(
                "{asctime}{levelname}{name}{process}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
                datefmt="%Y-%m-%dT%H:%M:%S%z",
            )
        )
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers go through the root handler; its access log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


_listening: list[Callable[[], None]] = []


def install_event_metrics() -> None:
    """Count the engine's events from now on (once per process, however many apps are made)."""
    if not _listening:
        _listening.append(events.listen(on_event))
