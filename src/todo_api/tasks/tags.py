"""All SQL on tags: a user's tags and their one spelling (`tags`), which task carries which
(`task_tags`), and keeping each task's own list of names (`tasks.tags`) in step with both.

A tag is matched by its key (`tag_key`, case-folded); its name is the spelling first used,
which later uses in another case take, and a rename may change. Every statement is scoped by
the caller's user id.
"""

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.db import in_transaction, utcnow
from todo_api.errors import TagNotFound
from todo_api.tasks.models import tags_table, task_tags_table, tasks_table
from todo_api.tasks.schemas import tag_key

tags = tags_table.c
task_tags = task_tags_table.c


@dataclass(frozen=True, slots=True)
class TagCount:
    name: str
    count: int


def _upsert(
    connection: AsyncConnection, rows: list[dict[str, Any]], *, respell: str | None = None
) -> Insert:
    """Insert the user's tags that are new, in key order; the one keyed `respell` also takes
    the spelling given if it exists."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    rows = sorted(rows, key=lambda row: row["key"])
    statement = dialect.insert(tags_table).values(rows)
    spelling: Any = tags.name
    if respell is not None:
        spelling = case((tags.key == respell, statement.excluded.name), else_=tags.name)
    # A no-op update rather than DO NOTHING, so that RETURNING names every row, old or new.
    upsert: Insert = statement.on_conflict_do_update(
        index_elements=[tags.user_id, tags.key], set_={"name": spelling}
    ).returning(tags.key, tags.name)
    return upsert


async def spell(connection: AsyncConnection, user_id: str, names: list[str]) -> list[str]:
    """The user's spelling of each tag (creating the new ones as given), sorted by key.

    `names` are distinct by key. Rows are written in key order, so two requests adding the
    same tags lock them in the same order and cannot deadlock.
    """
    if not names:
        return []
    rows = [{"user_id": user_id, "key": tag_key(name), "name": name} for name in names]
    result = await connection.execute(_upsert(connection, rows))
    spelled: dict[str, str] = {row.key: row.name for row in result}
    return [spelled[key] for key in sorted(spelled)]


async def attach(
    connection: AsyncConnection,
    user_id: str,
    task_id: uuid.UUID,
    created_at: datetime,
    names: Iterable[str],
    *,
    replace: bool = False,
) -> None:
    """Record that the task carries these tags (`replace`: these and no others)."""
    if replace:
        await connection.execute(
            delete(task_tags_table).where(
                task_tags.task_id == task_id, task_tags.user_id == user_id
            )
        )
    rows = [
        {"task_id": task_id, "user_id": user_id, "key": tag_key(name), "created_at": created_at}
        for name in names
    ]
    if rows:
        await connection.execute(task_tags_table.insert(), rows)


_LIST = (
    select(tags.name, func.count())
    .select_from(
        task_tags_table.join(
            tags_table, (tags.user_id == task_tags.user_id) & (tags.key == task_tags.key)
        )
    )
    .where(task_tags.user_id == bindparam("owner"))
    .group_by(tags.key, tags.name)
    .order_by(tags.key)
)


async def list_tags(connection: AsyncConnection, user_id: str) -> list[TagCount]:
    """The caller's tags that some task carries, with how many, sorted by key."""
    rows = await connection.execute(_LIST, {"owner": user_id})
    return [TagCount(name, count) for name, count in rows]


async def rename_tag(
    connection: AsyncConnection, user_id: str, old_name: str, new_name: str
) -> TagCount:
    """Rename a tag on all the caller's tasks, merging it into `new_name` if that exists; the
    merged tag is spelled `new_name`. No task carries `old_name` → 404."""
    old, new = tag_key(old_name), tag_key(new_name)

    async def rename() -> TagCount:
        # Both tags' rows first (created if missing, a write: on SQLite the transaction begins
        # there), then the tasks, then their tag rows: the order every tag write takes.
        rows = [{"user_id": user_id, "key": old, "name": old_name}] if old != new else []
        rows.append({"user_id": user_id, "key": new, "name": new_name})
        await connection.execute(_upsert(connection, rows, respell=new))
        await _lock_tags(connection, user_id, {old, new})
        # The tasks that already carried the tag merged into take its new spelling too.
        carriers = await _lock_tasks(connection, user_id, {old, new})
        # Decided on the lists as held: a task may have dropped the tag meanwhile.
        if not any(tag_key(name) == old for _, names in carriers for name in names):
            raise TagNotFound()  # and the rows just made for it are rolled back
        if new != old:
            also_new = select(task_tags.task_id).where(
                task_tags.user_id == user_id, task_tags.key == new
            )
            await connection.execute(
                delete(task_tags_table).where(
                    task_tags.user_id == user_id,
                    task_tags.key == old,
                    task_tags.task_id.in_(also_new.scalar_subquery()),
                )
            )
            await connection.execute(
                update(task_tags_table)
                .where(task_tags.user_id == user_id, task_tags.key == old)
                .values(key=new)
            )
            await connection.execute(
                delete(tags_table).where(tags.user_id == user_id, tags.key == old)
            )
        await _respell_tasks(connection, user_id, carriers, drop={old, new}, add=new_name)
        count = await connection.scalar(
            select(func.count()).where(task_tags.user_id == user_id, task_tags.key == new)
        )
        return TagCount(new_name, int(count or 0))

    return await in_transaction(connection, rename)


async def delete_tag(connection: AsyncConnection, user_id: str, name: str) -> None:
    """Remove a tag from all the caller's tasks. No task carries it → 404."""
    key = tag_key(name)

    async def remove() -> None:
        touched = await connection.execute(  # a write first, as in `rename_tag`
            update(tags_table)
            .where(tags.user_id == user_id, tags.key == key)
            .values(name=tags.name)
            .returning(tags.key)
        )
        if touched.first() is None:
            raise TagNotFound()
        await _lock_tags(connection, user_id, {key})
        carriers = await _lock_tasks(connection, user_id, {key})
        if not carriers:
            raise TagNotFound()
        # Its task_tags rows go with it (ON DELETE CASCADE).
        await connection.execute(delete(tags_table).where(tags.user_id == user_id, tags.key == key))
        await _respell_tasks(connection, user_id, carriers, drop={key}, add=None)

    await in_transaction(connection, remove)


async def hold_tags_of(connection: AsyncConnection, user_id: str, task_id: uuid.UUID) -> None:
    """Take a share of the task's tags' rows (in key order) before its own row is locked: a
    write that copies the task's tags (completing a recurring task) then locks in the same
    order as a rename or delete of one of them, tags before tasks, and cannot deadlock with it."""
    await connection.execute(
        select(tags.key)
        .join(task_tags_table, (task_tags.user_id == tags.user_id) & (task_tags.key == tags.key))
        .where(task_tags.task_id == task_id, tags.user_id == user_id)
        .order_by(tags.key)
        .with_for_update(read=True, key_share=True, of=tags_table)
    )


async def _lock_tags(connection: AsyncConnection, user_id: str, keys: set[str]) -> None:
    """Hold these tags' rows until commit, strongly enough that no task can gain them
    meanwhile (adding a tag to a task checks its row): the list of their carriers stays
    true. A no-op on SQLite, where the first write already holds the whole database."""
    await connection.execute(
        select(tags.key)
        .where(tags.user_id == user_id, tags.key.in_(keys))
        .order_by(tags.key)
        .with_for_update()
    )


async def _lock_tasks(
    connection: AsyncConnection, user_id: str, keys: set[str]
) -> list[tuple[uuid.UUID, list[str]]]:
    """The caller's tasks carrying any of these tags, with their tag lists, held until commit
    (in id order) so that nothing changes their lists between this read and the rewrite."""
    carriers = select(task_tags.task_id).where(
        task_tags.user_id == user_id, task_tags.key.in_(keys)
    )
    result = await connection.execute(
        select(tasks_table.c.id, tasks_table.c.tags)
        .where(tasks_table.c.user_id == user_id, tasks_table.c.id.in_(carriers.scalar_subquery()))
        .order_by(tasks_table.c.id)
        .with_for_update()
    )
    return [(task_id, list(names)) for task_id, names in result]


_RESPELL = (
    update(tasks_table)
    .where(tasks_table.c.id == bindparam("task"), tasks_table.c.user_id == bindparam("owner"))
    .values(tags=bindparam("names"), updated_at=bindparam("now"))
)


async def _respell_tasks(
    connection: AsyncConnection,
    user_id: str,
    carriers: list[tuple[uuid.UUID, list[str]]],
    *,
    drop: set[str],
    add: str | None,
) -> None:
    """Rewrite the carriers' own tag lists: without the tags keyed in `drop`, and with `add`
    where they had one of those. Their JSON changed, so their version (`updated_at`, the
    ETag) moves too."""
    now = utcnow()
    changes = []
    for task_id, names in carriers:
        kept = {tag_key(name): name for name in names if tag_key(name) not in drop}
        if add is not None and len(kept) < len(names):
            kept[tag_key(add)] = add
        changes.append(
            {
                "task": task_id,
                "owner": user_id,
                "names": [kept[key] for key in sorted(kept)],
                "now": now,
            }
        )
    if changes:
        await connection.execute(_RESPELL, changes)
