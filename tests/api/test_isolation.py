"""People never see or change each other's tasks: 403 on someone else's task, rows untouched."""

from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import DatabaseProbe, TaskFactory, auth

FORBIDDEN = {"detail": "Not authorized to access this task"}

ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("PUT", "", {"title": "hijacked", "completed": True}),
    ("PATCH", "", {"title": "hijacked", "priority": "high"}),
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
    ("PATCH", "/complete", {"completed": True}),
]


@pytest.mark.parametrize(("method", "suffix", "body"), ROUTES)
async def test_other_users_task_is_403_and_unchanged(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
) -> None:
    task = await create_task("alice", title="Alice's secret", description="private")
    before = await db.task(task["id"])
    response = await client.request(
        method, f"/api/tasks/{task['id']}{suffix}", json=body, headers=auth("mallory")
    )
    assert response.status_code == 403
    assert response.json() == FORBIDDEN
    assert "Alice" not in response.text
    assert await db.task(task["id"]) == before
    still_there = await client.get(f"/api/tasks/{task['id']}", headers=auth("alice"))
    assert still_there.json() == task


async def test_lists_and_stats_never_include_other_users(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    for i in range(3):
        await create_task("alice", title=f"alice {i}")
    bobs = {(await create_task("bob", title=f"bob {i}"))["id"] for i in range(2)}
    for params in ["", "?status=pending", "?q=alice", "?sort=title", "?limit=1"]:
        response = await client.get(f"/api/tasks{params}", headers=auth("bob"))
        assert response.status_code == 200
        ids = {task["id"] for task in response.json()}
        assert ids <= bobs
        assert all(task["user_id"] == "bob" for task in response.json())
    stats = await client.get("/api/tasks/stats", headers=auth("bob"))
    assert stats.json()["total"] == 2


async def test_cursor_from_another_user_reveals_nothing(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    for i in range(3):
        await create_task("alice", title=f"alice {i}")
    first = await client.get("/api/tasks?limit=1", headers=auth("alice"))
    cursor = first.headers["x-next-cursor"]
    response = await client.get(f"/api/tasks?limit=1&cursor={cursor}", headers=auth("bob"))
    assert response.status_code == 200
    assert response.json() == []


async def test_new_user_row_created_from_claims(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await client.get(
        "/api/tasks", headers=auth("carol", email="Carol@Example.com", name="Carol")
    )
    assert response.status_code == 200
    rows = await db.rows("SELECT id, email, name, password_hash FROM users")
    assert rows == [
        {"id": "carol", "email": "carol@example.com", "name": "Carol", "password_hash": None}
    ]


async def test_email_already_taken_still_creates_user_without_it(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    first = await client.get("/api/tasks", headers=auth("u1", email="same@example.com"))
    second = await client.post(
        "/api/tasks", json={"title": "x"}, headers=auth("u2", email="SAME@example.com")
    )
    assert first.status_code == 200
    assert second.status_code == 201
    rows = await db.rows("SELECT id, email FROM users ORDER BY id")
    assert rows == [{"id": "u1", "email": "same@example.com"}, {"id": "u2", "email": None}]
