"""On PostgreSQL every listing shape is served by an index of `tasks` (SPEC §4): no sequential
scan, the keyset seek inside the index condition, and no sort step where the index already has
the listing's order. Checked on the exact statement the API runs, with realistic statistics, in
both the custom plan (parameters known) and the generic plan a prepared statement falls back to
after five executions (asyncpg prepares every statement)."""

import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler

from tests.conftest import SECRET
from todo_api.config import Settings
from todo_api.db import create_engine
from todo_api.sync.feed import changes_statement
from todo_api.tasks.repository import list_tasks_page, list_tasks_statement
from todo_api.tasks.schemas import DueFilter, Order, Priority, SortField, Status, TaskListQuery

pytestmark = [pytest.mark.postgres, pytest.mark.asyncio(loop_scope="module")]

PREFIX = f"ixtest-{uuid.uuid4().hex[:8]}-"
OWNER = f"{PREFIX}owner"
OWNED_TASKS = 4000
OTHER_USERS = 50
OTHER_TASKS = 20000

SORT_INDEX: dict[SortField, str] = {
    "created": "ix_tasks_user_id_created_at_id",
    "updated": "ix_tasks_user_id_updated_at_id",
    "title": "ix_tasks_user_id_title_id",
    "due_date": "ix_tasks_user_id_due_date_id",
    "priority": "ix_tasks_user_id_priority_id",
}
# "Now" for the due-date filters: inside the seeded due dates (all of 2026).
NOW = datetime(2026, 7, 1, 12, tzinfo=UTC)
# Tags on the owner's tasks: one on 1 % of them, one on a third, one on half.
TAGS = {"rare": 100, "third": 3, "half": 2}
INDEX_SCANS = {"Index Scan", "Index Only Scan", "Bitmap Index Scan"}
SORTS = {"Sort", "Incremental Sort"}
Plan = dict[str, Any]
PlanKind = Literal["custom", "generic"]


@dataclass(frozen=True)
class Shape:
    sort: SortField
    order: Order
    filter: str
    status: Status = "all"
    priority: Priority | None = None
    q: str | None = None
    after_first_page: bool = False
    tag: list[str] = field(default_factory=list)
    due: DueFilter | None = None
    due_from: str | None = None
    due_to: str | None = None
    remind_before: str | None = None
    tz: str | None = None

    def query(self, *, limit: int = 100, cursor: str | None = None) -> TaskListQuery:
        parameters = {
            "sort": self.sort,
            "order": self.order,
            "status": self.status,
            "priority": self.priority,
            "q": self.q,
            "limit": limit,
            "cursor": cursor,
            "tag": self.tag,
            "due": self.due,
            "due_from": self.due_from,
            "due_to": self.due_to,
            "remind_before": self.remind_before,
            "tz": self.tz,
        }
        sent = {name: value for name, value in parameters.items() if value is not None}
        return TaskListQuery.model_validate(sent)


FILTERS: dict[str, dict[str, Any]] = {
    "unfiltered": {},
    "pending": {"status": "pending"},
    "high": {"priority": "high"},
    "q": {"q": "ab"},
}
SHAPES = [
    Shape(sort, order, name, after_first_page=after, **FILTERS[name])
    for sort, order, name, after in itertools.product(
        SORT_INDEX, ("asc", "desc"), FILTERS, (False, True)
    )
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """One user with thousands of tasks among 50 smaller users, analysed; removed afterwards."""
    engine = create_engine(
        Settings(database_url=postgres_url, better_auth_secret=SECRET, db_statement_timeout=0)
    )
    names = {"owner": OWNER, "prefix": PREFIX}
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO users (id, created_at, updated_at) "
                "SELECT CAST(:owner AS text), now(), now() UNION ALL "
                "SELECT CAST(:prefix AS text) || 'other-' || g, now(), now() "
                "FROM generate_series(1, :users) AS g"
            ),
            {**names, "users": OTHER_USERS},
        )
        await connection.execute(
            text(
                "INSERT INTO tasks (id, user_id, title, description, completed, priority, "
                "due_date, created_at, updated_at) "
                "SELECT gen_random_uuid(), user_id, 'Task ' || md5(g::text), "
                "  CASE WHEN g % 3 = 0 THEN NULL ELSE 'About ' || md5((g * 7)::text) END, "
                "  g % 2 = 0, (ARRAY[NULL, 'low', 'medium', 'high'])[1 + g % 4], "
                "  CASE WHEN g % 5 = 0 THEN NULL "
                "       ELSE timestamptz '2026-01-01' + (g % 365) * interval '1 day' END, "
                "  timestamptz '2025-01-01' + minute * interval '1 minute', "
                "  timestamptz '2025-01-01' + minute * interval '1 minute' "
                "    + (g % 17) * interval '1h' "
                "FROM (SELECT CAST(:owner AS text) AS user_id, g, g AS minute "
                "      FROM generate_series(1, :owned) AS g "
                "      UNION ALL "
                "      SELECT CAST(:prefix AS text) || 'other-' || (1 + g % :users), g, "
                "        g * :owned / :others "  # the same span of time as the owner's
                "      FROM generate_series(1, :others) AS g) AS rows"
            ),
            {**names, "owned": OWNED_TASKS, "users": OTHER_USERS, "others": OTHER_TASKS},
        )
        await connection.execute(
            text(
                "UPDATE tasks SET remind_at = due_date - interval '1 hour' "
                "WHERE starts_with(user_id, :prefix) AND due_date IS NOT NULL "
                "AND extract(minute FROM created_at)::int % 4 = 1"
            ),
            {"prefix": PREFIX},
        )
        for tag, every in TAGS.items():
            await connection.execute(
                text(
                    "INSERT INTO tags (user_id, key, name) "
                    "SELECT id, :tag, :tag FROM users WHERE starts_with(id, :prefix)"
                ),
                {"tag": tag, "prefix": PREFIX},
            )
            await connection.execute(
                text(
                    "INSERT INTO task_tags (task_id, user_id, key, created_at) "
                    "SELECT id, user_id, :tag, created_at FROM ("
                    "  SELECT id, user_id, created_at, "
                    "    row_number() OVER (PARTITION BY user_id ORDER BY created_at) AS n "
                    "  FROM tasks WHERE starts_with(user_id, :prefix)) AS numbered "
                    "WHERE n % :every = 0"
                ),
                {"tag": tag, "prefix": PREFIX, "every": every},
            )
        await connection.execute(text("ANALYZE tasks"))
        await connection.execute(text("ANALYZE tags"))
        await connection.execute(text("ANALYZE task_tags"))
        counts = await connection.execute(
            text(
                "SELECT count(*) FILTER (WHERE user_id = :owner) AS owned, count(*) AS seeded "
                "FROM tasks WHERE starts_with(user_id, :prefix)"
            ),
            names,
        )
        assert tuple(counts.one()) == (OWNED_TASKS, OWNED_TASKS + OTHER_TASKS)
    yield engine
    async with engine.begin() as connection:
        await connection.execute(
            text("DELETE FROM users WHERE starts_with(id, :prefix)"), {"prefix": PREFIX}
        )  # the tasks go with them (ON DELETE CASCADE)
        left = await connection.scalar(
            text("SELECT count(*) FROM tasks WHERE starts_with(user_id, :prefix)"),
            {"prefix": PREFIX},
        )
        assert left == 0
    await engine.dispose()


async def _statement(engine: AsyncEngine, shape: Shape, first_page: int = 200) -> SQLCompiler:
    """The statement `GET /api/tasks` runs for this shape, compiled as the API's driver sees it."""
    cursor = None
    if shape.after_first_page:
        # A real cursor from the middle of the listing, as the Link header would carry it.
        async with engine.connect() as connection:
            page = await list_tasks_page(connection, OWNER, shape.query(limit=first_page), NOW)
        assert len(page.tasks) == first_page
        assert page.next_cursor is not None
        cursor = page.next_cursor
    compiled = list_tasks_statement(OWNER, shape.query(cursor=cursor), NOW).compile(
        dialect=engine.dialect
    )
    assert isinstance(compiled, SQLCompiler)
    return compiled


def _parameters(compiled: SQLCompiler) -> list[Any]:
    assert compiled.positiontup is not None  # asyncpg: $1, $2, … in this order
    return [compiled.params[name] for name in compiled.positiontup]


def _sql_literal(value: Any) -> str:
    # The values here are ids, timestamps, numbers and short strings; PostgreSQL casts the
    # quoted text to each parameter's declared type.
    return "'" + str(value).replace("'", "''") + "'"


async def _plan(engine: AsyncEngine, compiled: SQLCompiler, kind: PlanKind) -> Plan:
    async with engine.connect() as connection:
        if kind == "custom":
            result = await connection.exec_driver_sql(
                f"EXPLAIN (FORMAT JSON) {compiled}", tuple(_parameters(compiled))
            )
        else:
            # PostgreSQL 15 has no EXPLAIN (GENERIC_PLAN): prepare, and force the generic plan.
            name = f"listing_{uuid.uuid4().hex}"
            await connection.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            await connection.exec_driver_sql(f"PREPARE {name} AS {compiled}")
            arguments = ", ".join(_sql_literal(value) for value in _parameters(compiled))
            try:
                result = await connection.exec_driver_sql(
                    f"EXPLAIN (FORMAT JSON) EXECUTE {name}({arguments})"
                )
            finally:
                await connection.exec_driver_sql(f"DEALLOCATE {name}")
        document = result.scalar_one()
        await connection.rollback()
    plans = json.loads(document) if isinstance(document, str) else document
    plan: Plan = plans[0]["Plan"]
    return plan


def _nodes(plan: Plan) -> Iterator[Plan]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _describe(plan: Plan, depth: int = 0) -> str:
    """The plan as an indented outline, for failure messages."""
    details = [
        f"{key}={plan[key]}"
        for key in ("Index Name", "Scan Direction", "Sort Key", "Index Cond", "Filter")
        if key in plan
    ]
    line = "  " * depth + f"{plan['Node Type']} on {plan.get('Relation Name', '-')} {details}"
    return "\n".join([line, *(_describe(child, depth + 1) for child in plan.get("Plans", []))])


@pytest.mark.parametrize("kind", ["custom", "generic"])
@pytest.mark.parametrize(
    "shape",
    SHAPES,
    ids=lambda s: f"{s.sort}-{s.order}-{s.filter}-{'next' if s.after_first_page else 'first'}",
)
async def test_listing_is_served_by_an_index(
    engine: AsyncEngine, shape: Shape, kind: PlanKind
) -> None:
    compiled = await _statement(engine, shape)
    plan = await _plan(engine, compiled, kind)
    nodes = list(_nodes(plan))
    outline = f"{kind} plan for {shape}:\n{_describe(plan)}\n{compiled}"

    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], outline
    scans = [
        n
        for n in nodes
        if n["Node Type"] in INDEX_SCANS and n.get("Index Name", "").startswith("ix_tasks_")
    ]
    assert scans, outline
    # Scoped to the caller inside the index, and the keyset seek too: page 50 costs page 1.
    assert all("user_id" in n.get("Index Cond", "") for n in scans), outline
    if shape.after_first_page:
        assert any("ROW(" in n.get("Index Cond", "") for n in scans), outline
    if shape.q is None:
        # The index of the sort key, read in the listing's order: nothing left to sort.
        assert [n["Index Name"] for n in scans] == [SORT_INDEX[shape.sort]], outline
        assert not [n for n in nodes if n["Node Type"] in SORTS], outline


# SPEC §10's filters, alone, each with every sort: a tag (1 % of the tasks), two tags, a tag with
# a status, each `due`, a due-date range in a time zone, pending reminders. Each names the
# column its own index condition must mention when the planner reads the filter's index.
NEW_FILTERS: dict[str, tuple[dict[str, Any], str | None]] = {
    "tag-rare": ({"tag": ["rare"]}, "key"),
    "tag-two": ({"tag": ["Third", "HALF"]}, "key"),
    "tag-pending": ({"tag": ["third"], "status": "pending"}, "key"),
    "overdue": ({"due": "overdue"}, None),
    "today": ({"due": "today"}, "due_date"),
    "no-due-date": ({"due": "none"}, None),
    "due-range": (
        {"due_from": "2026-03-01", "due_to": "2026-04-01", "tz": "Europe/Berlin"},
        "due_date",
    ),
    "remind-before": ({"remind_before": "2026-02-01T00:00:00"}, "remind_at"),
}
NEW_SHAPES = [
    Shape(sort, order, name, after_first_page=after, **NEW_FILTERS[name][0])
    for sort, order, name, after in itertools.product(
        SORT_INDEX, ("asc", "desc"), NEW_FILTERS, (False, True)
    )
]
# Indexes whose first column is the user: each reads only the caller's rows.
USER_INDEXES = ("ix_tasks_", "ix_task_tags_")


@pytest.mark.parametrize("kind", ["custom", "generic"])
@pytest.mark.parametrize(
    "shape",
    NEW_SHAPES,
    ids=lambda s: f"{s.sort}-{s.order}-{s.filter}-{'next' if s.after_first_page else 'first'}",
)
async def test_new_filters_are_served_by_an_index(
    engine: AsyncEngine, shape: Shape, kind: PlanKind
) -> None:
    """No sequential scan; the rows come from an index on the caller's rows (a task found
    through its tag row is then fetched by primary key); and for the default order, no sort
    unless it sorts only what the filter's own index selected (a tag's tasks, a range of due
    dates), never all of the user's tasks. The planner sorts those when it costs less than
    reading in order: a rare tag's forty tasks, a day's dozen due dates."""
    compiled = await _statement(engine, shape, first_page=5)  # `today` matches a dozen
    plan = await _plan(engine, compiled, kind)
    nodes = list(_nodes(plan))
    outline = f"{kind} plan for {shape}:\n{_describe(plan)}\n{compiled}"

    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], outline
    scans = [n for n in nodes if n["Node Type"] in INDEX_SCANS]
    assert scans, outline
    for scan in scans:
        condition = scan.get("Index Cond", "")
        if scan["Index Name"] == "pk_tasks":
            # A tagged task, by its id (the first tag's rows are `tagged`).
            assert re.search(r"\b(tagged|task_tags)\.task_id\b", condition), outline
        elif scan["Index Name"] == "pk_task_tags":
            # Whether one of the user's tasks carries the tag.
            assert "task_id = tasks.id" in condition, outline
        else:
            assert scan["Index Name"].startswith(USER_INDEXES), outline
            assert "user_id" in condition, outline
    if (shape.sort, shape.order) == ("created", "desc"):
        column = NEW_FILTERS[shape.filter][1]
        for sort in (n for n in nodes if n["Node Type"] in SORTS):
            below = [n for n in _nodes(sort) if n["Node Type"] in INDEX_SCANS]
            assert column is not None, outline
            assert any(column in n.get("Index Cond", "") for n in below), outline


@pytest.mark.parametrize("kind", ["custom", "generic"])
@pytest.mark.parametrize("position", ["full-sync", "middle"])
async def test_the_change_feed_is_served_by_its_indexes(
    engine: AsyncEngine, position: str, kind: PlanKind
) -> None:
    """`GET /api/tasks/changes` reads the caller's changed tasks and tombstones in change order
    from their `(user_id, number)` indexes, never the whole table. (PostgreSQL may sort what
    the index selected rather than read it in order, when few rows are left after the cursor.)"""
    seen = 0 if position == "full-sync" else OWNED_TASKS // 2
    compiled = changes_statement(OWNER, seen, seen, 500).compile(dialect=engine.dialect)
    assert isinstance(compiled, SQLCompiler)
    plan = await _plan(engine, compiled, kind)
    nodes = list(_nodes(plan))
    outline = f"{kind} plan:\n{_describe(plan)}\n{compiled}"
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], outline
    scans = {n.get("Index Name"): n for n in nodes if n["Node Type"] in INDEX_SCANS}
    for index in ("uq_tasks_user_id_change_seq", "uq_task_tombstones_user_id_seq"):
        assert index in scans, outline
        assert "user_id" in scans[index].get("Index Cond", ""), outline
