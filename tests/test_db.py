"""Database URL normalisation, and an engine built for PgBouncer / Neon's pooler."""

from pathlib import Path

import pytest
from sqlalchemy import text

from todo_api.config import Settings
from todo_api.db import create_engine, normalise_database_url

SECRET = "db-test-secret-that-is-long-enough-for-hs256-0123456789"
PREPARED = "SELECT name, statement FROM pg_prepared_statements ORDER BY name"


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://u:p@db.example:5433/app",
        "postgresql://u:p@db.example:5433/app",
        "postgresql+asyncpg://u:p@db.example:5433/app",
    ],
)
def test_postgres_urls_use_asyncpg(raw: str) -> None:
    url = normalise_database_url(raw)
    assert url.drivername == "postgresql+asyncpg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "u",
        "p",
        "db.example",
        5433,
        "app",
    )
    assert dict(url.query) == {}


def test_neon_url_translates_libpq_ssl_options_for_asyncpg() -> None:
    url = normalise_database_url(
        "postgresql://u:p@ep-x.neon.tech/db?sslmode=require&channel_binding=require"
    )
    assert url.drivername == "postgresql+asyncpg"
    assert url.host == "ep-x.neon.tech"
    assert url.database == "db"
    assert dict(url.query) == {"ssl": "require"}
    rendered = url.render_as_string(hide_password=False)
    assert rendered == "postgresql+asyncpg://u:p@ep-x.neon.tech/db?ssl=require"
    assert "sslmode" not in rendered
    assert "channel_binding" not in rendered


def test_sslmode_disable_means_no_ssl_option() -> None:
    url = normalise_database_url("postgresql://u@localhost/db?sslmode=disable")
    assert dict(url.query) == {}


def test_other_query_options_are_kept() -> None:
    url = normalise_database_url("postgresql://u@localhost/db?sslmode=verify-full&timeout=10")
    assert dict(url.query) == {"ssl": "verify-full", "timeout": "10"}


def test_sqlite_url_uses_aiosqlite() -> None:
    url = normalise_database_url("sqlite:///./x.db")
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == "./x.db"


@pytest.mark.parametrize("raw", ["mysql://u@localhost/db", "oracle://u@localhost/db"])
def test_unsupported_scheme_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL scheme"):
        normalise_database_url(raw)


def _settings(url: str, data_dir: Path, *, statement_cache: bool) -> Settings:
    return Settings(
        database_url=url,
        better_auth_secret=SECRET,
        data_dir=data_dir,
        db_statement_cache=statement_cache,
        auto_migrate=False,
    )


@pytest.mark.postgres
async def test_engine_without_statement_cache_answers_repeated_queries(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    engine = create_engine(_settings(postgres_admin_url, tmp_path, statement_cache=False))
    try:
        assert engine.url.query["prepared_statement_cache_size"] == "0"
        async with engine.connect() as connection:
            # Twice on one connection: a named statement left behind would collide here
            # behind a transaction-mode pooler.
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
            for value in (7, 8):
                result = await connection.execute(text("SELECT CAST(:v AS int) + 1"), {"v": value})
                assert result.scalar_one() == value + 1
            # Nothing outlives its query: statements are unnamed, so none stays allocated on
            # a server connection that a pooler hands on to another client.
            prepared = (await connection.execute(text(PREPARED))).all()
            assert prepared == []
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_engine_with_statement_cache_keeps_the_default(
    postgres_admin_url: str, tmp_path: Path
) -> None:
    engine = create_engine(_settings(postgres_admin_url, tmp_path, statement_cache=True))
    try:
        assert "prepared_statement_cache_size" not in engine.url.query
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
            # The contrast with the test above: the cache keeps statements prepared.
            prepared = (await connection.execute(text(PREPARED))).all()
            assert "SELECT 1" in [statement for _, statement in prepared]
    finally:
        await engine.dispose()
