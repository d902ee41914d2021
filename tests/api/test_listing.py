"""`GET /api/tasks` through HTTP: filters, sort orders and keyset pages, checked against a plain
Python model of the listing rules (SPEC §6, README "Listing"), and the parameter errors."""

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TaskFactory, auth, running

Sort = Literal["created", "title", "due_date", "priority", "updated"]
Order = Literal["asc", "desc"]
Status = Literal["all", "pending", "completed"]
Task = dict[str, Any]

SORTS: tuple[Sort, ...] = ("created", "title", "due_date", "priority", "updated")
PRIORITIES = ("low", "medium", "high")
DEFAULT_ORDER: dict[Sort, Order] = {
    "created": "desc",
    "updated": "desc",
    "title": "asc",
    "due_date": "asc",
    "priority": "desc",
}
PRIORITY_RANK: dict[str | None, int] = {"high": 3, "medium": 2, "low": 1, None: 0}
# Due dates are capped below the year 9999, so this is after every real one.
NEVER_DUE = datetime.max.replace(tzinfo=UTC)
LINK_NEXT = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


SORT_KEYS: dict[Sort, Callable[[Task], Any]] = {
    "created": lambda task: _timestamp(task["created_at"]),
    "updated": lambda task: _timestamp(task["updated_at"]),
    # ASCII only in these tests, so Python's lower() is SQL's lower().
    "title": lambda task: task["title"].lower(),
    "due_date": lambda task: (
        NEVER_DUE if task["due_date"] is None else _timestamp(task["due_date"])
    ),
    "priority": lambda task: PRIORITY_RANK[task["priority"]],
}


@dataclass(frozen=True)
class Listing:
    """One `GET /api/tasks` query; `None` means the parameter is not sent."""

    sort: Sort
    order: Order | None = None
    status: Status | None = None
    priority: str | None = None
    q: str | None = None
    limit: int | None = None

    def params(self) -> dict[str, str]:
        sent = {
            "sort": self.sort,
            "order": self.order,
            "status": self.status,
            "priority": self.priority,
            "q": self.q,
            "limit": None if self.limit is None else str(self.limit),
        }
        return {name: value for name, value in sent.items() if value is not None}

    def matches(self, task: Task) -> bool:
        if self.status == "pending" and task["completed"]:
            return False
        if self.status == "completed" and not task["completed"]:
            return False
        if self.priority is not None and task["priority"] != self.priority:
            return False
        if self.q:
            needle = self.q.lower()
            description = task["description"] or ""
            return needle in task["title"].lower() or needle in description.lower()
        return True

    def expected(self, tasks: list[Task]) -> list[Task]:
        """The rules: one key per sort, id (as a UUID) breaks ties, `desc` reverses `asc`."""
        key = SORT_KEYS[self.sort]
        ascending = sorted(
            (task for task in tasks if self.matches(task)),
            key=lambda task: (key(task), uuid.UUID(task["id"])),
        )
        order = self.order or DEFAULT_ORDER[self.sort]
        return ascending if order == "asc" else ascending[::-1]


def _next_link(response: Response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = LINK_NEXT.match(link)
    assert match is not None, link
    return match["url"]


async def _walk(client: AsyncClient, user: str, listing: Listing) -> list[list[Task]]:
    """Every page of `listing`, following `Link: rel="next"` until it is absent."""
    sent = listing.params()
    response = await client.get("/api/tasks", params=sent, headers=auth(user))
    pages: list[list[Task]] = []
    for _ in range(1000):
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_url = _next_link(response)
        if next_url is None:
            assert "x-next-cursor" not in response.headers
            return pages
        url = urlsplit(next_url)
        query = dict(parse_qsl(url.query))
        # The link repeats every parameter of the request and adds the position.
        assert url.path == "/api/tasks"
        assert query.pop("cursor") == response.headers["x-next-cursor"]
        assert query == sent
        response = await client.get(next_url, headers=auth(user))
    raise AssertionError("the pages never end")


async def _assert_listing(
    client: AsyncClient, user: str, listing: Listing, tasks: list[Task]
) -> None:
    pages = await _walk(client, user, listing)
    expected = listing.expected(tasks)
    listed = [task for page in pages for task in page]
    context = f"{listing}: pages {[[t['title'] for t in p] for p in pages]}"
    assert [t["id"] for t in listed] == [t["id"] for t in expected], context
    assert listed == expected, context  # whole tasks, current state
    limit = listing.limit or 100
    assert all(len(page) == limit for page in pages[:-1]), context
    # A next page is announced only when it has something on it.
    assert 1 <= len(pages[-1]) <= limit or pages == [[]], context


# --- the property: any data, any filter, every sort and order ---------------------------------

TEXT = "abAB _%/"
DUE_DATES = (
    None,
    "2026-03-01",
    "2026-03-01T00:00:00Z",  # the same instant as the line above: a tie
    "2026-02-28T23:30:00-01:00",
    "0001-01-01T00:00:00Z",
    "9998-12-31T23:59:59.999999Z",
)


@dataclass(frozen=True)
class TaskSpec:
    title: str
    description: str | None
    priority: str | None
    due_date: str | None
    completed: bool
    toggles: int  # how many times PATCH /complete flips it after every task exists

    def body(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "priority": self.priority,
            "due_date": self.due_date,
            "completed": self.completed,
        }


@dataclass(frozen=True)
class Scenario:
    tasks: list[TaskSpec]
    toggle_order: list[int]
    others: list[TaskSpec]
    listings: list[Listing]


@st.composite
def task_specs(draw: st.DrawFn) -> TaskSpec:
    return TaskSpec(
        title=draw(st.text(TEXT, min_size=1, max_size=4).filter(str.strip)),
        description=draw(st.none() | st.text(TEXT, max_size=5)),
        priority=draw(st.sampled_from((None, *PRIORITIES))),
        due_date=draw(st.sampled_from(DUE_DATES)),
        completed=draw(st.booleans()),
        toggles=draw(st.integers(0, 2)),
    )


@st.composite
def queries(draw: st.DrawFn, words: list[str]) -> str | None:
    kind = draw(st.sampled_from(("none", "none", "random", "substring")))
    if kind == "none":
        return None
    if kind == "substring" and words:
        word = draw(st.sampled_from(words))
        start = draw(st.integers(0, len(word) - 1))
        needle = word[start : start + draw(st.integers(1, 3))]
        return needle.swapcase() if draw(st.booleans()) else needle
    return draw(st.text(TEXT, min_size=1, max_size=2))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # An explicit size: st.lists alone mostly draws a handful of tasks.
    size = draw(st.sampled_from(range(26)))
    tasks = draw(st.lists(task_specs(), min_size=size, max_size=size))
    words = [t.title for t in tasks] + [t.description for t in tasks if t.description]
    listings = [
        Listing(
            sort=sort,
            order=order,
            status=draw(st.sampled_from((None, "all", "pending", "completed"))),
            priority=draw(st.sampled_from((None, None, *PRIORITIES))),
            q=draw(queries(words)),
            limit=draw(st.integers(1, 7)),
        )
        for sort in SORTS
        for order in (None, "asc", "desc")
    ]
    return Scenario(
        tasks=tasks,
        toggle_order=draw(st.permutations(range(len(tasks)))),
        # The other user's tasks look like ours, so a leak would match the filters.
        others=tasks[:2] + draw(st.lists(task_specs(), min_size=1, max_size=2)),
        listings=listings,
    )


@pytest.mark.slow
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios())
async def test_every_listing_matches_the_model(
    client: AsyncClient, create_task: TaskFactory, scenario: Scenario
) -> None:
    user, other = f"lister-{uuid.uuid4()}", f"other-{uuid.uuid4()}"
    tasks = [await create_task(user, **spec.body()) for spec in scenario.tasks]
    for spec in scenario.others:
        await create_task(other, **spec.body())
    for index in scenario.toggle_order:
        for _ in range(scenario.tasks[index].toggles):
            response = await client.patch(
                f"/api/tasks/{tasks[index]['id']}/complete", headers=auth(user)
            )
            assert response.status_code == 200, response.text
            tasks[index] = response.json()

    for listing in scenario.listings:
        await _assert_listing(client, user, listing, tasks)


# --- the rules on one hand-written example, independent of the model above -------------------


async def test_default_and_reversed_order_of_each_sort(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    banana = await create_task("carol", title="banana", priority="low", due_date="2026-05-01")
    apple = await create_task("carol", title="Apple")
    cherry = await create_task("carol", title="cherry", priority="high", due_date="2026-04-01")
    pie = await create_task("carol", title="apple pie", priority="medium", due_date="2026-06-01")
    toggled = await client.patch(f"/api/tasks/{banana['id']}/complete", headers=auth("carol"))
    assert toggled.status_code == 200
    await create_task("dave", title="Aardvark", priority="high", due_date="2020-01-01")

    by_default: dict[Sort, list[Task]] = {
        "created": [pie, cherry, apple, banana],
        "updated": [banana, pie, cherry, apple],
        "title": [apple, pie, banana, cherry],
        "due_date": [cherry, banana, pie, apple],
        "priority": [cherry, pie, banana, apple],
    }
    for sort, tasks in by_default.items():
        ids = [task["id"] for task in tasks]
        cases: list[tuple[dict[str, str], list[str]]] = [
            ({"sort": sort}, ids),
            ({"sort": sort, "order": DEFAULT_ORDER[sort]}, ids),
            (
                {"sort": sort, "order": "asc" if DEFAULT_ORDER[sort] == "desc" else "desc"},
                ids[::-1],
            ),
        ]
        for params, expected in cases:
            response = await client.get("/api/tasks", params=params, headers=auth("carol"))
            assert response.status_code == 200
            assert [task["id"] for task in response.json()] == expected, params
    # No parameters at all: newest first, and only carol's.
    response = await client.get("/api/tasks", headers=auth("carol"))
    assert [task["id"] for task in response.json()] == [t["id"] for t in by_default["created"]]


# --- links and cursors ------------------------------------------------------------------------


async def test_link_keeps_the_query_and_its_cursor_continues(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    wanted = [
        await create_task("erin", title=title, priority="high", description="Quarterly report")
        for title in ("d report", "B report", "a report", "C REPORT", "e report")
    ]
    await create_task("erin", title="z report", priority="low")  # other priority
    done = await create_task("erin", title="y report", priority="high", completed=True)
    await create_task("erin", title="x", priority="high")  # no match for q
    await create_task("frank", title="w report", priority="high")  # someone else's
    params = {
        "status": "pending",
        "priority": "high",
        "q": "REPORT",
        "sort": "title",
        "order": "desc",
        "limit": "2",
    }
    first = await client.get("/api/tasks", params=params, headers=auth("erin"))

    assert first.status_code == 200
    assert [task["title"] for task in first.json()] == ["e report", "d report"]
    next_url = _next_link(first)
    assert next_url is not None
    url = urlsplit(next_url)
    query = dict(parse_qsl(url.query))
    assert (url.scheme, url.netloc, url.path) == ("", "", "/api/tasks")  # relative
    assert query == {**params, "cursor": first.headers["x-next-cursor"]}

    second = await client.get(next_url, headers=auth("erin"))
    assert second.status_code == 200
    assert [task["title"] for task in second.json()] == ["C REPORT", "B report"]
    third_url = _next_link(second)
    assert third_url is not None
    third = await client.get(third_url, headers=auth("erin"))
    assert third.status_code == 200
    assert [task["title"] for task in third.json()] == ["a report"]
    assert _next_link(third) is None
    assert "x-next-cursor" not in third.headers
    listed = {task["id"] for r in (first, second, third) for task in r.json()}
    assert listed == {task["id"] for task in wanted}
    assert done["id"] not in listed

    # The bare cursor works too, with the parameters sent again by the client.
    again = await client.get(
        "/api/tasks",
        params={**params, "cursor": first.headers["x-next-cursor"]},
        headers=auth("erin"),
    )
    assert again.json() == second.json()


async def test_cursor_from_another_user_only_positions_within_own_tasks(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    theirs = [await create_task("gina", title=title) for title in ("a", "b", "c")]
    mine = [await create_task("hank", title=title) for title in ("A", "b", "c")]
    first = await client.get(
        "/api/tasks", params={"sort": "title", "limit": "1"}, headers=auth("gina")
    )
    assert [task["id"] for task in first.json()] == [theirs[0]["id"]]

    response = await client.get(
        "/api/tasks",
        params={"sort": "title", "cursor": first.headers["x-next-cursor"]},
        headers=auth("hank"),
    )
    assert response.status_code == 200
    # The cursor is only a position ("a", gina's id): hank sees his own tasks after it.
    after = ("a", uuid.UUID(theirs[0]["id"]))
    expected = [t["id"] for t in mine if (t["title"].lower(), uuid.UUID(t["id"])) > after]
    assert [task["id"] for task in response.json()] == expected


def _forge(position: Any) -> str:
    """A cursor in the shape the server issues (URL-safe base64 JSON), with chosen contents."""
    raw = json.dumps(position).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


SOME_ID = "0b6c7e9e-8d6f-4e43-9a5a-2f2d4c1b7a10"
A_TIME = "2026-01-01T00:00:00+00:00"
# name: (sort the request uses, cursor); each cursor's order is that sort's default.
GARBAGE_CURSORS: dict[str, tuple[Sort, str]] = {
    "not base64": ("created", "not a cursor!"),
    "not json": ("created", base64.urlsafe_b64encode(b"hello").decode()),
    "not utf-8": ("created", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
    "json list": ("created", _forge([1, 2])),
    "no key": ("created", _forge({"sort": "created", "order": "desc", "id": SOME_ID})),
    "no id": ("created", _forge({"sort": "created", "order": "desc", "key": A_TIME})),
    "id not a uuid": (
        "created",
        _forge({"sort": "created", "order": "desc", "key": A_TIME, "id": "x"}),
    ),
    "key not a timestamp": (
        "created",
        _forge({"sort": "created", "order": "desc", "key": "yesterday", "id": SOME_ID}),
    ),
    "naive timestamp": (
        "updated",
        _forge({"sort": "updated", "order": "desc", "key": "2026-01-01T00:00", "id": SOME_ID}),
    ),
    "number as timestamp": (
        "created",
        _forge({"sort": "created", "order": "desc", "key": 5, "id": SOME_ID}),
    ),
    "fractional rank": (
        "priority",
        _forge({"sort": "priority", "order": "desc", "key": 1.5, "id": SOME_ID}),
    ),
    "list as due date": (
        "due_date",
        _forge({"sort": "due_date", "order": "asc", "key": [], "id": SOME_ID}),
    ),
    "number as title": (
        "title",
        _forge({"sort": "title", "order": "asc", "key": 3, "id": SOME_ID}),
    ),
    "rank beyond int64": (
        "priority",
        _forge({"sort": "priority", "order": "desc", "key": 10**30, "id": SOME_ID}),
    ),
    "boolean rank": (
        "priority",
        _forge({"sort": "priority", "order": "desc", "key": True, "id": SOME_ID}),
    ),
    "title with NUL": (
        "title",
        _forge({"sort": "title", "order": "asc", "key": "a\x00b", "id": SOME_ID}),
    ),
    "timestamp before year 1 in UTC": (
        "created",
        _forge(
            {"sort": "created", "order": "desc", "key": "0001-01-01T00:00+01:00", "id": SOME_ID}
        ),
    ),
}


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        *(pytest.param(*case, id=name) for name, case in GARBAGE_CURSORS.items()),
    ],
)
async def test_garbage_cursor_is_400(
    client: AsyncClient, create_task: TaskFactory, sort: Sort, cursor: str
) -> None:
    await create_task("ivan", title="something to list")
    response = await client.get(
        "/api/tasks", params={"sort": sort, "cursor": cursor}, headers=auth("ivan")
    )

    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert "cursor" in detail.lower()


async def _real_cursor(client: AsyncClient, user: str, **params: str) -> str:
    response = await client.get("/api/tasks", params={**params, "limit": "1"}, headers=auth(user))
    assert response.status_code == 200
    cursor: str = response.headers["x-next-cursor"]
    return cursor


@pytest.mark.parametrize(
    ("issued_for", "used_with"),
    [
        ({"sort": "title"}, {"sort": "created"}),
        ({"sort": "title"}, {}),
        ({"sort": "created"}, {"sort": "updated"}),
        ({"sort": "due_date", "order": "asc"}, {"sort": "due_date", "order": "desc"}),
        ({"sort": "priority"}, {"sort": "priority", "order": "asc"}),
        ({"sort": "created", "order": "desc"}, {"sort": "created", "order": "asc"}),
    ],
)
async def test_cursor_of_another_sort_or_order_is_400(
    client: AsyncClient,
    create_task: TaskFactory,
    issued_for: dict[str, str],
    used_with: dict[str, str],
) -> None:
    for title in ("one", "two"):
        await create_task("judy", title=title, due_date="2026-01-01")
    cursor = await _real_cursor(client, "judy", **issued_for)
    response = await client.get(
        "/api/tasks", params={**used_with, "cursor": cursor}, headers=auth("judy")
    )

    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["detail"].lower()


# --- parameter errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "mentions"),
    [
        ("limit", "0", ["1"]),
        ("limit", "1001", ["1000"]),
        ("limit", "-5", ["1"]),
        ("limit", "abc", ["integer"]),
        ("limit", "2.5", ["integer"]),
        ("status", "bogus", ["'all'", "'pending'", "'completed'"]),
        ("status", "PENDING", ["'all'", "'pending'", "'completed'"]),
        ("sort", "bogus", ["'created'", "'title'", "'due_date'", "'priority'", "'updated'"]),
        ("sort", "created_at", ["'created'", "'title'", "'due_date'", "'priority'", "'updated'"]),
        ("order", "up", ["'asc'", "'desc'"]),
        ("priority", "urgent", ["'low'", "'medium'", "'high'"]),
        ("q", "x" * 201, ["200"]),
    ],
)
async def test_invalid_parameter_is_400_naming_it_and_the_allowed_values(
    client: AsyncClient, name: str, value: str, mentions: list[str]
) -> None:
    response = await client.get("/api/tasks", params={name: value}, headers=auth("kate"))

    assert response.status_code == 400, response.text
    body = response.json()
    assert f"'{name}'" in body["detail"]
    for allowed in mentions:
        assert allowed in body["detail"], body["detail"]
    assert [error["field"] for error in body["errors"]] == [name]


async def test_empty_parameters_mean_not_given(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    older = await create_task("mona", title="older", priority="low")
    newer = await create_task("mona", title="newer", priority="high")
    params = dict.fromkeys(["status", "priority", "q", "sort", "order", "limit", "cursor"], "")
    response = await client.get("/api/tasks", params=params, headers=auth("mona"))

    assert response.status_code == 200, response.text
    assert [task["id"] for task in response.json()] == [newer["id"], older["id"]]


async def test_limit_defaults_to_100_and_accepts_1000(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    created = [await create_task("liam", title=f"task {n:03}") for n in range(101)]
    newest_first = [task["id"] for task in reversed(created)]

    first = await client.get("/api/tasks", headers=auth("liam"))
    assert first.status_code == 200
    assert [task["id"] for task in first.json()] == newest_first[:100]
    next_url = _next_link(first)
    assert next_url is not None
    rest = await client.get(next_url, headers=auth("liam"))
    assert [task["id"] for task in rest.json()] == newest_first[100:]
    assert _next_link(rest) is None

    everything = await client.get("/api/tasks", params={"limit": "1000"}, headers=auth("liam"))
    assert [task["id"] for task in everything.json()] == newest_first
    assert _next_link(everything) is None


async def test_q_matches_percent_underscore_and_slash_literally(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    titles = ["100% done", "1000 done", "a_b", "axb", "path/to", "pathXto", "plain"]
    for title in titles:
        await create_task("mona", title=title)
    await create_task("mona", title="notes", description="up 50% on_time")
    await create_task("nick", title="99% a_b path/to")  # another user's

    async def titles_for(q: str) -> set[str]:
        response = await client.get("/api/tasks", params={"q": q}, headers=auth("mona"))
        assert response.status_code == 200
        return {task["title"] for task in response.json()}

    assert await titles_for("%") == {"100% done", "notes"}
    assert await titles_for("0%") == {"100% done", "notes"}
    assert await titles_for("0% D") == {"100% done"}
    assert await titles_for("_") == {"a_b", "notes"}
    assert await titles_for("A_B") == {"a_b"}
    assert await titles_for("/") == {"path/to"}
    assert await titles_for("h/t") == {"path/to"}
    assert await titles_for("%_") == set()
    assert await titles_for("DONE") == {"100% done", "1000 done"}
    assert await titles_for("ON_T") == {"notes"}


async def test_next_link_never_comes_from_the_host_header(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory
) -> None:
    """A client chooses `Host`; a link built from it would point wherever it said. The link is
    relative, or absolute under `PUBLIC_BASE_URL` when that is configured."""
    for n in range(3):
        await create_task("host", title=f"task {n}")
    hostile = {**auth("host"), "Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    response = await client.get("/api/tasks", params={"limit": "1"}, headers=hostile)
    link = _next_link(response)
    assert link is not None
    assert link.startswith("/api/tasks?")
    assert "evil" not in link

    configured_settings = app.state.runtime.settings
    public = configured_settings.model_copy(
        update={"public_base_url": "https://api.example.com/todo/"}
    )
    async with running(public) as (_, configured):
        response = await configured.get("/api/tasks", params={"limit": "1"}, headers=hostile)
    link = _next_link(response)
    assert link is not None
    assert link.startswith("https://api.example.com/todo/api/tasks?limit=1&cursor=")
