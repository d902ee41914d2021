"""DB_STATEMENT_TIMEOUT: a request whose statement waits longer than that in the database gets a
503 with `Retry-After` and a clear sentence, its statement is cancelled (a create leaves no
row), and the next request on the same pool succeeds. Directly on PostgreSQL (the server's
`statement_timeout`) and through PgBouncer in transaction mode (asyncpg's own timer)."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import SECRET, fetch, running
from tests.reliability.conftest import LEAKS, bearer, table_locked
from tests.test_pgbouncer import running_pgbouncer
from todo_api.config import Settings

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

STATEMENT_TIMEOUT = 1.0
MARGIN = 1.5
TIMED_OUT = "The database took too long to answer; try again shortly."


def settings_for(url: str, tmp_path: Path, **overrides: object) -> Settings:
    return Settings.model_validate(
        {
            "database_url": url,
            "better_auth_secret": SECRET,
            "environment": "test",
            "data_dir": tmp_path,
            "log_format": "json",
            "db_statement_timeout": STATEMENT_TIMEOUT,
            **overrides,
        }
    )


@pytest.fixture
def via_bouncer(pgbouncer_binary: str, database: str, tmp_path: Path) -> Iterator[str]:
    with running_pgbouncer(pgbouncer_binary, database, tmp_path / "pgbouncer") as bouncer:
        yield bouncer.url()


def assert_timed_out(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": TIMED_OUT}
    assert int(response.headers["retry-after"]) > 0
    assert not LEAKS.search(response.text)
    assert STATEMENT_TIMEOUT <= elapsed <= STATEMENT_TIMEOUT + MARGIN, elapsed


async def blocked_requests_time_out(http: httpx.AsyncClient, database: str) -> None:
    user = bearer("slow-user")
    first = await http.post("/api/tasks", json={"title": "before"}, headers=user)
    assert first.status_code == 201, first.text

    async with table_locked(database):
        started = time.monotonic()
        read = await http.get("/api/tasks", headers=user)
        assert_timed_out(read, time.monotonic() - started)

        started = time.monotonic()
        create = await http.post("/api/tasks", json={"title": "cancelled"}, headers=user)
        assert_timed_out(create, time.monotonic() - started)

    # The pool is fine: the same app answers at once, and the cancelled create left nothing.
    listing = await http.get("/api/tasks", headers=user)
    assert listing.status_code == 200
    assert [task["title"] for task in listing.json()] == ["before"]
    rows = await fetch(database, "SELECT title FROM tasks WHERE user_id = 'slow-user'")
    assert rows == [{"title": "before"}]


async def test_statement_timeout_directly_on_postgresql(database: str, tmp_path: Path) -> None:
    async with running(settings_for(database, tmp_path)) as (app, http):
        # The server's own statement_timeout, set when the connection starts.
        async with app.state.runtime.engine.connect() as connection:
            shown = await connection.execute(text("SHOW statement_timeout"))
            assert shown.scalar_one() == "1s"
        await blocked_requests_time_out(http, database)


async def test_statement_timeout_through_pgbouncer(
    via_bouncer: str, database: str, tmp_path: Path
) -> None:
    settings = settings_for(via_bouncer, tmp_path, db_statement_cache=False)
    async with running(settings) as (app, http):
        # PgBouncer takes no statement_timeout at start-up: here the driver times statements.
        async with app.state.runtime.engine.connect() as connection:
            shown = await connection.execute(text("SHOW statement_timeout"))
            assert shown.scalar_one() == "0"
        await blocked_requests_time_out(http, database)


async def test_pgbouncer_accepts_the_connections_whatever_the_statement_cache(
    via_bouncer: str, tmp_path: Path
) -> None:
    """PgBouncer refuses a connection that sends a start-up parameter it does not track (in
    every pool mode), so the timeout is never sent as one."""
    settings = settings_for(via_bouncer, tmp_path, db_statement_cache=True, auto_migrate=False)
    async with running(settings) as (_, http):
        ready = await http.get("/health/ready")
    assert ready.status_code == 200, ready.text


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0"), (2.5, "2500ms"), (30, "30s")])
async def test_statement_timeout_setting_reaches_each_connection(
    database: str, tmp_path: Path, seconds: float, shown: str
) -> None:
    settings = settings_for(database, tmp_path, db_statement_timeout=seconds)
    async with running(settings) as (app, _), app.state.runtime.engine.connect() as connection:
        result = await connection.execute(text("SHOW statement_timeout"))
        assert result.scalar_one() == shown
