"""`Idempotency-Key` on writes (SPEC §11): a retried write gets its first answer again and
writes nothing twice; another request under the same key is a 422, one still running a 409.
Every test checks what the database holds afterwards, not only what was answered."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from sqlalchemy import event, insert, text
from sqlalchemy.engine import Connection

from tests.conftest import DatabaseProbe, TaskFactory, auth, running
from todo_api.config import Settings
from todo_api.db import utcnow
from todo_api.sync.idempotency import ABANDONED_AFTER, request_fingerprint
from todo_api.sync.models import idempotency_keys_table

REPLAYED = "idempotent-replayed"


def keyed(key: str, user: str = "alice") -> dict[str, str]:
    return {**auth(user), "Idempotency-Key": key}


def new_key() -> str:
    return str(uuid.uuid4())


async def key_rows(db: DatabaseProbe, user: str = "alice") -> list[dict[str, Any]]:
    return await db.rows(
        "SELECT key, fingerprint, status_code, created_at FROM idempotency_keys "
        "WHERE user_id = :user ORDER BY created_at",
        user=user,
    )


def assert_replay_of(replay: Response, first: Response) -> None:
    """The same status, body and headers a client acts on, marked as a replay."""
    assert REPLAYED not in first.headers
    assert replay.headers[REPLAYED] == "true"
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    for header in ("content-type", "location", "etag"):
        assert replay.headers.get(header) == first.headers.get(header), header


async def documented_example(client: AsyncClient, method: str, path: str, status: int) -> Any:
    document = (await client.get("/openapi.json")).json()
    media = document["paths"][path][method]["responses"][str(status)]["content"]
    return media["application/json"]["example"]


# Replays: the first answer again, and nothing written twice.


async def test_create_replays_the_first_answer_and_writes_one_task(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    key = new_key()
    body = {"title": "Pay the rent", "priority": "high"}
    first = await client.post("/api/tasks", json=body, headers=keyed(key))
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"/api/tasks/{first.json()['id']}"

    replay = await client.post("/api/tasks", json=body, headers=keyed(key))

    assert_replay_of(replay, first)
    assert replay.headers["content-type"] == "application/json"
    assert await db.count_tasks("alice") == 1
    (row,) = await key_rows(db)
    assert (row["key"], row["status_code"]) == (key, 201)


async def test_replayed_update_does_not_undo_a_later_change(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    for method in ("PUT", "PATCH"):
        task = await create_task(title="Draft")
        key = new_key()
        path = f"/api/tasks/{task['id']}"
        first = await client.request(method, path, json={"title": "Final"}, headers=keyed(key))
        assert first.status_code == 200, first.text
        later = await client.patch(path, json={"title": "Published"}, headers=auth())
        assert later.status_code == 200

        replay = await client.request(method, path, json={"title": "Final"}, headers=keyed(key))

        assert_replay_of(replay, first)
        assert replay.json()["title"] == "Final"
        stored = await db.task(task["id"])
        assert stored is not None
        assert stored["title"] == "Published"  # the replay wrote nothing


async def test_replayed_toggle_does_not_toggle_twice(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    task = await create_task()
    key = new_key()
    path = f"/api/tasks/{task['id']}/complete"
    first = await client.patch(path, headers=keyed(key))
    assert first.status_code == 200
    assert first.json()["completed"] is True

    replays = [await client.patch(path, headers=keyed(key)) for _ in range(3)]

    for replay in replays:
        assert_replay_of(replay, first)
    stored = await db.task(task["id"])
    assert stored is not None
    assert stored["completed"] in (True, 1)


async def test_replayed_delete_answers_204_again_not_404(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    task = await create_task()
    key = new_key()
    path = f"/api/tasks/{task['id']}"
    first = await client.delete(path, headers=keyed(key))
    assert first.status_code == 204

    replay = await client.delete(path, headers=keyed(key))

    assert_replay_of(replay, first)
    assert replay.content == b""
    assert await db.task(task["id"]) is None
    unkeyed = await client.delete(path, headers=auth())
    assert unkeyed.status_code == 404  # without the key, the usual answer


async def test_replayed_tag_rename_answers_the_rename_again(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    task = await create_task(tags=["work"])
    key = new_key()
    first = await client.patch("/api/tags/work", json={"name": "office"}, headers=keyed(key))
    assert first.status_code == 200
    assert first.json() == {"name": "office", "count": 1}

    replay = await client.patch("/api/tags/work", json={"name": "office"}, headers=keyed(key))

    assert_replay_of(replay, first)
    unkeyed = await client.patch("/api/tags/work", json={"name": "office"}, headers=auth())
    assert unkeyed.status_code == 404  # "work" is gone: only the replay answers 200
    stored = await client.get(f"/api/tasks/{task['id']}", headers=auth())
    assert stored.json()["tags"] == ["office"]
    assert len(await key_rows(db)) == 1


async def test_compatible_path_replays_too(client: AsyncClient, db: DatabaseProbe) -> None:
    key = new_key()
    first = await client.post("/api/alice/tasks", json={"title": "Call"}, headers=keyed(key))
    assert first.status_code == 201
    replay = await client.post("/api/alice/tasks", json={"title": "Call"}, headers=keyed(key))
    assert_replay_of(replay, first)
    assert await db.count_tasks("alice") == 1


# The same key with another request.


async def test_same_key_with_another_request_is_422_and_writes_nothing(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    key = new_key()
    first = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
    assert first.status_code == 201
    task_path = f"/api/tasks/{first.json()['id']}"

    others = [
        await client.post("/api/tasks", json={"title": "B"}, headers=keyed(key)),
        await client.post("/api/alice/tasks", json={"title": "A"}, headers=keyed(key)),
        await client.post("/api/tasks?x=1", json={"title": "A"}, headers=keyed(key)),
        await client.patch(task_path, json={"title": "A"}, headers=keyed(key)),
        await client.delete(task_path, headers=keyed(key)),
    ]

    example = await documented_example(client, "post", "/api/tasks", 422)
    for response in others:
        assert response.status_code == 422, response.text
        assert response.json() == example
        assert REPLAYED not in response.headers
    assert example["detail"].startswith("This Idempotency-Key was already used")
    assert await db.count_tasks("alice") == 1
    stored = await db.task(first.json()["id"])
    assert stored is not None
    assert stored["title"] == "A"
    (row,) = await key_rows(db)
    assert row["status_code"] == 201  # the first answer is kept, still to be replayed
    replay = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
    assert_replay_of(replay, first)


async def test_other_users_same_key_is_unrelated(client: AsyncClient, db: DatabaseProbe) -> None:
    key = new_key()
    body = {"title": "Same words"}
    alice = await client.post("/api/tasks", json=body, headers=keyed(key, "alice"))
    bob = await client.post("/api/tasks", json=body, headers=keyed(key, "bob"))
    bob_other = await client.post("/api/tasks", json={"title": "x"}, headers=keyed(key, "carol"))

    assert (alice.status_code, bob.status_code, bob_other.status_code) == (201, 201, 201)
    assert REPLAYED not in bob.headers
    assert alice.json()["id"] != bob.json()["id"]
    assert bob.json()["user_id"] == "bob"
    for user in ("alice", "bob", "carol"):
        assert await db.count_tasks(user) == 1
        assert len(await key_rows(db, user)) == 1


# Which answers are stored.


async def test_a_400_is_stored_and_replayed(client: AsyncClient, db: DatabaseProbe) -> None:
    key = new_key()
    first = await client.post("/api/tasks", json={"title": ""}, headers=keyed(key))
    assert first.status_code == 400

    replay = await client.post("/api/tasks", json={"title": ""}, headers=keyed(key))

    assert_replay_of(replay, first)
    assert replay.json()["errors"][0]["field"] == "title"
    # The key is spent on that request: a corrected body needs a new key.
    corrected = await client.post("/api/tasks", json={"title": "ok"}, headers=keyed(key))
    assert corrected.status_code == 422
    assert await db.count_tasks() == 0
    (row,) = await key_rows(db)
    assert row["status_code"] == 400


async def test_a_403_of_someone_elses_task_is_replayed(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    task = await create_task("bob")
    key = new_key()
    path = f"/api/tasks/{task['id']}"
    first = await client.patch(path, json={"title": "mine now"}, headers=keyed(key))
    assert first.status_code == 403
    replay = await client.patch(path, json={"title": "mine now"}, headers=keyed(key))
    assert_replay_of(replay, first)
    stored = await db.task(task["id"])
    assert stored is not None
    assert stored["title"] == "A task"


async def test_a_401_is_never_stored_and_looks_up_no_key(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    key = new_key()
    bad = {"Authorization": "Bearer not-a-token", "Idempotency-Key": key}
    for _ in range(2):
        refused = await client.post("/api/tasks", json={"title": "A"}, headers=bad)
        assert refused.status_code == 401
        assert REPLAYED not in refused.headers
    assert await db.rows("SELECT * FROM idempotency_keys") == []

    accepted = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
    assert accepted.status_code == 201
    assert REPLAYED not in accepted.headers


async def test_a_failed_request_releases_its_key_so_a_retry_runs(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    """A real failure in the database (a trigger refusing the row) answers 500; the key is
    released, and once the failure is gone the same key runs the request."""
    postgres = db.engine.dialect.name == "postgresql"
    create_trigger = (
        [
            "CREATE FUNCTION idempotency_test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER idempotency_test_refuse BEFORE INSERT ON tasks FOR EACH ROW "
            "WHEN (NEW.title = 'explode') EXECUTE FUNCTION idempotency_test_refuse()",
        ]
        if postgres
        else [
            "CREATE TRIGGER idempotency_test_refuse BEFORE INSERT ON tasks "
            "WHEN NEW.title = 'explode' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
    )
    drop_trigger = (
        [
            "DROP TRIGGER IF EXISTS idempotency_test_refuse ON tasks",
            "DROP FUNCTION IF EXISTS idempotency_test_refuse()",
        ]
        if postgres
        else ["DROP TRIGGER IF EXISTS idempotency_test_refuse"]
    )
    key = new_key()
    async with db.engine.begin() as connection:
        for statement in create_trigger:
            await connection.execute(text(statement))
    try:
        failed = await client.post("/api/tasks", json={"title": "explode"}, headers=keyed(key))
        assert failed.status_code == 500
        assert failed.json()["detail"] == "Internal server error"
        assert await key_rows(db) == []
    finally:
        async with db.engine.begin() as connection:
            for statement in drop_trigger:
                await connection.execute(text(statement))

    retried = await client.post("/api/tasks", json={"title": "explode"}, headers=keyed(key))

    assert retried.status_code == 201
    assert REPLAYED not in retried.headers
    assert await db.count_tasks("alice") == 1
    (row,) = await key_rows(db)
    assert row["status_code"] == 201


# Time: expiry, requests in flight, abandoned reservations.


async def test_an_expired_key_runs_again(
    client: AsyncClient, db: DatabaseProbe, settings: Settings
) -> None:
    key = new_key()
    first = await client.post("/api/tasks", json={"title": "Weekly"}, headers=keyed(key))
    assert first.status_code == 201
    await age_key(db, key, timedelta(seconds=settings.idempotency_ttl_seconds + 1))

    again = await client.post("/api/tasks", json={"title": "Weekly"}, headers=keyed(key))

    assert again.status_code == 201
    assert REPLAYED not in again.headers
    assert again.json()["id"] != first.json()["id"]
    assert await db.count_tasks("alice") == 2
    (row,) = await key_rows(db)
    assert utcnow() - as_aware(row["created_at"]) < timedelta(minutes=1)


async def test_a_key_just_short_of_expiry_still_replays(
    client: AsyncClient, db: DatabaseProbe, settings: Settings
) -> None:
    key = new_key()
    first = await client.post("/api/tasks", json={"title": "Weekly"}, headers=keyed(key))
    await age_key(db, key, timedelta(seconds=settings.idempotency_ttl_seconds - 60))
    replay = await client.post("/api/tasks", json={"title": "Weekly"}, headers=keyed(key))
    assert_replay_of(replay, first)
    assert await db.count_tasks("alice") == 1


async def test_a_request_in_flight_gets_409(client: AsyncClient, db: DatabaseProbe) -> None:
    key = new_key()
    body = json.dumps({"title": "Slow"}).encode()
    await reserve_directly(client, db, key, body, reserved_ago=timedelta(seconds=5))

    response = await client.post("/api/tasks", content=body, headers=json_keyed(key))

    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    assert response.json() == await documented_example(client, "post", "/api/tasks", 409)
    assert await db.count_tasks("alice") == 0
    (row,) = await key_rows(db)
    assert row["status_code"] is None


async def test_an_abandoned_reservation_is_taken_over(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    """A reservation whose request died (its process was killed) blocks the key only for
    `ABANDONED_AFTER`; then the retry runs, and is replayed after that."""
    key = new_key()
    body = json.dumps({"title": "Orphan"}).encode()
    await reserve_directly(
        client, db, key, body, reserved_ago=ABANDONED_AFTER + timedelta(seconds=1)
    )

    taken = await client.post("/api/tasks", content=body, headers=json_keyed(key))
    replay = await client.post("/api/tasks", content=body, headers=json_keyed(key))

    assert taken.status_code == 201, taken.text
    assert_replay_of(replay, taken)
    assert await db.count_tasks("alice") == 1
    (row,) = await key_rows(db)
    assert row["status_code"] == 201


async def test_an_abandoned_reservation_of_another_request_is_still_422(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    key = new_key()
    await reserve_directly(client, db, key, b'{"title": "One"}', reserved_ago=timedelta(hours=1))
    response = await client.post("/api/tasks", content=b'{"title": "Two"}', headers=json_keyed(key))
    assert response.status_code == 422
    assert await db.count_tasks("alice") == 0


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_duplicates_write_once(client: AsyncClient, db: DatabaseProbe) -> None:
    key = new_key()
    body = {"title": "Double-clicked", "tags": ["urgent"]}

    responses = await asyncio.gather(
        *(client.post("/api/tasks", json=body, headers=keyed(key)) for _ in range(10))
    )

    statuses = sorted(response.status_code for response in responses)
    originals = [r for r in responses if r.status_code == 201 and REPLAYED not in r.headers]
    assert len(originals) == 1, statuses
    (original,) = originals
    for response in responses:
        if response is original:
            continue
        if response.status_code == 409:
            assert response.headers["retry-after"] == "1"
        else:
            assert_replay_of(response, original)
    assert await db.count_tasks("alice") == 1
    (row,) = await key_rows(db)
    assert row["status_code"] == 201
    print(f"\n10 concurrent duplicates answered: {statuses}")


# The key itself.


@pytest.mark.parametrize(
    "value",
    [b"", b"k" * 256, b"caf\xc3\xa9", b"tab\tinside", b"line\x7f"],
    ids=["empty", "256 characters", "not ASCII", "control character", "DEL"],
)
async def test_a_malformed_key_is_a_400_naming_the_header(
    client: AsyncClient, db: DatabaseProbe, value: bytes
) -> None:
    headers = [(name.encode(), value.encode()) for name, value in auth().items()]
    headers.append((b"Idempotency-Key", value))
    response = await client.post("/api/tasks", json={"title": "A"}, headers=headers)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Invalid header 'Idempotency-Key': must be sent once, as 1 to 255 printable "
        "ASCII characters.",
        "errors": [
            {
                "field": "Idempotency-Key",
                "message": "must be sent once, as 1 to 255 printable ASCII characters",
            }
        ],
    }
    assert await db.count_tasks() == 0
    assert await key_rows(db) == []


async def test_two_keys_in_one_request_are_a_400(client: AsyncClient, db: DatabaseProbe) -> None:
    headers = [*auth().items(), ("Idempotency-Key", "one"), ("Idempotency-Key", "two")]
    response = await client.post("/api/tasks", json={"title": "A"}, headers=headers)
    assert response.status_code == 400
    assert await db.count_tasks() == 0


async def test_longest_key_and_every_printable_character_work(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    printable = "".join(chr(code) for code in range(0x21, 0x7F))
    for key in ("k" * 255, printable, '"8e03978e-40d5-43e8-bc93-6894a57f9324"'):
        first = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
        replay = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
        assert first.status_code == 201
        assert_replay_of(replay, first)
    assert await db.count_tasks("alice") == 3


# What happens without a key, or where keys do not apply.


async def test_without_a_key_nothing_touches_the_keys_table(
    app: FastAPI, client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    task = await create_task()  # the user exists, so both requests below are the usual ones
    statements: list[str] = []

    def record(_conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engine = app.state.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        created = await client.post("/api/tasks", json={"title": "B"}, headers=auth())
        patched = await client.patch(
            f"/api/tasks/{task['id']}", json={"title": "C"}, headers=auth()
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert (created.status_code, patched.status_code) == (201, 200)
    assert REPLAYED not in created.headers
    assert statements, "the listener saw the requests' statements"
    assert not [s for s in statements if "idempotency_keys" in s]


async def test_a_key_on_a_read_or_outside_the_task_api_is_ignored(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    for _ in range(2):
        listed = await client.get("/api/tasks", headers=keyed("read"))
        assert listed.status_code == 200
        assert REPLAYED not in listed.headers
    health = await client.get("/health", headers={"Idempotency-Key": ""})
    assert health.status_code == 200
    assert await key_rows(db) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/api/tasks", 405),
        ("PUT", "/api/tasks/{id}/complete", 405),
        ("PUT", "/api/tags/work", 405),
        ("POST", "/api/tasks/{id}", 405),
        ("PATCH", "/api/tasks/stats", 405),
        ("DELETE", "/api/tasks/{id}/nothing", 404),
    ],
)
async def test_a_key_on_a_method_or_path_no_route_serves_changes_nothing(
    client: AsyncClient, db: DatabaseProbe, method: str, path: str, status: int
) -> None:
    """Only a real write route takes a key: a 405 or 404 is the router's answer, also when the
    key was used before (not a 422), and reserves nothing."""
    key = new_key()
    first = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
    assert first.status_code == 201
    target = path.format(id=first.json()["id"])
    for sent in (key, new_key()):
        response = await client.request(method, target, json={"title": "B"}, headers=keyed(sent))
        assert response.status_code == status, response.text
        assert REPLAYED not in response.headers
    assert [row["key"] for row in await key_rows(db)] == [key]
    assert await db.count_tasks("alice") == 1


async def test_expired_keys_are_purged(settings: Settings, db: DatabaseProbe) -> None:
    """Each process deletes expired keys after a keyed request, at most every few minutes:
    a freshly started app does so after its first one."""
    old, new = new_key(), new_key()
    async with running(settings) as (_app, client):
        assert (await client.post("/api/tasks", json={}, headers=keyed(old))).status_code == 400
    await age_key(db, old, timedelta(seconds=settings.idempotency_ttl_seconds + 1))

    async with running(settings) as (_app, client):
        response = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(new))
        assert response.status_code == 201

    assert [row["key"] for row in await key_rows(db)] == [new]


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_replays_behind_a_transaction_pooler_setting(
    settings: Settings, db: DatabaseProbe
) -> None:
    """`DB_STATEMENT_CACHE=false`: every request is one transaction, and so is each of the
    key's statements; a replay still writes nothing."""
    pooled = settings.model_copy(update={"db_statement_cache": False})
    key = new_key()
    async with running(pooled) as (_app, client):
        first = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
        replay = await client.post("/api/tasks", json={"title": "A"}, headers=keyed(key))
        other = await client.post("/api/tasks", json={"title": "B"}, headers=keyed(key))
    assert first.status_code == 201
    assert_replay_of(replay, first)
    assert other.status_code == 422
    assert await db.count_tasks("alice") == 1


async def test_answers_given_before_the_router_are_logged_under_their_route(
    client: AsyncClient, create_task: TaskFactory, caplog: pytest.LogCaptureFixture
) -> None:
    task = await create_task()
    key = new_key()
    path = f"/api/alice/tasks/{task['id']}/complete"
    with caplog.at_level("INFO", logger="todo_api.access"):
        run = await client.patch(path, headers=keyed(key))
        replay = await client.patch(path, headers=keyed(key))
        reused = await client.patch(path, json={"completed": False}, headers=keyed(key))
    assert (run.status_code, replay.status_code, reused.status_code) == (200, 200, 422)
    lines = [vars(r) for r in caplog.records if r.name == "todo_api.access"]
    assert [(line["route"], line["status"], line["user_id"]) for line in lines] == [
        ("/api/{user_id}/tasks/{task_id}/complete", status, "alice") for status in (200, 200, 422)
    ]


async def test_browsers_may_send_the_key_and_read_the_replay_marker(
    client: AsyncClient,
) -> None:
    origin = {"Origin": "http://localhost:3000"}
    preflight = await client.options(
        "/api/tasks",
        headers={
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert preflight.status_code == 200
    assert "idempotency-key" in preflight.headers["access-control-allow-headers"].lower()
    key = new_key()
    await client.post("/api/tasks", json={"title": "A"}, headers={**keyed(key), **origin})
    replay = await client.post("/api/tasks", json={"title": "A"}, headers={**keyed(key), **origin})
    exposed = replay.headers["access-control-expose-headers"].lower()
    assert "idempotent-replayed" in exposed
    assert replay.headers[REPLAYED] == "true"


# Helpers that reach into the database as a crashed or slow first request would leave it.


def json_keyed(key: str) -> dict[str, str]:
    return {**keyed(key), "Content-Type": "application/json"}


async def reserve_directly(
    client: AsyncClient, db: DatabaseProbe, key: str, body: bytes, *, reserved_ago: timedelta
) -> None:
    """The row a first `POST /api/tasks` with this body leaves while it runs (or after its
    process died): reserved, unanswered."""
    assert (await client.get("/api/tasks", headers=auth())).status_code == 200  # the user row
    scope = {"method": "POST", "path": "/api/tasks", "query_string": b""}
    async with db.engine.begin() as connection:
        await connection.execute(
            insert(idempotency_keys_table).values(
                user_id="alice",
                key=key,
                fingerprint=request_fingerprint(scope, body),
                status_code=None,
                created_at=utcnow() - reserved_ago,
            )
        )


async def age_key(db: DatabaseProbe, key: str, age: timedelta) -> None:
    async with db.engine.begin() as connection:
        await connection.execute(
            idempotency_keys_table.update()
            .where(idempotency_keys_table.c.key == key)
            .values(created_at=utcnow() - age)
        )


def as_aware(value: Any) -> datetime:
    """A timestamp read raw: SQLite gives text without an offset (UTC), PostgreSQL a datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
