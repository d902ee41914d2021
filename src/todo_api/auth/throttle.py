"""Failed-login throttling that a stranger cannot turn against an account's owner.

Failures are counted over a sliding window in three ways, and a login is refused (429) while
any of its counters is full:
- per email and client address: one client guessing one account's password (low limit);
- per client address: one client trying many accounts (password spraying);
- per email, from every client together: a distributed guess at one account. Its limit is
  much higher, so reaching it takes many addresses; and a client that has logged in to that
  account before is not held by it, so the owner's usual devices keep working even then.

A stranger who types the owner's email wrongly from their own address fills only their own
counters: the owner, elsewhere, is not locked out.

The counts live in a store every instance shares (`shared_state/login_throttle.py`: the
database, or Redis when `REDIS_URL` is set), so several instances allow the limits in total,
not each; a restart forgets nothing. Two attempts checked at the same moment may both pass
before either is recorded, so a counter can overshoot its limit by the attempts in flight.
"""

import hashlib
import math
import time
from collections.abc import Callable

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.config import Settings
from todo_api.shared_state.login_throttle import (
    DatabaseLoginStore,
    LoginFailureStore,
    RedisLoginStore,
)

# How long a client that logged in to an account stays exempt from that account's ceiling.
KNOWN_CLIENT_SECONDS = 30 * 24 * 3600
# A client address longer than this (only a proxy's odd `X-Forwarded-For` makes one) is
# counted by its hash, so that every key fits its column.
MAX_CLIENT_LENGTH = 64


class LoginThrottle:
    """The three limits of the module docstring, over a shared store. `connection` is the
    request's, for the database store; `clock` is the wall clock, which instances agree on."""

    def __init__(
        self,
        store: LoginFailureStore,
        per_email_and_client: int,
        per_client: int,
        per_email: int,
        window_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._per_email_and_client = per_email_and_client
        self._per_client = per_client
        self._per_email = per_email
        self._window = window_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None) -> "LoginThrottle":
        """In Redis when there is one (`REDIS_URL`), else in the database."""
        store: LoginFailureStore = DatabaseLoginStore() if redis is None else RedisLoginStore(redis)
        return cls(
            store,
            per_email_and_client=settings.login_max_failures,
            per_client=settings.login_max_failures_per_client,
            per_email=settings.login_max_failures_per_email,
            window_seconds=settings.login_failure_window_seconds,
        )

    async def retry_after(self, connection: AsyncConnection, email: str, client: str) -> int | None:
        """Seconds until a login for this email from this client may be tried; None if now.
        One round trip to the store."""
        client = _client_key(client)
        pair, from_client, for_email = _keys(email, client)
        now = self._clock()
        horizon = now - self._window
        limits = {
            pair: self._per_email_and_client,
            from_client: self._per_client,
            for_email: self._per_email,
        }
        tally = await self.store.tally(connection, limits, email, client, horizon)
        known = tally.known_since is not None and now - tally.known_since < KNOWN_CLIENT_SECONDS
        # A full counter frees up when the oldest failure that keeps it full leaves the window.
        waits = [
            full_since - horizon
            for counter, full_since in tally.full_since.items()
            if full_since is not None and not (known and counter == for_email)
        ]
        longest = max(waits, default=0.0)
        return math.ceil(longest) if longest > 0 else None

    async def record_failure(self, connection: AsyncConnection, email: str, client: str) -> None:
        counters = _keys(email, _client_key(client))
        await self.store.add_failure(connection, counters, self._clock(), self._window)

    async def record_success(self, connection: AsyncConnection, email: str, client: str) -> None:
        """Clears this client's failures for the account and remembers it as the owner's."""
        client = _client_key(client)
        pair, _, _ = _keys(email, client)
        await self.store.remember_client(
            connection, pair, email, client, self._clock(), KNOWN_CLIENT_SECONDS
        )


def _client_key(client: str) -> str:
    if len(client) <= MAX_CLIENT_LENGTH:
        return client
    return "sha256:" + hashlib.sha256(client.encode(errors="surrogatepass")).hexdigest()


def _keys(email: str, client: str) -> tuple[str, str, str]:
    """The counters a login attempt touches: this email from this client, this client, this
    email from anywhere."""
    return f"pair:{client}:{email}", f"client:{client}", f"email:{email}"
