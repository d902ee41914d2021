"""Who opens an event stream: the bearer token, or a single-use ticket for the browser's
`EventSource`, which cannot send an `Authorization` header (SPEC §11).

A ticket is 32 random bytes (`secrets.token_urlsafe`), stored only as its SHA-256, valid for
60 s, bound to the user whose token asked for it, and spent by the one statement that removes
it (`DELETE … RETURNING`), so two requests can never both use it. It remembers when that token
expires: the stream it opens ends then, as a stream opened with the token itself would.

With `REDIS_URL` set, tickets live in Redis instead (`Runtime.redis`): a key per ticket hash,
set with an expiry of 60 s (`SET … EX`), its value the user id and the token's expiry, and spent
by `GETDEL`, which likewise hands it to one request only. Either way every instance sees every
ticket: one instance issues it, another opens the stream. A Redis that does not answer within
5 s makes the request a 503.
"""

import hashlib
import json
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api import metrics
from todo_api.auth.dependencies import bearer_authentication
from todo_api.auth.tokens import Identity
from todo_api.db import utcnow
from todo_api.errors import InvalidTicket
from todo_api.runtime import runtime_of
from todo_api.shared_state.redis import answering
from todo_api.sync import streams_repository

TICKET_TTL_SECONDS = 60
# A ticket in Redis is this followed by its hash.
REDIS_TICKET_PREFIX = "todo-api:stream-ticket:"
STORE_UNAVAILABLE = "The ticket store is unavailable; try again shortly."
# `secrets.token_urlsafe(32)`: anything else is no ticket of ours, refused without a query.
_TICKET = re.compile(r"[A-Za-z0-9_-]{43}")


class StreamTicket(BaseModel):
    """A ticket for `GET /api/events?ticket=…`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"ticket": "Jx3qk1vK2mB9YtQ0cR7wZ5eL8nH4sA6dF1gU0pXoTiE", "expires_in": 60}
            ]
        }
    )

    ticket: str = Field(description="Single use; bound to you; opens one stream.")
    expires_in: int = Field(description="Seconds left to use it.")


def ticket_hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue_ticket(
    connection: AsyncConnection, caller: Identity, redis: Redis | None
) -> StreamTicket:
    """A new ticket for `caller`, stored only as its hash: in Redis when there is one
    (`Runtime.redis`), else in the database."""
    ticket = secrets.token_urlsafe(32)
    if redis is not None:
        value = json.dumps({"user_id": caller.id, "token_expires_at": caller.expires_at})
        async with answering(STORE_UNAVAILABLE):
            await redis.set(REDIS_TICKET_PREFIX + ticket_hash(ticket), value, ex=TICKET_TTL_SECONDS)
        return StreamTicket(ticket=ticket, expires_in=TICKET_TTL_SECONDS)
    now = utcnow()
    token_expires_at = (
        None if caller.expires_at is None else datetime.fromtimestamp(caller.expires_at, UTC)
    )
    await streams_repository.create_ticket(
        connection,
        caller.id,
        ticket_hash(ticket),
        now,
        now + timedelta(seconds=TICKET_TTL_SECONDS),
        token_expires_at,
    )
    return StreamTicket(ticket=ticket, expires_in=TICKET_TTL_SECONDS)


async def caller_of_ticket(connection: AsyncConnection, ticket: str) -> Identity:
    """Spend the ticket and return whom it was issued to. Unknown, used, expired, malformed, or
    issued by a token that has expired since: `InvalidTicket` (401)."""
    if not _TICKET.fullmatch(ticket):
        raise InvalidTicket()
    row = await streams_repository.take_ticket(connection, ticket_hash(ticket))
    now = utcnow()
    if row is None or row.expires_at <= now:
        raise InvalidTicket()
    token_expires_at: datetime | None = row.token_expires_at
    if token_expires_at is not None and token_expires_at <= now:
        raise InvalidTicket()
    expires_at = None if token_expires_at is None else token_expires_at.timestamp()
    return Identity(id=row.user_id, expires_at=expires_at)


async def caller_of_redis_ticket(redis: Redis, ticket: str) -> Identity:
    """`caller_of_ticket` for a ticket in Redis: spent by `GETDEL`; Redis removes it once its
    60 s are over."""
    if not _TICKET.fullmatch(ticket):
        raise InvalidTicket()
    async with answering(STORE_UNAVAILABLE):
        value = await redis.getdel(REDIS_TICKET_PREFIX + ticket_hash(ticket))
    if value is None:
        raise InvalidTicket()
    stored = json.loads(value)
    token_expires_at: float | None = stored["token_expires_at"]
    if token_expires_at is not None and token_expires_at <= utcnow().timestamp():
        raise InvalidTicket()
    return Identity(id=stored["user_id"], expires_at=token_expires_at)


# Both ways in, as the OpenAPI document shows them (either one will do). They only read the
# request; `stream_caller` does the checking.
_bearer = HTTPBearer(
    bearerFormat="JWT",
    scheme_name=bearer_authentication.scheme_name,
    description=bearer_authentication.model.description,
    auto_error=False,
)
_ticket = APIKeyQuery(
    name="ticket",
    scheme_name="StreamTicket",
    description="A ticket from `POST /api/events/tickets`, for a browser's `EventSource`, which "
    "cannot send headers: single use, valid 60 s, bound to whoever asked for it.",
    auto_error=False,
)


async def stream_caller(
    request: Request,
    _bearer_header: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    ticket: Annotated[str | None, Security(_ticket)],
) -> Identity:
    """The bearer token's caller when a token is sent (also beside a ticket), else the
    ticket's; with neither, the bearer check's 401. The ticket is spent in its own statement,
    whatever the request does next."""
    if ticket is None or "authorization" in request.headers:
        return await bearer_authentication(request)
    runtime = runtime_of(request)
    try:
        if runtime.redis is not None:
            caller = await caller_of_redis_ticket(runtime.redis, ticket)
        else:
            async with runtime.connection() as connection:
                caller = await caller_of_ticket(connection, ticket)
    except InvalidTicket as refused:
        metrics.AUTH_FAILURES.labels(refused.reason).inc()
        raise
    request.state.user_id = caller.id
    return caller


StreamCaller = Annotated[Identity, Depends(stream_caller)]
