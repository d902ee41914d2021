"""The rate limit holds across instances (SPEC §13): two `todo-api serve` processes on separate
ports and one PostgreSQL, a user's requests spread over both, admit exactly
`RATE_LIMIT_PER_MINUTE` in all and refuse the rest with 429; the same with the budget in Redis
(`REDIS_URL`), where the database then holds no rate-limit rows."""

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.conftest import fetch, make_token, redis_test_url, throwaway_database
from tests.processes import running_server, server_environment
from todo_api.shared_state.rate_limits import REDIS_KEY_PREFIX

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LIMIT = 40
REQUESTS = 3 * LIMIT
CONCURRENCY = 8
WINDOW_SECONDS = 60
# A burst takes a second or two; one that might straddle two windows waits for the next.
LEAST_WINDOW_LEFT_SECONDS = 5


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    with throwaway_database(postgres_admin_url, "todo_api_rate_limits") as url:
        yield url


@pytest.fixture(params=["database", "redis"])
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """ "" (the budget in PostgreSQL) or the Redis URL (required under CI=true)."""
    if request.param == "database":
        yield ""
        return
    yield redis_test_url()


def start_of_a_fresh_window() -> int:
    """The current window's start, after waiting for the next one if too little is left."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < LEAST_WINDOW_LEFT_SECONDS:
        time.sleep(left + 0.05)
    return int(time.time() // WINDOW_SECONDS * WINDOW_SECONDS)


async def burst(base_urls: list[str], token: str) -> list[tuple[str, httpx.Response]]:
    """`REQUESTS` GETs of one user, alternating between the instances, `CONCURRENCY` at once."""
    gate = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(timeout=10) as client:

        async def one(number: int) -> tuple[str, httpx.Response]:
            base_url = base_urls[number % len(base_urls)]
            async with gate:
                return base_url, await client.get(f"{base_url}/api/tasks", headers=headers)

        return await asyncio.gather(*(one(number) for number in range(REQUESTS)))


def test_the_limit_holds_across_two_instances(
    database: str, redis_url: str, tmp_path: Path
) -> None:
    user = f"limited-{uuid.uuid4().hex[:12]}"
    settings = {"RATE_LIMIT_PER_MINUTE": str(LIMIT), "REDIS_URL": redis_url}
    env = server_environment(database, tmp_path / "state", **settings)
    args = ["--host", "127.0.0.1"]
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    # The first migrates; the second starts on the migrated database.
    with running_server(args, cwd=tmp_path / "first", env=env) as first:
        second_env = {**env, "AUTO_MIGRATE": "false"}
        with running_server(args, cwd=tmp_path / "second", env=second_env) as second:
            window_start = start_of_a_fresh_window()
            started = time.perf_counter()
            answers = asyncio.run(burst([first.base_url, second.base_url], make_token(user)))
            elapsed = time.perf_counter() - started
        assert first.stop() == 0

    admitted = [(base, r) for base, r in answers if r.status_code == 200]
    refused = [r for _, r in answers if r.status_code == 429]
    by_instance = {
        base: sum(1 for b, _ in admitted if b == base) for base in (first.base_url, second.base_url)
    }
    print(
        f"\n{'Redis' if redis_url else 'PostgreSQL'}: {len(admitted)} admitted "
        f"({', '.join(map(str, by_instance.values()))} by instance), {len(refused)} refused, "
        f"{REQUESTS} requests in {elapsed:.2f} s"
    )
    assert len(admitted) == LIMIT
    assert len(refused) == REQUESTS - LIMIT
    assert all(count > 0 for count in by_instance.values()), by_instance
    for _, response in admitted:
        assert response.headers["ratelimit-policy"] == f'"default";q={LIMIT};w=60'
        assert response.headers["ratelimit"].startswith('"default";r=')
    for response in refused:
        assert int(response.headers["retry-after"]) >= 1
        assert response.headers["ratelimit"].startswith('"default";r=0;t=')

    rows = asyncio.run(
        fetch(
            database, "SELECT window_start, used FROM rate_limit_windows WHERE user_id = $1", user
        )
    )
    if not redis_url:
        assert rows == [{"window_start": window_start, "used": LIMIT}]
        return
    assert rows == []
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        key = REDIS_KEY_PREFIX + user
        stored = {name: int(value) for name, value in client.hgetall(key).items()}
        ttl = client.ttl(key)
        client.delete(key)
    finally:
        client.close()
    assert stored["window_start"] == window_start
    assert stored["used"] == LIMIT
    assert 0 < ttl <= 2 * WINDOW_SECONDS
