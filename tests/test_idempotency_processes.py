"""Idempotency keys live in the database, not in a process: a key sent to one `todo-api serve`
replays on another instance serving the same database, and after the first one restarted. The
same with `REDIS_URL` set (rate limits, failed logins and tickets then live in Redis; the keys
stay in the database, beside the writes they answer for)."""

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.conftest import fetch, redis_test_url, throwaway_database
from tests.processes import issue_token, running_server, server_environment

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

BODY: dict[str, object] = {"title": "Renew the passport", "priority": "high", "tags": ["admin"]}
KEY = "0d4c3c8e-2b51-4f0e-9a43-8f6a7c1b2e90"


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    """A database of the test's own, which the first server migrates at start-up."""
    with throwaway_database(postgres_admin_url, "todo_api_idempotency") as url:
        yield url


def post_keyed(base_url: str, token: str, body: dict[str, object]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": KEY}
    return httpx.post(f"{base_url}/api/tasks", json=body, headers=headers, timeout=10)


@pytest.fixture(params=["postgresql", "redis"])
def redis_url(request: pytest.FixtureRequest) -> str | None:
    """None: the servers keep their shared state in the database; else `REDIS_URL`."""
    return redis_test_url() if request.param == "redis" else None


@pytest.fixture
def user(redis_url: str | None) -> Iterator[str]:
    """A user of this run's own; with Redis, which outlives the test, whatever keys name them
    (their rate-limit budget) are deleted afterwards."""
    user = f"restart-user-{uuid.uuid4().hex[:8]}"
    yield user
    if redis_url is not None:
        with Redis.from_url(redis_url) as redis:
            keys = list(redis.scan_iter(f"todo-api:*{user}*"))
            if keys:
                redis.delete(*keys)


def test_a_key_replays_on_another_instance_and_after_a_restart(
    database: str, tmp_path: Path, redis_url: str | None, user: str
) -> None:
    shared_state = {"REDIS_URL": redis_url} if redis_url is not None else {}
    env = server_environment(database, tmp_path / "state", **shared_state)
    token = issue_token("--sub", user, cwd=tmp_path, env=env)
    args = ["--host", "127.0.0.1"]
    for name in ("first", "second", "restarted"):
        (tmp_path / name).mkdir()

    with running_server(args, cwd=tmp_path / "first", env=env) as first:
        created = post_keyed(first.base_url, token, BODY)
        assert created.status_code == 201, created.text
        assert "idempotent-replayed" not in created.headers
        with running_server(args, cwd=tmp_path / "second", env=env) as second:
            on_second = post_keyed(second.base_url, token, BODY)
        assert first.stop() == 0

    with running_server(args, cwd=tmp_path / "restarted", env=env) as restarted:
        after_restart = post_keyed(restarted.base_url, token, BODY)
        other_body = post_keyed(restarted.base_url, token, {**BODY, "priority": "low"})

    for replay in (on_second, after_restart):
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == created.content
        assert replay.headers["location"] == created.headers["location"]
        assert replay.headers["etag"] == created.headers["etag"]
    assert other_body.status_code == 422
    tasks = asyncio.run(fetch(database, "SELECT id, priority FROM tasks WHERE user_id = $1", user))
    assert [(str(task["id"]), task["priority"]) for task in tasks] == [
        (created.json()["id"], "high")
    ]
    keys = asyncio.run(
        fetch(database, "SELECT key, status_code FROM idempotency_keys WHERE user_id = $1", user)
    )
    assert keys == [{"key": KEY, "status_code": 201}]
