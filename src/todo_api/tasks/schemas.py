"""Request and response bodies for tasks, kept apart from the table."""

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from todo_api.tasks.recurrence import MAX_RULE_LENGTH, normalise_rule, valid_time_zone
from todo_api.text import (
    CONTROL_CHARACTERS,
    NOT_BLANK_PATTERN,
    STORABLE_TEXT_PATTERN,
    TAG_PATTERN,
    InputModel,
    trim,
    unstorable,
)

Priority = Literal["low", "medium", "high"]
Status = Literal["all", "pending", "completed"]
SortField = Literal["created", "title", "due_date", "priority", "updated"]
Order = Literal["asc", "desc"]

DueFilter = Literal["overdue", "today", "none"]

MAX_TITLE = 200
MAX_DESCRIPTION = 1000
MAX_TAG = 50
MAX_TAGS = 20
MAX_TAG_FILTERS = 20
MAX_MOMENT = 64  # characters of a date or date-time in a query


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


def tag_key(name: str) -> str:
    """What makes two spellings the same tag ("Work" = "work" = "WORK")."""
    return name.casefold()


def _tag(value: Any) -> Any:
    if isinstance(value, str):
        problem = unstorable(value)  # also for a tag in a path, which no InputModel checks
        if problem is not None:
            raise ValueError(problem)
        if len(value) > MAX_TAG:  # before trimming, as the document's maxLength says
            raise ValueError(f"a tag must be at most {MAX_TAG} characters")
        value = trim(value)
        if not value:
            raise ValueError("a tag must not be blank")
        if any(character in CONTROL_CHARACTERS for character in value):
            raise ValueError("a tag must not contain control characters")
        if "," in value or "/" in value:
            raise ValueError("a tag must not contain a comma or a slash")
    return value


def _distinct_tags(tags: list[str]) -> list[str]:
    """Each tag once (the first spelling given), at most MAX_TAGS of them, sorted as answered."""
    distinct: dict[str, str] = {}
    for name in tags:
        distinct.setdefault(tag_key(name), name)
    if len(distinct) > MAX_TAGS:
        raise ValueError(f"a task holds at most {MAX_TAGS} tags")
    return [distinct[key] for key in sorted(distinct)]


def _rule(value: Any) -> Any:
    return normalise_rule(value) if isinstance(value, str) else value


def _zone(value: Any) -> Any:
    return valid_time_zone(value) if isinstance(value, str) else value


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
TagName = Annotated[
    str,
    BeforeValidator(_tag),
    Field(max_length=MAX_TAG, json_schema_extra={"pattern": TAG_PATTERN}),
]
Tags = Annotated[
    list[TagName],
    AfterValidator(_distinct_tags),
    Field(
        description=f"At most {MAX_TAGS} tags, each matched without regard to case; a tag "
        "takes the spelling its user first gave it. `[]` removes them all.",
        examples=[["work", "Q4"]],
    ),
]
# Loose patterns on purpose: the rule's grammar and its ranges are checked by the validator.
Recurrence = Annotated[
    str,
    BeforeValidator(_rule),
    Field(
        max_length=MAX_RULE_LENGTH,
        description="An RFC 5545 RRULE: FREQ=DAILY|WEEKLY|MONTHLY|YEARLY, with INTERVAL, "
        "BYDAY, BYMONTHDAY, BYMONTH, and COUNT or UNTIL. Needs a `due_date`.",
        examples=["FREQ=WEEKLY;BYDAY=MO,WE"],
        json_schema_extra={"pattern": STORABLE_TEXT_PATTERN},
    ),
]
TimeZone = Annotated[
    str,
    BeforeValidator(_zone),
    Field(
        max_length=64,
        description="IANA time zone the recurrence is evaluated in; `null` means UTC.",
        examples=["Europe/Berlin"],
        json_schema_extra={"pattern": STORABLE_TEXT_PATTERN},
    ),
]
RemindAt = Annotated[datetime, BeforeValidator(_due_date)]


def _local_moment(value: str, zone: ZoneInfo) -> datetime:
    """A date (its midnight) or a date-time (naive: wall time) in `zone`, as UTC."""
    if len(value) > MAX_MOMENT:
        raise ValueError(f"must be at most {MAX_MOMENT} characters")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date (2026-05-01) or date-time (2026-05-01T17:00:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if parsed.year >= 9999:
        raise ValueError("must be before the year 9999")
    return parsed


# A query value read in `tz`, so the document says only "a string": it may be a date.
LocalMoment = Annotated[datetime, WithJsonSchema({"type": "string", "maxLength": MAX_MOMENT})]

NEEDS_DUE_DATE = "a recurring task needs a due_date"


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
    tags: Tags = Field(default_factory=list)
    time_zone: TimeZone | None = None
    remind_at: RemindAt | None = None
    recurrence: Recurrence | None = None

    @field_validator("recurrence")
    @classmethod
    def _needs_due_date(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("due_date") is None and "due_date" in info.data:
            raise ValueError(NEEDS_DUE_DATE)
        return value


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
    tags: Tags | SkipJsonSchema[None] = None
    time_zone: TimeZone | None = None
    remind_at: RemindAt | None = None
    # That a recurring task keeps a due date depends on the task as stored: the repository
    # checks it on the task as changed.
    recurrence: Recurrence | None = None

    @field_validator("title", "completed", "tags")
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
                    "tags": ["Q4", "work"],
                    "recurrence": None,
                    "time_zone": None,
                    "remind_at": "2026-12-01T09:00:00Z",
                    "completed_at": None,
                    "next_occurrence_id": None,
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
    tags: list[str]
    recurrence: str | None
    time_zone: str | None
    remind_at: datetime | None
    completed_at: datetime | None = Field(
        description="When `completed` last became true; null while it is false."
    )
    next_occurrence_id: uuid.UUID | None = Field(
        description="The next occurrence this recurring task spawned when it was completed."
    )
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


def _or_empty(schema: dict[str, Any]) -> None:
    """The document says what the API does: a choice parameter also takes the empty value,
    which means "not given" (`TaskListQuery._empty_means_absent`)."""
    schema["enum"] = [*schema["enum"], ""]


class TaskListQuery(InputModel):
    """Query parameters of `GET /api/tasks`. An empty value (`priority=`) means "not given",
    as forms send it; but `tag=` is a tag, and an empty one is no valid tag (400)."""

    # `SkipJsonSchema[None]`: a query parameter is a value or absent, never null, so the
    # document offers only the values (Swagger UI then shows a choice, not a text box).
    status: Status = Field("all", description="Completion filter.", json_schema_extra=_or_empty)
    priority: Priority | SkipJsonSchema[None] = Field(
        None, description="Only tasks of this priority.", json_schema_extra=_or_empty
    )
    # The length limit on the string member: on the union it would apply to None too.
    q: Annotated[str, Field(max_length=200)] | SkipJsonSchema[None] = Field(
        None, description="Case-insensitive substring of title or description."
    )
    sort: SortField = Field(
        "created", description="Sort key; ties are broken by id.", json_schema_extra=_or_empty
    )
    order: Order | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_or_empty,
        description="Direction. Default per sort: created and updated newest first, title A→Z, "
        "due_date soonest first, priority high first. Tasks without a due date sort as due "
        "last; tasks without a priority as the lowest priority.",
    )
    limit: int = Field(100, ge=1, le=1000, description="Page size.")
    cursor: Annotated[str, Field(max_length=1024)] | SkipJsonSchema[None] = Field(
        None, description="Position from the previous page's `Link` header."
    )
    tag: Annotated[list[TagName], Field(max_length=MAX_TAG_FILTERS)] = Field(
        [],
        description="Only tasks carrying this tag (case-insensitive); repeat it for "
        "tasks carrying all of several tags.",
    )
    due: DueFilter | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_or_empty,
        description="overdue: pending and due before now; today: due within the current day "
        "in `tz`; none: no due date.",
    )
    # Before the parameters it qualifies: their validators read it.
    tz: TimeZone = Field(
        "UTC",
        description="IANA time zone of `due=today`, and of dates and naive date-times "
        "in `due_from`, `due_to` and `remind_before`.",
    )
    due_from: LocalMoment | SkipJsonSchema[None] = Field(
        None,
        description="Due at or after this date or date-time (a date is its midnight in "
        "`tz`; a date-time without offset is local time in `tz`).",
    )
    due_to: LocalMoment | SkipJsonSchema[None] = Field(
        None, description="Due before this date or date-time (exclusive; read as `due_from`)."
    )
    remind_before: LocalMoment | SkipJsonSchema[None] = Field(
        None,
        description="Pending tasks with a reminder before this date-time (read as `due_from`).",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_absent(cls, values: Any) -> Any:
        if isinstance(values, dict):
            return {key: value for key, value in values.items() if value != ""}
        return values

    @field_validator("due_from", "due_to", "remind_before", mode="before")
    @classmethod
    def _in_time_zone(cls, value: Any, info: ValidationInfo) -> Any:
        zone = info.data.get("tz", "UTC")  # an invalid `tz` has its own error already
        return _local_moment(value, ZoneInfo(zone)) if isinstance(value, str) else value

    def today(self, now: datetime) -> tuple[datetime, datetime]:
        """The caller's current day in `tz`, as a half-open UTC range."""
        zone = ZoneInfo(self.tz)
        start = datetime.combine(now.astimezone(zone).date(), time(), zone)
        end = datetime.combine(start.date() + timedelta(days=1), time(), zone)
        return start.astimezone(UTC), end.astimezone(UTC)
