"""The database goes away under load and comes back: a real `todo-api serve --workers 2` on a
PostgreSQL cluster of the test's own, stopped and started again while clients keep creating
and reading tasks. During the outage every answer is a quick 503; afterwards the same
processes serve 2xx again; every create that got a 201 is in the database."""

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import fetch
from tests.processes import running_server, server_environment
from tests.reliability.conftest import (
    LEAKS,
    UNAVAILABLE_DETAILS,
    Cluster,
    Load,
    Outcome,
    bearer,
    summary,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

POOL_TIMEOUT = 2.0
# What an answer may take beyond DB_POOL_TIMEOUT: scheduling on a busy two-core machine.
MARGIN = 1.0
CLIENTS = 4
STEADY_SECONDS = 0.75
OUTAGE_SECONDS = 2.0
RECOVERED_SECONDS = 1.0


def server_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return server_environment(
        database_url,
        tmp_path / "state",
        DB_POOL_SIZE="4",
        DB_MAX_OVERFLOW="2",
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
    )


def readiness(base_url: str) -> tuple[httpx.Response, float]:
    """`/health/ready` and how long it took to answer."""
    started = time.monotonic()
    response = httpx.get(f"{base_url}/health/ready", timeout=30)
    return response, time.monotonic() - started


async def outage_under_load(cluster: Cluster, base_url: str, stop_mode: str) -> None:
    load = Load(base_url, CLIENTS)
    async with load.running():
        await asyncio.sleep(STEADY_SECONDS)
        stopping = time.monotonic()
        await asyncio.to_thread(cluster.stop, stop_mode)
        down = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        ready_down, ready_down_seconds = await asyncio.to_thread(readiness, base_url)
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        starting = time.monotonic()
        await asyncio.to_thread(cluster.start)
        up = time.monotonic()
        await asyncio.sleep(RECOVERED_SECONDS)
        ready_up, _ = await asyncio.to_thread(readiness, base_url)
    end = time.monotonic()

    steady = load.between(0, stopping)
    outage = load.between(down, starting)
    recovered = load.between(up, end)
    # Sent before the server was gone and answered after it started going: either answer
    # is right (a create may even have committed just before its 503), but never a 500.
    in_flight = [o for o in load.outcomes if o.started < down and o.finished > stopping]

    acknowledged = load.acknowledged_creates()
    rows = await fetch(
        cluster.url, "SELECT id::text AS id FROM tasks WHERE user_id = ANY($1::text[])", load.users
    )
    stored = {row["id"] for row in rows}
    unacknowledged_in_flight = [o for o in in_flight if o.kind == "create" and o.status != 201]
    max_outage_latency = max((o.latency for o in outage), default=0.0)

    print(
        f"\ndatabase outage (pg_ctl stop -m {stop_mode}), {CLIENTS} clients, 2 workers:\n"
        + summary(
            requests_sent=len(load.outcomes),
            answered_by_status=load.statuses(),
            before_outage=dict_of(steady),
            during_outage=dict_of(outage),
            in_flight_at_stop=dict_of(in_flight),
            after_restart=dict_of(recovered),
            max_latency_during_outage_s=round(max_outage_latency, 3),
            health_ready_during_outage=f"{ready_down.status_code} in {ready_down_seconds:.3f} s",
            health_ready_after=ready_up.status_code,
            acknowledged_creates=len(acknowledged),
            acknowledged_creates_found_in_database=len(acknowledged & stored),
            rows_without_acknowledgement=len(stored - acknowledged),
        )
    )

    assert {o.status for o in load.outcomes} <= {200, 201, 503}, load.statuses()
    assert steady
    assert {o.status for o in steady} <= {200, 201}, dict_of(steady)

    assert len(outage) >= 10, "too few requests during the outage to mean anything"
    assert {o.status for o in outage} == {503}, dict_of(outage)
    for outcome in outage:
        assert outcome.detail in UNAVAILABLE_DETAILS, outcome
        assert outcome.retry_after is not None, outcome
        assert int(outcome.retry_after) > 0, outcome
    assert max_outage_latency <= POOL_TIMEOUT + MARGIN
    assert max(o.latency for o in load.outcomes if o.status == 503) <= POOL_TIMEOUT + MARGIN

    assert ready_down.status_code == 503
    assert ready_down.headers["retry-after"]
    assert ready_down.json() == {"status": "unavailable", "database": "unreachable"}
    assert not LEAKS.search(ready_down.text)
    assert ready_down_seconds <= POOL_TIMEOUT + MARGIN

    # The same API processes serve again, without a restart.
    assert len(recovered) >= 10
    assert {o.status for o in recovered} <= {200, 201}, dict_of(recovered)
    assert ready_up.status_code == 200, ready_up.text

    # Durability: every 201 is there; a row nobody was told about can only come from a
    # create that was in flight when the server went down.
    assert acknowledged <= stored, acknowledged - stored
    assert len(stored - acknowledged) <= len(unacknowledged_in_flight)


def dict_of(outcomes: list[Outcome]) -> dict[int, int]:
    """How many of these requests got each status."""
    return dict(sorted(Counter(o.status for o in outcomes).items()))


@pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
def test_outage_gives_quick_503s_and_service_resumes_without_restart(
    cluster: Cluster, tmp_path: Path, stop_mode: str
) -> None:
    args = ["--host", "127.0.0.1", "--workers", "2"]
    with running_server(args, cwd=tmp_path, env=server_env(cluster.url, tmp_path)) as server:
        asyncio.run(outage_under_load(cluster, server.base_url, stop_mode))
        exit_code = server.stop()
        stderr = server.stderr()
    assert exit_code == 0, stderr
    assert '"status": 500' not in stderr
    assert "Traceback" not in stderr


async def restart_between_requests(cluster: Cluster, base_url: str, stop_mode: str) -> None:
    users = [f"quiet-{n}" for n in range(CLIENTS * 3)]
    headers = {user: bearer(user) for user in users}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:

        async def burst() -> list[httpx.Response]:
            return await asyncio.gather(
                *(http.post("/api/tasks", json={"title": u}, headers=headers[u]) for u in users),
                *(http.get("/api/tasks", headers=headers[u]) for u in users),
            )

        # Several pooled connections in each worker, then a restart nobody sees happen.
        warm = await burst()
        await asyncio.to_thread(cluster.stop, stop_mode)
        await asyncio.to_thread(cluster.start)
        after = [*(await burst()), *(await burst())]
    print(
        f"\nPostgreSQL restarted (-m {stop_mode}) between requests: "
        f"before {dict(Counter(r.status_code for r in warm))}, "
        f"after {dict(Counter(r.status_code for r in after))}"
    )
    assert {r.status_code for r in warm} == {200, 201}
    # The pools dropped the connections the restart killed before handing them out.
    assert {r.status_code for r in after} == {200, 201}, [r.text for r in after]
    rows = await fetch(cluster.url, "SELECT count(*) AS n FROM tasks")
    assert rows == [{"n": 3 * len(users)}]


@pytest.mark.parametrize("stop_mode", ["fast", "immediate"])
def test_restart_between_requests_fails_no_request(
    cluster: Cluster, tmp_path: Path, stop_mode: str
) -> None:
    args = ["--host", "127.0.0.1", "--workers", "2"]
    with running_server(args, cwd=tmp_path, env=server_env(cluster.url, tmp_path)) as server:
        asyncio.run(restart_between_requests(cluster, server.base_url, stop_mode))
        assert server.stop() == 0
