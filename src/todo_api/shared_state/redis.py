"""Redis, where the instances' shared state lives when `REDIS_URL` is set: the client, and
the one rule every call to it follows."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from todo_api.errors import ServiceUnavailable

# A Redis that does not answer within this makes the request that needed it a 503.
REDIS_TIMEOUT_SECONDS = 5.0


def connect(url: str) -> Redis:
    """A client for `url`; it connects on first use."""
    return Redis.from_url(
        url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )


@asynccontextmanager
async def answering(unavailable: str) -> AsyncIterator[None]:
    """Redis within `REDIS_TIMEOUT_SECONDS`, or a 503 saying `unavailable`: a request that
    needs the shared state is refused, never let through uncounted."""
    try:
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            yield
    except (RedisError, OSError, TimeoutError) as error:
        raise ServiceUnavailable(unavailable) from error
