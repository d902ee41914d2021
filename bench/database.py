"""The throwaway benchmark database: create, migrate with `todo-api migrate`, drop."""

import os
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def fresh_database_name() -> str:
    return "todo_bench_" + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")


def database_url(admin_url: str, name: str) -> str:
    """`admin_url` with its database replaced by `name`."""
    base, _, query = admin_url.partition("?")
    server = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{server}/{name}" + (f"?{query}" if query else "")


def _quoted(name: str) -> str:
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"unsafe database name {name!r}")
    return f'"{name}"'


async def create_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f"CREATE DATABASE {_quoted(name)}")
    finally:
        await connection.close()


async def drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        # FORCE ends any session still attached (PostgreSQL 13+).
        await connection.execute(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")
    finally:
        await connection.close()


def migrate(todo_api: Path, env: dict[str, str]) -> None:
    """Apply the schema the way an operator would: `todo-api migrate`."""
    result = subprocess.run(  # noqa: S603 (our own console script, fixed arguments)
        [str(todo_api), "migrate"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"todo-api migrate failed:\n{result.stdout}{result.stderr}")


async def server_version(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        version: str = await connection.fetchval("SHOW server_version")
        return version
    finally:
        await connection.close()
