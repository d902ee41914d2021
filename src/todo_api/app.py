"""`create_app(settings)`: the whole service, assembled from its parts."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import Route

from todo_api import health, metrics
from todo_api.auth.dependencies import bearer_authentication
from todo_api.auth.router import router as accounts_router
from todo_api.config import Settings, announce_generated_secret
from todo_api.docs import API_DESCRIPTION, TAGS
from todo_api.docs import router as docs_router
from todo_api.errors import drop_422_from_openapi, install_error_handlers
from todo_api.limits import BodyGuardMiddleware
from todo_api.mcp.metadata import router as mcp_metadata_router
from todo_api.mcp.server import MCP_PATH, McpEndpoint
from todo_api.migrations import upgrade_to_head
from todo_api.observability import RequestContextMiddleware
from todo_api.runtime import Runtime
from todo_api.shared_state.rate_limits import document_rate_limits
from todo_api.sync.events import streams_end_on_exit_signals
from todo_api.sync.events_router import router as events_router
from todo_api.sync.idempotency import (
    IdempotencyMiddleware,
    document_idempotent_writes,
    keyed_routes,
)
from todo_api.sync.router import router as sync_router
from todo_api.tasks import router as tasks
from todo_api.tasks.tags_router import router as tags_router

logger = logging.getLogger("todo_api")

EXPOSED_HEADERS = [
    "ETag",
    "Idempotent-Replayed",
    "Link",
    "Location",
    # Per-user rate limits (SPEC §13): what is left, and when to retry after a 429 or 503.
    "RateLimit",
    "RateLimit-Policy",
    "Retry-After",
    # A browser MCP client (MCP Inspector) reads the challenge to find the resource metadata.
    "WWW-Authenticate",
    "X-Next-Cursor",
    "X-Request-ID",
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app; nothing here touches the database until start-up."""
    settings = settings or Settings()
    runtime = Runtime.from_settings(settings)
    mcp = McpEndpoint(runtime)
    pool_size = getattr(runtime.engine.pool, "size", lambda: 0)()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _log_start_up(settings)
        if settings.auto_migrate:
            await upgrade_to_head(runtime.engine)
        if runtime.jwks is not None:
            # Warm the key cache; if the issuer is down it is fetched on the first token.
            await runtime.jwks.refresh()
        metrics.observe_pool(runtime.engine, pool_size)
        await runtime.events.start()
        runtime.reminders.start()  # after the migrations: it reads `tasks.reminder_pending`
        runtime.housekeeping.start()
        await mcp.start()
        with streams_end_on_exit_signals(runtime.events):
            yield
        await mcp.close()
        metrics.forget_pool(pool_size)
        await runtime.close()

    app = FastAPI(
        title="Todo API",
        version="0.1.0",
        summary="Multi-user tasks for a Next.js + Better Auth frontend.",
        description=API_DESCRIPTION,
        openapi_tags=TAGS,
        # /docs and /redoc come from `docs_router`, with their scripts served from here.
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    default_openapi = app.openapi
    compatible = tasks.compatible_router()
    # Every write of these takes an `Idempotency-Key` (sync/idempotency.py).
    keyed = keyed_routes(tasks.router, tags_router, compatible)
    app.openapi = lambda: document_rate_limits(  # type: ignore[method-assign]
        document_idempotent_writes(drop_422_from_openapi(default_openapi()), keyed),
        bearer_authentication.scheme_name,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(docs_router)
    app.include_router(sync_router)  # `/api/tasks/changes`, before `/api/tasks/{task_id}`
    app.include_router(tasks.router)
    app.include_router(tags_router)  # before `/api/{user_id}/tasks`, which would match it
    app.include_router(compatible)
    app.include_router(events_router)
    app.include_router(mcp_metadata_router)
    app.router.routes.append(Route(MCP_PATH, mcp, include_in_schema=False))  # an ASGI app
    if settings.accounts_active:
        app.include_router(accounts_router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)

    # Outermost last: request ids wrap everything, CORS answers preflights before the guard.
    # Idempotency keys inside the guard: the body they fingerprint is bounded and complete.
    app.add_middleware(IdempotencyMiddleware, runtime=runtime, routes=keyed)
    app.add_middleware(
        BodyGuardMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.server_body_timeout,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Idempotency-Key",
            "If-Match",
            "If-None-Match",
            # EventSource sends it when it reconnects to resume a stream (GET /api/events).
            "Last-Event-ID",
            # MCP clients send them on every request after the first (SPEC §12).
            "Mcp-Protocol-Version",
            "Mcp-Session-Id",
            "X-Request-ID",
        ],
        expose_headers=EXPOSED_HEADERS,
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, hsts_max_age=settings.hsts_max_age)
    return app


def _log_start_up(settings: Settings) -> None:
    key_sources = []
    if settings.signing_secret is not None:
        generated = " (generated)" if settings.secret_generated else ""
        key_sources.append(f"HS256 shared secret{generated}")
    if settings.jwks_url is not None:
        key_sources.append(
            f"JWKS {settings.jwks_url} ({', '.join(settings.jwt_algorithms)}; "
            f"iss={settings.jwks_issuer}, aud={settings.jwks_audience})"
        )
    logger.info(
        "starting: tokens verified with %s",
        " and ".join(key_sources),
        extra={
            "database": settings.resolved_database_url.split("://", 1)[0],
            "accounts": settings.accounts_active,
        },
    )
    if settings.secret_generated:
        announce_generated_secret(settings)
