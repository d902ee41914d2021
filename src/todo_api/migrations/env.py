"""Alembic environment: runs on the connection `upgrade_to_head` hands it, or, for the
`alembic` command line (e.g. `alembic revision --autogenerate`), on the configured database."""

import asyncio

from alembic import context
from sqlalchemy import Connection

# Imported for their side effect: registering the tables on the metadata.
import todo_api.auth.models
import todo_api.shared_state.models
import todo_api.sync.models
import todo_api.tasks.models  # noqa: F401
from todo_api.config import Settings
from todo_api.db import Base, create_engine


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite can only ALTER by copying the table
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    engine = create_engine(Settings())
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (--sql) migrations are not supported; run `todo-api migrate`.")

shared_connection = context.config.attributes.get("connection")
if shared_connection is None:
    asyncio.run(_run_standalone())
else:
    _run(shared_connection)
