"""`/api/{user_id}/tasks…`: the same routes as `/api/tasks…` when `user_id` is the token's `sub`;
any other `user_id` is a 403 before anything else is looked at, and nothing changes."""

from typing import Any
from urllib.parse import quote

import pytest
from httpx import AsyncClient, Response

from tests.conftest import DatabaseProbe, TaskFactory, auth

FORBIDDEN = {"detail": "Not authorized to access this task"}
MISSING_ID = "2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10"
# Fields the server sets: they differ between two otherwise equal requests.
VOLATILE = {"id", "created_at", "updated_at", "completed_at"}


def _stable(task: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in task.items() if key not in VOLATILE}


async def _all_rows(db: DatabaseProbe) -> dict[str, list[dict[str, Any]]]:
    return {
        "users": await db.rows("SELECT * FROM users ORDER BY id"),
        "tasks": await db.rows("SELECT * FROM tasks ORDER BY id"),
        "tags": await db.rows("SELECT * FROM tags ORDER BY user_id, key"),
        "task_tags": await db.rows("SELECT * FROM task_tags ORDER BY task_id, key"),
    }


def _compat(user: str = "alice") -> str:
    return f"/api/{quote(user, safe='')}/tasks"


# --- the same answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", ["", "?sort=title", "?status=pending&priority=high", "?tag=work", "?limit=1"]
)
async def test_list_is_the_same(client: AsyncClient, create_task: TaskFactory, params: str) -> None:
    await create_task(title="b", priority="high", tags=["work"])
    await create_task(title="a", priority="high", completed=True)
    await create_task(title="c", tags=["Work", "home"])
    await create_task("bob", title="bob's", tags=["work"])
    canonical = await client.get(f"/api/tasks{params}", headers=auth())
    compat = await client.get(f"{_compat()}{params}", headers=auth())
    assert canonical.status_code == compat.status_code == 200
    assert compat.json() == canonical.json()
    assert compat.json()
    assert ("link" in compat.headers) == ("link" in canonical.headers)
    assert compat.headers.get("x-next-cursor") == canonical.headers.get("x-next-cursor")


async def test_list_cursor_from_either_path_works_on_the_other(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    for i in range(3):
        await create_task(title=f"t{i}")
    first = await client.get(f"{_compat()}?limit=2", headers=auth())
    cursor = first.headers["x-next-cursor"]
    rest = await client.get("/api/tasks", params={"limit": 2, "cursor": cursor}, headers=auth())
    rest_compat = await client.get(_compat(), params={"limit": 2, "cursor": cursor}, headers=auth())
    assert rest.status_code == rest_compat.status_code == 200
    assert rest.json() == rest_compat.json()
    assert len(rest.json()) == 1


async def test_create_is_the_same(client: AsyncClient, db: DatabaseProbe) -> None:
    body = {
        "title": " Buy milk ",
        "description": "2 litres",
        "priority": "high",
        "due_date": "2026-12-01",
        "tags": ["Shop", "home"],
        "recurrence": "FREQ=WEEKLY",
        "time_zone": "Europe/Berlin",
        "remind_at": "2026-11-30T18:00:00",
    }
    canonical = await client.post("/api/tasks", json=body, headers=auth())
    compat = await client.post(_compat(), json=body, headers=auth())
    assert canonical.status_code == compat.status_code == 201, compat.text
    task = compat.json()
    assert _stable(task) == _stable(canonical.json())
    assert task["user_id"] == "alice"
    assert compat.headers["location"] == f"/api/tasks/{task['id']}"
    assert compat.headers["etag"].startswith('"')
    row = await db.task(task["id"])
    assert row is not None
    assert row["user_id"] == "alice"
    assert row["title"] == "Buy milk"
    assert await db.count_tasks("alice") == 2
    got = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert got.json() == task


async def test_create_completed_through_compat_path(client: AsyncClient) -> None:
    response = await client.post(
        _compat(), json={"title": "done", "completed": True}, headers=auth()
    )
    assert response.status_code == 201
    assert response.json()["completed"] is True
    assert response.json()["completed_at"] is not None


async def test_stats_are_the_same(client: AsyncClient, create_task: TaskFactory) -> None:
    await create_task(completed=True)
    await create_task(due_date="2001-01-01")
    await create_task()
    await create_task("bob")
    canonical = await client.get("/api/tasks/stats", headers=auth())
    compat = await client.get(f"{_compat()}/stats", headers=auth())
    assert canonical.status_code == compat.status_code == 200
    assert (
        compat.json()
        == canonical.json()
        == {
            "total": 3,
            "completed": 1,
            "pending": 2,
            "overdue": 1,
        }
    )


async def test_get_is_the_same(client: AsyncClient, create_task: TaskFactory) -> None:
    task = await create_task(tags=["x"])
    canonical = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    compat = await client.get(f"{_compat()}/{task['id']}", headers=auth())
    assert compat.status_code == 200
    assert compat.json() == canonical.json() == task
    assert compat.headers["etag"] == canonical.headers["etag"]
    cached = await client.get(
        f"{_compat()}/{task['id']}", headers={**auth(), "If-None-Match": compat.headers["etag"]}
    )
    assert cached.status_code == 304


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_update_is_the_same(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, method: str
) -> None:
    body = {"title": "New", "priority": None, "tags": ["b", "A"], "completed": True}
    one = await create_task(title="Old", priority="low", description="keep")
    two = await create_task(title="Old", priority="low", description="keep")
    canonical = await client.request(method, f"/api/tasks/{one['id']}", json=body, headers=auth())
    compat = await client.request(method, f"{_compat()}/{two['id']}", json=body, headers=auth())
    assert canonical.status_code == compat.status_code == 200, compat.text
    assert _stable(compat.json()) == _stable(canonical.json())
    assert compat.json()["tags"] == ["A", "b"]
    assert compat.json()["description"] == "keep"
    assert compat.headers["etag"] != ""
    row = await db.task(two["id"])
    assert row is not None
    assert (row["title"], row["priority"], row["description"]) == ("New", None, "keep")
    assert bool(row["completed"]) is True
    got = await client.get(f"/api/tasks/{two['id']}", headers=auth())
    assert got.json() == compat.json()
    assert got.headers["etag"] == compat.headers["etag"]


async def test_stale_if_match_is_412_on_the_compat_path(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task()
    first = await client.get(f"{_compat()}/{task['id']}", headers=auth())
    changed = await client.patch(f"{_compat()}/{task['id']}", json={"title": "x"}, headers=auth())
    assert changed.status_code == 200
    before = await db.task(task["id"])
    stale = await client.patch(
        f"{_compat()}/{task['id']}",
        json={"title": "y"},
        headers={**auth(), "If-Match": first.headers["etag"]},
    )
    assert stale.status_code == 412
    assert await db.task(task["id"]) == before


async def test_delete_is_the_same(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(tags=["gone"])
    other = await create_task()
    response = await client.delete(f"{_compat()}/{task['id']}", headers=auth())
    assert response.status_code == 204
    assert response.content == b""
    assert await db.task(task["id"]) is None
    assert await db.task(other["id"]) is not None
    again = await client.delete(f"{_compat()}/{task['id']}", headers=auth())
    assert again.status_code == 404
    assert again.json() == {"detail": "Task not found"}


@pytest.mark.parametrize("body", [None, {"completed": True}, {"completed": False}])
async def test_complete_is_the_same(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, body: dict[str, Any] | None
) -> None:
    one = await create_task()
    two = await create_task()
    canonical = await client.patch(f"/api/tasks/{one['id']}/complete", json=body, headers=auth())
    compat = await client.patch(f"{_compat()}/{two['id']}/complete", json=body, headers=auth())
    assert canonical.status_code == compat.status_code == 200, compat.text
    assert _stable(compat.json()) == _stable(canonical.json())
    expected = True if body is None else body["completed"]
    assert compat.json()["completed"] is expected
    row = await db.task(two["id"])
    assert row is not None
    assert bool(row["completed"]) is expected


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PUT", "", {"title": "x"}),
        ("PATCH", "", {"title": "x"}),
        ("DELETE", "", None),
        ("PATCH", "/complete", None),
    ],
)
@pytest.mark.parametrize("task_id", [MISSING_ID, "not-a-uuid"])
async def test_errors_are_the_same(
    client: AsyncClient,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
    task_id: str,
) -> None:
    canonical = await client.request(
        method, f"/api/tasks/{task_id}{suffix}", json=body, headers=auth()
    )
    compat = await client.request(
        method, f"{_compat()}/{task_id}{suffix}", json=body, headers=auth()
    )
    assert compat.status_code == canonical.status_code
    assert compat.status_code in {400, 404}
    assert compat.json() == canonical.json()


async def test_invalid_body_and_query_are_the_same(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task()
    pairs = [
        ("POST", "", {"title": ""}),
        ("POST", "", {"title": "t", "tags": ["a,b"]}),
        ("PATCH", f"/{task['id']}", {"recurrence": "FREQ=DAILY"}),
        ("PUT", f"/{task['id']}", {"priority": "urgent"}),
        ("GET", "?status=bogus", None),
        ("GET", "?tag=a,b", None),
    ]
    before = await db.task(task["id"])
    for method, rest, body in pairs:
        canonical = await client.request(method, f"/api/tasks{rest}", json=body, headers=auth())
        compat = await client.request(method, f"{_compat()}{rest}", json=body, headers=auth())
        assert canonical.status_code == compat.status_code == 400, (method, rest, compat.text)
        assert compat.json() == canonical.json()
    assert await db.count_tasks() == 1
    assert await db.task(task["id"]) == before


async def test_sub_with_characters_that_need_escaping(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    sub = "auth0|abc def"
    task = await create_task(sub, title="escaped")
    response = await client.get(_compat(sub), headers=auth(sub))
    assert response.status_code == 200, response.text
    assert [t["id"] for t in response.json()] == [task["id"]]
    one = await client.get(f"{_compat(sub)}/{task['id']}", headers=auth(sub))
    assert one.json() == task


# --- anyone else's user_id: 403, and nothing changes -------------------------------------------

TARGETS = ["own task", "other user's task", "missing id", "malformed id"]
ONE_TASK_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("PUT", "", {"title": "hijacked", "completed": True, "tags": ["evil"]}),
    ("PATCH", "", {"title": "hijacked", "priority": "high", "tags": ["evil"]}),
    ("PUT", "", {"title": ""}),  # invalid too: still the 403 first
    ("DELETE", "", None),
    ("PATCH", "/complete", None),
    ("PATCH", "/complete", {"completed": True}),
]
FOREIGN_IDS = ["bob", "nobody", "Alice"]
MORE_FOREIGN_IDS = [*FOREIGN_IDS, "alice ", "*"]


async def _forbidden(response: Response) -> None:
    assert response.status_code == 403, response.text
    assert response.json() == FORBIDDEN


@pytest.mark.parametrize("foreign", FOREIGN_IDS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("method", "suffix", "body"), ONE_TASK_ROUTES)
async def test_foreign_user_id_is_403_for_every_task_route(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    method: str,
    suffix: str,
    body: dict[str, Any] | None,
    target: str,
    foreign: str,
) -> None:
    own = await create_task("alice", title="Alice's", tags=["private"], due_date="2026-01-01")
    bobs = await create_task("bob", title="Bob's secret", tags=["bobs"])
    task_id = {
        "own task": own["id"],
        "other user's task": bobs["id"],
        "missing id": MISSING_ID,
        "malformed id": "not-a-uuid",
    }[target]
    before = await _all_rows(db)
    response = await client.request(
        method, f"{_compat(foreign)}/{task_id}{suffix}", json=body, headers=auth("alice")
    )
    await _forbidden(response)
    assert "Bob" not in response.text
    assert "etag" not in response.headers
    assert await _all_rows(db) == before


@pytest.mark.parametrize("foreign", MORE_FOREIGN_IDS)
@pytest.mark.parametrize(
    ("method", "rest", "body"),
    [
        ("GET", "", None),
        ("GET", "?status=bogus", None),  # invalid too: still the 403 first
        ("GET", "?tag=bobs", None),
        ("POST", "", {"title": "planted", "tags": ["evil"]}),
        ("POST", "", {"title": ""}),
        ("GET", "/stats", None),
    ],
)
async def test_foreign_user_id_is_403_for_list_create_and_stats(
    client: AsyncClient,
    create_task: TaskFactory,
    db: DatabaseProbe,
    method: str,
    rest: str,
    body: dict[str, Any] | None,
    foreign: str,
) -> None:
    await create_task("alice", title="Alice's", tags=["private"])
    await create_task("bob", title="Bob's secret", tags=["bobs"])
    before = await _all_rows(db)
    response = await client.request(
        method, f"{_compat(foreign)}{rest}", json=body, headers=auth("alice")
    )
    await _forbidden(response)
    assert "Bob" not in response.text
    assert "location" not in response.headers
    assert await _all_rows(db) == before
    assert await db.count_tasks() == 2


@pytest.mark.parametrize(
    ("method", "rest"),
    [("POST", ""), ("PUT", f"/{MISSING_ID}"), ("PATCH", "/not-a-uuid/complete")],
)
async def test_foreign_user_id_with_a_body_that_is_not_json_is_a_400_and_writes_nothing(
    client: AsyncClient, db: DatabaseProbe, method: str, rest: str
) -> None:
    """The one exception to "checked before anything else" (README, Decisions): FastAPI parses
    the body before any dependency runs, so a body that is not JSON at all is a 400 there.
    Nothing is written, and nothing about the other user is revealed."""
    response = await client.request(
        method,
        f"{_compat('bob')}{rest}",
        content=b'{"title": ',
        headers={**auth("alice"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Request body is not valid JSON."}
    assert await db.count_tasks() == 0


async def test_foreign_user_id_creates_no_user(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await client.post(_compat("carol"), json={"title": "x"}, headers=auth("dave"))
    await _forbidden(response)
    assert await db.count_tasks() == 0
    users = {row["id"] for row in await db.rows("SELECT id FROM users")}
    assert "carol" not in users


@pytest.mark.parametrize("user_id", ["bob", "alice"])
@pytest.mark.parametrize(
    ("method", "rest", "body"),
    [
        ("GET", "", None),
        ("POST", "", {"title": "x"}),
        ("GET", "/stats", None),
        ("GET", f"/{MISSING_ID}", None),
        ("PATCH", f"/{MISSING_ID}", {"title": "x"}),
        ("DELETE", "/not-a-uuid", None),
        ("PATCH", f"/{MISSING_ID}/complete", None),
    ],
)
async def test_no_token_is_401_before_the_path_check(
    client: AsyncClient,
    db: DatabaseProbe,
    method: str,
    rest: str,
    body: dict[str, Any] | None,
    user_id: str,
) -> None:
    response = await client.request(method, f"{_compat(user_id)}{rest}", json=body)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert await db.count_tasks() == 0


# --- the document ------------------------------------------------------------------------------


async def test_openapi_documents_the_compat_paths_once_in_the_tag(client: AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert [path for path in document["paths"] if path.startswith("/api/{user_id}")] == []
    assert "/api/tasks" in document["paths"]
    assert "/api/tasks/{task_id}" in document["paths"]
    tasks_tag = next(tag for tag in document["tags"] if tag["name"] == "tasks")
    assert "/api/{user_id}/tasks" in tasks_tag["description"]
    assert "user_id" not in str(document["paths"].get("/api/tasks", {}).get("get", {}))
