"""The tables of §13's shared state, for when it lives in PostgreSQL (the default; SQLite for
one process): per-user rate-limit windows and failed-login counters. With `REDIS_URL` set the
same state lives in Redis instead (each module says how), and these tables stay empty."""

from typing import cast

from sqlalchemy import BigInteger, Double, Index, Integer, String, Table
from sqlalchemy.orm import Mapped, mapped_column

from todo_api.db import Base


class RateLimitWindow(Base):
    """How much of a user's per-minute budget the current window has handed out (`used`), and
    what the last lease got (`last_grant`, returned by the same statement that takes it)."""

    __tablename__ = "rate_limit_windows"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Unix seconds at the start of the window (a multiple of its length).
    window_start: Mapped[int] = mapped_column(BigInteger)
    used: Mapped[int] = mapped_column(Integer)
    last_grant: Mapped[int] = mapped_column(Integer)


class LoginFailure(Base):
    """One failed login, under each counter it counts for (`auth/throttle.py`)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    counter: Mapped[str] = mapped_column(String(600))
    # Unix seconds (wall clock: every instance must agree on it).
    failed_at: Mapped[float] = mapped_column(Double)

    __table_args__ = (Index("ix_login_failures_counter_failed_at", "counter", "failed_at"),)


class LoginKnownClient(Base):
    """A client address that logged in to an account: exempt from that account's ceiling."""

    __tablename__ = "login_known_clients"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    client: Mapped[str] = mapped_column(String(255), primary_key=True)
    since: Mapped[float] = mapped_column(Double)


rate_limit_windows_table = cast(Table, RateLimitWindow.__table__)
login_failures_table = cast(Table, LoginFailure.__table__)
login_known_clients_table = cast(Table, LoginKnownClient.__table__)
