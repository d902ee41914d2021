"""Alembic migrations shipped inside the package, and the call that applies them."""

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

# Any constant: every process that migrates takes the same PostgreSQL advisory lock, so
# several workers or instances starting together apply each migration exactly once.
_MIGRATION_LOCK_ID = 7_402_113


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "todo_api:migrations")
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already)."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # DB_STATEMENT_TIMEOUT is for requests: a migration, or waiting here while another
            # instance migrates, may take longer. LOCAL: it ends with this transaction.
            await connection.execute(text("SET LOCAL statement_timeout = 0"))
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID}
            )
        await connection.run_sync(_upgrade)
