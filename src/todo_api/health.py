"""Liveness and readiness probes; neither needs a token."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from todo_api.errors import RETRY_AFTER_SECONDS, ServiceUnavailable
from todo_api.openapi import documented_response, json_example
from todo_api.runtime import RuntimeDep

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    summary="Liveness: the process answers (no database touch)",
    responses={200: documented_response("Alive", content=json_example({"status": "healthy"}))},
)
async def health() -> dict[str, str]:
    return {"status": "healthy"}


@router.get(
    "/health/ready",
    summary="Readiness: the database answers",
    responses={
        200: documented_response(
            "The database answers", content=json_example({"status": "ready", "database": "ok"})
        ),
        503: documented_response(
            "The database is unreachable",
            "Retry-After",
            content=json_example({"status": "unavailable", "database": "unreachable"}),
        ),
    },
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    try:
        async with asyncio.timeout(runtime.settings.db_pool_timeout):
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
    except (ServiceUnavailable, SQLAlchemyError, OSError):  # OSError includes TimeoutError
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    return JSONResponse({"status": "ready", "database": "ok"})
