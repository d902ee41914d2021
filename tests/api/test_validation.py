"""Bad input gets a clear 400 (never 422) and changes nothing."""

import json
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import DatabaseProbe, TaskFactory, auth

INVALID_CREATE_BODIES: list[tuple[dict[str, Any], str]] = [
    ({}, "title"),
    ({"title": ""}, "title"),
    ({"title": "   "}, "title"),
    ({"title": None}, "title"),
    ({"title": 5}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": "nul\x00byte"}, "title"),
    ({"title": "ok", "description": "x" * 1001}, "description"),
    ({"title": "ok", "description": 12}, "description"),
    ({"title": "ok", "priority": "urgent"}, "priority"),
    ({"title": "ok", "priority": "HIGH"}, "priority"),
    ({"title": "ok", "due_date": "tomorrow"}, "due_date"),
    ({"title": "ok", "due_date": 1700000000}, "due_date"),
    ({"title": "ok", "due_date": "2026-13-01"}, "due_date"),
    ({"title": "ok", "due_date": "9999-12-31T23:00:00Z"}, "due_date"),
    ({"title": "ok", "completed": "yes"}, "completed"),
    ({"title": "ok", "completed": 1}, "completed"),
    # Text no column can hold: a lone surrogate (valid JSON, no UTF-8 for it) or NUL.
    ({"title": "ok", "description": "\udfff"}, "description"),
    ({"title": "ok", "description": "tail\x00"}, "description"),
    ({"title": "\ud83d title"}, "title"),
    ({"title": "ok", "priority": "high\x00"}, "priority"),
    ({"title": "ok", "due_date": "2026-05-01\udfff"}, "due_date"),
]
# Bodies go as JSON text with \u escapes: httpx's `json=` cannot encode a lone surrogate.
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(("body", "field"), INVALID_CREATE_BODIES)
async def test_create_rejects_invalid_field(
    client: AsyncClient, db: DatabaseProbe, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/tasks", content=json.dumps(body), headers={**auth(), **JSON})
    assert response.status_code == 400, response.text
    payload = response.json()
    assert field in payload["detail"]
    assert any(error["field"] == field for error in payload["errors"])
    assert await db.count_tasks() == 0


@pytest.mark.parametrize(
    "raw", [b"{", b"not json", b'{"title": "x",}', b"[1, 2]", b'"just a string"', b"null"]
)
async def test_create_rejects_malformed_json(
    client: AsyncClient, db: DatabaseProbe, raw: bytes
) -> None:
    response = await client.post(
        "/api/tasks",
        content=raw,
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["detail"]
    assert await db.count_tasks() == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[" * 30_000 + b"]" * 30_000,  # nested deeper than the parser recurses
        b'{"title": ' + b"9" * 5_000 + b"}",  # an integer longer than Python converts
    ],
    ids=["truncated", "deep nesting", "5,000-digit number"],
)
async def test_invalid_json_says_so(client: AsyncClient, db: DatabaseProbe, raw: bytes) -> None:
    response = await client.post(
        "/api/tasks", content=raw, headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Request body is not valid JSON."}
    assert await db.count_tasks() == 0


UPDATE_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"title": None}, "title"),
    ({"title": ""}, "title"),
    ({"completed": None}, "completed"),
    ({"priority": "urgent"}, "priority"),
    ({"description": "x" * 1001}, "description"),
    ({"due_date": "someday"}, "due_date"),
    ({"description": "\udfff"}, "description"),
    ({"title": "new\x00"}, "title"),
]


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
@pytest.mark.parametrize(("body", "field"), UPDATE_BODIES)
async def test_update_rejects_invalid_field_and_changes_nothing(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    method: str,
    body: dict[str, Any],
    field: str,
) -> None:
    task = await create_task(title="Original", priority="low", description="d")
    before = await db.task(task["id"])
    response = await client.request(
        method, f"/api/tasks/{task['id']}", content=json.dumps(body), headers={**auth(), **JSON}
    )
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert await db.task(task["id"]) == before


@pytest.mark.parametrize("body", [{"completed": "true"}, {"completed": None}, {}, {"done": True}])
async def test_complete_rejects_invalid_body(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, body: dict[str, Any]
) -> None:
    task = await create_task()
    before = await db.task(task["id"])
    response = await client.patch(f"/api/tasks/{task['id']}/complete", json=body, headers=auth())
    assert response.status_code == 400, response.text
    assert await db.task(task["id"]) == before


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PUT", ""), ("PATCH", ""), ("DELETE", ""), ("PATCH", "/complete")],
)
@pytest.mark.parametrize("bad_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
async def test_malformed_task_id_is_400(
    client: AsyncClient, method: str, suffix: str, bad_id: str
) -> None:
    kwargs: dict[str, Any] = {"json": {"title": "x"}} if method in {"PUT", "PATCH"} else {}
    response = await client.request(
        method, f"/api/tasks/{bad_id}{suffix}", headers=auth(), **kwargs
    )
    assert response.status_code == 400
    assert "task_id" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PUT", ""), ("PATCH", ""), ("DELETE", ""), ("PATCH", "/complete")],
)
async def test_missing_task_is_404(client: AsyncClient, method: str, suffix: str) -> None:
    sends_update = method in {"PUT", "PATCH"} and not suffix
    kwargs: dict[str, Any] = {"json": {"title": "x"}} if sends_update else {}
    response = await client.request(
        method,
        f"/api/tasks/2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10{suffix}",
        headers=auth(),
        **kwargs,
    )
    assert response.status_code == 404
    assert response.json() == {"detail": "Task not found"}


async def test_body_too_large_is_413(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "x", "description": "y" * 70_000}, headers=auth()
    )
    assert response.status_code == 413
    assert response.json()["detail"]
    assert await db.count_tasks() == 0


async def test_chunked_body_too_large_is_413(client: AsyncClient, db: DatabaseProbe) -> None:
    async def chunks() -> Any:
        yield b'{"title": "x", "description": "'
        for _ in range(20):
            yield b"y" * 4096
        yield b'"}'

    response = await client.post(
        "/api/tasks", content=chunks(), headers={**auth(), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert await db.count_tasks() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_non_json_body_is_415(
    client: AsyncClient, db: DatabaseProbe, content_type: str
) -> None:
    response = await client.post(
        "/api/tasks",
        content=b'{"title": "x"}',
        headers={**auth(), "Content-Type": content_type},
    )
    assert response.status_code == 415
    assert "JSON" in response.json()["detail"]
    assert await db.count_tasks() == 0


async def test_json_with_charset_is_accepted(client: AsyncClient) -> None:
    response = await client.post(
        "/api/tasks",
        content=b'{"title": "x"}',
        headers={**auth(), "Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 201


async def test_wrong_method_is_405(client: AsyncClient) -> None:
    response = await client.post("/api/tasks/stats", json={}, headers=auth())
    assert response.status_code == 405
    assert response.json() == {"detail": "Method not allowed"}


@pytest.mark.parametrize(
    ("query", "field"),
    [("q=a%00b", "q"), ("status=all%00", "status"), ("q=%ED%A0%80", None), ("sort=%FF", "sort")],
)
async def test_query_text_the_database_cannot_hold_is_400(
    client: AsyncClient, create_task: TaskFactory, query: str, field: str | None
) -> None:
    """Percent-decoding turns bytes that are not UTF-8 into U+FFFD, an ordinary character: only
    NUL gets through it, and is refused before any query runs."""
    await create_task(title="a\ufffdb")
    response = await client.get(f"/api/tasks?{query}", headers=auth())
    if field is None:
        assert response.status_code == 200, response.text
        assert [task["title"] for task in response.json()] == []  # U+FFFD alone: no match
        return
    assert response.status_code == 400, response.text
    assert [error["field"] for error in response.json()["errors"]] == [field]
