"""Smoke tests of the real server process: `todo-api serve` started as a user starts it, driven
over real HTTP, then stopped with SIGTERM."""

import asyncio
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import (
    environment_without_settings,
    fetch,
    settings_env_names,
    throwaway_database,
)
from tests.processes import issue_token, live_group_members, log_entries, running_server

pytestmark = pytest.mark.slow

SECRET = "smoke-test-secret-that-is-long-enough-for-hs256-0123456789"
FRONTEND = "http://localhost:3000"


@pytest.fixture
def smoke_database(postgres_admin_url: str) -> Iterator[str]:
    """A throwaway, empty database (the server migrates it), as a plain libpq-style URL."""
    with throwaway_database(postgres_admin_url, "todo_api_smoke") as url:
        yield url


@pytest.mark.postgres
def test_two_workers_on_postgresql_serve_a_whole_flow(smoke_database: str, tmp_path: Path) -> None:
    env = {
        **environment_without_settings(),
        "DATABASE_URL": smoke_database,
        "BETTER_AUTH_SECRET": SECRET,
        "CORS_ORIGINS": FRONTEND,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(tmp_path / "state"),
    }
    with running_server(["--host", "127.0.0.1", "--workers", "2"], cwd=tmp_path, env=env) as server:
        token = issue_token(
            "--sub", "smoke-user", "--email", "smoke@example.com", cwd=tmp_path, env=env
        )
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as http:
            _drive_tasks_flow(http, server.base_url)
            _check_cors(server.base_url)
            ready = httpx.get(f"{server.base_url}/health/ready", timeout=10)
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "database": "ok"}
        # The supervisor and its two workers, at least.
        assert len(live_group_members(server.process.pid)) >= 3
        exit_code = server.stop()
        stderr = server.stderr()

    # The multi-worker supervisor stops its workers gracefully and exits 0 on SIGTERM.
    assert exit_code == 0, stderr

    users = asyncio.run(fetch(smoke_database, "SELECT id, email, name FROM users"))
    assert users == [{"id": "smoke-user", "email": "smoke@example.com", "name": None}]
    tasks = asyncio.run(fetch(smoke_database, "SELECT user_id, title FROM tasks ORDER BY title"))
    assert tasks == [
        {"user_id": "smoke-user", "title": "first"},
        {"user_id": "smoke-user", "title": "second, renamed"},
    ]

    entries = log_entries(stderr)
    access = [e for e in entries if e.get("logger") == "todo_api.access"]
    listing = [e for e in access if e.get("route") == "/api/tasks" and e.get("method") == "GET"]
    assert listing, stderr
    assert listing[0]["status"] == 200
    assert listing[0]["user_id"] == "smoke-user"
    assert isinstance(listing[0]["duration_ms"], int | float)
    assert listing[0]["request_id"]
    assert {"method": "GET", "status": 401, "route": "/api/tasks"} in [
        {key: e.get(key) for key in ("method", "status", "route")} for e in access
    ]
    assert "Bearer" not in stderr
    assert "eyJ" not in stderr
    assert token not in stderr
    assert SECRET not in stderr


def _drive_tasks_flow(http: httpx.Client, base_url: str) -> None:
    created = []
    for body in (
        {"title": "first", "due_date": "2020-01-01"},
        {"title": "second", "description": "keep me", "priority": "low"},
        {"title": "third"},
    ):
        response = http.post("/api/tasks", json=body)
        assert response.status_code == 201, response.text
        task = response.json()
        assert task["title"] == body["title"]
        assert task["user_id"] == "smoke-user"
        assert response.headers["location"] == f"/api/tasks/{task['id']}"
        created.append(task)
    first, second, third = created

    listing = http.get("/api/tasks")
    assert listing.status_code == 200
    assert [t["id"] for t in listing.json()] == [third["id"], second["id"], first["id"]]
    assert "link" not in listing.headers

    page = http.get("/api/tasks", params={"limit": 2})
    assert page.status_code == 200
    assert [t["id"] for t in page.json()] == [third["id"], second["id"]]
    next_url = page.links["next"]["url"]
    assert next_url.startswith("/api/tasks?")  # relative: never built from Host
    last_page = http.get(next_url)
    assert last_page.status_code == 200
    assert [t["id"] for t in last_page.json()] == [first["id"]]
    assert "next" not in last_page.links

    one = http.get(f"/api/tasks/{second['id']}")
    assert one.status_code == 200
    assert one.json() == second
    assert one.headers["etag"]

    put = http.put(f"/api/tasks/{second['id']}", json={"title": "second, renamed"})
    assert put.status_code == 200, put.text
    assert put.json()["title"] == "second, renamed"
    assert put.json()["description"] == "keep me"
    assert put.json()["priority"] == "low"

    toggled = http.patch(f"/api/tasks/{third['id']}/complete")
    assert toggled.status_code == 200
    assert toggled.json()["completed"] is True
    toggled_back = http.patch(f"/api/tasks/{third['id']}/complete")
    assert toggled_back.status_code == 200
    assert toggled_back.json()["completed"] is False
    done = http.patch(f"/api/tasks/{second['id']}/complete", json={"completed": True})
    assert done.status_code == 200
    assert done.json()["completed"] is True

    stats = http.get("/api/tasks/stats")
    assert stats.status_code == 200
    assert stats.json() == {"total": 3, "completed": 1, "pending": 2, "overdue": 1}

    deleted = http.delete(f"/api/tasks/{third['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = http.get(f"/api/tasks/{third['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"detail": "Task not found"}

    anonymous = httpx.get(f"{base_url}/api/tasks", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert anonymous.json() == {"detail": "Missing bearer token."}


def _check_cors(base_url: str) -> None:
    preflight = httpx.options(
        f"{base_url}/api/tasks",
        headers={
            "Origin": FRONTEND,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == FRONTEND
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "POST" in preflight.headers["access-control-allow-methods"]

    refused = httpx.options(
        f"{base_url}/api/tasks",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in refused.headers
    simple = httpx.get(f"{base_url}/health", headers={"Origin": "https://evil.example"}, timeout=10)
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_zero_config_start_uses_sqlite_and_a_generated_secret(tmp_path: Path) -> None:
    env = environment_without_settings()
    assert not {key.lower() for key in env} & settings_env_names()
    with running_server([], cwd=tmp_path, env=env) as server:
        database = tmp_path / "data" / "todo.db"
        secret = tmp_path / "data" / "jwt-secret"
        assert database.is_file()
        assert secret.is_file()
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600

        token = issue_token("--sub", "demo", cwd=tmp_path, env=env)
        assert jwt.decode(token, secret.read_text().strip(), algorithms=["HS256"])["sub"] == "demo"
        response = httpx.get(
            f"{server.base_url}/api/tasks",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json() == []
        forged = jwt.encode(
            {"sub": "demo", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
        )
        rejected = httpx.get(
            f"{server.base_url}/api/tasks",
            headers={"Authorization": f"Bearer {forged}"},
            timeout=10,
        )
        assert rejected.status_code == 401
        exit_code = server.stop()
        stderr = server.stderr()

    # A single uvicorn process shuts down gracefully, then re-raises the SIGTERM it caught;
    # `todo-api serve` turns that into exit status 0, as with several workers.
    assert exit_code == 0, stderr
    entries = log_entries(stderr)
    hints = [e["message"] for e in entries if "todo-api token --sub demo" in e["message"]]
    assert len(hints) == 1, stderr
    assert "data/jwt-secret" in hints[0]
    starts = [
        e for e in entries if e["logger"] == "todo_api" and e["message"].startswith("starting")
    ]
    assert [e["database"] for e in starts] == ["sqlite"], stderr
    assert secret.read_text().strip() not in stderr
    with closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT id FROM users").fetchall() == [("demo",)]
