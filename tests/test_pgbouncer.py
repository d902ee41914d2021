"""The API behind PgBouncer in transaction pooling mode (as behind the Neon pooler), with
`DB_STATEMENT_CACHE=off`: consecutive transactions of one client connection land on different
server connections, and server connections are shared between many client connections, so no
prepared statement may outlive the transaction that made it.

Each test starts its own `pgbouncer` (pool smaller than the app's pool, so sharing really
happens) in front of the local PostgreSQL, and checks what was acknowledged against what
PostgreSQL holds, read directly rather than through the bouncer."""

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from httpx import AsyncClient
from sqlalchemy.engine import make_url

from tests.conftest import (
    IN_CI,
    SECRET,
    asyncpg_dsn,
    auth,
    fetch,
    make_token,
    running,
    throwaway_database,
)
from tests.processes import free_port, running_server, server_environment
from todo_api.config import Settings

pytestmark = pytest.mark.postgres

# Fewer server connections than the app's pool holds client connections.
BOUNCER_POOL_SIZE = 4
APP_POOL_SIZE = 8
BOUNCER_START_TIMEOUT = 10.0
BOUNCER_STOP_TIMEOUT = 10.0
USERS = 4
TASKS_PER_USER = 10
PRIORITIES: list[str | None] = ["low", "medium", "high", None]
PAST, FUTURE = "2020-01-01T00:00:00Z", "2099-01-01T00:00:00Z"


@pytest.fixture
def pgbouncer_binary() -> str:
    """Debian installs it in /usr/sbin, which is not on every PATH."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    binary = shutil.which("pgbouncer", path=search)
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true makes the PgBouncer tests required")
        pytest.skip(message)
    return binary


@dataclass(frozen=True)
class Bouncer:
    port: int
    database: str  # the name clients ask PgBouncer for
    user: str
    password: str | None
    log_path: Path

    def url(self) -> str:
        password = f":{self.password}" if self.password else ""
        return f"postgresql://{self.user}{password}@127.0.0.1:{self.port}/{self.database}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def write_config(upstream_url: str, workdir: Path, port: int) -> Bouncer:
    upstream = make_url(upstream_url)
    user = upstream.username or "postgres"
    password = upstream.password
    target = (
        f"host={upstream.host or '127.0.0.1'} port={upstream.port or 5432} "
        f"dbname={upstream.database}"
    )
    if password:
        target += f" user={user} password={password}"
    auth_file = workdir / "userlist.txt"
    auth_file.write_text(f"{_quote(user)} {_quote(password or '')}\n")
    (workdir / "pgbouncer.ini").write_text(
        f"""\
[databases]
todo = {target}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {auth_file}
pool_mode = transaction
default_pool_size = {BOUNCER_POOL_SIZE}
max_client_conn = 100
"""
    )
    return Bouncer(port, "todo", user, password, workdir / "pgbouncer.log")


def _unprivileged_user() -> str:
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return "nobody"


async def _answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=2)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        return bool(await connection.fetchval("SELECT 1") == 1)
    finally:
        await connection.close()


@contextmanager
def running_pgbouncer(binary: str, upstream_url: str, workdir: Path) -> Iterator[Bouncer]:
    """PgBouncer in the foreground, in front of `upstream_url`'s database, until the block ends.

    It refuses to run as root; as root it is given `-u <user>`. It reads its config and auth
    file before switching user, but opens `logfile`/`pidfile` after, so it logs to stderr
    (captured into `pgbouncer.log` here) and keeps no pidfile: nothing needs the switched-to
    user to reach into pytest's private temporary directory."""
    workdir.mkdir()
    bouncer = write_config(upstream_url, workdir, free_port())
    command = [binary, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", _unprivileged_user()]
    with bouncer.log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + BOUNCER_START_TIMEOUT
        while not asyncio.run(_answers(bouncer.url())):
            if process.poll() is not None:
                pytest.fail(f"pgbouncer exited with {process.returncode}:\n{bouncer.log()}")
            if time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not answer within {BOUNCER_START_TIMEOUT} s")
            time.sleep(0.1)
        yield bouncer
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=BOUNCER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def bouncer(pgbouncer_binary: str, postgres_url: str, tmp_path: Path) -> Iterator[Bouncer]:
    """PgBouncer in transaction mode in front of the session's migrated test database."""
    with running_pgbouncer(pgbouncer_binary, postgres_url, tmp_path / "pgbouncer") as running:
        yield running


# In-process: the app's own pool, through the bouncer, under concurrent mixed load.


def bounced_settings(bouncer: Bouncer, tmp_path: Path, *, statement_cache: bool) -> Settings:
    return Settings(
        database_url=bouncer.url(),
        db_statement_cache=statement_cache,
        better_auth_secret=SECRET,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
        log_format="json",
        db_pool_size=APP_POOL_SIZE,
    )


def expect(response: httpx.Response, status: int) -> Any:
    """The response's JSON (None when empty), after checking its status."""
    request = response.request
    assert response.status_code == status, (
        f"{request.method} {request.url}: {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


def instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def newest_first(tasks: list[dict[str, Any]]) -> list[str]:
    """Ids in the API's default order: created_at descending, ties by id descending."""
    ordered = sorted(tasks, key=lambda t: (instant(t["created_at"]), t["id"]), reverse=True)
    return [task["id"] for task in ordered]


@dataclass
class Ledger:
    """What the API acknowledged, per task: the last response that showed its state."""

    http: AsyncClient
    users: list[str]
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    first_etags: dict[str, str] = field(default_factory=dict)
    deleted: dict[str, str] = field(default_factory=dict)  # id -> owner
    # Toggled concurrently: the final completion is known, not which response was last.
    unsettled: set[str] = field(default_factory=set)

    def of(self, user: str) -> list[dict[str, Any]]:
        return [task for task in self.tasks.values() if task["user_id"] == user]

    def nth(self, user: str, index: int) -> dict[str, Any]:
        """The user's index-th task in creation order (by title, which encodes it)."""
        return sorted(self.of(user), key=lambda task: task["title"])[index]

    def record(self, response: httpx.Response, status: int) -> dict[str, Any]:
        task: dict[str, Any] = expect(response, status)
        self.tasks[task["id"]] = task
        self.etags[task["id"]] = response.headers["etag"]
        self.first_etags.setdefault(task["id"], response.headers["etag"])
        self.unsettled.discard(task["id"])
        return task

    def assert_same(self, actual: dict[str, Any]) -> None:
        expected = self.tasks[actual["id"]]
        if actual["id"] in self.unsettled:
            # Toggled at once from several requests: when it last changed is not known, only
            # that `completed_at` is set exactly while it is completed.
            assert (actual["completed_at"] is not None) is actual["completed"], actual
            unknown = {"updated_at", "completed_at"}
            actual = {key: value for key, value in actual.items() if key not in unknown}
            expected = {key: value for key, value in expected.items() if key not in unknown}
        assert actual == expected

    # One coroutine per request (or per short dependent chain), to be run all at once.

    async def create(self, user: str, index: int) -> None:
        body = {
            "title": f"t{index:02d}{user[-1]}",
            "description": "alpha" if index % 2 else "beta",
            "priority": PRIORITIES[index % 4],
            "due_date": [PAST, FUTURE, None][index % 3],
            "completed": index % 5 == 0,
        }
        response = await self.http.post("/api/tasks", json=body, headers=auth(user))
        task = self.record(response, 201)
        assert response.headers["location"] == f"/api/tasks/{task['id']}"
        assert {key: task[key] for key in body} == body

    async def get(self, user: str, task_id: str) -> None:
        self.assert_same(
            expect(await self.http.get(f"/api/tasks/{task_id}", headers=auth(user)), 200)
        )

    async def not_modified(self, user: str, task_id: str) -> None:
        headers = {**auth(user), "If-None-Match": self.etags[task_id]}
        expect(await self.http.get(f"/api/tasks/{task_id}", headers=headers), 304)

    async def listing(self, user: str, **params: str | int) -> list[dict[str, Any]]:
        """Every page of a listing, following the cursors."""
        tasks: list[dict[str, Any]] = []
        url: str | None = "/api/tasks"
        pages = 0
        while url is not None:
            response = await self.http.get(
                url, params=params if pages == 0 else None, headers=auth(user)
            )
            tasks.extend(expect(response, 200))
            url = response.links.get("next", {}).get("url")
            pages += 1
        for task in tasks:
            self.assert_same(task)
        return tasks

    async def filtered(self, user: str) -> None:
        got = await self.listing(user, status="pending", priority="high")
        wanted = [t for t in self.of(user) if not t["completed"] and t["priority"] == "high"]
        assert [t["id"] for t in got] == newest_first(wanted)

    async def searched(self, user: str) -> None:
        got = await self.listing(user, q="ALPHA", status="completed", limit=2)
        wanted = [t for t in self.of(user) if t["description"] == "alpha" and t["completed"]]
        assert [t["id"] for t in got] == newest_first(wanted)

    async def by_title(self, user: str) -> None:
        got = await self.listing(user, sort="title", limit=3)
        assert [t["title"] for t in got] == sorted(t["title"] for t in self.of(user))

    async def everything(self, user: str) -> None:
        got = await self.listing(user, limit=4)
        assert [t["id"] for t in got] == newest_first(self.of(user))

    async def stats(self, user: str) -> None:
        tasks = self.of(user)
        pending = [t for t in tasks if not t["completed"]]
        wanted = {
            "total": len(tasks),
            "completed": len(tasks) - len(pending),
            "pending": len(pending),
            "overdue": sum(t["due_date"] == PAST for t in pending),
        }
        assert expect(await self.http.get("/api/tasks/stats", headers=auth(user)), 200) == wanted

    async def refused(self, user: str, other: str) -> None:
        task_id = self.nth(other, 5)["id"]
        expect(await self.http.get(f"/api/tasks/{task_id}", headers=auth(user)), 403)
        response = await self.http.patch(
            f"/api/tasks/{task_id}", json={"title": "stolen"}, headers=auth(user)
        )
        expect(response, 403)

    async def missing(self, user: str) -> None:
        expect(await self.http.get(f"/api/tasks/{uuid.uuid4()}", headers=auth(user)), 404)

    async def bad_query(self, user: str) -> None:
        expect(await self.http.get("/api/tasks?sort=bogus", headers=auth(user)), 400)

    def reads(self, user: str, other: str) -> list[Awaitable[None]]:
        first_three = [task["id"] for task in self.of(user)[:3]]
        tagged = next(t["id"] for t in reversed(self.of(user)) if t["id"] in self.etags)
        return [
            *(self.get(user, task_id) for task_id in first_three),
            self.not_modified(user, tagged),
            self.filtered(user),
            self.searched(user),
            self.by_title(user),
            self.everything(user),
            self.stats(user),
            self.refused(user, other),
            self.missing(user),
            self.bad_query(user),
        ]

    # Writes: never two of them on one task in a round, except the deliberate toggles.

    async def rename(self, user: str, task_id: str) -> None:
        headers = {**auth(user), "If-Match": self.etags[task_id]}
        title = "r" + self.tasks[task_id]["title"][1:]
        response = await self.http.patch(
            f"/api/tasks/{task_id}", json={"title": title}, headers=headers
        )
        assert self.record(response, 200)["title"] == title

    async def replace(self, user: str, task_id: str) -> None:
        body = {"description": None, "priority": "low", "due_date": PAST}
        task = self.record(
            await self.http.put(f"/api/tasks/{task_id}", json=body, headers=auth(user)), 200
        )
        assert {key: task[key] for key in body} == body

    async def complete(self, user: str, task_id: str) -> None:
        response = await self.http.patch(
            f"/api/tasks/{task_id}/complete", json={"completed": True}, headers=auth(user)
        )
        assert self.record(response, 200)["completed"] is True

    async def toggle(self, user: str, task_id: str) -> bool:
        response = await self.http.patch(f"/api/tasks/{task_id}/complete", headers=auth(user))
        completed: bool = expect(response, 200)["completed"]
        return completed

    async def toggle_once(self, user: str, task_id: str) -> None:
        before = self.tasks[task_id]["completed"]
        response = await self.http.patch(f"/api/tasks/{task_id}/complete", headers=auth(user))
        assert self.record(response, 200)["completed"] is not before

    async def toggle_five_times(self, user: str, task_id: str) -> None:
        """Five toggles at once: each is one atomic UPDATE, so they see five states in turn."""
        before = self.tasks[task_id]["completed"]
        seen = await asyncio.gather(*(self.toggle(user, task_id) for _ in range(5)))
        assert sorted(seen).count(not before) == 3
        self.tasks[task_id] = {**self.tasks[task_id], "completed": not before}
        self.unsettled.add(task_id)
        del self.etags[task_id]

    async def delete(self, user: str, task_id: str) -> None:
        expect(await self.http.delete(f"/api/tasks/{task_id}", headers=auth(user)), 204)
        self.deleted[task_id] = user
        del self.tasks[task_id]

    async def stale(self, user: str, task_id: str, etag: str) -> None:
        """An update conditional on a version the task is not at: 412, nothing changes."""
        headers = {**auth(user), "If-Match": etag}
        response = await self.http.patch(
            f"/api/tasks/{task_id}", json={"title": "lost update"}, headers=headers
        )
        expect(response, 412)

    async def gone(self, user: str, task_id: str) -> None:
        expect(await self.http.get(f"/api/tasks/{task_id}", headers=auth(user)), 404)
        expect(await self.http.delete(f"/api/tasks/{task_id}", headers=auth(user)), 404)

    def writes(self, user: str) -> list[Awaitable[None]]:
        task = [self.nth(user, index)["id"] for index in range(TASKS_PER_USER)]
        return [
            self.rename(user, task[1]),
            self.replace(user, task[2]),
            self.toggle_five_times(user, task[3]),
            self.complete(user, task[4]),
            self.delete(user, task[6]),
            self.delete(user, task[7]),
            self.create(user, TASKS_PER_USER),
            self.create(user, TASKS_PER_USER + 1),
            self.get(user, task[9]),
            self.stale(user, task[0], '"1"'),  # a version never issued
        ]


async def burst(requests: list[Awaitable[None]]) -> None:
    await asyncio.gather(*requests)


async def drive(http: AsyncClient, users: list[str]) -> Ledger:
    """Rounds of concurrent requests from several users; returns what was acknowledged."""
    ledger = Ledger(http, users)
    others = dict(zip(users, users[1:] + users[:1], strict=True))
    await burst([ledger.create(user, i) for user in users for i in range(TASKS_PER_USER)])
    await burst([read for user in users for read in ledger.reads(user, others[user])])
    renamed = {user: ledger.nth(user, 1)["id"] for user in users}
    await burst([write for user in users for write in ledger.writes(user)])
    await burst(
        [
            *(read for user in users for read in ledger.reads(user, others[user])),
            *(ledger.gone(user, task_id) for task_id, user in ledger.deleted.items()),
            *(ledger.stale(u, renamed[u], ledger.first_etags[renamed[u]]) for u in users),
        ]
    )
    # Every remaining task toggled once, and more created, at once.
    await burst(
        [
            *(ledger.toggle_once(t["user_id"], t["id"]) for t in list(ledger.tasks.values())),
            *(ledger.create(user, i) for user in users for i in range(12, 14)),
        ]
    )
    await burst([read for user in users for read in ledger.reads(user, others[user])])
    return ledger


TASK_COLUMNS = (
    "id, user_id, title, description, completed, priority, due_date, tags, recurrence, "
    "time_zone, remind_at, completed_at, next_occurrence_id, created_at, updated_at"
)
TIMESTAMPS = ("due_date", "remind_at", "completed_at", "created_at", "updated_at")


def as_stored(task: dict[str, Any]) -> dict[str, Any]:
    """An API task as PostgreSQL returns its row."""
    successor = task["next_occurrence_id"]
    return {
        **task,
        "id": uuid.UUID(task["id"]),
        "next_occurrence_id": None if successor is None else uuid.UUID(successor),
        **{key: instant(task[key]) for key in TIMESTAMPS},
    }


async def assert_database_holds(postgres_url: str, ledger: Ledger) -> None:
    """Read straight from PostgreSQL, not through the bouncer nor the app."""
    rows = await fetch(
        postgres_url,
        f"SELECT {TASK_COLUMNS} FROM tasks WHERE user_id = ANY($1::text[]) ORDER BY id",
        ledger.users,
    )
    assert ledger.unsettled == set()
    assert rows == sorted(
        (as_stored(task) for task in ledger.tasks.values()), key=lambda r: r["id"]
    )
    users = await fetch(
        postgres_url, "SELECT id FROM users WHERE id = ANY($1::text[])", ledger.users
    )
    assert sorted(row["id"] for row in users) == sorted(ledger.users)


async def forget(postgres_url: str, users: list[str]) -> None:
    for table, column in (("tasks", "user_id"), ("users", "id")):
        await fetch(postgres_url, f"DELETE FROM {table} WHERE {column} = ANY($1::text[])", users)


@pytest.fixture
async def users(postgres_url: str) -> AsyncIterator[list[str]]:
    """Users of this test only (the database is shared with the session), removed after."""
    ids = [f"pgb{uuid.uuid4().hex[:8]}{index}" for index in range(USERS)]
    yield ids
    await forget(postgres_url, ids)


async def test_concurrent_mixed_requests_through_transaction_pooling(
    bouncer: Bouncer, postgres_url: str, users: list[str], tmp_path: Path
) -> None:
    async with running(bounced_settings(bouncer, tmp_path, statement_cache=False)) as (
        app,
        http,
    ):
        ledger = await drive(http, users)
        # The app held more client connections than PgBouncer had server connections.
        assert app.state.runtime.engine.pool.checkedin() > BOUNCER_POOL_SIZE
    await assert_database_holds(postgres_url, ledger)
    log = bouncer.log()
    assert 0 < log.count("new connection to server") <= BOUNCER_POOL_SIZE, log
    assert log.count("login attempt") > BOUNCER_POOL_SIZE, log


async def test_statement_cache_on_breaks_under_transaction_pooling(
    bouncer: Bouncer, users: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Why `DB_STATEMENT_CACHE=off` exists: with the cache on, statements named
    `__asyncpg_stmt_<n>__` are prepared on one server connection and then looked for (or
    prepared again) on another, which shares them with other clients."""
    statuses: list[int] = []
    async with running(bounced_settings(bouncer, tmp_path, statement_cache=True)) as (_, http):
        for _ in range(3):
            responses = await asyncio.gather(
                *(
                    http.post("/api/tasks", json={"title": f"t{index}"}, headers=auth(user))
                    for user in users
                    for index in range(TASKS_PER_USER)
                )
            )
            statuses += [response.status_code for response in responses]
            if max(statuses) >= 500:
                break
    assert max(statuses) >= 500, statuses
    # The driver's message is withheld from the log (it may quote data); its SQLSTATE is not:
    # 26000 "prepared statement … does not exist", 42P05 "… already exists".
    logged = "\n".join(str(getattr(record, "exception", "")) for record in caplog.records)
    assert "sqlstate=26000" in logged or "sqlstate=42P05" in logged, logged[-2000:]


async def prepared_statements_per_server_connection(bouncer: Bouncer) -> list[int]:
    """How many named prepared statements each of PgBouncer's server connections holds: as
    many clients as it has server connections, each holding one in a transaction at once."""
    connections = [
        await asyncpg.connect(asyncpg_dsn(bouncer.url()), statement_cache_size=0)
        for _ in range(BOUNCER_POOL_SIZE)
    ]
    all_in = asyncio.Barrier(BOUNCER_POOL_SIZE)

    async def count(connection: asyncpg.Connection) -> tuple[int, int]:
        async with connection.transaction():
            row = await connection.fetchrow(
                "SELECT pg_backend_pid() AS pid, count(*) AS n FROM pg_prepared_statements"
            )
            await all_in.wait()
        return int(row["pid"]), int(row["n"])

    try:
        async with asyncio.timeout(10):
            counted = await asyncio.gather(*(count(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    assert len({pid for pid, _ in counted}) == BOUNCER_POOL_SIZE
    return [n for _, n in counted]


async def test_prepared_statements_do_not_pile_up_on_server_connections(
    bouncer: Bouncer, users: list[str], tmp_path: Path
) -> None:
    async with running(bounced_settings(bouncer, tmp_path, statement_cache=False)) as (_, http):
        await drive(http, users)
    # About 300 requests went through; a bounded number of statements per connection is fine.
    assert max(await prepared_statements_per_server_connection(bouncer)) <= 10


# A real `todo-api serve --workers 2`, migrating and serving through the bouncer.


@pytest.fixture
def fresh_database(postgres_admin_url: str) -> Iterator[str]:
    """An empty database, which the server migrates through the bouncer."""
    with throwaway_database(postgres_admin_url, "todo_api_pgbouncer") as url:
        yield url


async def http_burst(base_url: str, users: list[str]) -> None:
    headers = {user: {"Authorization": f"Bearer {make_token(user)}"} for user in users}
    limits = httpx.Limits(max_connections=60)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:

        async def create(user: str, index: int) -> str:
            body = {"title": f"task {index}", "due_date": PAST if index % 2 else None}
            response = await http.post("/api/tasks", json=body, headers=headers[user])
            task_id: str = expect(response, 201)["id"]
            return task_id

        async def use(user: str, task_id: str) -> None:
            expect(await http.patch(f"/api/tasks/{task_id}/complete", headers=headers[user]), 200)
            expect(await http.get(f"/api/tasks/{task_id}", headers=headers[user]), 200)

        async def look(user: str) -> None:
            expect(
                await http.get("/api/tasks?status=pending&sort=due_date", headers=headers[user]),
                200,
            )
            expect(await http.get("/api/tasks/stats", headers=headers[user]), 200)

        created = await asyncio.gather(*(create(u, i) for u in users for i in range(10)))
        owners = [user for user in users for _ in range(10)]
        await asyncio.gather(
            *(use(user, task_id) for user, task_id in zip(owners, created, strict=True)),
            *(look(user) for user in users for _ in range(5)),
        )
        for user in users:
            stats = expect(await http.get("/api/tasks/stats", headers=headers[user]), 200)
            assert stats == {"total": 10, "completed": 10, "pending": 0, "overdue": 0}


@pytest.mark.slow
def test_two_worker_server_through_transaction_pooling(
    pgbouncer_binary: str, fresh_database: str, tmp_path: Path
) -> None:
    users = [f"pgb-server-{index}" for index in range(3)]
    with running_pgbouncer(pgbouncer_binary, fresh_database, tmp_path / "pgbouncer") as bouncer:
        env = server_environment(bouncer.url(), tmp_path / "state", DB_STATEMENT_CACHE="false")
        args = ["--host", "127.0.0.1", "--workers", "2"]
        with running_server(args, cwd=tmp_path, env=env) as server:
            asyncio.run(http_burst(server.base_url, users))
            ready = httpx.get(f"{server.base_url}/health/ready", timeout=10)
            assert ready.status_code == 200, ready.text
            exit_code = server.stop()
            stderr = server.stderr()
    assert exit_code == 0, stderr
    assert '"status": 500' not in stderr
    counts = asyncio.run(
        fetch(
            fresh_database,
            "SELECT user_id, count(*) FILTER (WHERE completed) AS done, count(*) AS total "
            "FROM tasks GROUP BY user_id ORDER BY user_id",
        )
    )
    assert counts == [{"user_id": user, "done": 10, "total": 10} for user in users]
