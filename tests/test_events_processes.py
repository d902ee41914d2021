"""Live events over real servers (SPEC §11): `todo-api serve --workers 2` on PostgreSQL, and one
process on SQLite, read as a client reads them (httpx streaming the `text/event-stream`).

What is shown: a change reaches every stream of its user on both workers within a second (the
latency is printed); reconnecting with `Last-Event-ID` or `?since=` delivers exactly what was
missed, then live changes; tickets open one stream once; other users' changes never appear;
the eleventh stream is refused; a client that stops reading slows no write and no other
stream; keep-alive comments; the stream ends when the token expires; SIGTERM ends open streams
at once and the server exits 0."""

import asyncio
import hashlib
import itertools
import json
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import (
    SECRET,
    fetch,
    make_token,
    throwaway_database,
)
from tests.processes import Server, log_entries, running_server, server_environment

pytestmark = pytest.mark.slow

HEARTBEAT_SECONDS = 0.5
SEND_TIMEOUT_SECONDS = 2.0
MAX_STREAMS = 10
EVENT_TIMEOUT = 5.0


def server_env(database_url: str, cwd: Path) -> dict[str, str]:
    return server_environment(
        database_url,
        cwd / "state",
        EVENTS_HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        EVENTS_SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT_SECONDS),
        # Streams end at the token's `exp` itself, so the expiry test need not wait 30 s.
        JWT_LEEWAY_SECONDS="0",
    )


@dataclass
class PostgresServer:
    server: Server
    database: str


@pytest.fixture(scope="module")
def postgres_server(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PostgresServer]:
    """One `todo-api serve --workers 2` on a throwaway database, for the whole module."""
    cwd = tmp_path_factory.mktemp("events")
    with throwaway_database(postgres_admin_url, "todo_api_events") as database:
        args = ["--host", "127.0.0.1", "--workers", "2"]
        with running_server(args, cwd=cwd, env=server_env(database, cwd)) as server:
            yield PostgresServer(server, database)


def bearer(user: str, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user, **claims)}"}


def new_user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------------------------
# Reading a stream


@dataclass
class Event:
    name: str
    id: str | None
    data: Any
    at: float  # time.monotonic() when its last line arrived


@dataclass
class EventReader:
    """Reads one open stream in the background, parsing it into events and comments."""

    response: httpx.Response
    events: "asyncio.Queue[Event]" = field(default_factory=asyncio.Queue)
    comments: list[tuple[str, float]] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float | None = None
    start_cursor: str | None = None  # the `ready` event's id

    def __post_init__(self) -> None:
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            async for line in self.response.aiter_lines():
                if line.startswith(":"):
                    self.comments.append((line, time.monotonic()))
                elif line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                elif fields:
                    data = json.loads(fields["data"])
                    self.events.put_nowait(
                        Event(
                            fields.get("event", "message"), fields.get("id"), data, time.monotonic()
                        )
                    )
                    fields = {}
        except httpx.HTTPError:
            pass  # closed by the test: the stream is over either way
        finally:
            self.ended_at = time.monotonic()
            self.ended.set()

    async def next(self, within: float = EVENT_TIMEOUT) -> Event:
        async with asyncio.timeout(within):
            return await self.events.get()

    async def take(self, count: int, within: float = EVENT_TIMEOUT) -> list[Event]:
        return [await self.next(within) for _ in range(count)]

    def close(self) -> None:
        self._task.cancel()


@asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> AsyncIterator[EventReader]:
    """An open stream (asserting its 200 and headers), its `ready` event already read."""
    async with http.stream("GET", "/api/events", headers=headers, params=params) as response:
        if response.status_code != 200:
            pytest.fail(f"stream refused: {response.status_code} {(await response.aread())!r}")
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        reader = EventReader(response)
        try:
            ready = await reader.next()
            assert ready.name == "ready"
            assert ready.data == {"cursor": ready.id}
            reader.start_cursor = ready.id
            yield reader
        finally:
            reader.close()


def client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base_url, timeout=httpx.Timeout(10.0))


async def create(http: httpx.AsyncClient, user: str, title: str, **fields: Any) -> dict[str, Any]:
    response = await http.post("/api/tasks", json={"title": title, **fields}, headers=bearer(user))
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


async def stream_rows(database: str, user: str) -> int:
    rows = await fetch(database, "SELECT count(*) AS n FROM event_streams WHERE user_id = $1", user)
    return int(rows[0]["n"])


async def eventually(check: Any, within: float, message: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(message)
        await asyncio.sleep(0.05)


def opened_on(server: Server, user: str) -> list[int]:
    """The worker process of each stream the user opened, in order, from the workers' logs
    ("Event stream opened", written before the stream's first byte)."""
    return [
        entry["worker_pid"]
        for entry in log_entries(server.stderr())
        if entry.get("message") == "Event stream opened" and entry.get("user_id") == user
    ]


async def streams_on_both_workers(
    server: Server, http: httpx.AsyncClient, streams: AsyncExitStack, user: str, per_worker: int
) -> list[EventReader]:
    """Open streams until each of the two workers holds `per_worker` of them (which worker
    accepts a connection is the kernel's choice: extra ones are closed again)."""
    held: dict[int, list[EventReader]] = {}
    for _ in range(60):
        async with AsyncExitStack() as attempt:
            reader = await attempt.enter_async_context(open_stream(http, bearer(user)))
            worker = opened_on(server, user)[-1]
            if len(held.setdefault(worker, [])) < per_worker:
                held[worker].append(reader)
                streams.push_async_exit(attempt.pop_all())
        if len(held) == 2 and all(len(readers) == per_worker for readers in held.values()):
            return [reader for readers in held.values() for reader in readers]
        await asyncio.sleep(0.1)  # an extra one closed: let the server see it go
    pytest.fail(f"the streams did not spread over both workers: {opened_on(server, user)}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL, two workers


@pytest.mark.postgres
async def test_a_change_reaches_every_stream_on_both_workers_within_a_second(
    postgres_server: PostgresServer,
) -> None:
    server = postgres_server.server
    user = new_user("live")
    async with client(server) as http, client(server) as writer, AsyncExitStack() as streams:
        readers = await streams_on_both_workers(server, http, streams, user, per_worker=3)
        latencies = []
        created = []
        for number in range(20):
            sent = time.monotonic()
            task = await create(writer, user, f"change {number}")
            created.append(task["id"])
            for reader in readers:
                event = await reader.next()
                assert event.name == "task.upserted"
                assert event.data == {"type": "upsert", "task": task}
                latencies.append(event.at - sent)
        changes = await writer.get(
            "/api/tasks/changes", params={"since": "0"}, headers=bearer(user)
        )
        assert [change["task"]["id"] for change in changes.json()["changes"]] == created
        for reader in readers:
            assert reader.events.empty()
    print(
        f"\nlive event latency, write sent -> event read, 20 changes x 6 streams on 2 workers: "
        f"max {max(latencies) * 1000:.1f} ms, "
        f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms"
    )
    assert max(latencies) < 1.0


@pytest.mark.postgres
async def test_reconnecting_resumes_exactly_after_the_last_event(
    postgres_server: PostgresServer,
) -> None:
    server = postgres_server.server
    user = new_user("resume")
    async with client(server) as http, client(server) as writer:
        await create(writer, user, "before the stream")  # not sent: it starts from now
        async with open_stream(http, bearer(user)) as reader:
            first = await create(writer, user, "first")
            seen = await reader.next()
            assert (seen.name, seen.data["task"]["id"]) == ("task.upserted", first["id"])
            last_event_id = seen.id
            assert last_event_id is not None
        # Disconnected: changes it must get, and only those, on reconnection.
        second = await create(writer, user, "second")
        gone = await create(writer, user, "gone")
        assert (
            await writer.delete(f"/api/tasks/{gone['id']}", headers=bearer(user))
        ).status_code == 204
        patched = await writer.patch(
            f"/api/tasks/{first['id']}", json={"title": "first, changed"}, headers=bearer(user)
        )
        assert patched.status_code == 200

        async def missed_since(cursor: str) -> dict[str, Any]:
            feed = await writer.get(
                "/api/tasks/changes", params={"since": cursor}, headers=bearer(user)
            )
            page: dict[str, Any] = feed.json()
            return page

        missed = await missed_since(last_event_id)
        assert [change["type"] for change in missed["changes"]] == ["upsert", "delete", "upsert"]
        assert missed["changes"][0]["task"]["id"] == second["id"]
        assert missed["changes"][1]["id"] == gone["id"]
        assert missed["changes"][2]["task"]["title"] == "first, changed"

        # Resuming from the same event, as EventSource does (the header) and by hand (`since`).
        for resume in ("Last-Event-ID", "since"):
            missed = await missed_since(last_event_id)
            headers = bearer(user)
            params = {}
            if resume == "since":
                params["since"] = last_event_id
            else:
                headers["Last-Event-ID"] = last_event_id
            async with open_stream(http, headers, params) as reader:
                assert reader.start_cursor == last_event_id
                events = await reader.take(len(missed["changes"]))
                assert [event.data for event in events] == missed["changes"]
                kinds = {"upsert": "task.upserted", "delete": "task.deleted"}
                assert [event.name for event in events] == [
                    kinds[change["type"]] for change in missed["changes"]
                ]
                ids = [int(event.id or 0) for event in events]
                assert ids == sorted(set(ids))  # increasing: oldest first, none twice
                assert events[-1].id == missed["cursor"]
                # Then the live ones, and nothing twice (heartbeats re-read the feed meanwhile).
                live = await create(writer, user, f"live after resuming with {resume}")
                event = await reader.next()
                assert event.data == {"type": "upsert", "task": live}
                await asyncio.sleep(3 * HEARTBEAT_SECONDS)
                assert reader.events.empty()


@pytest.mark.postgres
async def test_a_ticket_opens_one_stream_once(postgres_server: PostgresServer) -> None:
    server, database = postgres_server.server, postgres_server.database
    user = new_user("ticket")
    async with client(server) as http:
        issued = await http.post("/api/events/tickets", headers=bearer(user))
        assert issued.status_code == 201
        ticket = issued.json()["ticket"]
        async with open_stream(http, params={"ticket": ticket}) as reader:
            task = await create(http, user, "through a ticket")
            assert (await reader.next()).data["task"] == task
            again = await http.get("/api/events", params={"ticket": ticket})
            assert again.status_code == 401
            assert again.json()["detail"].startswith("The stream ticket is invalid")

        expiring = (await http.post("/api/events/tickets", headers=bearer(user))).json()["ticket"]
        await fetch(
            database,
            "UPDATE stream_tickets SET expires_at = now() - interval '1 second' "
            "WHERE ticket_hash = $1",
            hashlib.sha256(expiring.encode()).hexdigest(),
        )
        expired = await http.get("/api/events", params={"ticket": expiring})
        assert expired.status_code == 401
        assert await fetch(database, "SELECT * FROM stream_tickets") == []


@pytest.mark.postgres
async def test_other_users_changes_never_appear(postgres_server: PostgresServer) -> None:
    server = postgres_server.server
    alice, bob = new_user("alice"), new_user("bob")
    async with (
        client(server) as http,
        client(server) as writer,
        open_stream(http, bearer(alice)) as alices,
        open_stream(http, bearer(bob)) as bobs,
    ):
        for number in range(5):
            await create(writer, bob, f"bob's {number}")
        mine = await create(writer, alice, "alice's")
        event = await alices.next()
        assert event.data == {"type": "upsert", "task": mine}
        assert [e.data["task"]["user_id"] for e in await bobs.take(5)] == [bob] * 5
        await asyncio.sleep(3 * HEARTBEAT_SECONDS)
        assert alices.events.empty()
        assert bobs.events.empty()


@pytest.mark.postgres
async def test_the_eleventh_stream_is_refused_until_one_closes(
    postgres_server: PostgresServer,
) -> None:
    server, database = postgres_server.server, postgres_server.database
    user = new_user("limit")
    async with client(server) as http, AsyncExitStack() as streams:
        for _ in range(MAX_STREAMS - 1):
            await streams.enter_async_context(open_stream(http, bearer(user)))
        async with open_stream(http, bearer(user)):
            assert await stream_rows(database, user) == MAX_STREAMS
            refused = await http.get("/api/events", headers=bearer(user))
            assert refused.status_code == 429
            assert refused.json() == {
                "detail": "Too many open event streams; close one and try again."
            }
            assert refused.headers["retry-after"] == "1"  # one heartbeat, rounded up
            async with open_stream(http, bearer(new_user("other"))):
                pass  # another user's limit is their own
        # One closed: a new one opens once the server has seen the disconnect.
        deadline = time.monotonic() + 5
        while True:
            async with http.stream("GET", "/api/events", headers=bearer(user)) as response:
                if response.status_code == 200:
                    assert await stream_rows(database, user) == MAX_STREAMS
                    break
                assert response.status_code == 429
            assert time.monotonic() < deadline, "no stream opened after one closed"
            await asyncio.sleep(0.05)
    await eventually(
        lambda: _equals(stream_rows(database, user), 0), 5, "closed streams stayed registered"
    )
    # Rows of a process that died (no heartbeat for 3 beats) do not count.
    await fetch(
        database,
        "INSERT INTO event_streams (id, user_id, seen_at) "
        "SELECT gen_random_uuid(), $1, now() - interval '1 minute' FROM generate_series(1, 10)",
        user,
    )
    async with client(server) as http, open_stream(http, bearer(user)):
        assert await stream_rows(database, user) == 1


@pytest.mark.postgres
async def test_a_client_that_stops_reading_delays_no_write_and_no_other_stream(
    postgres_server: PostgresServer,
) -> None:
    server, database = postgres_server.server, postgres_server.database
    user = new_user("stalled")
    description = "x" * 1000  # big events fill the stalled connection's buffers sooner
    async with (
        client(server) as http,
        client(server) as writer,
        open_stream(http, bearer(user)) as reader,
    ):

        async def write_200(batch: str) -> float:
            started = time.monotonic()
            for number in range(200):
                await create(writer, user, f"{batch} {number}", description=description, tags=["a"])
            return time.monotonic() - started

        unhindered = await write_200("first")
        stalled = stalled_reader(server.base_url, bearer(user))
        try:
            await eventually(
                lambda: _equals(stream_rows(database, user), 2),
                5,
                "the stalled stream did not open",
            )
            hindered = await write_200("second")
            received = await reader.take(400)
            assert [event.data["task"]["title"] for event in received] == [
                f"{batch} {number}" for batch in ("first", "second") for number in range(200)
            ]
            assert [int(event.id or 0) for event in received] == list(range(1, 401))
            # Megabytes for the stalled stream: each rename changes all 400 tasks. The
            # kernel and the server buffer some, then one write to it waits, and after
            # EVENTS_SEND_TIMEOUT_SECONDS the stream is dropped.
            renames = 12
            started = time.monotonic()
            for number in range(renames):
                old, new = ("a", "b") if number % 2 == 0 else ("b", "a")
                renamed = await writer.patch(
                    f"/api/tags/{old}", json={"name": new}, headers=bearer(user)
                )
                assert renamed.status_code == 200, renamed.text
            renaming = time.monotonic() - started
            flood = await reader.take(400 * renames)
            assert [event.data["task"]["tags"] for event in flood[-400:]] == [["a"]] * 400
            await eventually(
                lambda: _equals(stream_rows(database, user), 1),
                SEND_TIMEOUT_SECONDS + 10,
                "the stream of the client that stopped reading was not dropped",
            )
            # The reading stream goes on.
            after = await create(writer, user, "after the drop")
            assert (await reader.next()).data["task"] == after
        finally:
            stalled.close()
    print(
        f"\n200 writes: {unhindered:.2f} s with one reading stream, {hindered:.2f} s with "
        f"another stream whose client stopped reading; {renames} renames of 400 tasks "
        f"({renames * 400} events, about {renames * 400 * 1.7 / 1000:.0f} MB per stream) "
        f"in {renaming:.2f} s"
    )
    assert hindered < 3 * unhindered + 0.5
    ended = [
        entry["message"]
        for entry in log_entries(server.stderr())
        if entry.get("user_id") == user
        and entry.get("message", "").startswith("Event stream ended")
    ]
    # (The reading stream's own end may be logged by now too.)
    assert ended.count("Event stream ended: client stopped reading") == 1
    assert set(ended) <= {
        "Event stream ended: client stopped reading",
        "Event stream ended: client disconnected",
    }


def stalled_reader(base_url: str, headers: dict[str, str]) -> socket.socket:
    """A client that asks for a stream and never reads a byte of it (a small receive buffer,
    so that the server's side fills up soon)."""
    host, port = base_url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
    return sock


@pytest.mark.postgres
async def test_keep_alive_comments_arrive_every_heartbeat(postgres_server: PostgresServer) -> None:
    async with (
        client(postgres_server.server) as http,
        open_stream(http, bearer(new_user("beat"))) as reader,
    ):
        await asyncio.sleep(5 * HEARTBEAT_SECONDS + 0.2)
        beats = [at for line, at in reader.comments if line == ": keep-alive"]
    assert len(beats) >= 4, reader.comments
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert all(0.3 < gap < 1.0 for gap in gaps), gaps


@pytest.mark.postgres
async def test_the_stream_ends_when_its_token_expires(postgres_server: PostgresServer) -> None:
    server = postgres_server.server
    user = new_user("expiry")
    token = make_token(user, ttl=3)
    expires_at = jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    async with client(server) as http:
        ticket = (
            await http.post("/api/events/tickets", headers={"Authorization": f"Bearer {token}"})
        ).json()["ticket"]
        async with (
            open_stream(http, {"Authorization": f"Bearer {token}"}) as with_token,
            open_stream(http, params={"ticket": ticket}) as with_ticket,
        ):
            for reader in (with_token, with_ticket):
                async with asyncio.timeout(10):
                    await reader.ended.wait()
                assert reader.ended_at is not None
                # The end of the body, at the token's `exp` (no leeway configured here).
                ended_wall = time.time() - (time.monotonic() - reader.ended_at)
                assert expires_at - 0.2 <= ended_wall <= expires_at + 1.0, (ended_wall, expires_at)
                assert reader.events.empty()
        refused = await http.get("/api/events", headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401


@pytest.fixture
def stop_database(postgres_admin_url: str) -> Iterator[str]:
    with throwaway_database(postgres_admin_url, "todo_api_events_stop") as database:
        yield database


@pytest.mark.postgres
async def test_sigterm_ends_open_streams_and_the_server_exits_0(
    stop_database: str, tmp_path: Path
) -> None:
    args = ["--host", "127.0.0.1", "--workers", "2"]
    env = server_env(stop_database, tmp_path) | {"EVENTS_HEARTBEAT_SECONDS": "15"}
    with running_server(args, cwd=tmp_path, env=env) as server:
        user = new_user("stop")
        async with client(server) as http, AsyncExitStack() as streams:
            readers = await streams_on_both_workers(server, http, streams, user, per_worker=2)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                for reader in readers:
                    await reader.ended.wait()
            streams_ended = max(r.ended_at or 0 for r in readers) - signalled
            exit_code = await asyncio.to_thread(server.process.wait, 15)
            exited = time.monotonic() - signalled
    rows = await fetch(stop_database, "SELECT * FROM event_streams")
    print(
        f"\nSIGTERM with 4 open streams on 2 workers: streams ended after {streams_ended:.2f} s, "
        f"exit {exit_code} after {exited:.2f} s"
    )
    assert exit_code == 0, server.stderr()
    assert streams_ended < 2.0
    assert exited < 5.0
    assert rows == []  # each stream removed its registration on the way out
    ended = [
        entry["message"]
        for entry in log_entries(server.stderr())
        if entry.get("user_id") == user and entry["message"].startswith("Event stream ended")
    ]
    # (Besides the 4, any stream closed while spreading them over the workers.)
    assert ended.count("Event stream ended: server shutting down") == 4
    assert set(ended) <= {
        "Event stream ended: server shutting down",
        "Event stream ended: client disconnected",
    }


# ---------------------------------------------------------------------------------------------
# SQLite, one process


async def test_on_sqlite_changes_arrive_and_resume_after_the_last_event(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'events.db'}"
    with running_server([], cwd=tmp_path, env=server_env(database, tmp_path)) as server:
        user = new_user("sqlite")
        async with client(server) as http, client(server) as writer:
            async with open_stream(http, bearer(user)) as reader:
                first = await create(writer, user, "first")
                event = await reader.next()
                assert event.data == {"type": "upsert", "task": first}
                last_event_id = event.id
                assert last_event_id is not None
            second = await create(writer, user, "second")
            deleted = await writer.delete(f"/api/tasks/{first['id']}", headers=bearer(user))
            assert deleted.status_code == 204
            headers = {**bearer(user), "Last-Event-ID": last_event_id}
            async with open_stream(http, headers) as reader:
                missed = await reader.take(2)
                assert [e.data for e in missed] == [
                    {"type": "upsert", "task": second},
                    {"type": "delete", "id": first["id"]},
                ]
                third = await create(writer, user, "third")
                assert (await reader.next()).data == {"type": "upsert", "task": third}
                assert await asyncio.to_thread(server.stop) == 0
                async with asyncio.timeout(5):
                    await reader.ended.wait()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_stream_ends_after_its_maximum_lifetime_and_resumes(tmp_path: Path) -> None:
    """`EVENTS_MAX_STREAM_SECONDS`: the stream ends cleanly, and the client resumes from its
    last id with nothing lost."""
    database = f"sqlite:///{tmp_path / 'lifetime.db'}"
    env = server_env(database, tmp_path) | {"EVENTS_MAX_STREAM_SECONDS": "1.5"}
    with running_server([], cwd=tmp_path, env=env) as server:
        user = new_user("lifetime")
        async with client(server) as http, client(server) as writer:
            async with open_stream(http, bearer(user)) as reader:
                opened = time.monotonic()
                first = await create(writer, user, "first")
                event = await reader.next()
                assert event.data == {"type": "upsert", "task": first}
                async with asyncio.timeout(5):
                    await reader.ended.wait()
                assert reader.ended_at is not None
                assert 1.2 <= reader.ended_at - opened <= 3.0
            second = await create(writer, user, "second")
            assert event.id is not None
            async with open_stream(http, {**bearer(user), "Last-Event-ID": event.id}) as reader:
                assert (await reader.next()).data == {"type": "upsert", "task": second}
        stderr = server.stderr()
    assert "Event stream ended: EVENTS_MAX_STREAM_SECONDS reached" in stderr
