"""Prometheus metrics at `/metrics` (SPEC §8): requests and latency by route and status,
requests in flight, pool connections in use, and authentication failures by reason.

With several worker processes each one writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (`todo-api serve` sets one up), and `/metrics` adds up every
worker's files, so the answer is the same whichever worker the scrape reaches. The variable
must be set before this module is first imported: prometheus-client picks its storage then.
"""

import os

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
MULTIPROCESS = MULTIPROCESS_DIR_VARIABLE in os.environ
# A request that matched no route is counted under this label, not under its path:
# label values must come from a small fixed set.
UNMATCHED_ROUTE = "<unmatched>"

REQUESTS = Counter(
    "todo_api_http_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
REQUEST_DURATION = Histogram(
    "todo_api_http_request_duration_seconds",
    "Time from receiving a request to sending the end of its answer.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge(
    "todo_api_http_requests_in_flight",
    "Requests being answered now.",
    multiprocess_mode="livesum",
)
POOL_CHECKED_OUT = Gauge(
    "todo_api_db_pool_checked_out",
    "Database connections lent to requests now (all workers).",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "todo_api_db_pool_size",
    "Connections the pools keep open (DB_POOL_SIZE per worker; DB_MAX_OVERFLOW more on demand).",
    multiprocess_mode="livesum",
)
AUTH_FAILURES = Counter(
    "todo_api_auth_failures_total",
    "Requests refused with 401, by reason (missing, expired, bad_signature, unknown_key, ...).",
    ["reason"],
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    labels = (method, route, str(status))
    REQUESTS.labels(*labels).inc()
    REQUEST_DURATION.labels(*labels).observe(seconds)


def observe_pool(engine: AsyncEngine, size: int) -> None:
    """Count connections out of this engine's pool as they are lent and given back."""
    POOL_SIZE.inc(size)

    @event.listens_for(engine.sync_engine, "checkout")
    def _lent(*_: object) -> None:
        POOL_CHECKED_OUT.inc()

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(*_: object) -> None:
        POOL_CHECKED_OUT.dec()


def forget_pool(size: int) -> None:
    POOL_SIZE.dec(size)


def exposition() -> bytes:
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus text format. Not behind the bearer token, as Prometheus expects; it holds
    no user data, only counts by route template."""
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)
