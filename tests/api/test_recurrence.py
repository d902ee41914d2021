"""Recurring tasks over HTTP (SPEC §10, "Recurrence"): completing one spawns its next
occurrence, once, with the rule's next due date in the task's time zone."""

import asyncio
import uuid
from datetime import UTC, datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

import pytest
from httpx import AsyncClient, Response

from tests.conftest import DatabaseProbe, TaskFactory, auth

Completion = Literal["toggle", "set", "put", "patch"]
COMPLETIONS: list[Completion] = ["toggle", "set", "put", "patch"]
BERLIN = ZoneInfo("Europe/Berlin")


def at(value: str) -> datetime:
    """An aware datetime from ISO 8601 (as the API answers, or as written in a test)."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, value
    return parsed


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def rule_parts(rule: str) -> dict[str, str]:
    """An RRULE as its parts, so that the order they are written in does not matter."""
    body = rule.removeprefix("RRULE:")
    return dict(part.split("=", 1) for part in body.split(";"))


async def complete(
    client: AsyncClient,
    task_id: str,
    how: Completion,
    *,
    user: str = "alice",
    completed: bool = True,
) -> Response:
    """Complete (or, with `completed=False`, reopen) a task one of the four ways there are.
    A toggle flips whatever the task holds: the caller knows which way that goes."""
    url = f"/api/tasks/{task_id}"
    if how == "toggle":
        return await client.patch(f"{url}/complete", headers=auth(user))
    if how == "set":
        return await client.patch(
            f"{url}/complete", json={"completed": completed}, headers=auth(user)
        )
    method = "PUT" if how == "put" else "PATCH"
    return await client.request(method, url, json={"completed": completed}, headers=auth(user))


async def get(client: AsyncClient, task_id: str, user: str = "alice") -> dict[str, Any]:
    response = await client.get(f"/api/tasks/{task_id}", headers=auth(user))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def complete_and_follow(
    client: AsyncClient, task_id: str, how: Completion = "set"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Complete a recurring task; its answer, and its successor as GET answers it."""
    response = await complete(client, task_id, how)
    assert response.status_code == 200, response.text
    done: dict[str, Any] = response.json()
    assert done["id"] == task_id
    assert done["completed"] is True
    assert done["next_occurrence_id"] is not None, done
    return done, await get(client, done["next_occurrence_id"])


def _uuid(value: Any) -> uuid.UUID | None:
    # SQLite holds 32 hex digits, PostgreSQL a uuid: both read back the same way.
    return None if value is None else uuid.UUID(str(value))


async def successors(db: DatabaseProbe, task_id: str) -> list[uuid.UUID]:
    """Ids of the rows the database says were spawned by `task_id`."""
    rows = await db.rows("SELECT id, previous_occurrence_id FROM tasks")
    wanted = uuid.UUID(task_id)
    return [
        row_id
        for row in rows
        if _uuid(row["previous_occurrence_id"]) == wanted and (row_id := _uuid(row["id"]))
    ]


async def recurring_task(
    create_task: TaskFactory,
    rule: str = "FREQ=DAILY",
    due_date: str = "2026-05-04T09:00:00Z",
    **fields: Any,
) -> dict[str, Any]:
    task: dict[str, Any] = await create_task(recurrence=rule, due_date=due_date, **fields)
    return task


# --- what the successor is -------------------------------------------------------------------


@pytest.mark.parametrize("how", COMPLETIONS)
async def test_completing_a_recurring_task_spawns_a_copy_due_at_the_next_occurrence(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, how: Completion
) -> None:
    task = await recurring_task(
        create_task,
        "FREQ=DAILY;COUNT=5",
        "2026-05-04T07:00:00Z",
        title="Water the plants",
        description="Balcony first",
        priority="high",
        tags=["Home", "chores"],
        time_zone="Europe/Berlin",
        remind_at="2026-05-04T06:30:00Z",
    )
    assert task["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1

    done, successor = await complete_and_follow(client, task["id"], how)

    assert done["completed_at"] is not None
    assert done["due_date"] == task["due_date"]
    assert successor["id"] == done["next_occurrence_id"] != task["id"]
    assert successor["user_id"] == "alice"
    assert successor["title"] == "Water the plants"
    assert successor["description"] == "Balcony first"
    assert successor["priority"] == "high"
    assert successor["tags"] == task["tags"] == ["chores", "Home"]
    assert successor["time_zone"] == "Europe/Berlin"
    assert rule_parts(successor["recurrence"]) == {**rule_parts(task["recurrence"]), "COUNT": "4"}
    assert at(successor["due_date"]) == utc(2026, 5, 5, 7)
    assert at(successor["remind_at"]) == utc(2026, 5, 5, 6, 30)
    assert successor["completed"] is False
    assert successor["completed_at"] is None
    assert successor["next_occurrence_id"] is None
    # The completed one says the same when read again.
    again = await get(client, task["id"])
    assert again["completed"] is True
    assert again["next_occurrence_id"] == successor["id"]
    # Exactly one new row, and it knows which occurrence spawned it.
    assert await db.count_tasks("alice") == 2
    assert await successors(db, task["id"]) == [uuid.UUID(successor["id"])]


@pytest.mark.parametrize(
    ("rule", "time_zone", "due", "remind", "next_due", "next_remind"),
    [
        pytest.param(
            "FREQ=DAILY", None, "2026-05-04T23:30:00Z", None, utc(2026, 5, 5, 23, 30), None,
            id="daily-utc-no-reminder",
        ),
        pytest.param(
            "RRULE:FREQ=DAILY", None, "2026-05-04T09:00:00Z", None, utc(2026, 5, 5, 9), None,
            id="rrule-prefix",
        ),
        pytest.param(
            "FREQ=DAILY;INTERVAL=3", None, "2026-05-04T09:00:00Z", "2026-05-04T08:00:00Z",
            utc(2026, 5, 7, 9), utc(2026, 5, 7, 8),
            id="every-third-day",
        ),
        pytest.param(
            "FREQ=WEEKLY;BYDAY=TU", None, "2026-05-04T23:30:00Z", None,
            utc(2026, 5, 5, 23, 30), None,
            id="null-time-zone-is-utc",  # Monday 23:30 UTC: Tuesday is the next day
        ),
        pytest.param(
            "FREQ=WEEKLY;BYDAY=TU", "Asia/Tokyo", "2026-05-04T23:30:00Z", None,
            utc(2026, 5, 11, 23, 30), None,
            id="tokyo-time-zone",  # Tuesday 08:30 in Tokyo: the next Tuesday is a week on
        ),
        pytest.param(
            "FREQ=WEEKLY;BYDAY=MO,WE", None, "2026-03-02T09:00:00Z", None,
            utc(2026, 3, 4, 9), None,
            id="monday-to-wednesday",
        ),
        pytest.param(
            "FREQ=WEEKLY;BYDAY=MO,WE", None, "2026-03-04T09:00:00Z", "2026-03-03T09:00:00Z",
            utc(2026, 3, 9, 9), utc(2026, 3, 8, 9),
            id="wednesday-to-next-monday",
        ),
        pytest.param(
            "FREQ=MONTHLY;BYMONTHDAY=31", None, "2027-01-31T12:00:00Z", "2027-01-30T12:00:00Z",
            utc(2027, 3, 31, 12), utc(2027, 3, 30, 12),
            id="monthly-31st-skips-february",
        ),
        pytest.param(
            "FREQ=MONTHLY", None, "2027-01-31T12:00:00Z", None, utc(2027, 3, 31, 12), None,
            id="monthly-from-31st-skips-february",
        ),
        pytest.param(
            "FREQ=YEARLY", None, "2028-02-29T10:00:00Z", None, utc(2032, 2, 29, 10), None,
            id="yearly-29-february",
        ),
        pytest.param(
            "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", None, "2028-02-29T10:00:00Z", None,
            utc(2032, 2, 29, 10), None,
            id="yearly-bymonthday-29-february",
        ),
        pytest.param(
            "FREQ=DAILY", "Europe/Berlin", "2026-03-28T08:00:00Z", "2026-03-27T20:00:00Z",
            utc(2026, 3, 29, 7), utc(2026, 3, 28, 19),  # a 23-hour day: the reminder too
            id="daily-across-dst-start",
        ),
        pytest.param(
            "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR", "Europe/Berlin", "2026-03-27T08:00:00Z", None,
            utc(2026, 3, 30, 7), None,
            id="weekdays-across-dst-start",
        ),
        pytest.param(
            "FREQ=WEEKLY", "Europe/Berlin", "2026-03-23T08:00:00Z", "2026-03-23T07:45:00Z",
            utc(2026, 3, 30, 7), utc(2026, 3, 30, 6, 45),
            id="weekly-across-dst-start",
        ),
        pytest.param(
            "FREQ=WEEKLY", "Europe/Berlin", "2026-10-19T07:00:00Z", "2026-10-18T07:00:00Z",
            utc(2026, 10, 26, 8), utc(2026, 10, 25, 8),
            id="weekly-across-dst-end",
        ),
        pytest.param(
            "FREQ=DAILY;UNTIL=20260510T000000Z", None, "2026-05-04T09:00:00Z", None,
            utc(2026, 5, 5, 9), None,
            id="until-not-yet-reached",
        ),
    ],
)  # fmt: skip
async def test_next_due_date_is_the_rules_next_occurrence(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    rule: str,
    time_zone: str | None,
    due: str,
    remind: str | None,
    next_due: datetime,
    next_remind: datetime | None,
) -> None:
    task = await recurring_task(create_task, rule, due, time_zone=time_zone, remind_at=remind)
    _, successor = await complete_and_follow(client, task["id"])
    assert at(successor["due_date"]) == next_due
    if next_remind is None:
        assert successor["remind_at"] is None
    else:
        assert at(successor["remind_at"]) == next_remind
    assert successor["recurrence"] == task["recurrence"]
    assert successor["time_zone"] == time_zone
    assert await db.count_tasks("alice") == 2


@pytest.mark.parametrize(
    ("rule", "time_zone", "due", "following"),
    [
        pytest.param(
            "FREQ=WEEKLY;BYDAY=MO,WE", None, "2026-03-02T09:00:00Z",
            [utc(2026, 3, 4, 9), utc(2026, 3, 9, 9), utc(2026, 3, 11, 9), utc(2026, 3, 16, 9)],
            id="weekly-monday-wednesday",
        ),
        pytest.param(
            "FREQ=MONTHLY;BYMONTHDAY=31", None, "2027-01-31T12:00:00Z",
            [utc(2027, 3, 31, 12), utc(2027, 5, 31, 12), utc(2027, 7, 31, 12),
             utc(2027, 8, 31, 12)],
            id="monthly-31st",
        ),
        pytest.param(
            "FREQ=YEARLY", None, "2028-02-29T10:00:00Z",
            [utc(2032, 2, 29, 10), utc(2036, 2, 29, 10)],
            id="yearly-29-february",
        ),
        pytest.param(
            "FREQ=WEEKLY", "Europe/Berlin", "2026-03-16T08:00:00Z",
            [utc(2026, 3, 23, 8), utc(2026, 3, 30, 7), utc(2026, 4, 6, 7)],
            id="weekly-berlin-dst-start",
        ),
        pytest.param(
            "FREQ=WEEKLY", "Europe/Berlin", "2026-10-12T07:00:00Z",
            [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8), utc(2026, 11, 2, 8)],
            id="weekly-berlin-dst-end",
        ),
    ],
)  # fmt: skip
async def test_completing_each_successor_walks_the_rule(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    rule: str,
    time_zone: str | None,
    due: str,
    following: list[datetime],
) -> None:
    task = await recurring_task(create_task, rule, due, time_zone=time_zone)
    current = task
    for step, expected in enumerate(following):
        how = COMPLETIONS[step % len(COMPLETIONS)]
        _, successor = await complete_and_follow(client, current["id"], how)
        assert at(successor["due_date"]) == expected, (step, how)
        if time_zone is not None:  # the wall-clock time stays what it was
            local = at(successor["due_date"]).astimezone(ZoneInfo(time_zone))
            assert local.time() == at(due).astimezone(ZoneInfo(time_zone)).time()
        assert await successors(db, current["id"]) == [uuid.UUID(successor["id"])]
        current = successor
    assert await db.count_tasks("alice") == len(following) + 1


async def test_berlin_nine_oclock_stays_nine_oclock_local(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    # Monday 2026-03-23 09:00 CET; DST starts on the 29th.
    task = await recurring_task(
        create_task, "FREQ=WEEKLY", "2026-03-23T08:00:00Z", time_zone="Europe/Berlin"
    )
    assert at(task["due_date"]).astimezone(BERLIN).time() == time(9)
    _, successor = await complete_and_follow(client, task["id"], "toggle")
    assert at(successor["due_date"]) == utc(2026, 3, 30, 7)
    assert at(successor["due_date"]).astimezone(BERLIN).time() == time(9)


# --- where it ends: COUNT and UNTIL ----------------------------------------------------------


@pytest.mark.parametrize("how", COMPLETIONS)
async def test_count_runs_out(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, how: Completion
) -> None:
    task = await recurring_task(create_task, "FREQ=DAILY;COUNT=2")
    _, successor = await complete_and_follow(client, task["id"], how)
    assert rule_parts(successor["recurrence"]) == {"FREQ": "DAILY", "COUNT": "1"}
    assert at(successor["due_date"]) == utc(2026, 5, 5, 9)

    last = await complete(client, successor["id"], how)
    assert last.status_code == 200, last.text
    assert last.json()["completed"] is True
    assert last.json()["next_occurrence_id"] is None
    assert (await get(client, successor["id"]))["next_occurrence_id"] is None
    assert await successors(db, successor["id"]) == []
    assert await db.count_tasks("alice") == 2


async def test_count_one_has_no_successor(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await recurring_task(create_task, "FREQ=WEEKLY;COUNT=1")
    response = await complete(client, task["id"], "set")
    assert response.status_code == 200, response.text
    assert response.json()["completed"] is True
    assert response.json()["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;UNTIL=20260505T000000Z",  # the next one, 05-05 09:00, is past it
        "FREQ=DAILY;UNTIL=20260505T085959Z",
        "FREQ=WEEKLY;UNTIL=20260510T000000Z",
    ],
)
async def test_past_until_there_is_no_successor(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, rule: str
) -> None:
    task = await recurring_task(create_task, rule)
    response = await complete(client, task["id"], "toggle")
    assert response.status_code == 200, response.text
    assert response.json()["completed"] is True
    assert response.json()["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1


# --- exactly once ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", COMPLETIONS)
async def test_completing_uncompleting_completing_spawns_once(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, how: Completion
) -> None:
    task = await recurring_task(create_task)
    _, successor = await complete_and_follow(client, task["id"], how)

    reopened = await complete(client, task["id"], how, completed=False)
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["completed"] is False
    assert reopened.json()["completed_at"] is None
    assert reopened.json()["next_occurrence_id"] == successor["id"]
    assert await get(client, successor["id"]) == successor  # left as it was

    again = await complete(client, task["id"], how)
    assert again.status_code == 200, again.text
    assert again.json()["completed"] is True
    assert again.json()["next_occurrence_id"] == successor["id"]
    assert await successors(db, task["id"]) == [uuid.UUID(successor["id"])]
    assert await db.count_tasks("alice") == 2


async def test_toggle_on_off_on_spawns_once(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await recurring_task(create_task)
    answers = [await complete(client, task["id"], "toggle") for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert [answer.json()["completed"] for answer in answers] == [True, False, True]
    first = answers[0].json()["next_occurrence_id"]
    assert first is not None
    assert [answer.json()["next_occurrence_id"] for answer in answers] == [first] * 3
    assert await successors(db, task["id"]) == [uuid.UUID(first)]
    assert await db.count_tasks("alice") == 2


async def test_completing_again_after_the_successor_was_deleted_spawns_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await recurring_task(create_task)
    _, successor = await complete_and_follow(client, task["id"], "toggle")
    deleted = await client.delete(f"/api/tasks/{successor['id']}", headers=auth())
    assert deleted.status_code == 204
    assert await db.count_tasks("alice") == 1

    off = await complete(client, task["id"], "toggle")
    assert off.status_code == 200
    assert off.json()["completed"] is False
    on = await complete(client, task["id"], "set")
    assert on.status_code == 200
    assert on.json()["completed"] is True
    assert on.json()["next_occurrence_id"] == successor["id"]  # names the deleted one
    assert await db.count_tasks("alice") == 1
    gone = await client.get(f"/api/tasks/{successor['id']}", headers=auth())
    assert gone.status_code == 404


@pytest.mark.parametrize("how", ["set", "put", "patch"])
async def test_setting_completed_twice_spawns_once(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, how: Completion
) -> None:
    task = await recurring_task(create_task)
    done, successor = await complete_and_follow(client, task["id"], how)
    again = await complete(client, task["id"], how)
    assert again.status_code == 200, again.text
    assert again.json()["completed"] is True
    assert again.json()["completed_at"] == done["completed_at"]
    assert again.json()["next_occurrence_id"] == successor["id"]
    assert await successors(db, task["id"]) == [uuid.UUID(successor["id"])]
    assert await db.count_tasks("alice") == 2


async def test_a_task_created_completed_spawns_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await recurring_task(create_task, completed=True)
    assert task["completed"] is True
    assert task["completed_at"] is not None
    assert task["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1
    # Setting what it already holds is no completion either.
    setters: list[Completion] = ["set", "put", "patch"]
    for how in setters:
        response = await complete(client, task["id"], how)
        assert response.status_code == 200, response.text
        assert response.json()["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1


async def test_a_task_created_completed_spawns_when_reopened_and_completed(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    """It never spawned, so becoming completed later is its (first) completion."""
    task = await recurring_task(create_task, completed=True)
    reopened = await complete(client, task["id"], "toggle")
    assert reopened.json()["completed"] is False
    _, successor = await complete_and_follow(client, task["id"], "toggle")
    assert at(successor["due_date"]) == utc(2026, 5, 5, 9)
    assert await db.count_tasks("alice") == 2


async def test_other_edits_of_a_completed_recurring_task_spawn_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await recurring_task(create_task)
    _, successor = await complete_and_follow(client, task["id"])
    for body in (
        {"title": "Renamed"},
        {"due_date": "2026-06-01T09:00:00Z"},
        {"recurrence": "FREQ=WEEKLY"},
        {"tags": ["later"]},
        {"completed": True, "title": "Renamed again"},
    ):
        response = await client.patch(f"/api/tasks/{task['id']}", json=body, headers=auth())
        assert response.status_code == 200, (body, response.text)
        assert response.json()["next_occurrence_id"] == successor["id"]
    assert await successors(db, task["id"]) == [uuid.UUID(successor["id"])]
    assert await db.count_tasks("alice") == 2


async def test_deleting_one_occurrence_deletes_no_other(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    first = await recurring_task(create_task, "FREQ=DAILY", tags=["daily"])
    _, second = await complete_and_follow(client, first["id"])
    _, third = await complete_and_follow(client, second["id"], "toggle")
    assert await db.count_tasks("alice") == 3
    before_first, before_third = await get(client, first["id"]), await get(client, third["id"])

    deleted = await client.delete(f"/api/tasks/{second['id']}", headers=auth())
    assert deleted.status_code == 204
    assert await db.count_tasks("alice") == 2
    assert await get(client, first["id"]) == before_first  # still names the deleted one
    assert before_first["next_occurrence_id"] == second["id"]
    assert await get(client, third["id"]) == before_third

    deleted = await client.delete(f"/api/tasks/{first['id']}", headers=auth())
    assert deleted.status_code == 204
    assert await db.count_tasks("alice") == 1
    assert await get(client, third["id"]) == before_third
    tags = await client.get("/api/tags", headers=auth())
    assert tags.json() == [{"name": "daily", "count": 1}]


# --- concurrency (PostgreSQL: SQLite serialises every write anyway) --------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("toggle", [False, True], ids=["set-completed", "toggle"])
async def test_concurrent_completions_spawn_exactly_one_successor(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, toggle: bool
) -> None:
    assert db.engine.dialect.name == "postgresql"
    task = await recurring_task(create_task, "FREQ=DAILY", tags=["team"])
    url = f"/api/tasks/{task['id']}/complete"
    body = None if toggle else {"completed": True}
    responses = await asyncio.gather(
        *(client.patch(url, json=body, headers=auth()) for _ in range(20))
    )
    assert [response.status_code for response in responses] == [200] * 20, [
        response.text for response in responses if response.status_code != 200
    ]
    spawned = await successors(db, task["id"])
    assert len(spawned) == 1
    assert await db.count_tasks() == 2
    named = {response.json()["next_occurrence_id"] for response in responses}
    assert named - {None} == {str(spawned[0])}
    if toggle:  # half of them completed it, half reopened it; all saw the one successor
        assert sum(response.json()["completed"] for response in responses) == 10
        assert named == {str(spawned[0])}
    else:
        assert all(response.json()["completed"] for response in responses)
    assert (await get(client, task["id"]))["next_occurrence_id"] == str(spawned[0])
    successor = await get(client, str(spawned[0]))
    assert at(successor["due_date"]) == utc(2026, 5, 5, 9)
    tags = await client.get("/api/tags", headers=auth())
    assert tags.json() == [{"name": "team", "count": 2}]


# --- tasks that do not repeat, tags, other users ---------------------------------------------


@pytest.mark.parametrize("how", COMPLETIONS)
async def test_a_non_recurring_task_completes_as_before(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, how: Completion
) -> None:
    task = await create_task(due_date="2026-05-04T09:00:00Z")
    assert task["recurrence"] is None
    done = await complete(client, task["id"], how)
    assert done.status_code == 200, done.text
    assert done.json()["completed"] is True
    assert done.json()["completed_at"] is not None
    assert done.json()["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1

    reopened = await complete(client, task["id"], how, completed=False)
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["completed"] is False
    assert reopened.json()["completed_at"] is None
    assert reopened.json()["next_occurrence_id"] is None
    assert await db.count_tasks("alice") == 1
    row = await db.task(task["id"])
    assert row is not None
    assert not row["completed"]
    assert row["next_occurrence_id"] is None


async def test_tags_are_copied_to_the_successor(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await recurring_task(create_task, tags=["Work", "weekly"])
    await create_task(title="Unrelated", tags=["work"])
    before = await client.get("/api/tags", headers=auth())
    assert before.json() == [{"name": "weekly", "count": 1}, {"name": "Work", "count": 2}]

    _, successor = await complete_and_follow(client, task["id"])
    assert successor["tags"] == ["weekly", "Work"]
    after = await client.get("/api/tags", headers=auth())
    assert after.json() == [{"name": "weekly", "count": 2}, {"name": "Work", "count": 3}]
    # The successor is found by its tags, as any task is.
    listed = await client.get("/api/tasks", params={"tag": "WEEKLY"}, headers=auth())
    assert listed.status_code == 200
    assert {found["id"] for found in listed.json()} == {task["id"], successor["id"]}


@pytest.mark.parametrize("how", COMPLETIONS)
async def test_another_user_cannot_complete_a_recurring_task(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, how: Completion
) -> None:
    task = await recurring_task(create_task, tags=["private"])
    before = await get(client, task["id"])
    row_before = await db.task(task["id"])

    response = await complete(client, task["id"], how, user="bob")
    assert response.status_code == 403, response.text
    assert response.json()["detail"] == "Not authorized to access this task"
    assert await db.count_tasks() == 1
    assert await db.task(task["id"]) == row_before
    assert await get(client, task["id"]) == before
    bobs = await client.get("/api/tasks", headers=auth("bob"))
    assert bobs.json() == []
