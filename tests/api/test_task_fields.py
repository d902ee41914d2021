"""The fields of SPEC §10 on a task: tags, recurrence, time_zone, remind_at, and the read-only
completed_at and next_occurrence_id. Valid values round-trip (as the API answers them and as
the database holds them); invalid ones are a 400 naming the field and change nothing."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import TASK_FIELDS, DatabaseProbe, TaskFactory, auth, stored_tags

# Bodies go as JSON text: httpx's `json=` cannot encode a lone surrogate, and this keeps
# control characters exactly as written.
JSON = {"Content-Type": "application/json"}
DUE = "2026-06-01T09:00:00Z"


# --- reading what the database holds ---------------------------------------------------------


def _parse(ts: str) -> datetime:
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() == timedelta(0), ts
    return parsed


def _db_time(value: Any) -> datetime | None:
    """A timestamp column as read raw: text without offset on SQLite, aware on PostgreSQL."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _row(db: DatabaseProbe, task_id: str) -> dict[str, Any]:
    row = await db.task(task_id)
    assert row is not None, task_id
    return row


async def _task_tag_keys(db: DatabaseProbe, task_id: str) -> list[str]:
    rows = await db.rows(
        "SELECT key, user_id FROM task_tags WHERE task_id = :id ORDER BY key",
        id=db.task_key(task_id),
    )
    return [row["key"] for row in rows]


async def _user_tags(db: DatabaseProbe, user: str) -> dict[str, str]:
    """The user's tags table: key → spelling."""
    rows = await db.rows("SELECT key, name FROM tags WHERE user_id = :u", u=user)
    return {row["key"]: row["name"] for row in rows}


async def _tag_tables(db: DatabaseProbe) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    tags = await db.rows("SELECT * FROM tags ORDER BY user_id, key")
    task_tags = await db.rows("SELECT * FROM task_tags ORDER BY task_id, key")
    return tags, task_tags


async def _post(client: AsyncClient, body: dict[str, Any], user: str = "alice") -> Any:
    return await client.post("/api/tasks", content=json.dumps(body), headers={**auth(user), **JSON})


async def _update(
    client: AsyncClient, method: str, task_id: str, body: dict[str, Any], user: str = "alice"
) -> Any:
    return await client.request(
        method, f"/api/tasks/{task_id}", content=json.dumps(body), headers={**auth(user), **JSON}
    )


def _assert_400_naming(response: Any, field: str) -> None:
    assert response.status_code == 400, response.text
    payload = response.json()
    assert field in payload["detail"], payload
    assert any(error["field"] == field for error in payload["errors"]), payload
    assert {error["field"] for error in payload["errors"]} == {field}, payload


# --- the new fields' defaults ----------------------------------------------------------------


async def test_new_task_has_every_field_with_its_default(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    response = await _post(client, {"title": "plain"})
    assert response.status_code == 201, response.text
    task = response.json()
    assert set(task) == TASK_FIELDS
    assert task["tags"] == []
    assert task["recurrence"] is None
    assert task["time_zone"] is None
    assert task["remind_at"] is None
    assert task["completed_at"] is None
    assert task["next_occurrence_id"] is None
    row = await _row(db, task["id"])
    assert stored_tags(row["tags"]) == []
    for column in ("recurrence", "time_zone", "remind_at", "completed_at", "next_occurrence_id"):
        assert row[column] is None, column
    assert await _task_tag_keys(db, task["id"]) == []
    assert await _user_tags(db, "alice") == {}
    # The same fields from every route that answers a task.
    got = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert got.json() == task
    listed = await client.get("/api/tasks", headers=auth())
    assert listed.json() == [task]


# --- tags --------------------------------------------------------------------------------------

INVALID_TAGS: list[Any] = [
    pytest.param([f"t{i}" for i in range(21)], id="21 tags"),
    pytest.param([*(f"t{i}" for i in range(20)), "T0", "one more"], id="21 after collapsing"),
    pytest.param(["x" * 51], id="51 characters"),
    pytest.param([" " + "x" * 50], id="51 characters before trimming"),
    pytest.param(["a,b"], id="comma"),
    pytest.param(["a/b"], id="slash"),
    pytest.param(["bell\u0007"], id="U+0007"),
    pytest.param(["next\u0085line"], id="U+0085"),
    pytest.param(["del\u007fete"], id="U+007F"),
    pytest.param(["apc\u009f"], id="U+009F"),
    pytest.param(["tab\tinside"], id="tab inside"),
    pytest.param([""], id="empty"),
    pytest.param(["   "], id="blank"),
    pytest.param(["ok", "nul\x00"], id="NUL"),
    pytest.param(["\udfff"], id="lone surrogate"),
    pytest.param(None, id="null"),
    pytest.param("work", id="a string, not a list"),
    pytest.param([5], id="a number"),
    pytest.param([None], id="a null tag"),
]


@pytest.mark.parametrize("tags", INVALID_TAGS)
async def test_create_rejects_invalid_tags(
    client: AsyncClient, db: DatabaseProbe, tags: Any
) -> None:
    response = await _post(client, {"title": "t", "tags": tags})
    _assert_400_naming(response, "tags")
    assert await db.count_tasks() == 0
    assert await _tag_tables(db) == ([], [])


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("tags", INVALID_TAGS)
async def test_update_rejects_invalid_tags_and_changes_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, method: str, tags: Any
) -> None:
    task = await create_task(title="tagged", tags=["Keep", "also"])
    before = await _row(db, task["id"])
    tables = await _tag_tables(db)
    response = await _update(client, method, task["id"], {"tags": tags, "title": "changed"})
    _assert_400_naming(response, "tags")
    assert await _row(db, task["id"]) == before
    assert await _tag_tables(db) == tables
    again = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert again.json() == task


VALID_TAGS: list[Any] = [
    pytest.param(["work", "Home", "urgent"], ["Home", "urgent", "work"], id="sorted"),
    pytest.param(["Zulu", "apple", "Alpha", "beta"], ["Alpha", "apple", "beta", "Zulu"], id="ci"),
    pytest.param(["Work", "WORK", "work"], ["Work"], id="case duplicates keep the first"),
    pytest.param(["b", "a", "B", "A"], ["a", "b"], id="first spelling of each"),
    pytest.param(["Straße", "STRASSE"], ["Straße"], id="casefold"),
    pytest.param(["  padded  ", "\u00a0nbsp\u00a0"], ["nbsp", "padded"], id="trimmed"),
    pytest.param(["x" * 50], ["x" * 50], id="50 characters"),
    pytest.param([" " * 3 + "y" * 47], ["y" * 47], id="50 before trimming"),
    pytest.param(["Ärger", "älter"], ["älter", "Ärger"], id="non-ASCII"),
    pytest.param(
        ["c++", "#1", "a.b", "x-y_z", "日本"], ["#1", "a.b", "c++", "x-y_z", "日本"], id="marks"
    ),
    pytest.param([f"t{i:02}" for i in range(20)], [f"t{i:02}" for i in range(20)], id="20"),
    pytest.param(
        [*(f"t{i:02}" for i in range(20)), "T00", "T19"],
        [f"t{i:02}" for i in range(20)],
        id="22 collapsing to 20",
    ),
    pytest.param([], [], id="none"),
]


@pytest.mark.parametrize(("given", "expected"), VALID_TAGS)
async def test_create_stores_tags(
    client: AsyncClient, db: DatabaseProbe, given: list[str], expected: list[str]
) -> None:
    response = await _post(client, {"title": "t", "tags": given})
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["tags"] == expected
    row = await _row(db, task["id"])
    assert stored_tags(row["tags"]) == expected
    assert await _task_tag_keys(db, task["id"]) == sorted(name.casefold() for name in expected)
    assert await _user_tags(db, "alice") == {name.casefold(): name for name in expected}
    got = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert got.json()["tags"] == expected


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize(("given", "expected"), VALID_TAGS)
async def test_update_replaces_tags(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    method: str,
    given: list[str],
    expected: list[str],
) -> None:
    task = await create_task(title="t", tags=["old", "Work"], priority="low")
    response = await _update(client, method, task["id"], {"tags": given})
    assert response.status_code == 200, response.text
    updated = response.json()
    # "Work" was spelled first by the create: a later "work"/"WORK" takes that spelling.
    spelled = {"work": "Work"}
    answered = sorted((spelled.get(name.casefold(), name) for name in expected), key=str.casefold)
    assert updated["tags"] == answered
    assert updated["priority"] == "low"
    assert _parse(updated["updated_at"]) > _parse(task["updated_at"])
    row = await _row(db, task["id"])
    assert stored_tags(row["tags"]) == answered
    assert await _task_tag_keys(db, task["id"]) == sorted(name.casefold() for name in expected)


async def test_empty_list_clears_tags(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(tags=["a", "b"])
    response = await _update(client, "PATCH", task["id"], {"tags": []})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == []
    assert stored_tags((await _row(db, task["id"]))["tags"]) == []
    assert await _task_tag_keys(db, task["id"]) == []


async def test_update_without_tags_keeps_them(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(tags=["b", "A"])
    response = await _update(client, "PATCH", task["id"], {"title": "renamed"})
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["A", "b"]
    assert stored_tags((await _row(db, task["id"]))["tags"]) == ["A", "b"]
    assert await _task_tag_keys(db, task["id"]) == ["a", "b"]


async def test_a_users_tag_keeps_its_first_spelling(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    first = await create_task(tags=["Work"])
    second = await create_task(tags=["WORK", "home"])
    assert second["tags"] == ["home", "Work"]
    third = await create_task(title="later")
    patched = await _update(client, "PATCH", third["id"], {"tags": ["work", "HOME"]})
    assert patched.json()["tags"] == ["home", "Work"]
    assert first["tags"] == ["Work"]
    for task_id in (second["id"], third["id"]):
        assert stored_tags((await _row(db, task_id))["tags"]) == ["home", "Work"]
        assert await _task_tag_keys(db, task_id) == ["home", "work"]
    assert await _user_tags(db, "alice") == {"work": "Work", "home": "home"}


async def test_spelling_is_per_user(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    await create_task("alice", tags=["Work"])
    bobs = await create_task("bob", tags=["WORK"])
    assert bobs["tags"] == ["WORK"]
    assert await _user_tags(db, "alice") == {"work": "Work"}
    assert await _user_tags(db, "bob") == {"work": "WORK"}
    rows = await db.rows(
        "SELECT user_id FROM task_tags WHERE task_id = :id", id=db.task_key(bobs["id"])
    )
    assert rows == [{"user_id": "bob"}]


# --- recurrence ----------------------------------------------------------------------------

INVALID_RULES: list[Any] = [
    pytest.param("FREQ=HOURLY", id="hourly"),
    pytest.param("FREQ=MINUTELY", id="minutely"),
    pytest.param("FREQ=SECONDLY", id="secondly"),
    pytest.param("FREQ=DAILY;COUNT=0", id="COUNT=0"),
    pytest.param("FREQ=DAILY;COUNT=1001", id="COUNT=1001"),
    pytest.param("FREQ=DAILY;INTERVAL=0", id="INTERVAL=0"),
    pytest.param("FREQ=DAILY;INTERVAL=367", id="INTERVAL=367"),
    pytest.param("FREQ=DAILY;INTERVAL=-1", id="INTERVAL=-1"),
    pytest.param("FREQ=WEEKLY;BYDAY=XX", id="BYDAY=XX"),
    pytest.param("FREQ=MONTHLY;BYMONTHDAY=32", id="BYMONTHDAY=32"),
    pytest.param("FREQ=MONTHLY;BYMONTHDAY=0", id="BYMONTHDAY=0"),
    pytest.param("FREQ=YEARLY;BYMONTH=13", id="BYMONTH=13"),
    pytest.param("FREQ=DAILY;COUNT=2;UNTIL=20270101T000000Z", id="COUNT and UNTIL"),
    pytest.param("FREQ=DAILY;UNTIL=tomorrow", id="bad UNTIL"),
    pytest.param("FREQ=DAILY;BYHOUR=9", id="BYHOUR"),
    pytest.param("INTERVAL=2", id="no FREQ"),
    pytest.param("FREQ=DAILY;FREQ=WEEKLY", id="FREQ twice"),
    pytest.param("garbage", id="garbage"),
    pytest.param("", id="empty"),
    pytest.param("FREQ=DAILY\x00", id="NUL"),
    pytest.param(5, id="a number"),
    pytest.param(["FREQ=DAILY"], id="a list"),
]


@pytest.mark.parametrize("rule", INVALID_RULES)
async def test_create_rejects_invalid_recurrence(
    client: AsyncClient, db: DatabaseProbe, rule: Any
) -> None:
    response = await _post(client, {"title": "t", "due_date": DUE, "recurrence": rule})
    _assert_400_naming(response, "recurrence")
    assert await db.count_tasks() == 0


@pytest.mark.parametrize(
    "body",
    [
        {"recurrence": "FREQ=DAILY"},
        {"recurrence": "FREQ=DAILY", "due_date": None},
        {"recurrence": "FREQ=WEEKLY;BYDAY=MO", "remind_at": "2026-06-01T08:00:00Z"},
    ],
    ids=["absent", "null", "remind_at is no due date"],
)
async def test_create_recurring_without_due_date_is_400(
    client: AsyncClient, db: DatabaseProbe, body: dict[str, Any]
) -> None:
    response = await _post(client, {"title": "t", **body})
    _assert_400_naming(response, "recurrence")
    assert await db.count_tasks() == 0


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
@pytest.mark.parametrize("rule", INVALID_RULES)
async def test_update_rejects_invalid_recurrence_and_changes_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, method: str, rule: Any
) -> None:
    task = await create_task(due_date=DUE, recurrence="FREQ=DAILY", tags=["t"])
    before = await _row(db, task["id"])
    tables = await _tag_tables(db)
    response = await _update(client, method, task["id"], {"recurrence": rule, "title": "new"})
    _assert_400_naming(response, "recurrence")
    assert await _row(db, task["id"]) == before
    assert await _tag_tables(db) == tables


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_making_a_task_without_due_date_recur_is_400(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, method: str
) -> None:
    task = await create_task(title="undated", tags=["x"])
    before = await _row(db, task["id"])
    tables = await _tag_tables(db)
    response = await _update(
        client, method, task["id"], {"recurrence": "FREQ=WEEKLY", "title": "dated?", "tags": []}
    )
    _assert_400_naming(response, "recurrence")
    assert await _row(db, task["id"]) == before
    assert await _tag_tables(db) == tables


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_clearing_the_due_date_of_a_recurring_task_is_400(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, method: str
) -> None:
    task = await create_task(due_date=DUE, recurrence="FREQ=DAILY", tags=["x"])
    before = await _row(db, task["id"])
    tables = await _tag_tables(db)
    response = await _update(
        client, method, task["id"], {"due_date": None, "title": "changed", "tags": ["y"]}
    )
    _assert_400_naming(response, "due_date")
    assert await _row(db, task["id"]) == before
    assert await _tag_tables(db) == tables


async def test_clearing_both_recurrence_and_due_date_is_allowed(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(due_date=DUE, recurrence="FREQ=DAILY")
    response = await _update(client, "PATCH", task["id"], {"due_date": None, "recurrence": None})
    assert response.status_code == 200, response.text
    assert response.json()["recurrence"] is None
    assert response.json()["due_date"] is None
    row = await _row(db, task["id"])
    assert row["recurrence"] is None
    assert row["due_date"] is None


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("rrule:freq=weekly;byday=mo,we", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("RRULE:FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("FREQ=WEEKLY;BYDAY=MO,WE", "FREQ=WEEKLY;BYDAY=MO,WE"),
        ("FREQ=DAILY", "FREQ=DAILY"),
        ("freq=daily", "FREQ=DAILY"),
    ],
)
async def test_recurrence_is_answered_and_stored_canonically(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, given: str, canonical: str
) -> None:
    response = await _post(client, {"title": "t", "due_date": DUE, "recurrence": given})
    assert response.status_code == 201, response.text
    assert response.json()["recurrence"] == canonical
    assert (await _row(db, response.json()["id"]))["recurrence"] == canonical
    # And on update, of a task that has a due date.
    other = await create_task(due_date=DUE)
    patched = await _update(client, "PATCH", other["id"], {"recurrence": given})
    assert patched.status_code == 200, patched.text
    assert patched.json()["recurrence"] == canonical
    assert (await _row(db, other["id"]))["recurrence"] == canonical


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=MONTHLY;BYMONTHDAY=15",
        "FREQ=MONTHLY;BYMONTHDAY=-1",
        "FREQ=YEARLY;BYMONTH=12;BYMONTHDAY=25",
        "FREQ=DAILY;INTERVAL=366",
        "FREQ=DAILY;COUNT=1000",
        "FREQ=DAILY;COUNT=1",
        "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    ],
)
async def test_valid_recurrences_are_accepted(
    client: AsyncClient, db: DatabaseProbe, rule: str
) -> None:
    response = await _post(client, {"title": "t", "due_date": DUE, "recurrence": rule})
    assert response.status_code == 201, response.text
    stored = (await _row(db, response.json()["id"]))["recurrence"]
    assert stored == response.json()["recurrence"]
    assert stored is not None
    assert stored.startswith("FREQ=")


async def test_null_recurrence_clears_it(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(due_date=DUE, recurrence="FREQ=DAILY")
    response = await _update(client, "PATCH", task["id"], {"recurrence": None})
    assert response.status_code == 200, response.text
    assert response.json()["recurrence"] is None
    assert response.json()["due_date"] == task["due_date"]
    assert (await _row(db, task["id"]))["recurrence"] is None


# --- time_zone -----------------------------------------------------------------------------

INVALID_ZONES: list[Any] = [
    pytest.param("Mars/Olympus_Mons", id="unknown"),
    pytest.param("Europe/Berln", id="misspelt"),
    pytest.param("../../etc/passwd", id="path"),
    pytest.param("/usr/share/zoneinfo/UTC", id="absolute path"),
    pytest.param("", id="empty"),
    pytest.param("Europe/Berlin\x00", id="NUL"),
    pytest.param("x" * 65, id="65 characters"),
    pytest.param(1, id="a number"),
]


@pytest.mark.parametrize("zone", INVALID_ZONES)
async def test_create_rejects_unknown_time_zone(
    client: AsyncClient, db: DatabaseProbe, zone: Any
) -> None:
    response = await _post(client, {"title": "t", "time_zone": zone})
    _assert_400_naming(response, "time_zone")
    assert await db.count_tasks() == 0


@pytest.mark.parametrize("zone", INVALID_ZONES)
async def test_update_rejects_unknown_time_zone_and_changes_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, zone: Any
) -> None:
    task = await create_task(time_zone="Europe/Berlin")
    before = await _row(db, task["id"])
    response = await _update(client, "PATCH", task["id"], {"time_zone": zone, "title": "x"})
    _assert_400_naming(response, "time_zone")
    assert await _row(db, task["id"]) == before


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
async def test_time_zone_is_kept(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, zone: str
) -> None:
    response = await _post(client, {"title": "t", "time_zone": zone})
    assert response.status_code == 201, response.text
    assert response.json()["time_zone"] == zone
    assert (await _row(db, response.json()["id"]))["time_zone"] == zone
    other = await create_task()
    patched = await _update(client, "PATCH", other["id"], {"time_zone": zone})
    assert patched.json()["time_zone"] == zone
    assert (await _row(db, other["id"]))["time_zone"] == zone
    cleared = await _update(client, "PATCH", other["id"], {"time_zone": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["time_zone"] is None
    assert (await _row(db, other["id"]))["time_zone"] is None


# --- remind_at -----------------------------------------------------------------------------

INVALID_REMINDERS: list[Any] = [
    pytest.param("soon", id="garbage"),
    pytest.param("2026-13-01", id="month 13"),
    pytest.param("2026-02-30T10:00:00Z", id="February 30"),
    pytest.param("9999-12-31T23:00:00Z", id="year 9999"),
    pytest.param(1700000000, id="a number"),
    pytest.param("", id="empty"),
    pytest.param(True, id="a boolean"),
]


@pytest.mark.parametrize("value", INVALID_REMINDERS)
async def test_create_rejects_invalid_remind_at(
    client: AsyncClient, db: DatabaseProbe, value: Any
) -> None:
    response = await _post(client, {"title": "t", "remind_at": value})
    _assert_400_naming(response, "remind_at")
    assert await db.count_tasks() == 0


@pytest.mark.parametrize("value", INVALID_REMINDERS)
async def test_update_rejects_invalid_remind_at_and_changes_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, value: Any
) -> None:
    task = await create_task(remind_at="2026-05-01T08:00:00Z")
    before = await _row(db, task["id"])
    response = await _update(client, "PATCH", task["id"], {"remind_at": value, "title": "x"})
    _assert_400_naming(response, "remind_at")
    assert await _row(db, task["id"]) == before


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-05-01T09:00:00", datetime(2026, 5, 1, 9, tzinfo=UTC)),
        ("2026-05-01T09:00:00Z", datetime(2026, 5, 1, 9, tzinfo=UTC)),
        ("2026-05-01T09:00:00+02:00", datetime(2026, 5, 1, 7, tzinfo=UTC)),
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        ("2026-05-01T09:00:00.250000-05:30", datetime(2026, 5, 1, 14, 30, 0, 250000, tzinfo=UTC)),
    ],
)
async def test_remind_at_is_stored_in_utc(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    given: str,
    expected: datetime,
) -> None:
    response = await _post(client, {"title": "t", "remind_at": given})
    assert response.status_code == 201, response.text
    assert _parse(response.json()["remind_at"]) == expected
    assert _db_time((await _row(db, response.json()["id"]))["remind_at"]) == expected
    other = await create_task()
    patched = await _update(client, "PATCH", other["id"], {"remind_at": given})
    assert _parse(patched.json()["remind_at"]) == expected
    assert _db_time((await _row(db, other["id"]))["remind_at"]) == expected
    cleared = await _update(client, "PATCH", other["id"], {"remind_at": None})
    assert cleared.json()["remind_at"] is None
    assert (await _row(db, other["id"]))["remind_at"] is None


# --- every field at once ---------------------------------------------------------------------


async def test_all_new_fields_round_trip_together(client: AsyncClient, db: DatabaseProbe) -> None:
    body = {
        "title": "Standup",
        "due_date": "2026-06-01T09:00:00+02:00",
        "tags": ["Team", "daily", "TEAM"],
        "recurrence": "rrule:freq=weekly;byday=mo,we",
        "time_zone": "Europe/Berlin",
        "remind_at": "2026-06-01T06:45:00",
    }
    response = await _post(client, body)
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["tags"] == ["daily", "Team"]
    assert task["recurrence"] == "FREQ=WEEKLY;BYDAY=MO,WE"
    assert task["time_zone"] == "Europe/Berlin"
    assert _parse(task["remind_at"]) == datetime(2026, 6, 1, 6, 45, tzinfo=UTC)
    assert _parse(task["due_date"]) == datetime(2026, 6, 1, 7, tzinfo=UTC)
    assert task["completed_at"] is None
    assert task["next_occurrence_id"] is None
    row = await _row(db, task["id"])
    assert stored_tags(row["tags"]) == ["daily", "Team"]
    assert row["recurrence"] == "FREQ=WEEKLY;BYDAY=MO,WE"
    assert row["time_zone"] == "Europe/Berlin"
    assert _db_time(row["remind_at"]) == datetime(2026, 6, 1, 6, 45, tzinfo=UTC)
    assert await _task_tag_keys(db, task["id"]) == ["daily", "team"]
    assert await _user_tags(db, "alice") == {"daily": "daily", "team": "Team"}
    got = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert got.json() == task


# --- completed_at ----------------------------------------------------------------------------


async def test_created_completed_has_completed_at(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await _post(client, {"title": "done already", "completed": True})
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["completed"] is True
    assert task["completed_at"] is not None
    assert _parse(task["completed_at"]) == _parse(task["created_at"])
    assert _db_time((await _row(db, task["id"]))["completed_at"]) == _parse(task["completed_at"])


async def test_created_pending_has_no_completed_at(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await _post(client, {"title": "to do", "completed": False})
    assert response.json()["completed_at"] is None
    assert (await _row(db, response.json()["id"]))["completed_at"] is None


async def test_toggle_sets_and_clears_completed_at(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task()
    url = f"/api/tasks/{task['id']}/complete"
    on = await client.patch(url, headers=auth())
    assert on.status_code == 200, on.text
    assert on.json()["completed"] is True
    completed_at = _parse(on.json()["completed_at"])
    assert completed_at == _parse(on.json()["updated_at"])
    assert completed_at > _parse(task["created_at"])
    assert _db_time((await _row(db, task["id"]))["completed_at"]) == completed_at
    off = await client.patch(url, headers=auth())
    assert off.json()["completed"] is False
    assert off.json()["completed_at"] is None
    assert (await _row(db, task["id"]))["completed_at"] is None
    again = await client.patch(url, headers=auth())
    assert _parse(again.json()["completed_at"]) > completed_at


@pytest.mark.parametrize("route", ["complete", "PATCH", "PUT"])
async def test_setting_completed_twice_keeps_completed_at(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, route: str
) -> None:
    task = await create_task()

    async def set_completed(value: bool) -> dict[str, Any]:
        if route == "complete":
            response = await client.patch(
                f"/api/tasks/{task['id']}/complete", json={"completed": value}, headers=auth()
            )
        else:
            response = await _update(client, route, task["id"], {"completed": value})
        assert response.status_code == 200, response.text
        answered: dict[str, Any] = response.json()
        return answered

    first = await set_completed(True)
    assert first["completed_at"] is not None
    second = await set_completed(True)
    assert second["completed_at"] == first["completed_at"]
    assert _db_time((await _row(db, task["id"]))["completed_at"]) == _parse(first["completed_at"])
    reopened = await set_completed(False)
    assert reopened["completed"] is False
    assert reopened["completed_at"] is None
    assert (await _row(db, task["id"]))["completed_at"] is None
    still_open = await set_completed(False)
    assert still_open["completed_at"] is None


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_with_completed_sets_completed_at(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, method: str
) -> None:
    task = await create_task()
    response = await _update(client, method, task["id"], {"completed": True, "title": "finished"})
    assert response.status_code == 200, response.text
    done = response.json()
    assert done["completed"] is True
    assert _parse(done["completed_at"]) == _parse(done["updated_at"])
    # A later change that does not touch `completed` keeps the completion time.
    later = await _update(client, method, task["id"], {"title": "renamed"})
    assert later.json()["completed_at"] == done["completed_at"]
    assert _parse(later.json()["updated_at"]) > _parse(done["updated_at"])
    assert _db_time((await _row(db, task["id"]))["completed_at"]) == _parse(done["completed_at"])


# --- read-only fields --------------------------------------------------------------------------

READ_ONLY = {
    "completed_at": "2000-01-01T00:00:00Z",
    "next_occurrence_id": "6f1b3c2e-1d4a-4c1e-9b7a-0a1b2c3d4e5f",
    "previous_occurrence_id": "7f1b3c2e-1d4a-4c1e-9b7a-0a1b2c3d4e5f",
}


async def test_create_ignores_read_only_fields(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await _post(client, {"title": "t", **READ_ONLY})
    assert response.status_code == 201, response.text
    task = response.json()
    assert task["completed_at"] is None
    assert task["next_occurrence_id"] is None
    row = await _row(db, task["id"])
    assert row["completed_at"] is None
    assert row["next_occurrence_id"] is None
    assert row["previous_occurrence_id"] is None


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize("completed", [False, True])
async def test_update_ignores_read_only_fields(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    method: str,
    completed: bool,
) -> None:
    task = await create_task(completed=completed)
    before = await _row(db, task["id"])
    response = await _update(client, method, task["id"], READ_ONLY)
    assert response.status_code == 200, response.text
    assert response.json() == task
    assert await _row(db, task["id"]) == before
    # Together with a real change, only that change is made.
    changed = await _update(client, method, task["id"], {**READ_ONLY, "title": "new"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["completed_at"] == task["completed_at"]
    assert changed.json()["next_occurrence_id"] is None
    row = await _row(db, task["id"])
    assert row["next_occurrence_id"] is None
    assert row["previous_occurrence_id"] is None
    assert row["completed_at"] == before["completed_at"]


async def test_complete_ignores_read_only_fields_in_its_body(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task()
    response = await client.patch(
        f"/api/tasks/{task['id']}/complete",
        json={"completed": True, **READ_ONLY},
        headers=auth(),
    )
    assert response.status_code == 200, response.text
    assert not response.json()["completed_at"].startswith("2000")
    assert response.json()["next_occurrence_id"] is None
    row = await _row(db, task["id"])
    assert row["next_occurrence_id"] is None
    assert row["previous_occurrence_id"] is None
