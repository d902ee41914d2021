"""Concurrent writes: atomic toggles, and `If-Match` preconditions that lose no update."""

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event

from tests.conftest import DatabaseProbe, TaskFactory, auth


@pytest.mark.parametrize("toggles", [20, 21])
async def test_concurrent_toggles_are_atomic(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, toggles: int
) -> None:
    task = await create_task()
    url = f"/api/tasks/{task['id']}/complete"
    responses = await asyncio.gather(*(client.patch(url, headers=auth()) for _ in range(toggles)))
    assert all(response.status_code == 200 for response in responses)
    # Every toggle saw a different state: half answered true, half false (± the odd one).
    answered_true = sum(response.json()["completed"] for response in responses)
    assert answered_true == (toggles + 1) // 2
    row = await db.task(task["id"])
    assert row is not None
    assert bool(row["completed"]) is (toggles % 2 == 1)


async def test_stale_if_match_is_412_and_changes_nothing(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    task = await create_task(title="v1")
    url = f"/api/tasks/{task['id']}"
    seen = (await client.get(url, headers=auth())).headers["etag"]
    ok = await client.put(url, json={"title": "v2"}, headers={**auth(), "If-Match": seen})
    assert ok.status_code == 200
    assert ok.headers["etag"] != seen
    stale = await client.patch(url, json={"title": "v3"}, headers={**auth(), "If-Match": seen})
    assert stale.status_code == 412
    assert stale.json()["detail"]
    row = await db.task(task["id"])
    assert row is not None
    assert row["title"] == "v2"
    current = await client.patch(
        url, json={"title": "v3"}, headers={**auth(), "If-Match": ok.headers["etag"]}
    )
    assert current.status_code == 200
    assert current.json()["title"] == "v3"


@pytest.mark.parametrize("if_match", ['"nonsense"', "garbage", 'W/"0"'])
async def test_foreign_if_match_never_matches(
    client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe, if_match: str
) -> None:
    task = await create_task(title="v1")
    response = await client.put(
        f"/api/tasks/{task['id']}", json={"title": "v2"}, headers={**auth(), "If-Match": if_match}
    )
    assert response.status_code == 412
    row = await db.task(task["id"])
    assert row is not None
    assert row["title"] == "v1"


async def test_if_match_star_and_list(client: AsyncClient, create_task: TaskFactory) -> None:
    task = await create_task(title="v1")
    url = f"/api/tasks/{task['id']}"
    star = await client.put(url, json={"title": "v2"}, headers={**auth(), "If-Match": "*"})
    assert star.status_code == 200
    listed = await client.put(
        url,
        json={"title": "v3"},
        headers={**auth(), "If-Match": f'"abc", {star.headers["etag"]}'},
    )
    assert listed.status_code == 200


def _statements_run(app: FastAPI) -> list[str]:
    """Every statement the app sends to its database from now on."""
    statements: list[str] = []

    @event.listens_for(app.state.runtime.engine.sync_engine, "before_cursor_execute")
    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    return statements


async def test_a_long_entity_tag_list_is_400_before_any_query(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory, db: DatabaseProbe
) -> None:
    """Tens of thousands of tags once became as many bind parameters (a 500 past 32,767 on
    PostgreSQL, a frozen worker below it): a list longer than a client could mean is refused
    before the database is asked anything."""
    task = await create_task(title="v1")
    url = f"/api/tasks/{task['id']}"
    current = (await client.get(url, headers=auth())).headers["etag"]
    flood = ", ".join([*(f'"{n:x}"' for n in range(40_000)), current])
    statements = _statements_run(app)
    for method, headers in [
        ("PUT", {"If-Match": flood}),
        ("PATCH", {"If-Match": flood}),
        ("GET", {"If-None-Match": flood}),
    ]:
        response = await client.request(
            method,
            url,
            json={"title": "v2"} if method != "GET" else None,
            headers={**auth(), **headers},
        )
        assert response.status_code == 400, response.text
        assert "at most 10 entity tags" in response.json()["detail"]
    assert statements == []
    row = await db.task(task["id"])
    assert row is not None
    assert row["title"] == "v1"
    ten = ", ".join([*(f'"{n:x}"' for n in range(9)), current])
    accepted = await client.put(url, json={"title": "v2"}, headers={**auth(), "If-Match": ten})
    assert accepted.status_code == 200


async def test_empty_update_with_stale_if_match_is_412(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task()
    url = f"/api/tasks/{task['id']}"
    etag = (await client.get(url, headers=auth())).headers["etag"]
    await client.patch(f"{url}/complete", headers=auth())
    response = await client.patch(url, json={}, headers={**auth(), "If-Match": etag})
    assert response.status_code == 412


async def test_if_match_on_other_users_task_is_still_403(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task("alice")
    response = await client.put(
        f"/api/tasks/{task['id']}",
        json={"title": "x"},
        headers={**auth("bob"), "If-Match": '"1"'},
    )
    assert response.status_code == 403


async def test_concurrent_creates_all_land(client: AsyncClient, db: DatabaseProbe) -> None:
    responses = await asyncio.gather(
        *(client.post("/api/tasks", json={"title": f"t{i}"}, headers=auth()) for i in range(25))
    )
    assert [response.status_code for response in responses] == [201] * 25
    assert await db.count_tasks("alice") == 25
