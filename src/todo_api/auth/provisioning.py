"""First-use creation of `users` rows (SPEC §4: tasks never reference a missing user)."""

from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncEngine

from todo_api.auth.repository import create_user_if_missing
from todo_api.auth.tokens import Identity


class UserProvisioner:
    """Creates a caller's `users` row on first use, remembering per process who exists.

    Each row is created in its own committed transaction, so the memory never gets ahead of
    the database even when the request that triggered it later fails.
    """

    def __init__(self, engine: AsyncEngine, capacity: int = 50_000):
        self._engine = engine
        self._capacity = capacity
        self._known: OrderedDict[str, None] = OrderedDict()

    async def ensure(self, identity: Identity) -> None:
        if identity.id in self._known:
            self._known.move_to_end(identity.id)
            return
        async with self._engine.begin() as connection:
            await create_user_if_missing(connection, identity)
        self._known[identity.id] = None
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)
