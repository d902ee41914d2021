"""`/mcp`: the tasks as tools for AI agents, over MCP's streamable HTTP (SPEC §12).

Stateless: each POST carries one JSON-RPC message and gets its answer as one JSON body, with
no session to remember, so any worker of any instance answers any request. The transport is
the official SDK's (`StreamableHTTPSessionManager`); the server is its low-level `Server`,
whose tools are listed with the REST models' JSON schemas and whose arguments are validated
by those models, so a refusal is the REST API's sentence (`mcp/tools.py`).

Every request carries the same bearer token as the REST API, verified by the same dependency;
without a valid one the answer is a 401 whose challenge names the protected-resource metadata
(RFC 9728), which is how an MCP client learns where to sign the user in.
"""

import asyncio
import json
import logging
from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
)
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from todo_api.auth.dependencies import bearer_authentication
from todo_api.errors import (
    InvalidToken,
    NotPermitted,
    TodoApiError,
    error_body,
    unavailability,
    validation_error_body,
)
from todo_api.mcp.metadata import resource_metadata_url
from todo_api.mcp.tools import TOOLS, TaskTool, ToolCall
from todo_api.runtime import Runtime

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
INSTRUCTIONS = (
    "Manage the signed-in user's tasks: add, list (with filters and pages), get, update, "
    "complete and delete them, count them, and list their tags. Every tool acts as that user "
    "only. Ids come from add_task and list_tasks; dates are ISO 8601, in UTC unless they "
    "carry an offset."
)
FOREIGN_ORIGIN = "Requests from this origin are not allowed."


class McpEndpoint:
    """The ASGI app at `/mcp`: the origin and bearer checks, then the SDK's transport.

    `start()` and `close()` belong in the app's lifespan: the transport runs each request's
    server in a task group that lives as long as the app does."""

    # What the access log and the metrics call this route (they read `scope["route"]`, which
    # FastAPI sets only for its own routes).
    path_format = MCP_PATH

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._stopping = asyncio.Event()
        self._serving: asyncio.Task[None] | None = None
        self._tools = {tool.name: tool for tool in TOOLS}
        self._listing = ListToolsResult(tools=[_definition(tool) for tool in TOOLS])
        server: Server[Any] = Server(
            "todo-api",
            version="0.1.0",
            title="Todo API",
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self._transport = StreamableHTTPSessionManager(
            app=server,
            stateless=True,
            json_response=True,
            max_request_body_size=runtime.settings.max_body_bytes,
            # The origin is checked below against CORS_ORIGINS, and the Host header by
            # whatever fronts the API; the SDK's own check knows only fixed host names.
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    async def start(self) -> None:
        """Start the transport's task group, in a task of its own: it must be left by the task
        that entered it, and an app's start-up and shut-down may run in different tasks."""
        started = asyncio.get_running_loop().create_future()

        async def serve() -> None:
            async with self._transport.run():
                started.set_result(None)
                await self._stopping.wait()

        self._serving = asyncio.create_task(serve(), name="mcp-transport")
        # If the transport fails to start, its error is raised here rather than left waiting.
        await asyncio.wait((started, self._serving), return_when=asyncio.FIRST_COMPLETED)
        if self._serving.done():
            self._serving.result()

    async def close(self) -> None:
        if self._serving is not None:
            self._stopping.set()
            await self._serving

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        request = Request(scope, receive)
        if request.method != "POST":
            # Stateless, nothing is ever sent unasked: no GET stream to open, no session to
            # DELETE. The transport's GET would hold a silent stream open until the client left.
            response = JSONResponse(
                error_body("Method not allowed"), status_code=405, headers={"Allow": "POST"}
            )
            await response(scope, receive, send)
            return
        origin = request.headers.get("origin")
        if origin is not None and origin not in self._runtime.settings.cors_origins:
            # A page on another site must not reach the tools (MCP's DNS-rebinding rule).
            response = JSONResponse(
                error_body(FOREIGN_ORIGIN), status_code=NotPermitted.status_code
            )
            await response(scope, receive, send)
            return
        try:
            # The REST API's own check: verify the token, create the user's row on first use.
            await bearer_authentication(request)
        except InvalidToken as refused:
            await _challenge(request, refused)(scope, receive, send)
            return
        await self._transport.handle_request(scope, receive, send)

    async def _list_tools(
        self, ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return self._listing

    async def _call_tool(
        self, ctx: ServerRequestContext[Any], params: CallToolRequestParams
    ) -> CallToolResult:
        tool = self._tools.get(params.name)
        if tool is None:
            names = ", ".join(self._tools)
            return _refusal(error_body(f"Unknown tool '{params.name}'; the tools are {names}."))
        try:
            arguments = tool.arguments.model_validate(params.arguments or {})
        except ValidationError as invalid:
            # Located as FastAPI locates a body's fields, so the sentence is the REST API's.
            errors = invalid.errors(include_url=False, include_input=False)
            return _refusal(
                validation_error_body([{**e, "loc": ("body", *e["loc"])} for e in errors])
            )
        assert isinstance(ctx.request, Request)  # the streamable HTTP transport's request
        user_id: str = ctx.request.state.user_id
        try:
            async with self._runtime.connection() as db:
                outcome = await tool.run(ToolCall(user_id, db), arguments)
        except TodoApiError as refused:
            return _refusal(refused.body())
        except (DBAPIError, OSError, PoolTimeoutError) as failure:
            unavailable = unavailability(failure)
            if unavailable is None:
                raise
            return _refusal(unavailable.body())
        if tool.writes:
            self._runtime.events.announce(user_id)  # committed: streams find it in the feed
        structured = outcome.result.model_dump(mode="json")
        return CallToolResult(
            # The sentence, then the same data as text for clients that read only `content`
            # (MCP 2025-06-18: structured content SHOULD also be given serialised).
            content=[
                TextContent(type="text", text=outcome.sentence),
                TextContent(type="text", text=json.dumps(structured)),
            ],
            structured_content=structured,
        )


def _definition(tool: TaskTool) -> Tool:
    return Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.arguments.model_json_schema(),
        output_schema=tool.result.model_json_schema(mode="serialization"),
        annotations=tool.annotations,
    )


def _refusal(body: dict[str, Any]) -> CallToolResult:
    """A refused call: the REST API's sentence, then its per-field errors when it has them.
    Not as structured content, which clients check against the tool's output schema even on
    an error (the TypeScript SDK does, so MCP Inspector would report a schema mismatch)."""
    content = [TextContent(type="text", text=body["detail"])]
    if "errors" in body:
        content.append(TextContent(type="text", text=json.dumps(body)))
    return CallToolResult(content=content, is_error=True)


def _challenge(request: Request, refused: InvalidToken) -> JSONResponse:
    """The REST API's 401, whose `WWW-Authenticate` also names the resource metadata: MCP
    clients start their sign-in there. A missing token gets no error code (RFC 6750 §3.1)."""
    metadata = resource_metadata_url(request)
    challenge = f'Bearer resource_metadata="{metadata}"'
    if refused.reason != "missing":
        challenge = f'Bearer error="invalid_token", resource_metadata="{metadata}"'
    return JSONResponse(
        refused.body(), status_code=refused.status_code, headers={"WWW-Authenticate": challenge}
    )
