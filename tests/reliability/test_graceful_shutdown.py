"""SIGTERM while requests are in flight: a real `todo-api serve` stops accepting connections,
finishes what it has started (with its 2xx), closes its pool and exits 0."""

import asyncio
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, environment_without_settings, fetch
from tests.processes import Server, running_server
from tests.reliability.conftest import bearer, table_locked, wait_for_lock_waiters

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

IN_FLIGHT = 4
STOP_TIMEOUT = 20.0


def refuses_connections(base_url: str) -> bool:
    """Whether a TCP connect is refused outright (not queued on a socket nobody serves)."""
    host, port = base_url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


async def shutdown_with_requests_in_flight(
    server: Server, database: str
) -> tuple[list[httpx.Response], bool, int, float]:
    user = "shutdown-user"
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        # The user's row exists before the lock, so the blocked requests wait only on tasks.
        assert (await http.get("/api/tasks", headers=bearer(user))).status_code == 200
        async with table_locked(database):
            requests = [
                asyncio.create_task(
                    http.post("/api/tasks", json={"title": f"in flight {n}"}, headers=bearer(user))
                )
                for n in range(IN_FLIGHT)
            ]
            await wait_for_lock_waiters(database, IN_FLIGHT)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert server.process.poll() is None, "the server exited with requests in flight"
            refused = await asyncio.to_thread(refuses_connections, server.base_url)
            released = time.monotonic()
        responses = await asyncio.gather(*requests)
    exit_code = await asyncio.to_thread(server.process.wait, STOP_TIMEOUT)
    return responses, refused, exit_code, time.monotonic() - released


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_requests_in_flight_and_exits_0(
    database: str, tmp_path: Path, workers: int
) -> None:
    env = {
        **environment_without_settings(),
        "DATABASE_URL": database,
        "BETTER_AUTH_SECRET": SECRET,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(tmp_path / "state"),
    }
    args = ["--host", "127.0.0.1", "--workers", str(workers)]
    with running_server(args, cwd=tmp_path, env=env) as server:
        responses, refused, exit_code, exit_seconds = asyncio.run(
            shutdown_with_requests_in_flight(server, database)
        )
        stderr = server.stderr()

    print(
        f"\nSIGTERM with {IN_FLIGHT} requests in flight ({workers} workers): "
        f"{[r.status_code for r in responses]}, new connections refused: {refused}, "
        f"exit code {exit_code} {exit_seconds:.2f} s after the lock was released"
    )
    assert [r.status_code for r in responses] == [201] * IN_FLIGHT, [r.text for r in responses]
    assert refused, "a new connection was accepted while shutting down"
    assert exit_code == 0, stderr
    rows = asyncio.run(fetch(database, "SELECT id::text AS id FROM tasks"))
    assert sorted(row["id"] for row in rows) == sorted(r.json()["id"] for r in responses)
    # Each worker ran the app's shutdown, which closes its pool, after its last response.
    assert stderr.count("Application shutdown complete") == workers, stderr
