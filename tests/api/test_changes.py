"""`GET /api/tasks/changes`: a full sync, then every kind of write once and in order, deletes as
tombstones, pages, retention (410), and that one user's changes never reach another."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import bindparam, text

from tests.conftest import TASK_FIELDS, DatabaseProbe, TaskFactory, auth
from todo_api.db import UTCDateTime

JSON = {"Content-Type": "application/json"}


async def _changes(
    client: AsyncClient, since: str | None = None, user: str = "alice", **params: Any
) -> dict[str, Any]:
    query = {**params, **({"since": since} if since is not None else {})}
    response = await client.get("/api/tasks/changes", params=query, headers=auth(user))
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert set(page) == {"changes", "cursor", "has_more"}
    return page


def _kinds(page: dict[str, Any]) -> list[tuple[str, str]]:
    """Each change as (type, task id)."""
    return [
        (change["type"], change["task"]["id"] if change["type"] == "upsert" else change["id"])
        for change in page["changes"]
    ]


async def _follow(
    client: AsyncClient, since: str | None, user: str = "alice", limit: int = 500
) -> tuple[list[dict[str, Any]], str]:
    """Every change after `since`, following `has_more`; and the last cursor."""
    changes: list[dict[str, Any]] = []
    while True:
        page = await _changes(client, since, user, limit=limit)
        changes += page["changes"]
        since = page["cursor"]
        if not page["has_more"]:
            return changes, since


class Replica:
    """A client's copy of its tasks, kept only from the feed."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}

    def apply(self, changes: list[dict[str, Any]]) -> None:
        for change in changes:
            if change["type"] == "upsert":
                self.tasks[change["task"]["id"]] = change["task"]
            else:
                self.tasks.pop(change["id"], None)


async def _server_tasks(client: AsyncClient, user: str = "alice") -> dict[str, dict[str, Any]]:
    response = await client.get("/api/tasks", params={"limit": 100}, headers=auth(user))
    assert response.status_code == 200
    return {task["id"]: task for task in response.json()}


async def test_a_full_sync_is_every_current_task_and_then_nothing(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    empty = await _changes(client)
    assert empty == {"changes": [], "cursor": "0", "has_more": False}
    created = [await create_task(title=f"task {n}") for n in range(3)]
    deleted = created.pop(0)
    assert (await client.delete(f"/api/tasks/{deleted['id']}", headers=auth())).status_code == 204

    page = await _changes(client)
    # A full sync carries no tombstones: a client with nothing has nothing to forget.
    assert _kinds(page) == [("upsert", task["id"]) for task in created]
    assert [change["task"] for change in page["changes"]] == created
    assert set(page["changes"][0]["task"]) == TASK_FIELDS
    assert page["has_more"] is False
    again = await _changes(client, page["cursor"])
    assert again == {"changes": [], "cursor": page["cursor"], "has_more": False}


async def test_every_kind_of_write_appears_once_in_order(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    cursor = (await _changes(client))["cursor"]
    first = await create_task(title="first", tags=["Home"], due_date="2026-03-01T09:00:00Z")
    second = await create_task(title="second", tags=["home", "work"])
    third = await create_task(title="third")
    page = await _changes(client, cursor)
    assert _kinds(page) == [
        ("upsert", first["id"]),
        ("upsert", second["id"]),
        ("upsert", third["id"]),
    ]
    cursor = page["cursor"]

    put = await client.put(
        f"/api/tasks/{third['id']}", json={"title": "third, renamed"}, headers=auth()
    )
    patch = await client.patch(
        f"/api/tasks/{first['id']}", json={"priority": "high"}, headers=auth()
    )
    toggled = await client.patch(f"/api/tasks/{second['id']}/complete", headers=auth())
    assert [r.status_code for r in (put, patch, toggled)] == [200, 200, 200]
    page = await _changes(client, cursor)
    assert _kinds(page) == [
        ("upsert", third["id"]),
        ("upsert", first["id"]),
        ("upsert", second["id"]),
    ]
    assert [change["task"] for change in page["changes"]] == [
        put.json(),
        patch.json(),
        toggled.json(),
    ]
    cursor = page["cursor"]

    # A tag rename rewrites every task that carries it: each is a change.
    renamed = await client.patch("/api/tags/home", json={"name": "House"}, headers=auth())
    assert renamed.status_code == 200, renamed.text
    page = await _changes(client, cursor)
    assert sorted(_kinds(page)) == sorted([("upsert", first["id"]), ("upsert", second["id"])])
    assert {change["task"]["id"]: change["task"]["tags"] for change in page["changes"]} == {
        first["id"]: ["House"],
        second["id"]: ["House", "work"],
    }
    cursor = page["cursor"]

    assert (await client.delete("/api/tags/work", headers=auth())).status_code == 204
    page = await _changes(client, cursor)
    assert _kinds(page) == [("upsert", second["id"])]
    assert page["changes"][0]["task"]["tags"] == ["House"]
    cursor = page["cursor"]

    assert (await client.delete(f"/api/tasks/{third['id']}", headers=auth())).status_code == 204
    page = await _changes(client, cursor)
    assert page["changes"] == [{"type": "delete", "id": third["id"]}]
    cursor = page["cursor"]

    # Completing a recurring task changes it and spawns its next occurrence: two changes.
    recurring = await client.patch(
        f"/api/tasks/{first['id']}", json={"recurrence": "FREQ=DAILY"}, headers=auth()
    )
    assert recurring.status_code == 200, recurring.text
    cursor = (await _changes(client, cursor))["cursor"]
    done = await client.patch(f"/api/tasks/{first['id']}/complete", headers=auth())
    assert done.status_code == 200
    successor = done.json()["next_occurrence_id"]
    page = await _changes(client, cursor)
    assert sorted(_kinds(page)) == sorted([("upsert", first["id"]), ("upsert", successor)])
    rows = await db.rows("SELECT count(*) AS n FROM task_tombstones")
    assert rows[0]["n"] == 1


async def test_a_task_changed_many_times_appears_once_as_it_is_now(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task(title="draft")
    cursor = (await _changes(client))["cursor"]
    for title in ("one", "two", "three"):
        response = await client.patch(
            f"/api/tasks/{task['id']}", json={"title": title}, headers=auth()
        )
        assert response.status_code == 200
    page = await _changes(client, cursor)
    assert [change["task"]["title"] for change in page["changes"]] == ["three"]


async def test_pages_follow_each_other_with_has_more(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    created = [await create_task(title=f"task {n}") for n in range(7)]
    pages = []
    since = None
    while True:
        page = await _changes(client, since, limit=3)
        pages.append(page)
        since = page["cursor"]
        if not page["has_more"]:
            break
    assert [len(page["changes"]) for page in pages] == [3, 3, 1]
    assert [change["task"]["id"] for page in pages for change in page["changes"]] == [
        task["id"] for task in created
    ]
    # A full sync in pages: deletes during it reach the client; those before it never do.
    first_page = await _changes(client, None, limit=2)
    await client.delete(f"/api/tasks/{created[0]['id']}", headers=auth())
    await client.delete(f"/api/tasks/{created[6]['id']}", headers=auth())
    rest, _ = await _follow(client, first_page["cursor"], limit=2)
    replica = Replica()
    replica.apply(first_page["changes"] + rest)
    assert replica.tasks == await _server_tasks(client)


async def test_the_follower_ends_equal_to_the_server(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    replica = Replica()
    changes, cursor = await _follow(client, None)
    replica.apply(changes)
    tasks = [await create_task(title=f"t{n}", tags=["a"] if n % 2 else []) for n in range(6)]
    for n, task in enumerate(tasks):
        if n % 3 == 0:
            await client.delete(f"/api/tasks/{task['id']}", headers=auth())
        elif n % 3 == 1:
            await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth())
        changes, cursor = await _follow(client, cursor, limit=2)
        replica.apply(changes)
    await client.patch("/api/tags/a", json={"name": "b"}, headers=auth())
    changes, cursor = await _follow(client, cursor)
    replica.apply(changes)
    assert replica.tasks == await _server_tasks(client)


async def test_another_users_changes_never_appear(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    mine = await create_task(title="mine")
    theirs = await create_task(user="bob", title="theirs")
    await client.delete(f"/api/tasks/{theirs['id']}", headers=auth("bob"))
    page = await _changes(client, "0")
    assert _kinds(page) == [("upsert", mine["id"])]
    assert "theirs" not in str(page)
    bobs = await _changes(client, "0", user="bob")
    assert bobs["changes"] == [{"type": "delete", "id": theirs["id"]}]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "abc"},
        {"since": "-1"},
        {"since": "01"},
        {"since": "1.1"},
        {"since": "3.2"},
        {"since": "1" * 19},
        {"since": ""},
        {"limit": "0"},
        {"limit": "1001"},
        {"limit": "x"},
    ],
)
async def test_a_malformed_cursor_or_limit_is_a_400(
    client: AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/api/tasks/changes", params=params, headers=auth())
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == next(iter(params))


async def test_without_a_token_it_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/tasks/changes")
    assert response.status_code == 401


async def test_a_cursor_ahead_of_the_server_is_410(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    await create_task()
    response = await client.get("/api/tasks/changes", params={"since": "99"}, headers=auth())
    assert response.status_code == 410
    assert "sync again from the start" in response.json()["detail"]


async def test_a_cursor_older_than_the_retention_is_410(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    old_cursor = (await _changes(client))["cursor"]
    doomed = [await create_task(title=f"doomed {n}") for n in range(2)]
    kept = await create_task(title="kept")
    mid_cursor = (await _changes(client))["cursor"]
    for task in doomed:
        assert (await client.delete(f"/api/tasks/{task['id']}", headers=auth())).status_code == 204
    bobs = await create_task(user="bob")
    await client.delete(f"/api/tasks/{bobs['id']}", headers=auth("bob"))
    before_purge = (await _changes(client, mid_cursor))["cursor"]

    # Alice's tombstones are 31 days old; Bob's are new.
    engine = app.state.runtime.engine
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE task_tombstones SET deleted_at = :at WHERE user_id = 'alice'").bindparams(
                bindparam("at", type_=UTCDateTime())
            ),
            {"at": datetime.now(UTC) - timedelta(days=31)},
        )
    # The worker's hourly round (SYNC_RETENTION_DAYS: 30 by default).
    assert await app.state.runtime.housekeeping.run_once() == 2
    assert await db.rows("SELECT user_id FROM task_tombstones") == [{"user_id": "bob"}]

    for stale in (old_cursor, mid_cursor):
        response = await client.get("/api/tasks/changes", params={"since": stale}, headers=auth())
        assert response.status_code == 410, stale
        assert response.json() == {
            "detail": "This cursor is older than the changes still kept; sync again from the "
            "start (without `since`)."
        }
    # A cursor from after the purged deletes goes on; so does a new full sync, in pages too.
    assert (await _changes(client, before_purge))["changes"] == []
    first = await _changes(client, None, limit=1)
    assert _kinds(first) == [("upsert", kept["id"])]
    assert (await _changes(client, first["cursor"]))["changes"] == []
    assert (await _changes(client, "0", user="bob"))["changes"] == [
        {"type": "delete", "id": bobs["id"]}
    ]


async def test_writes_number_one_users_changes_without_gaps(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    first = await create_task(title="a")
    await create_task(title="b")
    await client.patch(f"/api/tasks/{first['id']}/complete", headers=auth())
    await client.delete(f"/api/tasks/{first['id']}", headers=auth())
    await create_task(user="bob")
    users = await db.rows("SELECT id, change_seq FROM users ORDER BY id")
    assert users == [{"id": "alice", "change_seq": 4}, {"id": "bob", "change_seq": 1}]
    tasks = await db.rows("SELECT title, change_seq FROM tasks WHERE user_id = 'alice'")
    assert tasks == [{"title": "b", "change_seq": 2}]
    tombstones = await db.rows("SELECT user_id, seq FROM task_tombstones")
    assert tombstones == [{"user_id": "alice", "seq": 4}]
