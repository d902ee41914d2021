"""kill -9 of the whole API (supervisor and workers) in the middle of a create load, then a
restart on the same database: every task whose create was answered 201 is there, through
the API and in PostgreSQL. An acknowledged write is a committed one."""

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET, environment_without_settings, fetch
from tests.processes import running_server
from tests.reliability.conftest import Load, bearer, summary

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 4
LOAD_SECONDS = 1.0


async def load_then_kill(base_url: str, pid: int) -> Load:
    load = Load(base_url, CLIENTS)
    async with load.running():
        await asyncio.sleep(LOAD_SECONDS)
        os.killpg(pid, signal.SIGKILL)
        await asyncio.sleep(0.2)
    return load


async def listed_ids(base_url: str, users: list[str]) -> set[str]:
    ids: set[str] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for user in users:
            response = await http.get("/api/tasks", params={"limit": 1000}, headers=bearer(user))
            assert response.status_code == 200, response.text
            ids |= {task["id"] for task in response.json()}
    return ids


def test_every_acknowledged_create_survives_a_kill_9(database: str, tmp_path: Path) -> None:
    env = {
        **environment_without_settings(),
        "DATABASE_URL": database,
        "BETTER_AUTH_SECRET": SECRET,
        "LOG_FORMAT": "json",
        "DATA_DIR": str(tmp_path / "state"),
    }
    args = ["--host", "127.0.0.1", "--workers", "2"]
    with running_server(args, cwd=tmp_path, env=env) as server:
        load = asyncio.run(load_then_kill(server.base_url, server.process.pid))
        assert server.process.wait(timeout=10) == -signal.SIGKILL

    with running_server(args, cwd=tmp_path, env=env) as restarted:
        through_api = asyncio.run(listed_ids(restarted.base_url, load.users))
        assert restarted.stop() == 0

    acknowledged = load.acknowledged_creates()
    rows = asyncio.run(
        fetch(
            database,
            "SELECT id::text AS id FROM tasks WHERE user_id = ANY($1::text[])",
            load.users,
        )
    )
    stored = {row["id"] for row in rows}
    creates = [o for o in load.outcomes if o.kind == "create"]
    print(
        f"\nkill -9 of the API under a create load ({CLIENTS} clients, 2 workers):\n"
        + summary(
            requests_sent=len(load.outcomes),
            answered_by_status=load.statuses(),
            creates_sent=len(creates),
            acknowledged_creates=len(acknowledged),
            found_after_restart_via_api=len(acknowledged & through_api),
            found_in_database=len(acknowledged & stored),
            rows_without_acknowledgement=len(stored - acknowledged),
        )
    )
    assert len(acknowledged) >= 20, "too few creates before the kill to mean anything"
    assert {o.status for o in load.outcomes} <= {0, 200, 201}, load.statuses()
    assert acknowledged <= stored, acknowledged - stored
    assert through_api == stored
    # Only a create cut off by the kill can have committed without its 201 reaching anyone.
    cut_off = [o for o in creates if o.status == 0]
    assert len(stored - acknowledged) <= len(cut_off)
