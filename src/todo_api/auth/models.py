"""The `users` table: one row per person who has ever presented a valid token."""

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column

from todo_api.db import Base, UTCDateTime, utcnow

# One account per email, whatever its case; its name is how a duplicate is recognised.
EMAIL_INDEX = "uq_users_email_lower"


class User(Base):
    """A person; `id` is the token's `sub` (Better Auth ids are 32-character random strings)."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # The number of this user's last change to a task (§11's feed), kept by the triggers of
    # migration 0003; and the newest change number whose tombstone has been purged since.
    change_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    changes_purged_through: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))

    __table_args__ = (Index(EMAIL_INDEX, func.lower(email), unique=True),)
