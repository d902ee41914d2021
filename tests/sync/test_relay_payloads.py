"""The relay's NOTIFY batching: many users' announcements go out in as few notifications as
PostgreSQL's payload limit allows, and a listener gets every user id back exactly once."""

import asyncio

import asyncpg
import pytest

from tests.conftest import asyncpg_dsn
from todo_api.sync.events import CHANGES_CHANNEL, USER_SEPARATOR
from todo_api.sync.streams_repository import MAX_PAYLOAD_BYTES, notify_changes

pytestmark = pytest.mark.postgres


async def test_a_batch_of_users_arrives_whole_in_few_notifications(postgres_url: str) -> None:
    user_ids = [f"user-{n:03d}-" + "é" * 60 for n in range(300)]  # about 40 KB of ids
    listener = await asyncpg.connect(asyncpg_dsn(postgres_url))
    sender = await asyncpg.connect(asyncpg_dsn(postgres_url))
    payloads: list[str] = []
    last_arrived = asyncio.Event()

    def receive(_connection: object, _pid: int, _channel: str, payload: str) -> None:
        payloads.append(payload)
        if payload == "solo":
            last_arrived.set()

    try:
        await listener.add_listener(CHANGES_CHANNEL, receive)
        await notify_changes(sender, CHANGES_CHANNEL, user_ids, USER_SEPARATOR)
        await notify_changes(sender, CHANGES_CHANNEL, ["solo"], USER_SEPARATOR)
        async with asyncio.timeout(5):
            await last_arrived.wait()
    finally:
        await listener.close()
        await sender.close()
    received = [user for payload in payloads for user in payload.split(USER_SEPARATOR)]
    assert received == [*user_ids, "solo"]
    assert all(len(payload.encode()) <= MAX_PAYLOAD_BYTES for payload in payloads)
    assert len(payloads) == 6  # 60 ids of 130 bytes fill one (7,800 bytes): 5, then "solo"
