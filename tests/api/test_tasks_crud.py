"""The task routes' success paths: status, body, headers, and what the database holds."""

import uuid
from datetime import UTC, datetime, timedelta

from httpx import AsyncClient

from tests.conftest import TASK_FIELDS, DatabaseProbe, TaskFactory, auth


def _parse(ts: str) -> datetime:
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


async def test_create_returns_task_location_and_etag(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    response = await client.post(
        "/api/tasks",
        json={
            "title": "  Buy milk  ",
            "description": "2 litres",
            "priority": "high",
            "due_date": "2026-12-01T09:30:00+02:00",
        },
        headers=auth("alice"),
    )
    assert response.status_code == 201
    task = response.json()
    assert set(task) == TASK_FIELDS
    assert task["title"] == "Buy milk"
    assert task["description"] == "2 litres"
    assert task["priority"] == "high"
    assert task["completed"] is False
    assert task["user_id"] == "alice"
    assert _parse(task["due_date"]) == datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    assert _parse(task["created_at"]) == _parse(task["updated_at"])
    uuid.UUID(task["id"])
    assert response.headers["location"] == f"/api/tasks/{task['id']}"
    assert response.headers["etag"].startswith('"')
    row = await db.task(task["id"])
    assert row is not None
    assert row["title"] == "Buy milk"
    assert row["user_id"] == "alice"
    users = await db.rows("SELECT id FROM users")
    assert users == [{"id": "alice"}]


async def test_create_minimal_defaults(client: AsyncClient) -> None:
    response = await client.post("/api/tasks", json={"title": "x"}, headers=auth())
    assert response.status_code == 201
    task = response.json()
    assert task["description"] is None
    assert task["priority"] is None
    assert task["due_date"] is None
    assert task["completed"] is False


async def test_due_date_accepts_date_and_naive_datetime_as_utc(client: AsyncClient) -> None:
    for given, expected in [
        ("2026-03-04", datetime(2026, 3, 4, tzinfo=UTC)),
        ("2026-03-04T10:00:00", datetime(2026, 3, 4, 10, tzinfo=UTC)),
        ("2026-03-04T10:00:00Z", datetime(2026, 3, 4, 10, tzinfo=UTC)),
    ]:
        response = await client.post(
            "/api/tasks", json={"title": "t", "due_date": given}, headers=auth()
        )
        assert response.status_code == 201, response.text
        assert _parse(response.json()["due_date"]) == expected


async def test_get_one(client: AsyncClient, create_task: TaskFactory) -> None:
    task = await create_task(title="Read")
    response = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert response.status_code == 200
    assert response.json() == task
    assert response.headers["etag"]


async def test_get_with_matching_if_none_match_is_304(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task()
    first = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    etag = first.headers["etag"]
    again = await client.get(f"/api/tasks/{task['id']}", headers={**auth(), "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


async def test_list_returns_only_own_tasks_newest_first(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    first = await create_task(title="first")
    second = await create_task(title="second")
    await create_task("bob", title="bob's")
    response = await client.get("/api/tasks", headers=auth())
    assert response.status_code == 200
    assert [t["id"] for t in response.json()] == [second["id"], first["id"]]
    assert "link" not in response.headers


async def test_list_of_new_user_is_empty(client: AsyncClient) -> None:
    response = await client.get("/api/tasks", headers=auth("nobody-yet"))
    assert response.status_code == 200
    assert response.json() == []


async def test_put_changes_present_fields_keeps_absent_and_clears_null(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(
        title="Old", description="keep me", priority="low", due_date="2026-01-01"
    )
    response = await client.put(
        f"/api/tasks/{task['id']}",
        json={"title": " New ", "priority": None},
        headers=auth(),
    )
    assert response.status_code == 200
    updated = response.json()
    assert updated["title"] == "New"
    assert updated["priority"] is None
    assert updated["description"] == "keep me"
    assert updated["due_date"] == task["due_date"]
    assert _parse(updated["updated_at"]) > _parse(task["updated_at"])
    assert updated["created_at"] == task["created_at"]
    assert response.headers["etag"] != ""
    row = await db.task(task["id"])
    assert row is not None
    assert (row["title"], row["priority"], row["description"]) == ("New", None, "keep me")


async def test_patch_is_partial_update_too(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(title="T", description="d")
    response = await client.patch(
        f"/api/tasks/{task['id']}", json={"completed": True, "description": None}, headers=auth()
    )
    assert response.status_code == 200
    assert response.json()["completed"] is True
    assert response.json()["description"] is None
    assert response.json()["title"] == "T"
    row = await db.task(task["id"])
    assert row is not None
    assert bool(row["completed"]) is True
    assert row["description"] is None


async def test_empty_update_changes_nothing(client: AsyncClient, create_task: TaskFactory) -> None:
    task = await create_task()
    response = await client.patch(f"/api/tasks/{task['id']}", json={}, headers=auth())
    assert response.status_code == 200
    assert response.json() == task


async def test_body_cannot_choose_server_fields(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    chosen_id = str(uuid.uuid4())
    response = await client.post(
        "/api/tasks",
        json={
            "title": "mine",
            "id": chosen_id,
            "user_id": "bob",
            "created_at": "2000-01-01T00:00:00Z",
            "updated_at": "2000-01-01T00:00:00Z",
        },
        headers=auth("alice"),
    )
    assert response.status_code == 201
    task = response.json()
    assert task["id"] != chosen_id
    assert task["user_id"] == "alice"
    assert not task["created_at"].startswith("2000")
    assert await db.task(chosen_id) is None
    assert await db.count_tasks("bob") == 0

    update = await client.put(
        f"/api/tasks/{task['id']}",
        json={"user_id": "bob", "id": chosen_id, "created_at": "2000-01-01T00:00:00Z"},
        headers=auth("alice"),
    )
    assert update.status_code == 200
    assert update.json()["user_id"] == "alice"
    assert update.json()["id"] == task["id"]
    assert update.json()["created_at"] == task["created_at"]
    row = await db.task(task["id"])
    assert row is not None
    assert row["user_id"] == "alice"


async def test_delete_then_gone(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task()
    response = await client.delete(f"/api/tasks/{task['id']}", headers=auth())
    assert response.status_code == 204
    assert response.content == b""
    assert await db.task(task["id"]) is None
    again = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert again.status_code == 404
    assert again.json() == {"detail": "Task not found"}


async def test_toggle_without_body_flips(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task()
    first = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth())
    assert first.status_code == 200
    assert first.json()["completed"] is True
    row = await db.task(task["id"])
    assert row is not None
    assert bool(row["completed"]) is True
    second = await client.patch(f"/api/tasks/{task['id']}/complete", headers=auth())
    assert second.json()["completed"] is False


async def test_complete_with_body_sets_idempotently(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task()
    url = f"/api/tasks/{task['id']}/complete"
    first = await client.patch(url, json={"completed": True}, headers=auth())
    second = await client.patch(url, json={"completed": True}, headers=auth())
    assert first.status_code == second.status_code == 200
    assert first.json()["completed"] is second.json()["completed"] is True
    # Setting the value it already has is no change at all.
    assert second.json()["updated_at"] == first.json()["updated_at"]
    assert second.headers["etag"] == first.headers["etag"]
    back = await client.patch(url, json={"completed": False}, headers=auth())
    assert back.json()["completed"] is False


async def test_stats(client: AsyncClient, create_task: TaskFactory) -> None:
    await create_task(title="overdue", due_date="2020-01-01")
    await create_task(title="future", due_date="2999-01-01")
    done = await create_task(title="done, was due", due_date="2020-01-01")
    await client.patch(f"/api/tasks/{done['id']}/complete", headers=auth())
    await create_task("bob", title="not counted", due_date="2020-01-01")
    response = await client.get("/api/tasks/stats", headers=auth())
    assert response.status_code == 200
    assert response.json() == {"total": 3, "completed": 1, "pending": 2, "overdue": 1}


async def test_health_and_readiness(client: AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "healthy"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"


async def test_every_response_has_a_request_id(client: AsyncClient) -> None:
    generated = await client.get("/health")
    assert len(generated.headers["x-request-id"]) >= 16
    kept = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    insane = await client.get("/health", headers={"X-Request-ID": "x" * 300})
    assert insane.headers["x-request-id"] != "x" * 300
    missing = await client.get("/nope")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not found"}
    assert missing.headers["x-request-id"]
