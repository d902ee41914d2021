"""SQL for the `users` table."""

from typing import Any, cast

from sqlalchemy import Row, Table, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.auth.models import EMAIL_INDEX, User
from todo_api.auth.tokens import Identity
from todo_api.db import utcnow
from todo_api.errors import EmailTaken

users_table = cast(Table, User.__table__)
columns = users_table.c

# A user as read from the database: attribute access by column name (`row.email`).
UserRow = Row[Any]


async def create_user_if_missing(connection: AsyncConnection, identity: Identity) -> None:
    """Insert the caller's row on first use; an existing row (or a concurrent insert) is fine.

    If the token's email already belongs to another row, the row is created without it: the
    id is what tasks hang on, the email is only informative.
    """
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    now = utcnow()
    values = {
        "id": identity.id,
        "email": identity.email,
        "name": identity.name,
        "created_at": now,
        "updated_at": now,
    }
    created = await connection.scalar(
        dialect.insert(users_table).values(values).on_conflict_do_nothing().returning(columns.id)
    )
    if created is None and identity.email is not None:
        await connection.execute(
            dialect.insert(users_table).values({**values, "email": None}).on_conflict_do_nothing()
        )


async def get_user(connection: AsyncConnection, user_id: str) -> UserRow | None:
    return (await connection.execute(select(users_table).where(columns.id == user_id))).first()


async def find_user_by_email(connection: AsyncConnection, email: str) -> UserRow | None:
    """`email` must already be normalised (lower case); the unique index is on lower(email)."""
    stmt = select(users_table).where(func.lower(columns.email) == email)
    return (await connection.execute(stmt)).first()


async def create_account(
    connection: AsyncConnection, *, user_id: str, email: str, name: str, password_hash: str
) -> UserRow:
    """A built-in account; `EmailTaken` if any user row already has this email."""
    now = utcnow()
    stmt = (
        insert(users_table)
        .values(
            id=user_id,
            email=email,
            name=name,
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        .returning(*users_table.c)
    )
    try:
        return (await connection.execute(stmt)).one()
    except IntegrityError as exc:
        # Only the email's unique index (named in the driver's message on both databases)
        # means "taken"; any other violation is a fault, answered 500.
        if EMAIL_INDEX not in str(exc.orig):
            raise
        raise EmailTaken() from None
