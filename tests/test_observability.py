"""What every answer carries (request id, security headers) and what every request leaves
behind (a metrics sample, a log line): in-process, and on a real two-worker server."""

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    SECRET,
    auth,
    environment_without_settings,
    fetch,
    make_token,
    running,
    throwaway_database,
)
from tests.processes import issue_token, log_entries, running_server, server_environment
from todo_api.config import Settings

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def requests(scraped: Samples, method: str, route: str, status: int) -> float:
    return value(
        scraped, "todo_api_http_requests_total", method=method, route=route, status=str(status)
    )


def assert_security_headers(response: httpx.Response) -> None:
    for name, expected in SECURITY_HEADERS.items():
        assert response.headers.get(name) == expected, (response.request.url, name)
    assert response.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in response.headers


async def test_every_answer_carries_the_security_headers(client: AsyncClient) -> None:
    created = await client.post("/api/tasks", json={"title": "t"}, headers=auth())
    answers = [
        created,
        await client.get(f"/api/tasks/{created.json()['id']}", headers=auth()),
        await client.get("/api/tasks", headers=auth()),
        await client.get("/api/tasks"),
        await client.get("/api/tasks/not-a-uuid", headers=auth()),
        await client.get("/no/such/route"),
        await client.post("/api/tasks", content=b"x" * 70_000, headers=auth()),
        await client.post("/api/tasks", content=b"t", headers={**auth(), "Content-Type": "x/y"}),
        await client.get("/health"),
    ]
    assert [answer.status_code for answer in answers] == [
        201, 200, 200, 401, 400, 404, 413, 415, 200,
    ]  # fmt: skip
    for answer in answers:
        assert_security_headers(answer)
        assert answer.headers["x-request-id"]


async def test_a_500_carries_them_too(app: FastAPI, client: AsyncClient) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    app.add_api_route("/broken", broken)
    response = await client.get("/broken")
    assert response.status_code == 500
    assert_security_headers(response)
    assert response.headers["content-length"] == str(len(response.content))


async def test_hsts_only_when_configured(settings: Settings) -> None:
    one_year = 31_536_000
    async with running(settings.model_copy(update={"hsts_max_age": one_year})) as (_, client):
        response = await client.get("/api/tasks", headers=auth())
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == (
        f"max-age={one_year}; includeSubDomains"
    )


async def test_metrics_count_known_traffic(client: AsyncClient) -> None:
    before = samples((await client.get("/metrics")).text)

    ids = []
    for title in ("a", "b", "c"):
        created = await client.post("/api/tasks", json={"title": title}, headers=auth())
        assert created.status_code == 201
        ids.append(created.json()["id"])
    for task_id in ids[:2]:
        assert (await client.get(f"/api/tasks/{task_id}", headers=auth())).status_code == 200
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await client.get(f"/api/tasks/{missing}", headers=auth())).status_code == 404
    assert (await client.get("/api/tasks")).status_code == 401
    expired = {"Authorization": f"Bearer {make_token(ttl=-3600)}"}
    assert (await client.get("/api/tasks", headers=expired)).status_code == 401
    forged = {"Authorization": f"Bearer {make_token(secret='another-secret-' * 3)}"}
    assert (await client.get("/api/tasks", headers=forged)).status_code == 401
    assert (await client.get("/no/such/route")).status_code == 404

    scrape = await client.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    after = samples(scrape.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    expected_requests = {
        ("POST", "/api/tasks", 201): 3,
        ("GET", "/api/tasks/{task_id}", 200): 2,
        ("GET", "/api/tasks/{task_id}", 404): 1,
        ("GET", "/api/tasks", 401): 3,
        ("GET", "<unmatched>", 404): 1,
        ("GET", "/metrics", 200): 1,  # the scrape before
    }
    for (method, route, status), count in expected_requests.items():
        labels = {"method": method, "route": route, "status": str(status)}
        assert grew("todo_api_http_requests_total", **labels) == count, labels
        assert grew("todo_api_http_request_duration_seconds_count", **labels) == count, labels
        slowest_bucket = {**labels, "le": "+Inf"}
        assert grew("todo_api_http_request_duration_seconds_bucket", **slowest_bucket) == count
    assert not any(route == "/no/such/route" for route in _label_values(after, "route"))
    assert grew("todo_api_auth_failures_total", reason="missing") == 1
    assert grew("todo_api_auth_failures_total", reason="expired") == 1
    assert grew("todo_api_auth_failures_total", reason="bad_signature") == 1
    # Seen from inside the scrape: the scrape itself is in flight, no connection is lent.
    assert value(after, "todo_api_http_requests_in_flight") == 1
    assert value(after, "todo_api_db_pool_checked_out") == 0


def _label_values(scraped: Samples, label: str) -> Iterable[str]:
    for _, labels in scraped:
        for name, label_value in labels:
            if name == label:
                yield label_value


async def test_metrics_can_be_turned_off(settings: Settings) -> None:
    async with running(settings.model_copy(update={"metrics_enabled": False})) as (_, client):
        response = await client.get("/metrics")
    assert response.status_code == 404


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_add_up_their_metrics_and_log_no_secrets(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    """A real `todo-api serve --workers 2`: whichever worker answers the scrape, it counts
    every worker's requests; and the log lines hold the fields and none of the secrets."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"stale file from an earlier run")
    database = throwaway_database(postgres_admin_url, "todo_api_metrics")
    env = {
        **environment_without_settings(),
        "DB_POOL_SIZE": "3",
        "BETTER_AUTH_SECRET": SECRET,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(tmp_path / "state"),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    password = "correct horse battery staple"
    with (
        database as url,
        running_server(
            ["--workers", "2"], cwd=tmp_path, env={**env, "DATABASE_URL": url}
        ) as server,
    ):
        token = issue_token("--sub", "metrics-user", cwd=tmp_path, env=env)
        sent = asyncio.run(_until_both_workers_answered(server.base_url, token, metrics_dir))
        scrapes = asyncio.run(_scrape_each_worker(server.base_url))
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            signup = {"email": "ann@example.com", "password": password, "name": "Ann"}
            assert http.post("/api/auth/signup", json=signup).status_code == 201
            wrong = {"email": "ann@example.com", "password": password + "!"}
            assert http.post("/api/auth/login", json=wrong).status_code == 401
            forged = {"Authorization": f"Bearer {token}x"}
            assert http.get("/api/tasks", headers=forged).status_code == 401
        assert server.stop() == 0
        stderr = server.stderr()

    for scraped in scrapes:
        assert requests(scraped, "GET", "/api/tasks", 200) == sent
        assert value(scraped, "todo_api_db_pool_size") == 2 * 3
        assert value(scraped, "todo_api_db_pool_checked_out") == 0

    access = [entry for entry in log_entries(stderr) if entry.get("logger") == "todo_api.access"]
    listed = [
        entry for entry in access if entry["route"] == "/api/tasks" and entry["status"] == 200
    ]
    assert len(listed) == sent
    for entry in access:
        assert {"method", "route", "status", "duration_ms", "request_id", "user_id"} <= set(entry)
    assert {entry["user_id"] for entry in listed} == {"metrics-user"}
    for secret in ("Bearer", "eyJ", token, password, SECRET):
        assert secret not in stderr


async def _until_both_workers_answered(base_url: str, token: str, metrics_dir: Path) -> int:
    """Concurrent listings on fresh connections until both workers have written metrics
    (each worker process writes its own files); returns how many were sent."""
    headers = {"Authorization": f"Bearer {token}"}
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    sent = 0
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base_url, limits=no_reuse, timeout=10) as http:
        while time.monotonic() < deadline:
            answers = await asyncio.gather(
                *(http.get("/api/tasks", headers=headers) for _ in range(20))
            )
            assert [answer.status_code for answer in answers] == [200] * 20
            sent += 20
            if len(_worker_pids(metrics_dir)) >= 2:
                return sent
    pytest.fail(f"one worker answered all {sent} requests: {_worker_pids(metrics_dir)}")


def _worker_pids(metrics_dir: Path) -> set[str]:
    return {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}


async def _scrape_each_worker(base_url: str) -> list[Samples]:
    """Ten scrapes on fresh connections: both workers answer some of them."""
    no_reuse = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=no_reuse, timeout=10) as http:
        answers = await asyncio.gather(*(http.get("/metrics") for _ in range(10)))
    assert [answer.status_code for answer in answers] == [200] * 10
    return [samples(answer.text) for answer in answers]


# Provokes a database error that no input check can foresee: a trigger added by hand that
# refuses every new row. On PostgreSQL its message quotes the whole row (`RAISE EXCEPTION
# '%', NEW`, as PostgreSQL's own "Failing row contains (...)" does), password hash included.
REFUSE_NEW_ROWS = {
    "postgresql": [
        "CREATE FUNCTION refuse_new_rows() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refusing %', NEW; END $$",
        "CREATE TRIGGER refuse_new_users BEFORE INSERT ON users "
        "FOR EACH ROW EXECUTE FUNCTION refuse_new_rows()",
        "CREATE TRIGGER refuse_new_tasks BEFORE INSERT ON tasks "
        "FOR EACH ROW EXECUTE FUNCTION refuse_new_rows()",
    ],
    "sqlite": [
        "CREATE TRIGGER refuse_new_users BEFORE INSERT ON users "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
        "CREATE TRIGGER refuse_new_tasks BEFORE INSERT ON tasks "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    ],
}


def test_a_database_error_is_logged_without_the_data_it_was_given(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env = server_environment(fresh_database_url, tmp_path / "state")
    email, name, password = "leak.check@example.com", "Leaky McLeakface", "correct horse leak"
    title, description = "Confidential merger plan", "Tell nobody about Project Nightingale"
    dialect = "postgresql" if fresh_database_url.startswith("postgresql") else "sqlite"
    with running_server(["--workers", "1"], cwd=tmp_path, env=env) as server:
        token = issue_token("--sub", "leak-check-user", cwd=tmp_path, env=env)
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            bearer = {"Authorization": f"Bearer {token}"}
            assert http.get("/api/tasks", headers=bearer).status_code == 200  # the user's row
            asyncio.run(_run_statements(fresh_database_url, REFUSE_NEW_ROWS[dialect]))
            task = {"title": title, "description": description}
            signup = {"email": email, "name": name, "password": password}
            answers = [
                http.post("/api/tasks", json=task, headers=bearer),
                # Not a 409: only the email's unique index means the email is taken.
                http.post("/api/auth/signup", json=signup),
            ]
        for response in answers:
            assert response.status_code == 500
            assert set(response.json()) == {"detail", "request_id"}
        stderr = server.stderr()

    errors = [entry for entry in log_entries(stderr) if entry["message"] == "unhandled error"]
    assert len(errors) == len(answers)
    for entry in errors:
        assert "Traceback" in entry["exception"]  # where it happened is still there
        assert "message withheld" in entry["exception"]
        if dialect == "postgresql":
            assert "sqlstate=P0001" in entry["exception"]  # raise_exception, named not quoted
    for leaked in (email, name, password, title, description, "$argon2", "refusing"):
        assert leaked not in stderr


async def _run_statements(url: str, statements: list[str]) -> None:
    if url.startswith("sqlite"):
        import sqlite3

        connection = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            for statement in statements:
                connection.execute(statement)
            connection.commit()
        finally:
            connection.close()
        return
    for statement in statements:
        await fetch(url, statement)
