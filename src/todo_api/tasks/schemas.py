"""Request and response bodies for tasks, kept apart from the table."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from todo_api.text import NOT_BLANK_PATTERN, STORABLE_TEXT_PATTERN, InputModel, trim

Priority = Literal["low", "medium", "high"]
Status = Literal["all", "pending", "completed"]
SortField = Literal["created", "title", "due_date", "priority", "updated"]
Order = Literal["asc", "desc"]

MAX_TITLE = 200
MAX_DESCRIPTION = 1000


def _trimmed_title(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_TITLE:  # before trimming, as the document's maxLength says
            raise ValueError(f"must be at most {MAX_TITLE} characters")
        value = trim(value)
        if not value:
            raise ValueError("title must not be blank")
    return value


def _due_date(value: Any) -> Any:
    """A date-time (naive means UTC) or a date (midnight UTC), stored in UTC."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date or date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date (2026-05-01) or date-time (2026-05-01T17:00:00Z)"
        ) from None
    try:
        parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if parsed.year >= 9999:
        raise ValueError("must be before the year 9999")
    return parsed


# The patterns describe, for the OpenAPI document and its clients, what the validators enforce:
# no NUL (`InputModel`, for every field), and a title with something besides white space.
Title = Annotated[
    str,
    BeforeValidator(_trimmed_title),
    Field(max_length=MAX_TITLE, json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
]
Description = Annotated[
    str,
    Field(max_length=MAX_DESCRIPTION, json_schema_extra={"pattern": STORABLE_TEXT_PATTERN}),
]
DueDate = Annotated[datetime, BeforeValidator(_due_date)]


class TaskCreate(InputModel):
    """A new task. `id`, `user_id` and timestamps are the server's and ignored if sent."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "title": "Write the quarterly report",
                    "description": "Numbers from finance first",
                    "priority": "high",
                    "due_date": "2026-12-01T17:00:00Z",
                }
            ]
        }
    )

    title: Title
    description: Description | None = None
    priority: Priority | None = None
    due_date: DueDate | None = None
    completed: StrictBool = False


class TaskUpdate(InputModel):
    """A partial change: fields present are set, absent ones kept, `null` clears a nullable one."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"title": "Write the Q4 report", "due_date": None},
                {"priority": "low", "description": None},
            ]
        }
    )

    # Absent is allowed, `null` is not: the document offers only the value.
    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None
    priority: Priority | None = None
    due_date: DueDate | None = None
    completed: StrictBool | SkipJsonSchema[None] = None

    @field_validator("title", "completed")
    @classmethod
    def _not_nullable(cls, value: Any) -> Any:
        # Runs only for values the client sent, so absent stays allowed and `null` does not.
        if value is None:
            raise ValueError("cannot be null")
        return value

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class TaskCompletion(InputModel):
    """Set completion explicitly (idempotent); send no body to flip it instead."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"completed": True}]})

    completed: StrictBool


class TaskRead(BaseModel):
    """A task as the API returns it; datetimes are UTC."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b7f6f1e-4c1e-4a53-9b7e-2f0f7f2b8a11",
                    "user_id": "demo",
                    "title": "Write the quarterly report",
                    "description": "Numbers from finance first",
                    "completed": False,
                    "priority": "high",
                    "due_date": "2026-12-01T17:00:00Z",
                    "created_at": "2026-11-21T12:22:57.290232Z",
                    "updated_at": "2026-11-21T12:22:57.290232Z",
                }
            ]
        },
    )

    id: uuid.UUID
    user_id: str
    title: str
    description: str | None
    completed: bool
    priority: Priority | None
    due_date: datetime | None
    created_at: datetime
    updated_at: datetime


class TaskStats(BaseModel):
    """Counts over the caller's tasks; overdue = pending with a due date in the past."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"total": 12, "completed": 5, "pending": 7, "overdue": 2}]}
    )

    total: int
    completed: int
    pending: int
    overdue: int


class TaskListQuery(InputModel):
    """Query parameters of `GET /api/tasks`. An empty value (`priority=`) means "not given",
    as forms send it."""

    # `SkipJsonSchema[None]`: a query parameter is a value or absent, never null, so the
    # document offers only the values (Swagger UI then shows a choice, not a text box).
    status: Status = Field("all", description="Completion filter.")
    priority: Priority | SkipJsonSchema[None] = Field(
        None, description="Only tasks of this priority."
    )
    # The length limit on the string member: on the union it would apply to None too.
    q: Annotated[str, Field(max_length=200)] | SkipJsonSchema[None] = Field(
        None, description="Case-insensitive substring of title or description."
    )
    sort: SortField = Field("created", description="Sort key; ties are broken by id.")
    order: Order | SkipJsonSchema[None] = Field(
        None,
        description="Direction. Default per sort: created and updated newest first, title A→Z, "
        "due_date soonest first, priority high first. Tasks without a due date sort as due "
        "last; tasks without a priority as the lowest priority.",
    )
    limit: int = Field(100, ge=1, le=1000, description="Page size.")
    cursor: Annotated[str, Field(max_length=1024)] | SkipJsonSchema[None] = Field(
        None, description="Position from the previous page's `Link` header."
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_absent(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return {key: value for key, value in values.items() if value != ""}
        return values
