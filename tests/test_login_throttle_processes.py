"""Two instances (two `todo-api serve` processes, separate ports) on one PostgreSQL behave as
one (SPEC §13): failed logins spread over both are throttled after the configured count in
total, and a stream ticket issued by one opens a stream on the other, once. Then the same with
`REDIS_URL` set, where the counts and the tickets live in Redis instead."""

import asyncio
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis

from tests.conftest import fetch, redis_test_url, throwaway_database
from tests.processes import Server, running_server, server_environment
from todo_api.shared_state.login_throttle import REDIS_PREFIX
from todo_api.sync.tickets import REDIS_TICKET_PREFIX, ticket_hash

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MAX_FAILURES = 4
PASSWORD = "correct horse battery"


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    """A database of the test's own, which the first server migrates at start-up."""
    with throwaway_database(postgres_admin_url, "todo_api_login_throttle") as url:
        yield url


def login(server: Server, email: str, password: str, client: str) -> httpx.Response:
    """A login from `client`: the servers trust `X-Forwarded-For` from 127.0.0.1 (uvicorn's
    `forwarded_allow_ips`), as from a proxy on the same host, so that is the address they
    count; the tests' own connections all come from 127.0.0.1."""
    return httpx.post(
        f"{server.base_url}/api/auth/login",
        json={"email": email, "password": password},
        headers={"X-Forwarded-For": client},
        timeout=10,
    )


def ready_event(server: Server, ticket: str) -> list[str]:
    """Open the stream with the ticket and read up to its `ready` event (then hang up)."""
    url = f"{server.base_url}/api/events"
    with httpx.stream("GET", url, params={"ticket": ticket}, timeout=10) as response:
        assert response.status_code == 200, response.read()
        lines: list[str] = []
        for line in response.iter_lines():
            lines.append(line)
            if line == "" and any(seen.startswith("event: ") for seen in lines):
                return lines
    pytest.fail(f"the stream ended before its first event: {lines}")


@pytest.mark.parametrize("store", ["postgresql", "redis"])
def test_two_instances_throttle_logins_in_total_and_share_tickets(
    store: str, database: str, tmp_path: Path
) -> None:
    settings = {"ACCOUNTS_ENABLED": "true", "LOGIN_MAX_FAILURES": str(MAX_FAILURES)}
    redis_url = redis_test_url() if store == "redis" else None
    if redis_url is not None:
        settings["REDIS_URL"] = redis_url
    env = server_environment(database, tmp_path / "state", **settings)
    # Addresses and an email of this run's own: Redis outlives the test.
    guesser = f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    owner = f"2001:db8:1::{secrets.token_hex(2)}:{secrets.token_hex(2)}"
    email = f"owner-{uuid.uuid4().hex[:12]}@example.com"
    args = ["--host", "127.0.0.1"]
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    redis = Redis.from_url(redis_url) if redis_url is not None else None
    user_id = None
    try:
        with (
            running_server(args, cwd=tmp_path / "first", env=env) as first,
            running_server(args, cwd=tmp_path / "second", env=env) as second,
        ):
            signup = httpx.post(
                f"{first.base_url}/api/auth/signup",
                json={"name": "Ann Lee", "email": email, "password": PASSWORD},
                timeout=10,
            )
            assert signup.status_code == 201, signup.text
            token = signup.json()["token"]
            user_id = signup.json()["user"]["id"]

            # Failures alternate between the instances; the limit holds for both together.
            seconds: list[float] = []
            for attempt in range(MAX_FAILURES):
                started = time.perf_counter()
                wrong = login((first, second)[attempt % 2], email, "wrong password", guesser)
                seconds.append(time.perf_counter() - started)
                assert wrong.status_code == 401, (attempt, wrong.text)
            for server in (first, second):  # whichever gets the next one
                blocked = login(server, email, PASSWORD, guesser)
                assert blocked.status_code == 429, blocked.text
                assert 0 < int(blocked.headers["retry-after"]) <= 900
            # The owner, from elsewhere, is not held.
            assert login(second, email, PASSWORD, owner).status_code == 200

            # A ticket from the first instance opens a stream on the second, once.
            tickets = httpx.post(
                f"{first.base_url}/api/events/tickets",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert tickets.status_code == 201, tickets.text
            ticket = tickets.json()["ticket"]
            lines = ready_event(second, ticket)
            assert "event: ready" in lines
            for server in (second, first):
                again = httpx.get(
                    f"{server.base_url}/api/events", params={"ticket": ticket}, timeout=10
                )
                assert again.status_code == 401, again.text

        print(
            f"\n{store}: a failed login took {statistics.median(seconds) * 1000:.0f} ms "
            f"(median of {len(seconds)}, Argon2 check included)"
        )
        held = failures_held(database, redis, email, guesser)
        assert held == {
            f"pair:{guesser}:{email}": MAX_FAILURES,
            f"client:{guesser}": MAX_FAILURES,
            f"email:{email}": MAX_FAILURES,
        }
        if redis is not None:
            assert redis.exists(REDIS_PREFIX + f"known:{owner}:{email}") == 1
            assert redis.exists(REDIS_TICKET_PREFIX + ticket_hash(ticket)) == 0
        else:
            known = asyncio.run(fetch(database, "SELECT email, client FROM login_known_clients"))
            assert known == [{"email": email, "client": owner}]
            assert asyncio.run(fetch(database, "SELECT * FROM stream_tickets")) == []
    finally:
        if redis is not None:
            forget_run(redis, email, guesser, owner, user_id)
            redis.close()


def failures_held(database: str, redis: Redis | None, email: str, client: str) -> dict[str, int]:
    """Failures per counter, as the store holds them."""
    if redis is None:
        rows = asyncio.run(
            fetch(database, "SELECT counter, count(*) AS n FROM login_failures GROUP BY counter")
        )
        return {row["counter"]: row["n"] for row in rows}
    counters = (f"pair:{client}:{email}", f"client:{client}", f"email:{email}")
    return {counter: redis.zcard(REDIS_PREFIX + counter) for counter in counters}


def forget_run(redis: Redis, *names: str | None) -> None:
    """Delete every key that names this run's email, addresses or user."""
    for name in names:
        if name:
            keys = list(redis.scan_iter(f"todo-api:*{name}*"))
            if keys:
                redis.delete(*keys)
