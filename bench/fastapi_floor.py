"""The framework's floor: FastAPI with nothing of ours, serving the `get-one` and
`list-default` requests of the benchmark.

The smallest idiomatic FastAPI app doing exactly the baseline's work (bench/baseline.py: its
token check, SQL, JSON, headers and pool, imported from there): routing, path and query
parameters, the bearer token and the pool as dependencies, a plain `Response` with JSON
serialised in the handler. No response model, no ORM, no middleware, and like the baseline
none of the API's process settings (its garbage-collector tuning). What it costs above the
baseline is FastAPI's; what the API costs above it is the API's own.

Serve: `DATABASE_URL=... BETTER_AUTH_SECRET=... uvicorn bench.fastapi_floor:app --workers 2`.
Only the default listing (newest first, `limit` alone) and one task by id are served.
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response

from bench import baseline

JSON = "application/json"


async def database(request: Request) -> Any:
    """The worker's asyncpg pool."""
    return request.app.state.pool


async def current_user(request: Request, authorization: Annotated[str, Header()] = "") -> str:
    """The caller's user id, from the bearer token, as the baseline checks it."""
    settings: baseline.Settings = request.app.state.settings
    return baseline.user_id_from(authorization, settings.secret)


Pool = Annotated[asyncpg.Pool, Depends(database)]
CurrentUser = Annotated[str, Depends(current_user)]
Limit = Annotated[int, Query(ge=1, le=baseline.MAX_LIMIT)]

router = APIRouter(prefix=baseline.PREFIX)


@router.get("")
async def list_tasks(
    request: Request, user_id: CurrentUser, pool: Pool, limit: Limit = baseline.DEFAULT_LIMIT
) -> Response:
    rows = await pool.fetch(baseline.LIST_BY_CREATED, user_id, limit + 1)
    headers = {}
    if len(rows) > limit:
        cursor = baseline.next_cursor(rows[limit - 1], "created")
        host = request.headers.get("host", "")
        headers = {
            "link": baseline.next_link(host, request.query_params, cursor),
            "x-next-cursor": cursor,
        }
    body = [baseline.task_json(row) for row in rows[:limit]]
    return Response(baseline.dumps(body), media_type=JSON, headers=headers)


@router.get("/{task_id}")
async def get_task(task_id: uuid.UUID, user_id: CurrentUser, pool: Pool) -> Response:
    row = await pool.fetchrow(baseline.GET_ONE, task_id, user_id)
    if row is None:
        raise await baseline.missing(pool, task_id, user_id)
    headers = {"etag": baseline.etag(row["updated_at"])}
    return Response(baseline.dumps(baseline.task_json(row)), media_type=JSON, headers=headers)


async def _render_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, baseline.HttpError)
    body = baseline.dumps({"detail": error.detail})
    return Response(body, status_code=error.status, media_type=JSON)


def create_app(settings: baseline.Settings) -> FastAPI:
    """The floor app: one asyncpg pool per worker, made as the baseline makes it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await baseline.create_pool(settings)
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="FastAPI floor (bench)", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(router)
    app.add_exception_handler(baseline.HttpError, _render_error)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "healthy"}

    return app


app = create_app(baseline.Settings.from_environment())
