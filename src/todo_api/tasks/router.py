"""`/api/tasks`: each route takes validated input, calls the repository, returns a schema.

`compatible_router()` serves the same route functions at `/api/{user_id}/tasks` for the
frontends that call that path, where `path_names_caller` first checks the `user_id`.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, status
from fastapi.routing import APIRoute
from starlette.convertors import Convertor, register_url_convertor

from todo_api.auth.dependencies import CurrentUser
from todo_api.errors import NotPermitted, error_responses
from todo_api.openapi import documented_response
from todo_api.pagination import next_page_link
from todo_api.runtime import DatabaseDep, runtime_of
from todo_api.sync.announce import AnnounceChange
from todo_api.tasks import repository
from todo_api.tasks.etags import (
    matches_if_none_match,
    tags_from_if_none_match,
    task_etag,
    versions_from_if_match,
)
from todo_api.tasks.repository import TaskRow
from todo_api.tasks.schemas import (
    TaskCompletion,
    TaskCreate,
    TaskListQuery,
    TaskRead,
    TaskStats,
    TaskUpdate,
)


class TaskIdConvertor(Convertor[str]):
    """Any path segment but `stats` and `changes`, so `PUT /api/tasks/stats` is a 405 (they are
    read-only) rather than a 400 for a malformed id. The id is still validated as a UUID (400)."""

    regex = "(?!(?:stats|changes)$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)  # `url_for` is given the task's UUID


register_url_convertor("task_id", TaskIdConvertor())
TASK_PATH = "/{task_id:task_id}"

PREFIX = "/api/tasks"
COMPATIBLE_PREFIX = "/api/{user_id}/tasks"
router = APIRouter(prefix=PREFIX, tags=["tasks"], responses=error_responses(401, 503))
# A malformed task id is a 400, like a malformed body.
ONE_TASK_ERRORS = error_responses(400, 403, 404)
BODY_ERRORS = error_responses(400, 408, 413, 415)

IfMatch = Annotated[
    str | None, Header(description="Only change the task if it is still at this ETag.")
]
IfNoneMatch = Annotated[
    str | None, Header(description="Answer 304 if the task is still at this ETag.")
]


async def path_names_caller(
    user_id: Annotated[str, Path(description="Must be the token's `sub`.")], user: CurrentUser
) -> None:
    """The `/api/{user_id}/tasks` paths: any `user_id` but the caller's is a 403, before the
    route looks at anything else (so also for a task that does not exist)."""
    if user_id != user.id:
        raise NotPermitted()


def _with_etag(response: Response, task: TaskRow) -> TaskRow:
    response.headers["ETag"] = task_etag(task.updated_at)
    return task


@router.get(
    "",
    response_model=list[TaskRead],
    summary="List your tasks",
    responses={
        200: documented_response(
            "One page of your tasks, in the requested order", "Link", "X-Next-Cursor"
        ),
        **error_responses(400),
    },
)
async def list_tasks(
    query: Annotated[TaskListQuery, Query()],
    request: Request,
    response: Response,
    user: CurrentUser,
    db: DatabaseDep,
) -> list[TaskRow]:
    page = await repository.list_tasks_page(db, user.id, query)
    if page.next_cursor is not None:
        base_url = runtime_of(request).public_base_url
        response.headers["Link"] = next_page_link(request.url, page.next_cursor, base_url)
        response.headers["X-Next-Cursor"] = page.next_cursor
    return page.tasks


@router.post(
    "",
    response_model=TaskRead,
    status_code=status.HTTP_201_CREATED,
    summary="Create a task",
    responses={201: documented_response("The new task", "Location", "ETag"), **BODY_ERRORS},
    dependencies=[AnnounceChange],
)
async def create_task(
    body: TaskCreate, request: Request, response: Response, user: CurrentUser, db: DatabaseDep
) -> TaskRow:
    task = await repository.create_task(db, user.id, body.model_dump())
    # The canonical path, also when created through `/api/{user_id}/tasks`.
    response.headers["Location"] = str(request.url_for("get_task", task_id=task.id).path)
    return _with_etag(response, task)


@router.get(
    "/stats",
    response_model=TaskStats,
    summary="Count your tasks",
    responses={200: documented_response("Counts over your tasks")},
)
async def task_stats(user: CurrentUser, db: DatabaseDep) -> TaskStats:
    return await repository.task_stats(db, user.id)


@router.get(
    TASK_PATH,
    response_model=TaskRead,
    summary="Get one task",
    responses={
        200: documented_response("The task", "ETag"),
        304: documented_response("Unchanged since `If-None-Match`; no body", "ETag"),
        **ONE_TASK_ERRORS,
    },
)
async def get_task(
    task_id: uuid.UUID,
    response: Response,
    user: CurrentUser,
    db: DatabaseDep,
    if_none_match: IfNoneMatch = None,
) -> TaskRow | Response:
    unwanted = tags_from_if_none_match(if_none_match)  # an absurd header fails before the query
    task = await repository.get_task(db, user.id, task_id)
    etag = task_etag(task.updated_at)
    if matches_if_none_match(unwanted, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
    return _with_etag(response, task)


async def update_task(
    task_id: uuid.UUID,
    body: TaskUpdate,
    response: Response,
    user: CurrentUser,
    db: DatabaseDep,
    if_match: IfMatch = None,
) -> TaskRow:
    versions = versions_from_if_match(if_match)  # an absurd header fails before the query
    task = await repository.update_task(db, user.id, task_id, body.changes(), versions)
    return _with_etag(response, task)


for method in ("PUT", "PATCH"):
    router.add_api_route(
        TASK_PATH,
        update_task,
        methods=[method],
        response_model=TaskRead,
        summary="Update a task (fields present change, absent stay, null clears)",
        name=f"{method.lower()}_task",
        responses={
            200: documented_response("The task after the change", "ETag"),
            **ONE_TASK_ERRORS,
            **BODY_ERRORS,
            **error_responses(412),
        },
        dependencies=[AnnounceChange],
    )


@router.delete(
    TASK_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a task",
    responses={204: documented_response("Deleted; no body"), **ONE_TASK_ERRORS},
    dependencies=[AnnounceChange],
)
async def delete_task(task_id: uuid.UUID, user: CurrentUser, db: DatabaseDep) -> None:
    await repository.delete_task(db, user.id, task_id)


@router.patch(
    TASK_PATH + "/complete",
    response_model=TaskRead,
    summary="Toggle or set completion",
    responses={
        200: documented_response("The task with its new `completed`", "ETag"),
        **ONE_TASK_ERRORS,
        **BODY_ERRORS,
    },
    dependencies=[AnnounceChange],
)
async def complete_task(
    task_id: uuid.UUID,
    response: Response,
    user: CurrentUser,
    db: DatabaseDep,
    body: Annotated[
        TaskCompletion | None,
        Body(
            description="No body flips `completed`; this body sets it.",
            openapi_examples={
                "done": {"summary": "Mark it done", "value": {"completed": True}},
                "reopen": {"summary": "Mark it not done", "value": {"completed": False}},
            },
        ),
    ] = None,
) -> TaskRow:
    completed = None if body is None else body.completed
    task = await repository.set_completed(db, user.id, task_id, completed)
    return _with_etag(response, task)


def compatible_router() -> APIRouter:
    """Every route above again under `/api/{user_id}/tasks`, the same functions behind a check
    of the path's user id; documented once, in the `tasks` tag's description, rather than as
    a copy of each operation. (Not `include_router` with a prefix: FastAPI would then name
    each route by its path without the prefix, in logs and metrics.)"""
    compatible = APIRouter(
        prefix=COMPATIBLE_PREFIX,
        dependencies=[Depends(path_names_caller)],
        include_in_schema=False,
    )
    for route in router.routes:
        assert isinstance(route, APIRoute)
        compatible.add_api_route(
            route.path.removeprefix(PREFIX),
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_model=route.response_model,
            status_code=route.status_code,
            name=route.name,
            dependencies=route.dependencies,  # announcing writes to live event streams
        )
    return compatible
