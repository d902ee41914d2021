"""SQL for the `users` table."""

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from todo_api.auth.models import User
from todo_api.auth.tokens import Identity
from todo_api.db import utcnow


async def create_user_if_missing(session: AsyncSession, identity: Identity) -> None:
    """Insert the caller's row on first use; an existing row (or a concurrent insert) is fine.

    If the token's email already belongs to another row, the row is created without it: the
    id is what tasks hang on, the email is only informative.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    now = utcnow()
    values = {
        "id": identity.id,
        "email": identity.email,
        "name": identity.name,
        "created_at": now,
        "updated_at": now,
    }
    created = await session.scalar(
        dialect.insert(User).values(values).on_conflict_do_nothing().returning(User.id)
    )
    if created is None and identity.email is not None:
        await session.execute(
            dialect.insert(User).values({**values, "email": None}).on_conflict_do_nothing()
        )
