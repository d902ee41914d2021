"""Live events, in process: stream tickets (issued, stored hashed, spent once), every answer
that refuses a stream before it starts (401, 400, 410, 429), and which writes ring the event
hub. The streams themselves are tested over real servers (tests/test_events_processes.py):
httpx's ASGI transport buffers a whole response, and a stream never ends."""

import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio import Redis
from sqlalchemy import insert, update

from tests.conftest import (
    SECRET,
    DatabaseProbe,
    TaskFactory,
    auth,
    make_token,
    redis_test_url,
    running,
)
from todo_api.auth.repository import users_table
from todo_api.config import Settings
from todo_api.errors import CursorExpired, InvalidTicket, TooManyStreams
from todo_api.sync.models import event_streams_table, stream_tickets_table
from todo_api.sync.tickets import REDIS_TICKET_PREFIX, TICKET_TTL_SECONDS

TICKETS = "/api/events/tickets"
EVENTS = "/api/events"
LEEWAY_SECONDS = 30  # JWT_LEEWAY_SECONDS's default


def as_utc(value: Any) -> datetime:
    """A timestamp as read raw: text on SQLite, an aware datetime on PostgreSQL."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def sha(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def get_ticket(client: AsyncClient, user: str = "alice", **claims: Any) -> str:
    response = await client.post(TICKETS, headers=auth(user, **claims))
    assert response.status_code == 201, response.text
    ticket: str = response.json()["ticket"]
    return ticket


async def test_a_ticket_is_random_and_stored_only_as_its_hash(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    token = make_token("alice", ttl=600)
    before = datetime.now(UTC)
    response = await client.post(TICKETS, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"ticket", "expires_in"}
    assert body["expires_in"] == TICKET_TTL_SECONDS == 60
    ticket = body["ticket"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", ticket)  # 32 random bytes

    (row,) = await db.rows("SELECT * FROM stream_tickets")
    assert row["ticket_hash"] == sha(ticket)
    assert ticket not in repr(row)
    assert row["user_id"] == "alice"
    expires_at = as_utc(row["expires_at"])
    assert before + timedelta(seconds=59) <= expires_at <= datetime.now(UTC) + timedelta(seconds=61)
    # The stream it opens ends when the token stops being accepted: `exp` plus the leeway.
    exp = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    assert as_utc(row["token_expires_at"]).timestamp() == exp + LEEWAY_SECONDS

    # The same token again: verified from the verifier's cache, which keeps the expiry too.
    again = await client.post(TICKETS, headers={"Authorization": f"Bearer {token}"})
    second = again.json()["ticket"]
    assert second != ticket
    rows = await db.rows("SELECT * FROM stream_tickets WHERE ticket_hash = :h", h=sha(second))
    assert as_utc(rows[0]["token_expires_at"]).timestamp() == exp + LEEWAY_SECONDS
    assert len(await db.rows("SELECT ticket_hash FROM stream_tickets")) == 2


async def test_tickets_need_a_valid_bearer_token(client: AsyncClient, db: DatabaseProbe) -> None:
    missing = await client.post(TICKETS)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Missing bearer token."}
    assert missing.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    forged = await client.post(TICKETS, headers=auth(secret="another-secret-" + "x" * 40))
    assert forged.status_code == 401
    expired = await client.post(TICKETS, headers=auth(exp=int(time.time()) - 3600))
    assert expired.status_code == 401
    assert await db.rows("SELECT * FROM stream_tickets") == []


async def test_expired_tickets_are_purged_when_a_ticket_is_issued(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    await get_ticket(client, "alice")
    async with db.engine.begin() as connection:
        await connection.execute(
            update(stream_tickets_table).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    await get_ticket(client, "bob")
    rows = await db.rows("SELECT user_id FROM stream_tickets")
    assert rows == [{"user_id": "bob"}]


@pytest.mark.parametrize(
    ("query", "headers", "detail"),
    [
        ({}, {}, "Missing bearer token."),
        ({"ticket": "not-a-ticket"}, {}, InvalidTicket.detail),
        ({"ticket": "A" * 43}, {}, InvalidTicket.detail),  # well-formed, never issued
        ({"ticket": "A" * 4000}, {}, InvalidTicket.detail),
        (
            {},
            {"Authorization": "Bearer nonsense"},
            "Token is malformed or its signature is invalid.",
        ),
    ],
)
async def test_a_stream_without_valid_credentials_is_401(
    client: AsyncClient, query: dict[str, str], headers: dict[str, str], detail: str
) -> None:
    response = await client.get(EVENTS, params=query, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": detail}
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["content-type"] == "application/json"


async def test_a_ticket_is_spent_by_its_first_use(client: AsyncClient, db: DatabaseProbe) -> None:
    ticket = await get_ticket(client)
    # The first use is refused for its cursor (400, before any stream), but spends the ticket.
    first = await client.get(EVENTS, params={"ticket": ticket, "since": "nonsense"})
    assert first.status_code == 400
    assert await db.rows("SELECT * FROM stream_tickets") == []
    again = await client.get(EVENTS, params={"ticket": ticket})
    assert again.status_code == 401
    assert again.json() == {"detail": InvalidTicket.detail}


async def test_an_expired_ticket_is_401_and_gone(client: AsyncClient, db: DatabaseProbe) -> None:
    ticket = await get_ticket(client)
    async with db.engine.begin() as connection:
        await connection.execute(
            update(stream_tickets_table).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = await client.get(EVENTS, params={"ticket": ticket})
    assert response.status_code == 401
    assert response.json() == {"detail": InvalidTicket.detail}
    assert await db.rows("SELECT * FROM stream_tickets") == []


async def test_a_ticket_whose_token_has_expired_is_401(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    ticket = await get_ticket(client)
    async with db.engine.begin() as connection:
        await connection.execute(
            update(stream_tickets_table).values(
                token_expires_at=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
    response = await client.get(EVENTS, params={"ticket": ticket})
    assert response.status_code == 401


async def test_a_bearer_token_wins_over_a_ticket(client: AsyncClient, db: DatabaseProbe) -> None:
    # A valid ticket beside a bad token: the token is what counts (401), the ticket stays.
    ticket = await get_ticket(client)
    response = await client.get(
        EVENTS, params={"ticket": ticket}, headers={"Authorization": "Bearer nonsense"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Token is malformed or its signature is invalid."
    assert len(await db.rows("SELECT * FROM stream_tickets")) == 1


@pytest.mark.parametrize(
    ("query", "headers", "field"),
    [
        ({"since": "abc"}, {}, "since"),
        ({"since": "-1"}, {}, "since"),
        ({"since": "5.3"}, {}, "since"),  # `known` before `seen`: never handed out
        ({}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        ({"since": "1"}, {"Last-Event-ID": "x" * 300}, "Last-Event-ID"),  # the header wins
    ],
)
async def test_a_malformed_cursor_is_400_before_the_stream(
    client: AsyncClient,
    db: DatabaseProbe,
    query: dict[str, str],
    headers: dict[str, str],
    field: str,
) -> None:
    response = await client.get(EVENTS, params=query, headers={**auth(), **headers})
    assert response.status_code == 400
    body = response.json()
    assert body["errors"] == [
        {"field": field, "message": "must be a cursor returned by the change feed"}
    ]
    assert await db.rows("SELECT * FROM event_streams") == []


async def test_a_cursor_older_than_the_kept_changes_is_410(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    for _ in range(3):
        await create_task("alice")
    async with db.engine.begin() as connection:
        # As if the tombstones up to change 2 had been purged.
        await connection.execute(
            update(users_table).where(users_table.c.id == "alice").values(changes_purged_through=2)
        )
    response = await client.get(EVENTS, params={"since": "1"}, headers=auth())
    assert response.status_code == 410
    assert response.json() == {"detail": CursorExpired.detail}
    with_header = await client.get(EVENTS, headers={**auth(), "Last-Event-ID": "1"})
    assert with_header.status_code == 410
    assert await db.rows("SELECT * FROM event_streams") == []


async def test_the_eleventh_stream_of_a_user_is_429(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    await create_task("alice")
    await create_task("bob")
    now = datetime.now(UTC)
    async with db.engine.begin() as connection:
        # Ten streams of alice, open in some process (fresh heartbeats), one of bob.
        await connection.execute(
            insert(event_streams_table),
            [{"id": uuid.uuid4(), "user_id": "alice", "seen_at": now} for _ in range(10)]
            + [{"id": uuid.uuid4(), "user_id": "bob", "seen_at": now}],
        )
    response = await client.get(EVENTS, headers=auth("alice"))
    assert response.status_code == 429
    assert response.json() == {"detail": TooManyStreams.detail}
    assert response.headers["retry-after"] == "15"  # one heartbeat (EVENTS_HEARTBEAT_SECONDS)
    ticket = await get_ticket(client, "alice")
    assert (await client.get(EVENTS, params={"ticket": ticket})).status_code == 429
    rows = await db.rows("SELECT user_id FROM event_streams")
    assert sorted(row["user_id"] for row in rows) == ["alice"] * 10 + ["bob"]


async def test_only_committed_writes_ring_the_event_hub(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory
) -> None:
    """Every write route announces its change once it succeeded, and nothing else does."""
    task = await create_task("alice", tags=["Work"])
    other = await create_task("bob")
    path = f"/api/tasks/{task['id']}"
    hub = app.state.runtime.events
    requests: list[tuple[str, str, dict[str, Any], bool]] = [
        ("POST", "/api/tasks", {"json": {"title": "new"}}, True),
        ("POST", "/api/tasks", {"json": {"title": ""}}, False),  # 400
        ("GET", "/api/tasks", {}, False),
        ("GET", path, {}, False),
        ("PUT", path, {"json": {"title": "put"}}, True),
        ("PATCH", path, {"json": {"title": "patched"}}, True),
        ("PATCH", path, {"json": {"title": "late"}, "headers": {"If-Match": '"1"'}}, False),
        ("PATCH", f"{path}/complete", {}, True),
        ("PATCH", "/api/tags/work", {"json": {"name": "Office"}}, True),
        ("PATCH", "/api/tags/nope", {"json": {"name": "x"}}, False),  # 404
        ("DELETE", "/api/tags/office", {}, True),
        ("PATCH", f"/api/tasks/{other['id']}", {"json": {"title": "not mine"}}, False),  # 403
        ("POST", "/api/alice/tasks", {"json": {"title": "compatible path"}}, True),
        ("PATCH", f"/api/alice/tasks/{task['id']}/complete", {}, True),
        ("POST", "/api/bob/tasks", {"json": {"title": "someone else's path"}}, False),  # 403
        ("DELETE", path, {}, True),
        ("DELETE", path, {}, False),  # 404
        ("POST", "/api/events/tickets", {}, False),
    ]
    with hub.subscribe("alice") as alice, hub.subscribe("bob") as bob:
        for method, url, options, announces in requests:
            alice.feed_changed = bob.feed_changed = False
            headers = {**auth("alice"), **options.pop("headers", {})}
            response = await client.request(method, url, headers=headers, **options)
            assert response.status_code < 500, response.text
            assert alice.feed_changed is announces, (method, url, response.status_code)
            assert bob.feed_changed is False, (method, url)
        alice.feed_changed = bob.feed_changed = False
        await create_task("bob")
        assert (alice.feed_changed, bob.feed_changed) == (False, True)


# Tickets in Redis (`REDIS_URL` set): the same rules, kept in a key that expires after 60 s
# and is spent by GETDEL. Across real servers: tests/test_login_throttle_processes.py.


@dataclass
class WithRedis:
    client: AsyncClient
    redis: Redis
    app: FastAPI
    # A user of the test's own: Redis outlives the test (their rate-limit budget is there too).
    user: str


@asynccontextmanager
async def with_redis(settings: Settings) -> AsyncIterator[WithRedis]:
    """An app whose tickets live in Redis, its client, and a Redis client of the test's own;
    the keys naming the test's user are deleted afterwards."""
    url = redis_test_url()
    redis = Redis.from_url(url)
    user = f"ticket-user-{uuid.uuid4().hex[:8]}"
    try:
        async with running(settings.model_copy(update={"redis_url": url})) as (app, client):
            yield WithRedis(client, redis, app, user)
    finally:
        keys = [key async for key in redis.scan_iter(f"todo-api:*{user}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def redis_key(ticket: str) -> str:
    return REDIS_TICKET_PREFIX + sha(ticket)


async def test_with_redis_a_ticket_is_a_key_of_its_hash_for_60_seconds(settings: Settings) -> None:
    async with with_redis(settings) as setup:
        client, redis = setup.client, setup.redis
        token = make_token(setup.user, ttl=600)
        response = await client.post(TICKETS, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 201
        assert response.json()["expires_in"] == TICKET_TTL_SECONDS
        ticket = response.json()["ticket"]
        try:
            value = await redis.get(redis_key(ticket))
            assert value is not None
            assert TICKET_TTL_SECONDS - 5 < await redis.ttl(redis_key(ticket)) <= 60
            exp = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
            assert json.loads(value) == {
                "user_id": setup.user,
                "token_expires_at": exp + LEEWAY_SECONDS,
            }
            assert ticket.encode() not in value
            db = DatabaseProbe(setup.app.state.runtime.engine)
            stored = "SELECT * FROM stream_tickets WHERE ticket_hash = :h"
            assert await db.rows(stored, h=sha(ticket)) == []
        finally:
            await redis.delete(redis_key(ticket))


async def test_with_redis_a_ticket_is_spent_by_its_first_use(settings: Settings) -> None:
    async with with_redis(settings) as setup:
        client, redis = setup.client, setup.redis
        ticket = await get_ticket(client, setup.user)
        first = await client.get(EVENTS, params={"ticket": ticket, "since": "nonsense"})
        assert first.status_code == 400  # refused for its cursor, but the ticket is spent
        assert await redis.exists(redis_key(ticket)) == 0
        again = await client.get(EVENTS, params={"ticket": ticket})
        assert again.status_code == 401
        assert again.json() == {"detail": InvalidTicket.detail}


async def test_with_redis_an_expired_ticket_or_token_is_401(settings: Settings) -> None:
    async with with_redis(settings) as setup:
        client, redis = setup.client, setup.redis
        expired = await get_ticket(client, setup.user)
        await redis.pexpire(redis_key(expired), 1)  # as Redis does when the 60 s are over
        token_gone = await get_ticket(client, setup.user)
        stored = await redis.get(redis_key(token_gone))
        assert stored is not None
        value = json.loads(stored)
        value["token_expires_at"] = time.time() - 1
        await redis.set(redis_key(token_gone), json.dumps(value), ex=60)
        well_formed_unknown = "A" * 43
        for ticket in (expired, token_gone, well_formed_unknown):
            response = await client.get(EVENTS, params={"ticket": ticket})
            assert response.status_code == 401, ticket
            assert response.json() == {"detail": InvalidTicket.detail}
        assert await redis.exists(redis_key(expired), redis_key(token_gone)) == 0


async def test_with_redis_unreachable_tickets_are_503(settings: Settings) -> None:
    unreachable = {"redis_url": "redis://127.0.0.1:1/0", "rate_limit_per_minute": 0}
    async with running(settings.model_copy(update=unreachable)) as (_, client):
        issued = await client.post(TICKETS, headers=auth())
        spent = await client.get(EVENTS, params={"ticket": "A" * 43})
    for response in (issued, spent):
        assert response.status_code == 503, response.text
        assert response.json() == {"detail": "The ticket store is unavailable; try again shortly."}
        assert int(response.headers["retry-after"]) > 0
