"""SQL for the `users` table."""

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from todo_api.auth.models import User
from todo_api.auth.tokens import Identity
from todo_api.db import utcnow
from todo_api.errors import EmailTaken


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


async def get_user(session: AsyncSession, user_id: str) -> User | None:
    return await session.get(User, user_id)


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """`email` must already be normalised (lower case); the unique index is on lower(email)."""
    return await session.scalar(select(User).where(func.lower(User.email) == email))


async def create_account(
    session: AsyncSession, *, user_id: str, email: str, name: str, password_hash: str
) -> User:
    """A built-in account; `EmailTaken` if any user row already has this email."""
    now = utcnow()
    user = User(
        id=user_id,
        email=email,
        name=name,
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError:
        raise EmailTaken() from None
    return user
