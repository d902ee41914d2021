"""Every pooled connection busy with a slow request: the next requests wait DB_POOL_TIMEOUT for
one, then get a 503 with `Retry-After` (never a hang); once the slow request is done, 2xx
again. A real `todo-api serve` with a pool of one connection and no overflow."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, environment_without_settings, fetch
from tests.processes import running_server
from tests.reliability.conftest import LEAKS, bearer, table_locked, wait_for_lock_waiters

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POOL_TIMEOUT = 1.0
MARGIN = 1.0
WAITING = 4
BUSY = "All database connections are busy; try again shortly."


async def timed(request: "asyncio.Future[httpx.Response]") -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def exhaust_the_pool(base_url: str, database: str) -> None:
    user = bearer("pool-user")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        seeded = await http.post("/api/tasks", json={"title": "seed"}, headers=user)
        assert seeded.status_code == 201, seeded.text

        async with table_locked(database):
            slow = asyncio.ensure_future(http.get("/api/tasks", headers=user))
            await wait_for_lock_waiters(database, 1)
            # The only connection is held by the slow request: these wait for it, then give up.
            waiting = await asyncio.gather(
                *(
                    timed(asyncio.ensure_future(http.get("/api/tasks", headers=user)))
                    for _ in range(WAITING)
                ),
                timed(
                    asyncio.ensure_future(
                        http.post("/api/tasks", json={"title": "no"}, headers=user)
                    )
                ),
                timed(asyncio.ensure_future(http.get("/health/ready"))),
            )
            alive = await http.get("/health")
            assert not slow.done()
        slow_response = await slow

        after_list = await http.get("/api/tasks", headers=user)
        after_create = await http.post("/api/tasks", json={"title": "after"}, headers=user)

    latencies = [seconds for _, seconds in waiting]
    print(
        f"\npool of 1 held by a slow request: {len(waiting)} more requests answered "
        f"{[r.status_code for r, _ in waiting]} in at most {max(latencies):.3f} s "
        f"(DB_POOL_TIMEOUT={POOL_TIMEOUT}); the slow one then {slow_response.status_code}, "
        f"afterwards {after_list.status_code} and {after_create.status_code}"
    )
    *requests, (ready, _) = waiting
    for response, seconds in requests:
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": BUSY}
        assert int(response.headers["retry-after"]) > 0
        assert not LEAKS.search(response.text)
        assert POOL_TIMEOUT * 0.9 <= seconds <= POOL_TIMEOUT + MARGIN
    assert ready.status_code == 503
    assert max(latencies) <= POOL_TIMEOUT + MARGIN
    assert alive.status_code == 200

    assert slow_response.status_code == 200
    assert [task["title"] for task in slow_response.json()] == ["seed"]
    assert after_list.status_code == 200
    assert after_create.status_code == 201
    rows = await fetch(database, "SELECT title FROM tasks ORDER BY created_at")
    assert rows == [{"title": "seed"}, {"title": "after"}]


def test_exhausted_pool_answers_503_then_recovers(database: str, tmp_path: Path) -> None:
    env = {
        **environment_without_settings(),
        "DATABASE_URL": database,
        "BETTER_AUTH_SECRET": SECRET,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(tmp_path / "state"),
        "DB_POOL_SIZE": "1",
        "DB_MAX_OVERFLOW": "0",
        "DB_POOL_TIMEOUT": str(POOL_TIMEOUT),
        # The slow request waits on a lock for as long as the test holds it.
        "DB_STATEMENT_TIMEOUT": "0",
    }
    with running_server(["--workers", "1"], cwd=tmp_path, env=env) as server:
        asyncio.run(exhaust_the_pool(server.base_url, database))
        assert server.stop() == 0
        stderr = server.stderr()
    assert '"status": 500' not in stderr
