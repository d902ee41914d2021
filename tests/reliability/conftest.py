"""Fault-test fixtures: a PostgreSQL cluster of the test's own (so it can be stopped and started
again), a table lock held from outside to make requests slow on purpose, and a load of
concurrent clients that records every answer with its timing."""

import asyncio
import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import IN_CI, fetch, make_token, throwaway_database
from tests.processes import free_port
from tests.test_pgbouncer import _unprivileged_user as unprivileged_user
from tests.test_pgbouncer import pgbouncer_binary  # noqa: F401 (a fixture, shared)

PG_START_TIMEOUT = 30

# Every 503 the API gives for the database carries one of these, and nothing else.
UNAVAILABLE_DETAILS = {
    "The database is unavailable; try again shortly.",
    "The database took too long to answer; try again shortly.",
    "All database connections are busy; try again shortly.",
}
# What must never appear in an error body.
LEAKS = re.compile(r"Traceback|asyncpg|sqlalchemy|SELECT|INSERT|UPDATE|tasks\b|File \"", re.I)


def _postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live: PG_BINDIR, the PATH, `pg_config`, or Debian's folders."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    pg_config = shutil.which("pg_config")
    if pg_config:
        asked = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(asked.stdout.strip())
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    # Newest first: /usr/lib/postgresql/<major>/bin.
    candidates += sorted(versions, key=lambda p: [int(n) for n in re.findall(r"\d+", p)])[::-1]
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_bindir() -> Path:
    """PostgreSQL's server binaries; required under CI=true, else the fault tests are skipped."""
    bindir = _postgres_bindir()
    if bindir is None:
        message = "initdb/pg_ctl not found (install PostgreSQL server binaries or set PG_BINDIR)"
        if IN_CI:
            pytest.fail(f"{message}; CI=true makes the fault tests required")
        pytest.skip(message)
    return bindir


@dataclass
class Cluster:
    """A PostgreSQL cluster in a temporary folder, on a port of its own."""

    bindir: Path
    root: Path
    port: int
    # initdb and postgres refuse to run as root: as root they run as this user instead.
    run_as: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            [*self.run_as, *command], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            *("-D", str(self.root / "data"), "-U", "postgres", "-A", "trust", "-E", "UTF8"),
            *("--locale=C", "--no-sync", "--no-instructions"),
        )

    def start(self) -> None:
        self._pg_ctl("start", "-w", "-t", str(PG_START_TIMEOUT), "-l", str(self.log_path))

    def _pg_ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-o", options, *args)

    def stop(self, mode: str = "fast") -> None:
        """`fast`: sessions are told to go away; `immediate`: the server dies as in a crash."""
        self._pg_ctl("stop", "-w", "-m", mode)

    def running(self) -> bool:
        result = subprocess.run(
            [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "status"],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0


@contextmanager
def throwaway_cluster(bindir: Path) -> Iterator[Cluster]:
    """A fresh cluster, started; stopped (immediately) and deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="todo-api-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = unprivileged_user()
        shutil.chown(root, user)
        run_as = ["runuser", "-u", user, "--"]
    cluster = Cluster(bindir, root, free_port(), run_as)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(postgres_bindir: Path) -> Iterator[Cluster]:
    with throwaway_cluster(postgres_bindir) as running:
        yield running


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    """An empty PostgreSQL database on the suite's server (the API migrates it), dropped after."""
    with throwaway_database(postgres_admin_url, "todo_api_reliability") as url:
        yield url


@asynccontextmanager
async def table_locked(dsn: str, table: str = "tasks") -> AsyncIterator[asyncpg.Connection]:
    """Hold `LOCK TABLE … IN ACCESS EXCLUSIVE MODE` until the block ends: every request that
    reads or writes the table waits for it, in the database, holding its connection."""
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield connection
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


async def wait_for_lock_waiters(dsn: str, count: int, within: float = 10) -> None:
    """Until `count` sessions wait on a lock: the slow requests have reached the database."""
    deadline = time.monotonic() + within
    while True:
        rows = await fetch(
            dsn,
            "SELECT count(*) AS n FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        if rows[0]["n"] >= count:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{count} requests did not reach the lock within {within} s")
        await asyncio.sleep(0.05)


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, ttl=3600)}"}


@dataclass(frozen=True)
class Outcome:
    """One request of the load: what it was, when it ran (monotonic seconds), what came back."""

    kind: str  # "create" or "read"
    started: float
    finished: float
    status: int  # 0: no HTTP answer at all
    task_id: str | None = None
    detail: str | None = None
    retry_after: str | None = None

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass
class Load:
    """Concurrent clients, each creating a task and reading it back (or the list), in a loop."""

    base_url: str
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _client(self, http: httpx.AsyncClient, user: str) -> None:
        headers = bearer(user)
        sequence = 0
        while not self._stop.is_set():
            sequence += 1
            created = await self._request(
                http, "create", "POST", "/api/tasks", headers, {"title": f"{user} #{sequence}"}
            )
            path = f"/api/tasks/{created.task_id}" if created.task_id else "/api/tasks?limit=5"
            await self._request(http, "read", "GET", path, headers)

    async def _request(
        self,
        http: httpx.AsyncClient,
        kind: str,
        method: str,
        path: str,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
    ) -> Outcome:
        started = time.monotonic()
        try:
            response = await http.request(method, path, headers=headers, json=body)
        except httpx.HTTPError as exc:
            outcome = Outcome(kind, started, time.monotonic(), 0, detail=repr(exc))
        else:
            finished = time.monotonic()
            payload = response.json() if response.content else None
            fields = payload if isinstance(payload, dict) else {}
            outcome = Outcome(
                kind,
                started,
                finished,
                response.status_code,
                task_id=fields.get("id") if response.status_code == 201 else None,
                detail=fields.get("detail") if response.status_code >= 400 else None,
                retry_after=response.headers.get("retry-after"),
            )
            if response.status_code >= 500:
                assert not LEAKS.search(response.text), response.text
        self.outcomes.append(outcome)
        return outcome

    @asynccontextmanager
    async def running(self) -> AsyncIterator["Load"]:
        self.users = [f"load-{uuid.uuid4().hex[:8]}-{n}" for n in range(self.clients)]
        # A generous client timeout: a hang must show up as a long latency, not as an error.
        async with httpx.AsyncClient(base_url=self.base_url, timeout=60) as http:
            tasks = [asyncio.create_task(self._client(http, user)) for user in self.users]
            try:
                yield self
            finally:
                self._stop.set()
                await asyncio.gather(*tasks)

    def between(self, start: float, end: float) -> list[Outcome]:
        """Requests sent and answered within [start, end]."""
        return [o for o in self.outcomes if o.started >= start and o.finished <= end]

    def acknowledged_creates(self) -> set[str]:
        return {o.task_id for o in self.outcomes if o.kind == "create" and o.task_id}

    def statuses(self) -> dict[int, int]:
        return dict(sorted(Counter(o.status for o in self.outcomes).items()))


def summary(**numbers: Any) -> str:
    return "\n".join(f"  {name.replace('_', ' ')}: {value}" for name, value in numbers.items())
