"""HTTP details a generic client relies on, found by schemathesis: `Allow` on 405 lists every
method of the path, `stats` is not a task id, and text is trimmed exactly as documented."""

import pytest
from httpx import AsyncClient

from tests.conftest import DatabaseProbe, auth


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/tasks", "GET, POST"),
        ("OPTIONS", "/api/tasks", "GET, POST"),
        (
            "POST",
            "/api/tasks/00000000-0000-4000-8000-000000000000",
            "GET, PUT, PATCH, DELETE",
        ),
        ("PUT", "/api/tasks/stats", "GET"),
        ("DELETE", "/api/tasks/stats", "GET"),
        ("GET", "/api/tasks/00000000-0000-4000-8000-000000000000/complete", "PATCH"),
    ],
)
async def test_405_lists_every_method_of_the_path(
    client: AsyncClient, db: DatabaseProbe, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, headers=auth())
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allowed
    assert response.json() == {"detail": "Method not allowed"}
    assert await db.rows("SELECT id FROM tasks") == []


async def test_a_malformed_task_id_is_still_a_400(client: AsyncClient) -> None:
    response = await client.put("/api/tasks/statsx", json={"title": "t"}, headers=auth())
    assert response.status_code == 400
    assert "task_id" in response.json()["detail"]


@pytest.mark.parametrize(
    "title",
    [
        " " * 5 + "x" * 196,  # 201 characters: too long before trimming, as documented
        "\ufeff\u00a0\u3000",  # only white space, U+FEFF included
        "\x1f",  # white space to Python, not to ECMAScript: trimmed all the same
    ],
)
async def test_titles_outside_the_documented_pattern_are_refused(
    client: AsyncClient, db: DatabaseProbe, title: str
) -> None:
    response = await client.post("/api/tasks", json={"title": title}, headers=auth())
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "title"
    assert await db.rows("SELECT id FROM tasks") == []


async def test_a_title_is_trimmed_of_the_documented_white_space(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "\ufeff  Plan \u3000"}, headers=auth()
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Plan"
    assert await db.rows("SELECT title FROM tasks") == [{"title": "Plan"}]


@pytest.mark.parametrize("field", ["title", "completed"])
async def test_null_for_a_field_that_cannot_be_empty_is_refused(
    client: AsyncClient, db: DatabaseProbe, field: str
) -> None:
    created = await client.post("/api/tasks", json={"title": "keep"}, headers=auth())
    task_id = created.json()["id"]
    response = await client.patch(f"/api/tasks/{task_id}", json={field: None}, headers=auth())
    assert response.status_code == 400
    assert await db.rows("SELECT title, completed FROM tasks") == [
        {"title": "keep", "completed": False}
    ]
