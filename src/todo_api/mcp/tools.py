"""The eight MCP tools (SPEC §12), each the twin of a REST route.

A tool's arguments are validated by its route's own model (`TaskCreate`, `TaskUpdate`,
`TaskListQuery`…), and its body calls the same repository function the route calls, so every
rule (validation, isolation, recurrence, the change feed's numbering) is written once. The
argument models differ from the REST ones in one way only: an unknown argument is refused, so
an agent that guesses a name (`due` for `due_date`) is told instead of silently ignored.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from mcp_types import ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.tasks import repository, tags
from todo_api.tasks.repository import TaskRow
from todo_api.tasks.schemas import TaskCreate, TaskListQuery, TaskRead, TaskStats, TaskUpdate
from todo_api.tasks.tags_router import TagRead
from todo_api.text import InputModel

CLOSED = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """What a tool acts with: the verified caller's id and a pooled connection."""

    user_id: str
    db: AsyncConnection


@dataclass(frozen=True, slots=True)
class Outcome:
    """A tool's answer: the structured content and one sentence saying what happened."""

    result: BaseModel
    sentence: str


@dataclass(frozen=True, slots=True)
class TaskTool:
    name: str
    title: str
    description: str
    arguments: type[BaseModel]
    result: type[BaseModel]
    run: Callable[[ToolCall, Any], Awaitable[Outcome]]
    annotations: ToolAnnotations
    # A write is announced to the caller's live event streams once it has committed.
    writes: bool = False


# Argument models: the REST models, closed to unknown names.


class AddTaskArguments(TaskCreate):
    """A new task: only `title` is required."""

    model_config = CLOSED


class ListTasksArguments(TaskListQuery):
    """Filters, order and page of the listing; every one optional."""

    model_config = CLOSED


class TaskId(InputModel):
    model_config = CLOSED

    task_id: uuid.UUID = Field(
        description="The task's `id`, as `add_task` or `list_tasks` gave it."
    )


class UpdateTaskArguments(TaskUpdate):
    """The task, and the fields to change: fields given change, fields left out stay, and
    `null` clears a field that may be empty."""

    model_config = CLOSED

    task_id: uuid.UUID = Field(description="The task's `id`.")

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True, exclude={"task_id"})


class CompleteTaskArguments(TaskId):
    completed: StrictBool | None = Field(
        None,
        description="true marks the task done, false marks it not done; leave it out to flip "
        "it. Completing a repeating task creates its next occurrence.",
    )


class NoArguments(InputModel):
    model_config = CLOSED


# Results: the REST API's JSON, in an object (structured content is always one).


class TaskPage(BaseModel):
    tasks: list[TaskRead]
    next_cursor: str | None = Field(
        description="Pass it as `cursor`, with the same filters and sort, for the next page; "
        "null on the last page."
    )


class DeletedTask(BaseModel):
    id: uuid.UUID
    deleted: Literal[True] = True


class TagList(BaseModel):
    tags: list[TagRead] = Field(description="Your tags that some task carries, by name.")


def _task(row: TaskRow) -> TaskRead:
    return TaskRead.model_validate(row)


async def add_task(call: ToolCall, arguments: AddTaskArguments) -> Outcome:
    task = _task(await repository.create_task(call.db, call.user_id, arguments.model_dump()))
    return Outcome(task, f"Created task {task.title!r} with id {task.id}.")


async def list_tasks(call: ToolCall, arguments: ListTasksArguments) -> Outcome:
    page = await repository.list_tasks_page(call.db, call.user_id, arguments)
    result = TaskPage(tasks=[_task(row) for row in page.tasks], next_cursor=page.next_cursor)
    more = "; more follow with `cursor`" if page.next_cursor else ""
    return Outcome(result, f"Found {_count(len(result.tasks), 'task')}{more}.")


async def get_task(call: ToolCall, arguments: TaskId) -> Outcome:
    task = _task(await repository.get_task(call.db, call.user_id, arguments.task_id))
    return Outcome(task, f"Task {task.title!r} is {_state(task)}.")


async def update_task(call: ToolCall, arguments: UpdateTaskArguments) -> Outcome:
    row = await repository.update_task(
        call.db, call.user_id, arguments.task_id, arguments.changes()
    )
    task = _task(row)
    return Outcome(task, f"Updated task {task.title!r}.")


async def complete_task(call: ToolCall, arguments: CompleteTaskArguments) -> Outcome:
    row = await repository.set_completed(
        call.db, call.user_id, arguments.task_id, arguments.completed
    )
    task = _task(row)
    spawned = (
        f"; its next occurrence is {task.next_occurrence_id}" if task.next_occurrence_id else ""
    )
    return Outcome(task, f"Task {task.title!r} is now {_state(task)}{spawned}.")


async def delete_task(call: ToolCall, arguments: TaskId) -> Outcome:
    await repository.delete_task(call.db, call.user_id, arguments.task_id)
    return Outcome(DeletedTask(id=arguments.task_id), f"Deleted task {arguments.task_id}.")


async def task_stats(call: ToolCall, arguments: NoArguments) -> Outcome:
    stats = await repository.task_stats(call.db, call.user_id)
    return Outcome(
        stats,
        f"{_count(stats.total, 'task')}: {stats.pending} pending ({stats.overdue} overdue), "
        f"{stats.completed} completed.",
    )


async def list_tags(call: ToolCall, arguments: NoArguments) -> Outcome:
    counts = await tags.list_tags(call.db, call.user_id)
    result = TagList(tags=[TagRead.model_validate(count) for count in counts])
    names = ", ".join(tag.name for tag in result.tags) or "none"
    return Outcome(result, f"Your tags: {names}.")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _state(task: TaskRead) -> str:
    return "done" if task.completed else "not done"


READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
TOOLS = (
    TaskTool(
        name="add_task",
        title="Add a task",
        description="Create a task for the user. Only `title` is required; `tags` label it, "
        "`due_date` and `remind_at` take ISO 8601 dates or date-times (UTC unless they carry "
        "an offset), and `recurrence` (an RRULE such as FREQ=WEEKLY;BYDAY=MO) makes it "
        "repeat, which needs a `due_date`. Returns the task with its `id`.",
        arguments=AddTaskArguments,
        result=TaskRead,
        run=add_task,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, open_world_hint=False
        ),
        writes=True,
    ),
    TaskTool(
        name="list_tasks",
        title="List tasks",
        description="List the user's tasks, newest first unless `sort` and `order` say "
        "otherwise. Filter by `status` (pending, completed), `priority`, `q` (text in title "
        "or description), `tag` (a list: tasks carrying all of them), `due` (overdue, today, "
        "none), or a due range (`due_from`, `due_to`). At most `limit` tasks per call; when "
        "`next_cursor` is not null, call again with it as `cursor` for the rest.",
        arguments=ListTasksArguments,
        result=TaskPage,
        run=list_tasks,
        annotations=READS,
    ),
    TaskTool(
        name="get_task",
        title="Get a task",
        description="Get one of the user's tasks by its `task_id`.",
        arguments=TaskId,
        result=TaskRead,
        run=get_task,
        annotations=READS,
    ),
    TaskTool(
        name="update_task",
        title="Update a task",
        description="Change fields of one of the user's tasks: give `task_id` and only the "
        "fields to change; `null` clears an optional field (description, priority, "
        "due_date, remind_at, recurrence). `tags` replaces the task's whole list. Returns "
        "the task as changed.",
        arguments=UpdateTaskArguments,
        result=TaskRead,
        run=update_task,
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
        writes=True,
    ),
    TaskTool(
        name="complete_task",
        title="Complete a task",
        description="Mark one of the user's tasks done (`completed`: true, the usual call), "
        "not done (false), or flip it (leave `completed` out). Completing a repeating task "
        "creates its next occurrence, whose id the result's `next_occurrence_id` gives.",
        arguments=CompleteTaskArguments,
        result=TaskRead,
        run=complete_task,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, open_world_hint=False
        ),
        writes=True,
    ),
    TaskTool(
        name="delete_task",
        title="Delete a task",
        description="Delete one of the user's tasks for good. Ask the user first unless they "
        "asked for exactly this deletion.",
        arguments=TaskId,
        result=DeletedTask,
        run=delete_task,
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
        ),
        writes=True,
    ),
    TaskTool(
        name="task_stats",
        title="Count tasks",
        description="Count the user's tasks: total, completed, pending, and overdue (pending "
        "with a due date in the past).",
        arguments=NoArguments,
        result=TaskStats,
        run=task_stats,
        annotations=READS,
    ),
    TaskTool(
        name="list_tags",
        title="List tags",
        description="List the user's tags, each with how many tasks carry it. Use these "
        "names with `list_tasks`' `tag` filter or a task's `tags`.",
        arguments=NoArguments,
        result=TagList,
        run=list_tags,
        annotations=READS,
    ),
)
