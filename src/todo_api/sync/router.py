"""`GET /api/tasks/changes`: the change feed (SPEC §11)."""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from todo_api.auth.dependencies import CurrentUser
from todo_api.errors import error_responses
from todo_api.openapi import documented_response
from todo_api.runtime import DatabaseDep
from todo_api.sync import feed
from todo_api.sync.schemas import ChangesPage
from todo_api.text import InputModel

router = APIRouter(prefix="/api/tasks", tags=["sync"], responses=error_responses(401, 503))


class ChangesQuery(InputModel):
    """Query parameters of the change feed."""

    since: str | None = Field(
        None,
        min_length=1,
        description="The `cursor` of your last answer (or the `id` of the last event); "
        "absent: a full sync, every task you have.",
    )
    limit: int = Field(feed.DEFAULT_LIMIT, ge=1, le=feed.MAX_LIMIT, description="Changes per page.")


@router.get(
    "/changes",
    response_model=ChangesPage,
    summary="Changes since a cursor",
    description="Every task created or changed after `since` (its state now, once, however "
    "often it changed) and every task deleted, oldest first. Follow `cursor` while "
    "`has_more`; then ask again later, or hold `GET /api/events` open to hear of changes. "
    "A cursor older than the kept tombstones (`SYNC_RETENTION_DAYS`) is a 410: sync again "
    "from the start.",
    responses={
        200: documented_response("Changes after `since`, oldest first"),
        **error_responses(400, 410),
    },
)
async def list_changes(
    query: Annotated[ChangesQuery, Query()], user: CurrentUser, db: DatabaseDep
) -> ChangesPage:
    page = await feed.read_changes(db, user.id, query.since, query.limit)
    changes = [feed.change_body(change) for change in page.changes]
    return ChangesPage(changes=changes, cursor=page.cursor, has_more=page.has_more)
