"""`/mcp` in-process, on both databases: each tool through JSON-RPC over HTTP, checked against
what the database holds afterwards; isolation, validation and the change feed as REST has them.

(The official client against real `todo-api serve --workers 2` processes is
tests/test_mcp_processes.py.)"""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response

from tests.conftest import TASK_FIELDS, DatabaseProbe, TaskFactory, auth, stored_tags
from tests.mcp_tools import TOOL_NAMES

PROTOCOL = "2025-06-18"
NOT_PERMITTED = "Not authorized to access this task"
NOT_FOUND = "Task not found"


async def rpc(
    client: AsyncClient, method: str, params: dict[str, Any] | None = None, *, user: str = "alice"
) -> Response:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        message["params"] = params
    headers = {
        **auth(user),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": PROTOCOL,
    }
    return await client.post("/mcp", json=message, headers=headers)


async def call(
    client: AsyncClient, tool: str, arguments: dict[str, Any] | None = None, *, user: str = "alice"
) -> dict[str, Any]:
    """The tool's result (asserting a JSON-RPC answer, not an error)."""
    response = await rpc(
        client, "tools/call", {"name": tool, "arguments": arguments or {}}, user=user
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert "error" not in body, body
    result: dict[str, Any] = body["result"]
    return result


async def succeeded(
    client: AsyncClient, tool: str, arguments: dict[str, Any] | None = None, *, user: str = "alice"
) -> dict[str, Any]:
    """The structured content of a call that must succeed; its text is one sentence, then the
    same content as JSON."""
    result = await call(client, tool, arguments, user=user)
    assert result["isError"] is False, result
    sentence, data = result["content"]
    assert sentence["type"] == "text"
    assert sentence["text"].endswith("."), sentence
    structured: dict[str, Any] = result["structuredContent"]
    assert data == {"type": "text", "text": json.dumps(structured)}
    return structured


async def refused(
    client: AsyncClient, tool: str, arguments: dict[str, Any], *, user: str = "alice"
) -> dict[str, Any]:
    """The REST error body of a call that must be refused: its sentence is the text, then the
    whole body as JSON when it names fields. No structured content: that must match the
    tool's output schema, which an error does not."""
    result = await call(client, tool, arguments, user=user)
    assert result["isError"] is True, result
    assert "structuredContent" not in result
    sentence, *rest = result["content"]
    body: dict[str, Any] = {"detail": sentence["text"]}
    if rest:
        [details] = rest
        body = json.loads(details["text"])
        assert body["detail"] == sentence["text"]
    return body


# ---------------------------------------------------------------------------------------------
# The protocol: initialize and the tool list


async def test_initialize_names_the_server_and_offers_tools(client: AsyncClient) -> None:
    response = await rpc(
        client,
        "initialize",
        {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "pytest", "version": "1"},
        },
    )
    assert response.status_code == 200, response.text
    assert "mcp-session-id" not in response.headers  # stateless: nothing to come back to
    result = response.json()["result"]
    assert result["protocolVersion"] == PROTOCOL
    assert result["serverInfo"]["name"] == "todo-api"
    assert "tools" in result["capabilities"]
    assert "signed-in user" in result["instructions"]


async def test_the_eight_tools_have_the_rest_models_schemas(client: AsyncClient) -> None:
    response = await rpc(client, "tools/list")
    assert response.status_code == 200, response.text
    tools = {tool["name"]: tool for tool in response.json()["result"]["tools"]}
    assert list(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool["description"]
        assert tool["title"]
        assert tool["inputSchema"]["type"] == "object"
        assert tool["inputSchema"]["additionalProperties"] is False
        assert tool["outputSchema"]["type"] == "object"
    add = tools["add_task"]["inputSchema"]
    assert add["required"] == ["title"]
    assert add["properties"]["title"]["maxLength"] == 200
    assert add["properties"]["priority"]["anyOf"][0]["enum"] == ["low", "medium", "high"]
    assert set(tools["add_task"]["outputSchema"]["properties"]) == TASK_FIELDS
    assert tools["get_task"]["inputSchema"]["required"] == ["task_id"]
    assert tools["update_task"]["inputSchema"]["required"] == ["task_id"]
    listing = tools["list_tasks"]["inputSchema"]["properties"]
    assert {"status", "priority", "q", "sort", "order", "limit", "cursor", "tag", "due"} <= set(
        listing
    )
    assert set(tools["list_tasks"]["outputSchema"]["properties"]) == {"tasks", "next_cursor"}
    assert tools["delete_task"]["annotations"]["destructiveHint"] is True
    assert tools["list_tasks"]["annotations"]["readOnlyHint"] is True


# ---------------------------------------------------------------------------------------------
# Each tool, and what the database holds after it


async def test_add_task_writes_the_task_as_rest_would(
    client: AsyncClient, db: DatabaseProbe
) -> None:
    task = await succeeded(
        client,
        "add_task",
        {
            "title": "  Renew passport ",
            "priority": "high",
            "tags": ["Admin", "admin", "travel"],
            "due_date": "2026-12-01",
        },
    )
    assert set(task) == TASK_FIELDS
    assert task["title"] == "Renew passport"
    assert task["user_id"] == "alice"
    assert task["tags"] == ["Admin", "travel"]
    assert task["due_date"] == "2026-12-01T00:00:00Z"
    row = await db.task(task["id"])
    assert row is not None
    assert (row["title"], row["priority"], row["user_id"]) == ("Renew passport", "high", "alice")
    assert stored_tags(row["tags"]) == ["Admin", "travel"]
    rest = await client.get(f"/api/tasks/{task['id']}", headers=auth("alice"))
    assert rest.json() == task


async def test_list_tasks_filters_sorts_and_pages(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    for title in ("b", "a", "c"):
        await create_task(title=title, tags=["home"])
    await create_task(title="work item", tags=["work"])
    await create_task(title="someone else's", user="bob", tags=["home"])

    first = await succeeded(client, "list_tasks", {"tag": ["home"], "sort": "title", "limit": 2})
    assert [task["title"] for task in first["tasks"]] == ["a", "b"]
    assert first["next_cursor"]
    rest = await succeeded(
        client,
        "list_tasks",
        {"tag": ["home"], "sort": "title", "limit": 2, "cursor": first["next_cursor"]},
    )
    assert [task["title"] for task in rest["tasks"]] == ["c"]
    assert rest["next_cursor"] is None
    everything = await succeeded(client, "list_tasks")
    assert {task["title"] for task in everything["tasks"]} == {"a", "b", "c", "work item"}


async def test_get_update_complete_delete(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    created = await create_task(title="Draft", description="notes", priority="low")
    task_id = created["id"]

    got = await succeeded(client, "get_task", {"task_id": task_id})
    assert got == created

    updated = await succeeded(
        client, "update_task", {"task_id": task_id, "title": "Final", "description": None}
    )
    assert (updated["title"], updated["description"], updated["priority"]) == ("Final", None, "low")
    row = await db.task(task_id)
    assert row is not None
    assert (row["title"], row["description"], row["priority"]) == ("Final", None, "low")

    done = await succeeded(client, "complete_task", {"task_id": task_id, "completed": True})
    assert done["completed"] is True
    assert done["completed_at"] is not None
    again = await succeeded(client, "complete_task", {"task_id": task_id, "completed": True})
    assert again == done  # setting what it already is changes nothing
    flipped = await succeeded(client, "complete_task", {"task_id": task_id})
    assert flipped["completed"] is False
    assert flipped["completed_at"] is None
    row = await db.task(task_id)
    assert row is not None
    assert not row["completed"]

    deleted = await succeeded(client, "delete_task", {"task_id": task_id})
    assert deleted == {"id": task_id, "deleted": True}
    assert await db.task(task_id) is None
    assert (await refused(client, "delete_task", {"task_id": task_id}))["detail"] == NOT_FOUND


async def test_completing_a_repeating_task_creates_its_next_occurrence(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    created = await create_task(
        title="Water plants", due_date="2026-12-01T09:00:00Z", recurrence="FREQ=WEEKLY"
    )
    done = await succeeded(client, "complete_task", {"task_id": created["id"], "completed": True})
    successor_id = done["next_occurrence_id"]
    assert successor_id is not None
    successor = await db.task(successor_id)
    assert successor is not None
    assert not successor["completed"]
    assert successor["title"] == "Water plants"


async def test_stats_and_tags(client: AsyncClient, create_task: TaskFactory) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    await create_task(title="late", due_date=yesterday, tags=["Work"])
    await create_task(title="done", completed=True, tags=["work", "home"])
    await create_task(title="bob's", user="bob", tags=["secret"])

    stats = await succeeded(client, "task_stats")
    assert stats == {"total": 2, "completed": 1, "pending": 1, "overdue": 1}
    tags = await succeeded(client, "list_tags")
    assert tags == {"tags": [{"name": "home", "count": 1}, {"name": "Work", "count": 2}]}


async def test_tool_writes_reach_the_change_feed(client: AsyncClient) -> None:
    task = await succeeded(client, "add_task", {"title": "From an agent"})
    await succeeded(client, "complete_task", {"task_id": task["id"]})
    feed = await client.get("/api/tasks/changes", headers=auth("alice"))
    assert feed.status_code == 200, feed.text
    changes = feed.json()["changes"]
    assert [
        (change["type"], change["task"]["id"], change["task"]["completed"]) for change in changes
    ] == [("upsert", task["id"], True)]
    await succeeded(client, "delete_task", {"task_id": task["id"]})
    after = await client.get(
        "/api/tasks/changes", params={"since": feed.json()["cursor"]}, headers=auth("alice")
    )
    assert after.json()["changes"] == [{"type": "delete", "id": task["id"]}]


async def test_only_successful_tool_writes_ring_the_event_hub(
    app: FastAPI, client: AsyncClient, create_task: TaskFactory
) -> None:
    """Live event streams hear of a tool's write as of a route's: once it succeeded."""
    task_id = (await create_task("alice"))["id"]
    bobs = (await create_task("bob"))["id"]
    hub = app.state.runtime.events
    calls: list[tuple[str, dict[str, Any], bool]] = [
        ("add_task", {"title": "new"}, True),
        ("add_task", {"title": ""}, False),
        ("list_tasks", {}, False),
        ("get_task", {"task_id": task_id}, False),
        ("update_task", {"task_id": task_id, "title": "changed"}, True),
        ("complete_task", {"task_id": task_id}, True),
        ("complete_task", {"task_id": bobs}, False),  # someone else's
        ("task_stats", {}, False),
        ("list_tags", {}, False),
        ("delete_task", {"task_id": task_id}, True),
        ("delete_task", {"task_id": task_id}, False),  # gone
    ]
    with hub.subscribe("alice") as alice, hub.subscribe("bob") as bob:
        for tool, arguments, announces in calls:
            alice.feed_changed = bob.feed_changed = False
            await call(client, tool, arguments)
            assert alice.feed_changed is announces, tool
            assert bob.feed_changed is False, tool


# ---------------------------------------------------------------------------------------------
# Isolation


async def test_another_users_task_is_refused_with_the_rest_sentence_and_unchanged(
    client: AsyncClient, db: DatabaseProbe, create_task: TaskFactory
) -> None:
    alices = await create_task(title="Alice's", priority="low")
    before = await db.task(alices["id"])
    task_id = {"task_id": alices["id"]}
    for tool, arguments in (
        ("get_task", task_id),
        ("update_task", {**task_id, "title": "Bob was here"}),
        ("complete_task", task_id),
        ("delete_task", task_id),
    ):
        body = await refused(client, tool, arguments, user="bob")
        assert body == {"detail": NOT_PERMITTED}, tool
    assert await db.task(alices["id"]) == before
    bobs_list = await succeeded(client, "list_tasks", user="bob")
    assert bobs_list == {"tasks": [], "next_cursor": None}
    missing = {"task_id": str(uuid.uuid4())}
    assert await refused(client, "get_task", missing, user="bob") == {"detail": NOT_FOUND}


# ---------------------------------------------------------------------------------------------
# Invalid arguments: the REST API's sentence, the field named, nothing written


@pytest.mark.parametrize(
    ("tool", "arguments", "field", "detail"),
    [
        (
            "add_task",
            {"title": 5},
            "title",
            "Invalid field 'title': Input should be a valid string.",
        ),
        (
            "add_task",
            {"title": "x" * 201},
            "title",
            "Invalid field 'title': must be at most 200 characters.",
        ),
        ("add_task", {"title": "   "}, "title", "Invalid field 'title': title must not be blank."),
        ("add_task", {"title": "ok", "priority": "urgent"}, "priority", None),
        ("add_task", {"title": "ok", "recurrence": "FREQ=DAILY"}, "recurrence", None),
        ("add_task", {"title": "ok", "due": "tomorrow"}, "due", None),
        ("add_task", {"title": "nul\x00"}, "title", None),
        ("add_task", {}, "title", "Invalid field 'title': Field required."),
        ("list_tasks", {"status": "done"}, "status", None),
        ("list_tasks", {"limit": 0}, "limit", None),
        ("get_task", {"task_id": "not-a-uuid"}, "task_id", None),
        ("update_task", {"task_id": str(uuid.uuid4()), "title": None}, "title", None),
        ("complete_task", {"task_id": str(uuid.uuid4()), "completed": "yes"}, "completed", None),
        ("task_stats", {"verbose": True}, "verbose", None),
    ],
)
async def test_invalid_arguments_name_the_field_and_write_nothing(
    client: AsyncClient,
    db: DatabaseProbe,
    tool: str,
    arguments: dict[str, Any],
    field: str,
    detail: str | None,
) -> None:
    body = await refused(client, tool, arguments)
    assert body["detail"].startswith(f"Invalid field '{field}': "), body
    if detail is not None:
        assert body["detail"] == detail
    assert body["errors"][0]["field"] == field
    assert await db.count_tasks() == 0


async def test_an_unknown_tool_is_a_refusal_naming_the_tools(client: AsyncClient) -> None:
    body = await refused(client, "drop_tables", {})
    assert (
        body["detail"] == "Unknown tool 'drop_tables'; the tools are " + ", ".join(TOOL_NAMES) + "."
    )


# ---------------------------------------------------------------------------------------------
# Authentication and origin


@pytest.mark.parametrize(
    ("headers", "challenge", "detail"),
    [
        ({}, 'Bearer resource_metadata="{meta}"', "Missing bearer token."),
        (
            {"Authorization": "Bearer not.a.token"},
            'Bearer error="invalid_token", resource_metadata="{meta}"',
            "Token is malformed or its signature is invalid.",
        ),
        (
            auth("alice", ttl=-3600),
            'Bearer error="invalid_token", resource_metadata="{meta}"',
            "Token has expired.",
        ),
    ],
)
async def test_without_a_valid_token_the_challenge_names_the_metadata(
    client: AsyncClient, db: DatabaseProbe, headers: dict[str, str], challenge: str, detail: str
) -> None:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "add_task", "arguments": {"title": "x"}},
    }
    response = await client.post(
        "/mcp", json=message, headers={**headers, "Accept": "application/json, text/event-stream"}
    )
    assert response.status_code == 401
    meta = "http://testserver/.well-known/oauth-protected-resource/mcp"
    assert response.headers["www-authenticate"] == challenge.format(meta=meta)
    assert response.json() == {"detail": detail}
    assert await db.count_tasks() == 0


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"]
)
async def test_the_resource_metadata_document(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "resource": "http://testserver/mcp",
        "bearer_methods_supported": ["header"],
        "resource_name": "Todo API",
        "resource_documentation": "http://testserver/docs",
    }


async def test_a_page_of_another_origin_is_refused(client: AsyncClient) -> None:
    headers = {**auth("alice"), "Origin": "https://evil.example", "Accept": "application/json"}
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    response = await client.post("/mcp", json=message, headers=headers)
    assert response.status_code == 403
    assert response.json() == {"detail": "Requests from this origin are not allowed."}
    allowed = await client.post(
        "/mcp",
        json=message,
        headers={**headers, "Origin": "http://localhost:3000", "MCP-Protocol-Version": PROTOCOL},
    )
    assert allowed.status_code == 200, allowed.text


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
async def test_only_post_is_served(client: AsyncClient, method: str) -> None:
    """Stateless: no stream for the server to speak unasked, no session to end."""
    response = await client.request(
        method, "/mcp", headers={**auth("alice"), "Accept": "text/event-stream"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"detail": "Method not allowed"}


@pytest.mark.parametrize(
    "body",
    [
        # A lone surrogate, as JSON escapes: the SDK's JSON parser refuses the message (-32700).
        rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task","arguments":{"title":"a\ud800b"}}}',
        rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add\udfff","arguments":{}}}',
        rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task","arguments":{"\ud800":"x","title":"t"}}}',
        # Raw bytes that are no UTF-8 (an encoded surrogate).
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task","arguments":{"title":"a\xed\xa0\x80b"}}}',
        # NUL: a refusal naming the field, as on REST.
        rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task","arguments":{"title":"a\u0000b"}}}',
        rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_tasks","arguments":{"q":"\u0000"}}}',
        # Not the shapes the protocol allows.
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add_task","arguments":["x"]}}',
        b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]',
        b"not json",
    ],
)
async def test_hostile_messages_are_refused_and_write_nothing(
    client: AsyncClient, db: DatabaseProbe, body: bytes
) -> None:
    headers = {
        **auth("alice"),
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": PROTOCOL,
    }
    response = await client.post("/mcp", content=body, headers=headers)
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if "result" in answer:
        assert answer["result"]["isError"] is True
        assert answer["result"]["content"][0]["text"].startswith("Invalid field '")
    else:
        assert answer["error"]["code"] in (-32700, -32600, -32602)
        assert "Traceback" not in response.text
    assert await db.count_tasks() == 0
