"""`/mcp` as an AI agent reaches it (SPEC §12): the official `mcp` client over real HTTP
against `todo-api serve --workers 2`, once on PostgreSQL and once on SQLite.

What is shown: the initialize handshake (and the SDK's default `mode="auto"`), the eight
tools with their schemas, every tool called once with what the database holds afterwards
checked and the writes in the change feed; the 401 challenge naming the protected-resource
metadata (and the client failing at once rather than hanging), the metadata itself;
isolation between users; invalid arguments refused as tool results naming the field, with
nothing written and nothing logged as an error; one client session served by both workers.

With `MCP_TRANSCRIPT=<path>` set, the transcript test also writes a real session as
Markdown to that path (the README's example)."""

import asyncio
import json
import os
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION

from tests.conftest import (
    fetch,
    make_token,
    stored_tags,
    throwaway_database,
)
from tests.mcp_tools import TOOL_NAMES
from tests.processes import Server, log_entries, running_server, server_environment
from todo_api.mcp.server import INSTRUCTIONS

pytestmark = pytest.mark.slow

REQUIRED_ARGUMENTS = {
    "add_task": ["title"],
    "list_tasks": [],
    "get_task": ["task_id"],
    "update_task": ["task_id"],
    "complete_task": ["task_id"],
    "delete_task": ["task_id"],
    "task_stats": [],
    "list_tags": [],
}
READ_ONLY = {"list_tasks", "get_task", "task_stats", "list_tags"}
NOT_AUTHORIZED = "Not authorized to access this task"
NOT_FOUND = "Task not found"
MADE_UP_ID = "00000000-0000-4000-8000-000000000000"
# An MCP client's first message, as raw JSON-RPC.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-httpx", "version": "1"},
    },
}
MCP_ACCEPT = "application/json, text/event-stream"
CALL_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------------
# The servers and what their databases hold


@dataclass
class Deployment:
    """A running `todo-api serve --workers 2` and a direct view of its database."""

    server: Server
    database: str  # "sqlite" or "postgresql"
    url: str  # its DATABASE_URL

    @property
    def mcp_url(self) -> str:
        return self.server.base_url + "/mcp"

    async def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Rows of a query written with `$1`-style parameters; task ids may be `uuid.UUID`."""
        if self.database == "postgresql":
            return await fetch(self.url, sql, *args)
        sqlite_sql = re.sub(r"\$(\d+)", r"?\1", sql)
        # SQLite stores a UUID as its 32 hex digits.
        sqlite_args = tuple(arg.hex if isinstance(arg, uuid.UUID) else arg for arg in args)
        return await asyncio.to_thread(self._sqlite_rows, sqlite_sql, sqlite_args)

    def _sqlite_rows(self, sql: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        path = self.url.removeprefix("sqlite:///")
        with closing(sqlite3.connect(path, timeout=10)) as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(sql, args)]

    async def task(self, task_id: str) -> dict[str, Any] | None:
        """The task's row as stored, in the shape `as_stored` gives the API's JSON."""
        rows = await self.rows(
            "SELECT id, user_id, title, description, completed, priority, due_date, tags,"
            " completed_at, created_at, updated_at FROM tasks WHERE id = $1",
            uuid.UUID(task_id),
        )
        if not rows:
            return None
        row = rows[0]
        return {
            "id": str(uuid.UUID(str(row["id"]))),
            "user_id": row["user_id"],
            "title": row["title"],
            "description": row["description"],
            "completed": bool(row["completed"]),
            "priority": row["priority"],
            "due_date": stored_instant(row["due_date"]),
            "tags": stored_tags(row["tags"]),
            "completed_at": stored_instant(row["completed_at"]),
            "created_at": stored_instant(row["created_at"]),
            "updated_at": stored_instant(row["updated_at"]),
        }

    async def count(self, user: str | None = None) -> int:
        if user is None:
            rows = await self.rows("SELECT count(*) AS n FROM tasks")
        else:
            rows = await self.rows("SELECT count(*) AS n FROM tasks WHERE user_id = $1", user)
        return int(rows[0]["n"])


def stored_instant(value: Any) -> datetime | None:
    """A stored timestamp as an aware UTC datetime (SQLite: naive UTC text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime), value
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def api_instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def as_stored(task: dict[str, Any]) -> dict[str, Any]:
    """The task JSON of a tool's result, in the shape `Deployment.task` reads a row."""
    return {
        "id": task["id"],
        "user_id": task["user_id"],
        "title": task["title"],
        "description": task["description"],
        "completed": task["completed"],
        "priority": task["priority"],
        "due_date": api_instant(task["due_date"]),
        "tags": task["tags"],
        "completed_at": api_instant(task["completed_at"]),
        "created_at": api_instant(task["created_at"]),
        "updated_at": api_instant(task["updated_at"]),
    }


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """One server with two workers per database, for the whole module; it must stop cleanly."""
    cwd = tmp_path_factory.mktemp(f"mcp_{request.param}")
    args = ["--host", "127.0.0.1", "--workers", "2"]
    if request.param == "sqlite":
        url = f"sqlite:///{cwd / 'todo.db'}"
        with running_server(args, cwd=cwd, env=server_environment(url, cwd / "state")) as server:
            yield Deployment(server, "sqlite", url)
            assert server.stop() == 0, server.stderr()
        return
    admin_url: str = request.getfixturevalue("postgres_admin_url")
    with (
        throwaway_database(admin_url, "todo_api_mcp") as url,
        running_server(args, cwd=cwd, env=server_environment(url, cwd / "state")) as server,
    ):
        yield Deployment(server, "postgresql", url)
        assert server.stop() == 0, server.stderr()


def new_user(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def assert_clean_log(server: Server) -> None:
    """No error logged, no traceback, no answer of 500 or more, so far."""
    stderr = server.stderr()
    assert "Traceback" not in stderr, stderr
    entries = log_entries(stderr)
    errors = [e for e in entries if e.get("level") in {"error", "critical"}]
    assert errors == [], errors
    failures = [e for e in entries if e.get("message") == "request" and e["status"] >= 500]
    assert failures == [], failures


# ---------------------------------------------------------------------------------------------
# The official client


@asynccontextmanager
async def mcp_client(
    deployment: Deployment,
    token: str | None,
    *,
    mode: str = "legacy",
    keep_alive: bool = True,
    on_response: Any = None,
) -> AsyncIterator[Client]:
    """`mcp.Client` on `/mcp` with the bearer token in every request's `Authorization`."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    limits = httpx2.Limits(max_keepalive_connections=20 if keep_alive else 0)
    hooks = {} if on_response is None else {"response": [on_response]}
    async with (
        httpx2.AsyncClient(
            headers=headers, timeout=CALL_TIMEOUT, limits=limits, event_hooks=hooks
        ) as http,
        Client(
            streamable_http_client(deployment.mcp_url, http_client=http),
            mode=mode,
            read_timeout_seconds=CALL_TIMEOUT,
        ) as client,
    ):
        yield client


def texts(result: CallToolResult) -> list[str]:
    assert all(isinstance(item, TextContent) for item in result.content), result.content
    return [item.text for item in result.content if isinstance(item, TextContent)]


async def succeed(client: Client, tool: str, arguments: dict[str, Any]) -> tuple[Any, str]:
    """A successful call's structured content and its sentence (the content's first text,
    the second being the same JSON as the structured content)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error is False, result.content
    sentence, serialised = texts(result)
    assert json.loads(serialised) == result.structured_content
    return result.structured_content, sentence


async def refuse(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A refused call, as the REST error body: the content's first text is its sentence
    (`detail`); a validation error adds the whole body, with its `errors`, as a second text.
    No structured content, which clients would check against the tool's output schema."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error is True, result
    assert result.structured_content is None, result
    sentence, *rest = texts(result)
    if not rest:
        return {"detail": sentence}
    [serialised] = rest
    body: dict[str, Any] = json.loads(serialised)
    assert body["detail"] == sentence
    return body


def token(user: str) -> str:
    return make_token(user, ttl=600)


async def changes(deployment: Deployment, user: str) -> list[dict[str, Any]]:
    """The user's change feed from the start, read over REST with the same kind of token."""
    async with httpx.AsyncClient(base_url=deployment.server.base_url, timeout=10) as http:
        response = await http.get(
            "/api/tasks/changes",
            params={"since": "0"},
            headers={"Authorization": f"Bearer {token(user)}"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["has_more"] is False
    feed: list[dict[str, Any]] = body["changes"]
    return feed


# ---------------------------------------------------------------------------------------------
# 1. Handshake, tool listing, every tool against the database


async def test_initialize_lists_the_eight_tools_with_their_schemas(
    deployment: Deployment,
) -> None:
    async with mcp_client(deployment, token(new_user("listing")), mode="legacy") as client:
        initialized = client.session.initialize_result
        assert initialized is not None
        assert client.protocol_version == LATEST_HANDSHAKE_VERSION == "2025-11-25"
        info = initialized.server_info
        assert (info.name, info.title, info.version) == (
            "todo-api",
            "Todo API",
            version("todo-api"),
        )
        assert initialized.instructions == INSTRUCTIONS
        assert initialized.capabilities.tools is not None
        listing = await client.list_tools()
    assert listing.next_cursor is None
    assert [tool.name for tool in listing.tools] == TOOL_NAMES
    for tool in listing.tools:
        schema = tool.input_schema
        assert schema["type"] == "object", tool.name
        assert isinstance(schema["properties"], dict), tool.name
        assert schema["additionalProperties"] is False, tool.name
        assert schema.get("required", []) == REQUIRED_ARGUMENTS[tool.name], tool.name
        assert tool.output_schema is not None, tool.name
        assert tool.output_schema["type"] == "object", tool.name
        assert tool.description, tool.name
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is (tool.name in READ_ONLY), tool.name
    schemas = {tool.name: tool for tool in listing.tools}
    assert schemas["delete_task"].annotations is not None
    assert schemas["delete_task"].annotations.destructive_hint is True
    add = schemas["add_task"].input_schema["properties"]
    assert {"title", "description", "priority", "due_date", "tags", "recurrence"} <= set(add)
    assert add["title"]["maxLength"] == 200
    assert add["priority"]["anyOf"][0]["enum"] == ["low", "medium", "high"]
    listing_arguments = set(schemas["list_tasks"].input_schema["properties"])
    assert {
        "status",
        "priority",
        "q",
        "tag",
        "sort",
        "order",
        "limit",
        "cursor",
    } <= listing_arguments
    assert set(schemas["get_task"].input_schema["properties"]) == {"task_id"}
    assert set(schemas["complete_task"].input_schema["properties"]) == {"task_id", "completed"}
    assert schemas["task_stats"].input_schema["properties"] == {}
    assert schemas["list_tags"].input_schema["properties"] == {}
    page = schemas["list_tasks"].output_schema
    assert page is not None
    assert set(page["properties"]) == {"tasks", "next_cursor"}
    stats = schemas["task_stats"].output_schema
    assert stats is not None
    assert set(stats["properties"]) == {"total", "completed", "pending", "overdue"}


async def test_the_default_auto_mode_negotiates_the_modern_protocol(
    deployment: Deployment,
) -> None:
    """`mode="auto"` probes `server/discover`; the SDK's server answers it, so the session
    runs on the modern protocol, without an initialize handshake."""
    user = new_user("auto")
    async with mcp_client(deployment, token(user), mode="auto") as client:
        assert client.protocol_version == LATEST_MODERN_VERSION == "2026-07-28"
        assert client.session.initialize_result is None
        assert client.server_info is not None
        assert client.server_info.name == "todo-api"
        listing = await client.list_tools()
        assert [tool.name for tool in listing.tools] == TOOL_NAMES
        task, sentence = await succeed(client, "add_task", {"title": "Water the plants"})
        assert sentence == f"Created task 'Water the plants' with id {task['id']}."
        assert (await succeed(client, "get_task", {"task_id": task["id"]}))[0] == task
    assert await deployment.task(task["id"]) == as_stored(task)
    assert task["user_id"] == user


async def test_every_tool_acts_on_the_database_and_the_change_feed(
    deployment: Deployment,
) -> None:
    user = new_user("tools")
    async with mcp_client(deployment, token(user)) as client:
        # add_task
        milk, sentence = await succeed(
            client,
            "add_task",
            {
                "title": "Buy milk",
                "description": "Two litres",
                "priority": "high",
                "due_date": "2020-01-06T09:00:00Z",
                "tags": ["errands", "home"],
            },
        )
        assert sentence == f"Created task 'Buy milk' with id {milk['id']}."
        assert {k: milk[k] for k in ("user_id", "title", "description", "priority", "tags")} == {
            "user_id": user,
            "title": "Buy milk",
            "description": "Two litres",
            "priority": "high",
            "tags": ["errands", "home"],
        }
        assert milk["due_date"] == "2020-01-06T09:00:00Z"
        assert (milk["completed"], milk["completed_at"]) == (False, None)
        assert await deployment.task(milk["id"]) == as_stored(milk)
        assert await changes(deployment, user) == [{"type": "upsert", "task": milk}]

        taxes, _ = await succeed(client, "add_task", {"title": "File taxes", "tags": ["home"]})
        assert await deployment.count(user) == 2

        # get_task
        got, sentence = await succeed(client, "get_task", {"task_id": milk["id"]})
        assert got == milk
        assert sentence == "Task 'Buy milk' is not done."

        # update_task: a field changed, one cleared, the tags replaced, the rest kept
        updated, sentence = await succeed(
            client,
            "update_task",
            {"task_id": milk["id"], "title": "Buy oat milk", "priority": None, "tags": ["errands"]},
        )
        assert sentence == "Updated task 'Buy oat milk'."
        assert updated == {
            **milk,
            "title": "Buy oat milk",
            "priority": None,
            "tags": ["errands"],
            "updated_at": updated["updated_at"],
        }
        assert updated["updated_at"] > milk["updated_at"]
        assert await deployment.task(milk["id"]) == as_stored(updated)

        # complete_task
        done, sentence = await succeed(
            client, "complete_task", {"task_id": taxes["id"], "completed": True}
        )
        assert sentence == "Task 'File taxes' is now done."
        assert done["completed"] is True
        assert done["completed_at"] is not None
        assert done["completed_at"] == done["updated_at"]
        stored = await deployment.task(taxes["id"])
        assert stored == as_stored(done)
        assert stored is not None
        assert stored["completed"] is True
        assert stored["completed_at"] == api_instant(done["completed_at"])

        # task_stats: the milk is pending and overdue (due in 2020), the taxes done
        stats, sentence = await succeed(client, "task_stats", {})
        assert stats == {"total": 2, "completed": 1, "pending": 1, "overdue": 1}
        assert sentence == "2 tasks: 1 pending (1 overdue), 1 completed."

        # list_tags
        tags, sentence = await succeed(client, "list_tags", {})
        assert tags == {"tags": [{"name": "errands", "count": 1}, {"name": "home", "count": 1}]}
        assert sentence == "Your tags: errands, home."

        # list_tasks: newest first, filters, pages
        page, sentence = await succeed(client, "list_tasks", {})
        assert page == {"tasks": [done, updated], "next_cursor": None}
        assert sentence == "Found 2 tasks."
        page, _ = await succeed(client, "list_tasks", {"status": "completed"})
        assert page == {"tasks": [done], "next_cursor": None}
        page, _ = await succeed(client, "list_tasks", {"tag": ["errands"], "due": "overdue"})
        assert page == {"tasks": [updated], "next_cursor": None}
        first, sentence = await succeed(client, "list_tasks", {"limit": 1, "sort": "title"})
        assert first["tasks"] == [updated]
        assert isinstance(first["next_cursor"], str)
        assert sentence == "Found 1 task; more follow with `cursor`."
        rest, _ = await succeed(
            client, "list_tasks", {"limit": 1, "sort": "title", "cursor": first["next_cursor"]}
        )
        assert rest == {"tasks": [done], "next_cursor": None}

        # delete_task
        deleted, sentence = await succeed(client, "delete_task", {"task_id": milk["id"]})
        assert deleted == {"id": milk["id"], "deleted": True}
        assert sentence == f"Deleted task {milk['id']}."
        assert await deployment.task(milk["id"]) is None
        assert await deployment.count(user) == 1
        assert (await refuse(client, "get_task", {"task_id": milk["id"]})) == {"detail": NOT_FOUND}

    # Every write went through the change feed: the latest state of each task, in order.
    assert await changes(deployment, user) == [
        {"type": "upsert", "task": done},
        {"type": "delete", "id": milk["id"]},
    ]
    assert_clean_log(deployment.server)


# ---------------------------------------------------------------------------------------------
# 2. Authentication


def challenge(deployment: Deployment, *, invalid: bool) -> str:
    metadata = f"{deployment.server.base_url}/.well-known/oauth-protected-resource/mcp"
    error = 'error="invalid_token", ' if invalid else ""
    return f'Bearer {error}resource_metadata="{metadata}"'


def leaves(failure: BaseException) -> list[BaseException]:
    if isinstance(failure, BaseExceptionGroup):
        return [leaf for inner in failure.exceptions for leaf in leaves(inner)]
    return [failure]


async def test_without_a_valid_token_the_answer_is_a_401_naming_the_resource_metadata(
    deployment: Deployment,
) -> None:
    base = deployment.server.base_url
    user = new_user("refused")
    expired = make_token(user, ttl=-120)  # beyond the 30 s leeway
    forged = make_token(user, secret="another-secret-that-is-long-enough-for-hs256-xyz")
    cases = [
        (None, "Missing bearer token.", challenge(deployment, invalid=False)),
        ("not-a-token", "Token is malformed or its signature is invalid.", None),
        (forged, "Token is malformed or its signature is invalid.", None),
        (expired, "Token has expired.", None),
    ]
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        for bad, detail, expected_challenge in cases:
            headers = {"Accept": MCP_ACCEPT}
            if bad is not None:
                headers["Authorization"] = f"Bearer {bad}"
            response = await http.post("/mcp", json=INITIALIZE, headers=headers)
            assert response.status_code == 401, response.text
            assert response.json() == {"detail": detail}
            assert response.headers["www-authenticate"] == (
                expected_challenge or challenge(deployment, invalid=True)
            )

        # The official client fails at once, in either mode, rather than hanging.
        for bad in (None, "not-a-token", expired):
            for mode in ("legacy", "auto"):
                started = time.monotonic()
                # The SDK raises its error out of its task groups; a hang would end in
                # TimeoutError, which this does not catch.
                with pytest.raises(ExceptionGroup) as caught:
                    async with (
                        asyncio.timeout(CALL_TIMEOUT),
                        mcp_client(deployment, bad, mode=mode) as client,
                    ):
                        await client.list_tools()
                failures = leaves(caught.value)
                assert all(isinstance(leaf, MCPError) for leaf in failures), failures
                assert time.monotonic() - started < 5

        # No user row for any refused token's subject, and no task.
        assert await deployment.rows("SELECT id FROM users WHERE id = $1", user) == []

        # The metadata the challenge names, at RFC 9728's place and at the bare well-known one.
        for path in (
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ):
            response = await http.get(path)
            assert response.status_code == 200, response.text
            assert response.json() == {
                "resource": f"{base}/mcp",
                "bearer_methods_supported": ["header"],
                "resource_name": "Todo API",
                "resource_documentation": f"{base}/docs",
            }

        # A page on a foreign site is turned away even with a valid token; CORS_ORIGINS' is not.
        valid = {"Authorization": f"Bearer {token(user)}", "Accept": MCP_ACCEPT}
        foreign = await http.post(
            "/mcp", json=INITIALIZE, headers={**valid, "Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
        assert foreign.json() == {"detail": "Requests from this origin are not allowed."}
        allowed = await http.post(
            "/mcp", json=INITIALIZE, headers={**valid, "Origin": "http://localhost:3000"}
        )
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["result"]["serverInfo"]["name"] == "todo-api"
    assert_clean_log(deployment.server)


# ---------------------------------------------------------------------------------------------
# 3. Isolation


async def test_another_users_task_is_refused_and_left_unchanged(deployment: Deployment) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    async with (
        mcp_client(deployment, token(alice)) as as_alice,
        mcp_client(deployment, token(bob)) as as_bob,
    ):
        secret, _ = await succeed(
            as_alice, "add_task", {"title": "Alice's surprise party", "tags": ["private"]}
        )
        before = await deployment.task(secret["id"])
        assert before == as_stored(secret)

        attempts: list[tuple[str, dict[str, Any]]] = [
            ("get_task", {"task_id": secret["id"]}),
            ("update_task", {"task_id": secret["id"], "title": "Cancelled"}),
            ("complete_task", {"task_id": secret["id"], "completed": True}),
            ("complete_task", {"task_id": secret["id"]}),
            ("delete_task", {"task_id": secret["id"]}),
        ]
        for tool, arguments in attempts:
            assert await refuse(as_bob, tool, arguments) == {"detail": NOT_AUTHORIZED}, tool
            assert await deployment.task(secret["id"]) == before, tool

        for tool, arguments in attempts:
            made_up = {**arguments, "task_id": MADE_UP_ID}
            assert await refuse(as_bob, tool, made_up) == {"detail": NOT_FOUND}, tool

        # Bob's listings never show Alice's task, whatever the filter.
        for arguments in ({}, {"q": "surprise"}, {"tag": ["private"]}, {"status": "all"}):
            page, _ = await succeed(as_bob, "list_tasks", arguments)
            assert page == {"tasks": [], "next_cursor": None}, arguments
        own, _ = await succeed(as_bob, "add_task", {"title": "Bob's own"})
        page, _ = await succeed(as_bob, "list_tasks", {})
        assert page == {"tasks": [own], "next_cursor": None}
        stats, _ = await succeed(as_bob, "task_stats", {})
        assert stats == {"total": 1, "completed": 0, "pending": 1, "overdue": 0}
        assert (await succeed(as_bob, "list_tags", {}))[0] == {"tags": []}

        # Alice still sees exactly her task.
        page, _ = await succeed(as_alice, "list_tasks", {})
        assert page == {"tasks": [secret], "next_cursor": None}
    assert await deployment.count(alice) == 1
    assert await deployment.count(bob) == 1
    assert await changes(deployment, alice) == [{"type": "upsert", "task": secret}]


# ---------------------------------------------------------------------------------------------
# 4. Invalid arguments


def invalid(field: str, message: str) -> dict[str, Any]:
    return {
        "detail": f"Invalid field '{field}': {message}.",
        "errors": [{"field": field, "message": message}],
    }


async def test_invalid_arguments_are_refused_naming_the_field_and_write_nothing(
    deployment: Deployment,
) -> None:
    user = new_user("invalid")
    async with mcp_client(deployment, token(user)) as client:
        kept, _ = await succeed(client, "add_task", {"title": "Pay rent", "priority": "low"})
        task_id = kept["id"]
        row_before = await deployment.task(task_id)
        all_before = await deployment.count()

        string = "Input should be a valid string"
        priorities = "Input should be 'low', 'medium' or 'high'"
        not_allowed = "Extra inputs are not permitted"
        refusals: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("add_task", {"title": 5}, invalid("title", string)),
            ("add_task", {"title": "x" * 201}, invalid("title", "must be at most 200 characters")),
            (
                "add_task",
                {"title": "Pay rent", "priority": "urgent"},
                invalid("priority", priorities),
            ),
            ("add_task", {"title": "Pay rent", "due": "2026-01-01"}, invalid("due", not_allowed)),
            (
                "add_task",
                {"title": "Pay rent", "tags": "bills"},
                invalid("tags", "Input should be a valid list"),
            ),
            ("add_task", {}, invalid("title", "Field required")),
            (
                "list_tasks",
                {"status": "done"},
                invalid("status", "Input should be 'all', 'pending' or 'completed'"),
            ),
            (
                "list_tasks",
                {"limit": 0},
                invalid("limit", "Input should be greater than or equal to 1"),
            ),
            (
                "get_task",
                {"task_id": "not-a-uuid"},
                invalid(
                    "task_id", "Input should be a valid UUID, invalid character: found `n` at 0"
                ),
            ),
            ("update_task", {"task_id": task_id, "title": 5}, invalid("title", string)),
            (
                "update_task",
                {"task_id": task_id, "title": ""},
                invalid("title", "title must not be blank"),
            ),
            (
                "update_task",
                {"task_id": task_id, "priority": "urgent"},
                invalid("priority", priorities),
            ),
            ("update_task", {"task_id": task_id, "name": "Pay"}, invalid("name", not_allowed)),
            (
                "complete_task",
                {"task_id": task_id, "completed": "yes"},
                invalid("completed", "Input should be a valid boolean"),
            ),
            ("task_stats", {"verbose": True}, invalid("verbose", not_allowed)),
        ]
        for tool, arguments, expected in refusals:
            body = await refuse(client, tool, arguments)
            assert body == expected, (tool, arguments)
            assert f"'{expected['errors'][0]['field']}'" in body["detail"]

        # A malformed id, in each tool that takes one: the sentence names `task_id`.
        for tool in ("get_task", "update_task", "complete_task", "delete_task"):
            body = await refuse(client, tool, {"task_id": "123"})
            assert body["detail"].startswith(
                "Invalid field 'task_id': Input should be a valid UUID"
            )
            assert [error["field"] for error in body["errors"]] == ["task_id"]

        unknown = await refuse(client, "remove_task", {"task_id": task_id})
        assert unknown == {
            "detail": "Unknown tool 'remove_task'; the tools are " + ", ".join(TOOL_NAMES) + "."
        }

        # Nothing written: the same rows, the task untouched, the feed holding only its creation.
        assert await deployment.count() == all_before
        assert await deployment.count(user) == 1
        assert await deployment.task(task_id) == row_before
        page, _ = await succeed(client, "list_tasks", {})
        assert page == {"tasks": [kept], "next_cursor": None}
    assert await changes(deployment, user) == [{"type": "upsert", "task": kept}]
    assert_clean_log(deployment.server)


# ---------------------------------------------------------------------------------------------
# 5. Stateless: one session, both workers


@dataclass
class Exchange:
    """One HTTP request of the session: its JSON-RPC method and tool, and the request id the
    server answered with (which the access log pairs with the worker's pid)."""

    method: str
    tool: str | None
    request_id: str
    status: int


def worker_pids(server: Server) -> set[int]:
    started = re.compile(r"Started server process \[(\d+)\]")
    return {
        int(match.group(1))
        for entry in log_entries(server.stderr())
        if (match := started.fullmatch(str(entry.get("message"))))
    }


async def served_by(server: Server, exchanges: list[Exchange]) -> list[int]:
    """The worker pid of each exchange, from the access log (waiting for the last lines)."""
    wanted = {exchange.request_id for exchange in exchanges}
    deadline = time.monotonic() + 5
    while True:
        pids = {
            entry["request_id"]: entry["worker_pid"]
            for entry in log_entries(server.stderr())
            if entry.get("message") == "request" and entry.get("route") == "/mcp"
        }
        if wanted <= set(pids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    missing = wanted - set(pids)
    assert not missing, f"requests missing from the access log: {missing}"
    return [pids[exchange.request_id] for exchange in exchanges]


async def test_one_session_is_served_by_both_workers(deployment: Deployment) -> None:
    user = new_user("stateless")
    exchanges: list[Exchange] = []

    async def record(response: httpx2.Response) -> None:
        message = json.loads(response.request.content)
        params = message.get("params") or {}
        exchanges.append(
            Exchange(
                message["method"],
                params.get("name"),
                response.headers["x-request-id"],
                response.status_code,
            )
        )

    created: list[dict[str, Any]] = []
    crossed = False  # a task created on one worker and read on the other
    async with mcp_client(deployment, token(user), keep_alive=False, on_response=record) as client:
        for number in range(30):
            task, _ = await succeed(client, "add_task", {"title": f"Step {number}"})
            created.insert(0, task)
            add_index = len(exchanges) - 1
            assert await succeed(client, "get_task", {"task_id": task["id"]}) == (
                task,
                f"Task 'Step {number}' is not done.",
            )
            page, _ = await succeed(client, "list_tasks", {"limit": 1000})
            assert page == {"tasks": created, "next_cursor": None}
            pids = await served_by(deployment.server, exchanges)
            crossed = crossed or pids[add_index] != pids[add_index + 1]
            if number >= 9 and crossed and len(set(pids)) == 2:
                break
    pids = await served_by(deployment.server, exchanges)
    assert exchanges[0].method == "initialize"
    assert all(exchange.status in {200, 202} for exchange in exchanges), exchanges
    assert len(exchanges) >= 32  # initialize, initialized, then at least 10 rounds of 3 calls
    assert set(pids) == worker_pids(deployment.server), pids
    assert len(set(pids)) == 2
    assert crossed, list(zip(exchanges, pids, strict=True))
    calls_off_the_initializing_worker = [
        exchange
        for exchange, pid in zip(exchanges, pids, strict=True)
        if exchange.method == "tools/call" and pid != pids[0]
    ]
    assert calls_off_the_initializing_worker
    assert await deployment.count(user) == len(created)
    assert [change["task"] for change in await changes(deployment, user)] == created[::-1]


# ---------------------------------------------------------------------------------------------
# The README's transcript


def json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False) + "\n```"


async def record_session(deployment: Deployment) -> str:
    """A real session of the official client, as Markdown: the handshake, the tool list, an
    add, a listing, a completion, and another user's attempt on the task."""
    owner, other = new_user("ada"), new_user("eve")
    lines = [
        "# An MCP session with the official client",
        "",
        "Recorded by `tests/test_mcp_processes.py` (`MCP_TRANSCRIPT=<path>`) against"
        " `todo-api serve --workers 2`, with the official `mcp` Python SDK's client over"
        " streamable HTTP; the bearer token is the one the REST API takes.",
        "",
        "```python",
        "import httpx2",
        "from mcp import Client",
        "from mcp.client.streamable_http import streamable_http_client",
        "",
        'http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"})',
        'async with Client(streamable_http_client("http://127.0.0.1:8000/mcp", http_client=http),',
        '                  mode="legacy") as client:',
        '    result = await client.call_tool("add_task", {"title": "Renew passport"})',
        "```",
        "",
    ]

    async def call(client: Client, who: str, tool: str, arguments: dict[str, Any]) -> Any:
        result = await client.call_tool(tool, arguments)
        lines.append(f"**{who}**: `tools/call` `{tool}` `{json.dumps(arguments)}`")
        lines.append("")
        lines.append(f"- isError: `{'true' if result.is_error else 'false'}`")
        lines.append(f"- text: {texts(result)[0]}")
        if result.structured_content is not None:
            lines.append("- structuredContent:")
            lines.append("")
            lines.append(json_block(result.structured_content))
        lines.append("")
        return result

    async with (
        mcp_client(deployment, token(owner)) as client,
        mcp_client(deployment, token(other)) as intruder,
    ):
        initialized = client.session.initialize_result
        assert initialized is not None
        server_info = initialized.server_info.model_dump(exclude_none=True)
        lines.append(f"`initialize`: protocol version `{client.protocol_version}`, serverInfo")
        lines.append(f"`{json.dumps(server_info)}`")
        lines.append("")
        listing = await client.list_tools()
        names = [tool.name for tool in listing.tools]
        lines.append("`tools/list`: " + ", ".join(f"`{name}`" for name in names))
        lines.append("")
        added = await call(
            client,
            "user",
            "add_task",
            {
                "title": "Renew passport",
                "priority": "high",
                "due_date": "2030-03-01",
                "tags": ["admin"],
            },
        )
        task_id = added.structured_content["id"]
        listed = await call(client, "user", "list_tasks", {"status": "pending", "tag": ["admin"]})
        completed = await call(
            client, "user", "complete_task", {"task_id": task_id, "completed": True}
        )
        refused = await call(intruder, "another user", "get_task", {"task_id": task_id})
    assert names == TOOL_NAMES
    assert added.is_error is False
    assert listed.structured_content == {"tasks": [added.structured_content], "next_cursor": None}
    assert completed.structured_content["completed"] is True
    assert refused.is_error is True
    assert texts(refused) == [NOT_AUTHORIZED]
    return "\n".join(lines)


async def test_a_recorded_session_for_the_readme(deployment: Deployment) -> None:
    """Always run (and checked); written to `$MCP_TRANSCRIPT` when that is set (once: the
    SQLite run's)."""
    transcript = await record_session(deployment)
    assert NOT_AUTHORIZED in transcript
    destination = os.environ.get("MCP_TRANSCRIPT")
    if destination and deployment.database == "sqlite":
        await asyncio.to_thread(Path(destination).write_text, transcript)
