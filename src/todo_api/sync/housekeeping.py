"""Housekeeping: each worker deletes, now and then, the tombstones older than
`SYNC_RETENTION_DAYS` (cursors from before them then answer 410).

Every worker of every instance runs it; the delete is idempotent, so running twice at once
costs a little and changes nothing. Expired idempotency keys and stream tickets are deleted by
the code that writes them (sync/idempotency.py, sync/streams_repository.py).
"""

import asyncio
import logging
from contextlib import suppress

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.db import utcnow
from todo_api.errors import ServiceUnavailable
from todo_api.sync.feed import purge_tombstones

logger = logging.getLogger(__name__)

# The first round a minute after start-up (not during it), then hourly.
FIRST_ROUND_SECONDS = 60.0
INTERVAL_SECONDS = 3600.0


class Housekeeping:
    """The periodic purge, as one background task per worker."""

    def __init__(self, engine: AsyncEngine, *, retention_days: float) -> None:
        self._engine = engine
        self._retention_days = retention_days
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="todo-api housekeeping")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run_once(self) -> int:
        """One round; how many tombstones went."""
        async with self._engine.begin() as connection:
            return await purge_tombstones(connection, utcnow(), self._retention_days)

    async def _loop(self) -> None:
        await asyncio.sleep(FIRST_ROUND_SECONDS)
        while True:
            try:
                purged = await self.run_once()
            except (DBAPIError, OperationalError, ServiceUnavailable) as exc:
                # The database is away: the next round tries again; requests report the outage.
                logger.warning("housekeeping skipped a round (%s)", type(exc).__name__)
            else:
                if purged:
                    logger.info("purged %d tombstones past SYNC_RETENTION_DAYS", purged)
            await asyncio.sleep(INTERVAL_SECONDS)
