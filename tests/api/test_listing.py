"""`GET /api/tasks` through HTTP: filters, sort orders and keyset pages, checked against a plain
Python model of the listing rules (SPEC §6 and the "Listing" of §10, README "Listing"), and the
parameter errors."""

import base64
import itertools
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.conftest import TaskFactory, auth, running

Sort = Literal["created", "title", "due_date", "priority", "updated"]
Order = Literal["asc", "desc"]
Status = Literal["all", "pending", "completed"]
Due = Literal["overdue", "today", "none"]
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
# The `tz` values the listings use (absent means UTC): whole, half-hour and +14 h offsets.
ZONES = ("UTC", "Europe/Berlin", "America/Los_Angeles", "Asia/Kolkata", "Pacific/Kiritimati")


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _tag_key(name: str) -> str:
    """The spec's "the same tag": trimmed, then compared without regard to case. casefold(), not
    lower(): "Straße" and "STRASSE" are one tag."""
    return name.strip().casefold()


def _instant(value: str, tz: str | None) -> datetime:
    """A `due_from`/`due_to`/`remind_before` value as §10 reads it: a date is its midnight in
    `tz`, a date-time without offset is wall time in `tz`, one with an offset is itself."""
    zone = ZoneInfo(tz or "UTC")
    if "T" not in value:
        return datetime.combine(date.fromisoformat(value), time(), zone).astimezone(UTC)
    parsed = datetime.fromisoformat(value)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)


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
    """One `GET /api/tasks` query; `None` (or no tags) means the parameter is not sent."""

    sort: Sort
    order: Order | None = None
    status: Status | None = None
    priority: str | None = None
    q: str | None = None
    limit: int | None = None
    tag: tuple[str, ...] = ()
    due: Due | None = None
    tz: str | None = None
    due_from: str | None = None
    due_to: str | None = None
    remind_before: str | None = None

    def params(self) -> list[tuple[str, str]]:
        sent = {
            "sort": self.sort,
            "order": self.order,
            "status": self.status,
            "priority": self.priority,
            "q": self.q,
            "limit": None if self.limit is None else str(self.limit),
            "due": self.due,
            "tz": self.tz,
            "due_from": self.due_from,
            "due_to": self.due_to,
            "remind_before": self.remind_before,
        }
        single = [(name, value) for name, value in sent.items() if value is not None]
        return single + [("tag", name) for name in self.tag]

    def today(self, now: datetime) -> tuple[datetime, datetime]:
        """The current day in `tz`: from this local midnight to the next, in UTC."""
        zone = ZoneInfo(self.tz or "UTC")
        day = now.astimezone(zone).date()
        start = datetime.combine(day, time(), zone)
        end = datetime.combine(day + timedelta(days=1), time(), zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def matches(self, task: Task, now: datetime) -> bool:
        if self.status == "pending" and task["completed"]:
            return False
        if self.status == "completed" and not task["completed"]:
            return False
        if self.priority is not None and task["priority"] != self.priority:
            return False
        if self.q:
            needle = self.q.lower()
            description = task["description"] or ""
            if needle not in task["title"].lower() and needle not in description.lower():
                return False
        if not {_tag_key(name) for name in self.tag} <= {_tag_key(t) for t in task["tags"]}:
            return False
        return self._matches_dates(task, now)

    def _matches_dates(self, task: Task, now: datetime) -> bool:
        due = None if task["due_date"] is None else _timestamp(task["due_date"])
        if self.due == "overdue" and (task["completed"] or due is None or due >= now):
            return False
        if self.due == "today":
            start, end = self.today(now)
            if due is None or not start <= due < end:
                return False
        if self.due == "none" and due is not None:
            return False
        if self.due_from is not None and (due is None or due < _instant(self.due_from, self.tz)):
            return False
        if self.due_to is not None and (due is None or due >= _instant(self.due_to, self.tz)):
            return False
        if self.remind_before is not None:
            remind = task["remind_at"]
            before = _instant(self.remind_before, self.tz)
            if task["completed"] or remind is None or _timestamp(remind) >= before:
                return False
        return True

    def expected(self, tasks: list[Task], now: datetime) -> list[Task]:
        """The rules: one key per sort, id (as a UUID) breaks ties, `desc` reverses `asc`."""
        key = SORT_KEYS[self.sort]
        ascending = sorted(
            (task for task in tasks if self.matches(task, now)),
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
    response = await client.get("/api/tasks", params=tuple(sent), headers=auth(user))
    pages: list[list[Task]] = []
    for _ in range(1000):
        assert response.status_code == 200, response.text
        pages.append(response.json())
        next_url = _next_link(response)
        if next_url is None:
            assert "x-next-cursor" not in response.headers
            return pages
        url = urlsplit(next_url)
        query = parse_qsl(url.query, keep_blank_values=True)
        # The link repeats every parameter of the request (each `tag`) and adds the position.
        assert url.path == "/api/tasks"
        assert [value for name, value in query if name == "cursor"] == [
            response.headers["x-next-cursor"]
        ]
        assert sorted(item for item in query if item[0] != "cursor") == sorted(sent)
        response = await client.get(next_url, headers=auth(user))
    raise AssertionError("the pages never end")


async def _assert_listing(
    client: AsyncClient, user: str, listing: Listing, tasks: list[Task]
) -> bool:
    """Compare every page with the model; False (nothing asserted) when "now" moved across a
    due date or a day boundary in `tz` while the pages were read, so either answer is right."""
    before = datetime.now(UTC)
    pages = await _walk(client, user, listing)
    after = datetime.now(UTC)
    expected = listing.expected(tasks, before)
    if listing.expected(tasks, after) != expected:
        return False
    listed = [task for page in pages for task in page]
    context = f"{listing}: pages {[[t['title'] for t in p] for p in pages]}"
    assert [t["id"] for t in listed] == [t["id"] for t in expected], context
    assert listed == expected, context  # whole tasks, current state
    limit = listing.limit or 100
    assert all(len(page) == limit for page in pages[:-1]), context
    # A next page is announced only when it has something on it.
    assert 1 <= len(pages[-1]) <= limit or pages == [[]], context
    return True


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
# A few spellings of four tags: "Straße" and "STRASSE" are one tag (their casefold() is
# "strasse"; lower() tells them apart), " home " is "home" once trimmed.
TAG_POOL = ("work", "Work", "WORK", " home ", "HOME", "Straße", "STRASSE", "q4", "Q4")
# What a listing asks for: any of those, other spellings, and a tag nobody has.
TAG_FILTERS = (*TAG_POOL, "wOrK", "strasse", "STRAßE", "elsewhere")
WEST, EAST = timezone(-timedelta(hours=9, minutes=30)), timezone(timedelta(hours=5, minutes=45))
MINUTES_IN_10_DAYS = 10 * 24 * 60


@dataclass(frozen=True)
class Moment:
    """An instant relative to when the example starts: `minutes` after it or, with `zone`, the
    local midnight that begins the day `days` after that day in `zone` (a boundary of
    `due=today` and of a date in `due_from`/`due_to` when `tz` is that zone)."""

    minutes: int = 0
    zone: str | None = None
    days: int = 0

    def at(self, start: datetime) -> datetime:
        if self.zone is None:
            return start + timedelta(minutes=self.minutes)
        zone = ZoneInfo(self.zone)
        day = start.astimezone(zone).date() + timedelta(days=self.days)
        return datetime.combine(day, time(), zone).astimezone(UTC)


Form = Literal["date", "local", "west", "east", "utc"]


@dataclass(frozen=True)
class QueryMoment:
    """A `due_from`/`due_to`/`remind_before` value: the moment written as its date in `tz`
    (`date`: the midnight that begins it), as wall time in `tz` without offset (`local`), with
    an offset (`west`: -09:30, `east`: +05:45, a `+` to survive the query string and the
    `Link`), or in UTC with `Z` (`utc`)."""

    moment: Moment
    form: Form

    def text(self, start: datetime, tz: str | None) -> str:
        instant = self.moment.at(start)
        local = instant.astimezone(ZoneInfo(tz or "UTC"))
        if self.form == "date":
            return local.date().isoformat()
        if self.form == "local":
            return local.replace(tzinfo=None).isoformat()
        if self.form in ("west", "east"):
            return instant.astimezone(WEST if self.form == "west" else EAST).isoformat()
        return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ListingSpec:
    """A listing whose date parameters are written once the example's start is known."""

    listing: Listing
    due_from: QueryMoment | None = None
    due_to: QueryMoment | None = None
    remind_before: QueryMoment | None = None

    def at(self, start: datetime) -> Listing:
        tz = self.listing.tz

        def text(value: QueryMoment | None) -> str | None:
            return None if value is None else value.text(start, tz)

        return replace(
            self.listing,
            due_from=text(self.due_from),
            due_to=text(self.due_to),
            remind_before=text(self.remind_before),
        )


@dataclass(frozen=True)
class TaskSpec:
    title: str
    description: str | None
    priority: str | None
    due_date: str | Moment | None
    completed: bool
    toggles: int  # how many times PATCH /complete flips it after every task exists
    tags: tuple[str, ...] = ()
    remind_at: Moment | None = None
    retag: tuple[str, ...] | None = None  # PATCHed in after the toggles, when not None

    def body(self, start: datetime) -> dict[str, Any]:
        due_date, remind_at = self.due_date, self.remind_at
        if isinstance(due_date, Moment):
            due_date = due_date.at(start).isoformat()
        return {
            "title": self.title,
            "description": self.description,
            "priority": self.priority,
            "due_date": due_date,
            "completed": self.completed,
            "tags": list(self.tags),
            "remind_at": None if remind_at is None else remind_at.at(start).isoformat(),
        }


def _spelled(spellings: dict[str, str], names: tuple[str, ...]) -> list[str]:
    """The tags a task answers with, given the user's spellings so far (updated): each tag
    once, in its user's first spelling (trimmed), sorted case-insensitively."""
    given: dict[str, str] = {}
    for name in names:
        given.setdefault(_tag_key(name), name.strip())
    for key, name in given.items():
        spellings.setdefault(key, name)
    return [spellings[key] for key in sorted(given)]


@dataclass(frozen=True)
class Scenario:
    tasks: list[TaskSpec]
    toggle_order: list[int]
    others: list[TaskSpec]
    listings: list[ListingSpec]


def moments(*, midnights: bool) -> st.SearchStrategy[Moment]:
    """Offsets mostly within a day and a half, else within about ±10 days, never within 3
    minutes of the start, some of them often (ties); with `midnights`, also local midnights
    around the start in every zone."""
    minutes = st.sampled_from((-4321, -90, 90, 2880)) | (
        st.integers(-2160, 2160) | st.integers(-MINUTES_IN_10_DAYS, MINUTES_IN_10_DAYS)
    ).filter(lambda m: abs(m) >= 3)
    offsets = st.builds(Moment, minutes=minutes)
    if not midnights:
        return offsets
    return offsets | st.builds(Moment, zone=st.sampled_from(ZONES), days=st.integers(-2, 2))


TAGS = st.integers(0, 4).flatmap(
    lambda size: st.lists(st.sampled_from(TAG_POOL), min_size=size, max_size=size).map(tuple)
)


@st.composite
def task_specs(draw: st.DrawFn) -> TaskSpec:
    return TaskSpec(
        title=draw(st.text(TEXT, min_size=1, max_size=4).filter(str.strip)),
        description=draw(st.none() | st.text(TEXT, max_size=5)),
        priority=draw(st.sampled_from((None, *PRIORITIES))),
        due_date=draw(st.none() | st.sampled_from(DUE_DATES) | moments(midnights=True)),
        completed=draw(st.booleans()),
        toggles=draw(st.integers(0, 2)),
        tags=draw(TAGS),
        remind_at=draw(st.none() | moments(midnights=False)),
        retag=draw(st.sampled_from((None, None, None, ())) | TAGS),
    )


@st.composite
def queries(draw: st.DrawFn, words: list[str]) -> str:
    kind = draw(st.sampled_from(("random", "substring", "substring")))
    if kind == "substring" and words:
        word = draw(st.sampled_from(words))
        start = draw(st.integers(0, len(word) - 1))
        needle = word[start : start + draw(st.integers(1, 3))]
        return needle.swapcase() if draw(st.booleans()) else needle
    return draw(st.text(TEXT, min_size=1, max_size=2))


EVERY_FORM: tuple[Form, ...] = ("date", "local", "west", "east", "utc")
NEW_FILTERS = ("tag", "due", "due_from", "due_to", "remind_before")
FILTERS = ("status", "priority", "q", *NEW_FILTERS)


@st.composite
def listing_specs(
    draw: st.DrawFn,
    sort: Sort,
    order: Order | None,
    focus: str,
    words: list[str],
    dues: list[Moment],
    reminders: list[Moment],
) -> ListingSpec:
    # `focus` and up to two more filters, so that most listings have something to list; over
    # an example's 15 listings, every pair of filters meets now and then.
    chosen = {focus} | draw(st.sets(st.sampled_from(FILTERS), max_size=2))

    def moment(known: list[Moment], forms: tuple[Form, ...]) -> QueryMoment:
        """Often exactly a task's moment, to find the bounds of `[from, to)`."""
        candidates = moments(midnights=True)
        if known:
            candidates = candidates | st.sampled_from(known)
        return QueryMoment(draw(candidates), draw(st.sampled_from(forms)))

    tags = st.lists(st.sampled_from(TAG_FILTERS), min_size=1, max_size=2).map(tuple)
    # Often the zone of a task's local midnight: a bound of `due=today` and of a date there.
    zones = st.sampled_from((None, *ZONES))
    midnights = [moment.zone for moment in dues if moment.zone is not None]
    if midnights:
        zones = zones | st.sampled_from(midnights)
    listing = Listing(
        sort=sort,
        order=order,
        status=draw(st.sampled_from(("all", "pending", "completed")))
        if "status" in chosen
        else None,
        priority=draw(st.sampled_from(PRIORITIES)) if "priority" in chosen else None,
        q=draw(queries(words)) if "q" in chosen else None,
        limit=draw(st.integers(1, 7)),
        tag=draw(tags) if "tag" in chosen else (),
        due=draw(st.sampled_from(("overdue", "today", "today", "none")))
        if "due" in chosen
        else None,
        tz=draw(zones),
    )
    return ListingSpec(
        listing,
        due_from=moment(dues, EVERY_FORM) if "due_from" in chosen else None,
        due_to=moment(dues, EVERY_FORM) if "due_to" in chosen else None,
        # A date-time (§10), never a date.
        remind_before=(moment(reminders, EVERY_FORM[1:]) if "remind_before" in chosen else None),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    # An explicit size: st.lists alone mostly draws a handful of tasks (and hypothesis favours
    # the first value: no tasks at all, where no filter has anything to do).
    size = draw(st.sampled_from((*range(6, 26), *range(6))))
    tasks = draw(st.lists(task_specs(), min_size=size, max_size=size))
    words = [t.title for t in tasks] + [t.description for t in tasks if t.description]
    dues = [t.due_date for t in tasks if isinstance(t.due_date, Moment)]
    reminders = [t.remind_at for t in tasks if t.remind_at is not None]
    # Each new filter in three listings of every example, with a different sort each time.
    shift = draw(st.integers(0, len(NEW_FILTERS) - 1))
    orders: tuple[Order | None, ...] = (None, "asc", "desc")
    listings = [
        draw(
            listing_specs(
                sort, order, NEW_FILTERS[(index + shift) % len(NEW_FILTERS)], words, dues, reminders
            )
        )
        for index, (sort, order) in enumerate(itertools.product(SORTS, orders))
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
    # Due dates and reminders are placed relative to this; whole seconds keep the text short.
    start = datetime.now(UTC).replace(microsecond=0)
    spellings: dict[str, str] = {}
    tasks: list[Task] = []
    for spec in scenario.tasks:
        task = await create_task(user, **spec.body(start))
        assert task["tags"] == _spelled(spellings, spec.tags), task
        tasks.append(task)
    their_spellings: dict[str, str] = {}  # each user spells their tags their own way
    for spec in scenario.others:
        theirs = await create_task(other, **spec.body(start))
        assert theirs["tags"] == _spelled(their_spellings, spec.tags), theirs
    for index in scenario.toggle_order:
        for _ in range(scenario.tasks[index].toggles):
            response = await client.patch(
                f"/api/tasks/{tasks[index]['id']}/complete", headers=auth(user)
            )
            assert response.status_code == 200, response.text
            tasks[index] = response.json()
    for index in scenario.toggle_order:
        retag = scenario.tasks[index].retag
        if retag is None:
            continue
        response = await client.patch(
            f"/api/tasks/{tasks[index]['id']}", json={"tags": list(retag)}, headers=auth(user)
        )
        assert response.status_code == 200, response.text
        tasks[index] = response.json()
        assert tasks[index]["tags"] == _spelled(spellings, retag), tasks[index]

    for listing_spec in scenario.listings:
        listing = listing_spec.at(start)
        if not await _assert_listing(client, user, listing, tasks):
            note(f"not checked: 'now' crossed a boundary of {listing}")


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


@pytest.mark.parametrize(
    ("params", "name"),
    [
        pytest.param([("tag", "a,b")], "tag", id="tag with a comma"),
        pytest.param([("tag", "a/b")], "tag", id="tag with a slash"),
        pytest.param([("tag", "")], "tag", id="empty tag"),
        pytest.param([("tag", "   ")], "tag", id="blank tag"),
        pytest.param([("tag", "a\tb")], "tag", id="tag with a control character"),
        pytest.param([("tag", "x" * 51)], "tag", id="tag of 51 characters"),
        pytest.param([("tag", "work"), ("tag", "")], "tag", id="second tag empty"),
        pytest.param([("tag", f"t{n}") for n in range(21)], "tag", id="21 tags"),
        pytest.param([("due", "later")], "due", id="due later"),
        pytest.param([("due", "OVERDUE")], "due", id="due in capitals"),
        pytest.param([("tz", "Mars/Base")], "tz", id="unknown zone"),
        pytest.param([("tz", "Mars/Base"), ("due", "today")], "tz", id="unknown zone, today"),
        pytest.param([("due_from", "tomorrow")], "due_from", id="due_from a word"),
        pytest.param([("due_to", "2026-13-01")], "due_to", id="due_to month 13"),
        pytest.param([("due_to", "2026-02-30")], "due_to", id="due_to February 30"),
        pytest.param([("remind_before", "x")], "remind_before", id="remind_before x"),
        pytest.param(
            [("tz", "Europe/Berlin"), ("remind_before", "2026-05-01T25:00")],
            "remind_before",
            id="remind_before hour 25",
        ),
    ],
)
async def test_invalid_new_parameter_is_400_naming_it(
    client: AsyncClient, params: list[tuple[str, str]], name: str
) -> None:
    response = await client.get("/api/tasks", params=tuple(params), headers=auth("kate"))

    assert response.status_code == 400, response.text
    body = response.json()
    assert f"'{name}'" in body["detail"], body["detail"]
    assert body["errors"][0]["field"] == name, body


async def test_twenty_tags_and_far_dates_are_accepted(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    tags = [f"t{n}" for n in range(20)]
    wanted = await create_task("kate", title="all twenty", tags=tags, due_date="2026-05-01")
    await create_task("kate", title="nineteen", tags=tags[1:], due_date="2026-05-01")
    params = [*(("tag", tag.upper()) for tag in tags), ("due_from", "2026-05-01")]
    response = await client.get("/api/tasks", params=tuple(params), headers=auth("kate"))

    assert response.status_code == 200, response.text
    assert [task["id"] for task in response.json()] == [wanted["id"]]
    # A date whose midnight in `tz` is before the year 1 in UTC: an answer, never a 500.
    response = await client.get(
        "/api/tasks",
        params={"tz": "Pacific/Kiritimati", "due_to": "0001-01-01"},
        headers=auth("kate"),
    )
    if response.status_code == 400:
        assert response.json()["errors"][0]["field"] == "due_to"
    else:
        assert (response.status_code, response.json()) == (200, [])


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
