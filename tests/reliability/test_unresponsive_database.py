"""A database host that accepts TCP connections and never answers (a hung server, a black-holed
proxy): requests get a 503 within about DB_POOL_TIMEOUT, not after the driver's default 60 s
connect timeout, and `/health/ready` says so just as fast."""

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, running
from tests.reliability.conftest import LEAKS, UNAVAILABLE_DETAILS, bearer
from todo_api.config import Settings

pytestmark = pytest.mark.slow

POOL_TIMEOUT = 1.0
MARGIN = 1.0
CONCURRENT = 6


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A listening socket nobody ever accepts on: the kernel completes the TCP handshake,
    then the client waits for PostgreSQL's first message forever."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"


async def timed_get(http: httpx.AsyncClient, path: str, user: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await http.get(path, headers=bearer(user))
    return response, time.monotonic() - started


async def test_silent_database_gives_503_within_the_pool_timeout(
    silent_server: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=silent_server,
        better_auth_secret=SECRET,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
        log_format="json",
        db_pool_size=2,
        db_max_overflow=0,
        db_pool_timeout=POOL_TIMEOUT,
    )
    async with running(settings) as (_, http):
        answers = await asyncio.gather(
            *(timed_get(http, "/api/tasks", f"user-{n}") for n in range(CONCURRENT)),
            timed_get(http, "/health/ready", "anyone"),
        )
    *requests, (ready, ready_seconds) = answers
    latencies = [seconds for _, seconds in requests]
    print(
        f"\nsilent database, pool of 2, {CONCURRENT} concurrent requests: "
        f"{[r.status_code for r, _ in requests]}, max latency {max(latencies):.3f} s; "
        f"/health/ready {ready.status_code} in {ready_seconds:.3f} s "
        f"(DB_POOL_TIMEOUT={POOL_TIMEOUT})"
    )
    for response, _ in requests:
        assert response.status_code == 503, response.text
        assert response.json()["detail"] in UNAVAILABLE_DETAILS
        assert int(response.headers["retry-after"]) > 0
        assert not LEAKS.search(response.text)
    assert max(latencies) <= POOL_TIMEOUT + MARGIN
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "unreachable"}
    assert ready_seconds <= POOL_TIMEOUT + MARGIN
