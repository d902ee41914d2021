"""The change feed's promise under concurrency: a follower never misses a change.

Two real server processes and writers straight on the database (transactions that sleep a
random while before and after their write, holding it uncommitted) change two users' tasks
thousands of times, while a follower per user polls the feed from both servers, with random
page sizes, and keeps a copy of the tasks from nothing but the feed. At the end each copy
must equal what the API and the database hold, exactly.

With numbers handed out before commit and no ordering (a plain sequence), a follower reading
while change 11 has committed and change 10 has not steps past 10 for good: this test is
what catches that.
"""

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import (
    asyncpg_dsn,
    make_token,
    throwaway_database,
)
from tests.processes import Server, running_server, server_environment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

USERS = ("alice", "bob")
HTTP_WRITERS_PER_USER = 3
DATABASE_WRITERS_PER_USER = 2
CHANGES_PER_USER = 1500
TAGS = ("red", "green", "blue")


class Replica:
    """One user's tasks as a client knows them, from the feed alone."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.cursor: str | None = None
        self.polls = 0
        self.changes = 0

    async def catch_up(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        while True:
            params: dict[str, Any] = {"limit": random.choice((1, 7, 50, 500))}
            if self.cursor is not None:
                params["since"] = self.cursor
            response = await http.get("/api/tasks/changes", params=params, headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            self.polls += 1
            self.changes += len(page["changes"])
            for change in page["changes"]:
                if change["type"] == "upsert":
                    self.tasks[change["task"]["id"]] = change["task"]
                else:
                    self.tasks.pop(change["id"], None)
            self.cursor = page["cursor"]
            if not page["has_more"]:
                return


async def _http_writer(
    http: httpx.AsyncClient, headers: dict[str, str], done: asyncio.Event, seed: int
) -> int:
    rng = random.Random(seed)
    mine: list[str] = []
    writes = 0
    while not done.is_set():
        action = rng.random()
        if not mine or action < 0.35:
            body = {"title": f"http {seed} {writes}", "tags": rng.sample(TAGS, rng.randint(0, 2))}
            response = await http.post("/api/tasks", json=body, headers=headers)
            assert response.status_code == 201, response.text
            mine.append(response.json()["id"])
        elif action < 0.55:
            task_id = rng.choice(mine)
            response = await http.patch(f"/api/tasks/{task_id}/complete", headers=headers)
            assert response.status_code in (200, 404), response.text
        elif action < 0.75:
            task_id = rng.choice(mine)
            body = {"title": f"edited {seed} {writes}", "priority": rng.choice(("low", "high"))}
            response = await http.patch(f"/api/tasks/{task_id}", json=body, headers=headers)
            assert response.status_code in (200, 404), response.text
        elif action < 0.95:
            task_id = mine.pop(rng.randrange(len(mine)))
            response = await http.delete(f"/api/tasks/{task_id}", headers=headers)
            assert response.status_code in (204, 404), response.text
        else:
            # A rename (or merge) rewrites every task carrying the tag, in one transaction.
            old, new = rng.sample(TAGS, 2)
            response = await http.patch(f"/api/tags/{old}", json={"name": new}, headers=headers)
            assert response.status_code in (200, 404), response.text
        writes += 1
    return writes


async def _database_writer(dsn: str, user: str, done: asyncio.Event, seed: int) -> int:
    """Writes in transactions that stay open a random while before and after their write."""
    rng = random.Random(seed)
    connection = await asyncpg.connect(dsn)
    writes = 0
    try:
        while not done.is_set():
            async with connection.transaction():
                await connection.execute("SELECT pg_sleep($1)", rng.uniform(0, 0.004))
                ids = await connection.fetch(
                    "SELECT id FROM tasks WHERE user_id = $1 ORDER BY random() LIMIT 1", user
                )
                now = datetime.now(UTC)
                if not ids or rng.random() < 0.4:
                    await connection.execute(
                        "INSERT INTO tasks (id, user_id, title, created_at, updated_at) "
                        "VALUES ($1, $2, $3, $4, $4)",
                        uuid.uuid4(),
                        user,
                        f"db {seed} {writes}",
                        now,
                    )
                elif rng.random() < 0.7:
                    await connection.execute(
                        "UPDATE tasks SET title = $2, completed = NOT completed, updated_at = $3 "
                        "WHERE id = $1",
                        ids[0]["id"],
                        f"db edit {seed} {writes}",
                        now,
                    )
                else:
                    await connection.execute("DELETE FROM tasks WHERE id = $1", ids[0]["id"])
                await connection.execute("SELECT pg_sleep($1)", rng.uniform(0, 0.004))
            writes += 1
    finally:
        await connection.close()
    return writes


async def _all_tasks(http: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    params: dict[str, Any] = {"limit": 100}
    while True:
        response = await http.get("/api/tasks", params=params, headers=headers)
        assert response.status_code == 200
        tasks.update({task["id"]: task for task in response.json()})
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            return tasks
        params["cursor"] = cursor


async def _race(servers: list[Server], dsn: str) -> dict[str, Any]:
    headers = {user: {"Authorization": f"Bearer {make_token(user, ttl=3600)}"} for user in USERS}
    clients = [httpx.AsyncClient(base_url=server.base_url, timeout=30) for server in servers]
    replicas = {user: Replica() for user in USERS}
    done = asyncio.Event()
    try:
        for user in USERS:  # the users' rows exist before the database writers start
            response = await clients[0].get("/api/tasks/changes", headers=headers[user])
            assert response.status_code == 200

        async def follow(user: str) -> None:
            replica = replicas[user]
            turn = 0
            while not done.is_set():
                await replica.catch_up(clients[turn % 2], headers[user])
                turn += 1
                await asyncio.sleep(random.uniform(0, 0.01))

        async def stop_when_enough() -> None:
            while True:
                heads = await _heads(dsn)
                if all(heads.get(user, 0) >= CHANGES_PER_USER for user in USERS):
                    done.set()
                    return
                await asyncio.sleep(0.2)

        started = time.monotonic()
        writers = [
            _http_writer(clients[n % 2], headers[user], done, seed=hash((user, n)) % 10_000)
            for user in USERS
            for n in range(HTTP_WRITERS_PER_USER)
        ] + [
            _database_writer(dsn, user, done, seed=1000 + n)
            for user in USERS
            for n in range(DATABASE_WRITERS_PER_USER)
        ]
        results = await asyncio.gather(
            stop_when_enough(), *(follow(user) for user in USERS), *writers
        )
        elapsed = time.monotonic() - started
        writes = sum(count for count in results[1 + len(USERS) :] if count is not None)

        differences = 0
        for user in USERS:
            replica = replicas[user]
            await replica.catch_up(clients[1], headers[user])
            through_api = await _all_tasks(clients[0], headers[user])
            stored = await _stored_ids(dsn, user)
            differences += len(set(replica.tasks) ^ set(through_api))
            differences += sum(
                1 for task_id in replica.tasks if replica.tasks[task_id] != through_api.get(task_id)
            )
            differences += len(set(replica.tasks) ^ stored)
        heads = await _heads(dsn)
        return {
            "writers": len(writers),
            "writes": writes,
            "changes": sum(heads.values()),
            "polls": sum(replica.polls for replica in replicas.values()),
            "changes_read": sum(replica.changes for replica in replicas.values()),
            "tasks_at_end": sum(len(replica.tasks) for replica in replicas.values()),
            "seconds": round(elapsed, 1),
            "differences": differences,
        }
    finally:
        for client in clients:
            await client.aclose()


async def _heads(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id, change_seq FROM users")
    finally:
        await connection.close()
    return {row["id"]: row["change_seq"] for row in rows}


async def _stored_ids(dsn: str, user: str) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id FROM tasks WHERE user_id = $1", user)
    finally:
        await connection.close()
    return {str(row["id"]) for row in rows}


def test_a_follower_never_misses_a_change(postgres_admin_url: str, tmp_path: Path) -> None:
    with throwaway_database(postgres_admin_url, "todo_api_follower") as url:
        env = server_environment(url, tmp_path / "state")
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        with (
            running_server(["--host", "127.0.0.1"], cwd=tmp_path / "one", env=env) as first,
            running_server(["--host", "127.0.0.1"], cwd=tmp_path / "two", env=env) as second,
        ):
            figures = asyncio.run(_race([first, second], asyncpg_dsn(url)))
            stderr = first.stderr() + second.stderr()
    print(f"\nno-missed-change: {figures}")
    assert '"status": 500' not in stderr
    assert figures["changes"] >= CHANGES_PER_USER * len(USERS)
    assert figures["polls"] > 100
    assert figures["differences"] == 0, figures
