"""`GET /api/events` (Server-Sent Events of your tasks' changes and reminders) and
`POST /api/events/tickets` (SPEC §11, live events); the work is in `streams.py` and
`tickets.py`."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status

from todo_api.auth.dependencies import CurrentUser
from todo_api.errors import TooManyStreams, error_body, error_response, error_responses
from todo_api.openapi import documented_response
from todo_api.runtime import DatabaseDep, RuntimeDep, runtime_of
from todo_api.sync.streams import EventStream, open_stream, resume_cursor
from todo_api.sync.tickets import StreamCaller, StreamTicket, issue_ticket

router = APIRouter(prefix="/api/events", tags=["sync"])

STREAM_EXAMPLE = (
    'event: ready\nid: 1041\ndata: {"cursor": "1041"}\n\n'
    'event: task.upserted\nid: 1042\ndata: {"type": "upsert", "task": {"id": '
    '"0b7f6f1e-4c1e-4a53-9b7e-2f0f7f2b8a11", "title": "Write the quarterly report", …}}\n\n'
    ": keep-alive\n\n"
    'event: task.deleted\nid: 1043\ndata: {"type": "delete", "id": '
    '"7c1e0a57-3b7e-4d4f-8d61-0a4f3f9e2b10"}\n\n'
    'event: task.reminder\ndata: {"task": {"id": "0b7f6f1e-4c1e-4a53-9b7e-2f0f7f2b8a11", …}}\n\n'
)
STREAM_DESCRIPTION = (
    "A `text/event-stream` that stays open. First `event: ready` (its `id` and "
    "`data.cursor`: where the stream starts), then one event per change of your tasks, "
    "oldest first: `task.upserted` or `task.deleted`, `id` the change feed's cursor right "
    "after that change, `data` the same JSON as an entry of `GET /api/tasks/changes`. "
    '`task.reminder` (no `id`; `data: {"task": …}`) when a task\'s `remind_at` passes. '
    "A comment line (`: keep-alive`) every `EVENTS_HEARTBEAT_SECONDS` (15 s). The stream "
    "ends when the token (or the ticket's token) expires, or the server shuts down: "
    "reconnect with `Last-Event-ID` to resume exactly where it stopped."
)
TOO_MANY_STREAMS: dict[int | str, dict[str, Any]] = {
    429: error_response(
        "You already hold `EVENTS_MAX_STREAMS_PER_USER` (10) open streams; "
        "retry after `Retry-After` seconds",
        error_body(TooManyStreams.detail),
        "Retry-After",
    )
}


# One event of the stream, as the SSE fields a client's parser hands it (`data` is JSON text:
# the `ready` cursor, one change of the feed, or `{"task": …}` for a reminder).
EVENT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "event": {
            "type": "string",
            "enum": ["ready", "task.upserted", "task.deleted", "task.reminder"],
        },
        "id": {"type": "string", "description": "The feed cursor after this change."},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
    "required": ["event", "data"],
}


def _json_errors(responses: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """The stream route's error answers as documented: JSON. (FastAPI would file their schema
    under the route's own media type, `text/event-stream`.)"""
    documented: dict[int | str, dict[str, Any]] = {}
    for status_code, response in responses.items():
        response = dict(response)
        model = response.pop("model")
        media = dict(response["content"]["application/json"])
        media["schema"] = {"$ref": f"#/components/schemas/{model.__name__}"}
        documented[status_code] = {**response, "content": {"application/json": media}}
    return documented


SinceQuery = Annotated[
    str | None,
    Query(
        description="Resume after this cursor (a change feed `cursor`, or an event's `id`); "
        "absent: from now on. `Last-Event-ID` wins over it."
    ),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="Sent by `EventSource` when it reconnects: resume after this event's id.",
    ),
]


@router.post(
    "/tickets",
    response_model=StreamTicket,
    status_code=status.HTTP_201_CREATED,
    summary="Get a ticket to open an event stream from a browser",
    description="`EventSource` cannot send an `Authorization` header: ask for a ticket with "
    "your token, then open `GET /api/events?ticket=…` within 60 s. A ticket opens one "
    "stream; get a new one for each (re)connection.",
    responses={201: documented_response("A single-use ticket"), **error_responses(401, 503)},
)
async def create_ticket(user: CurrentUser, runtime: RuntimeDep, db: DatabaseDep) -> StreamTicket:
    return await issue_ticket(db, user, runtime.redis)


@router.get(
    "",
    response_class=EventStream,
    status_code=status.HTTP_200_OK,
    summary="Follow your tasks' changes and reminders live (Server-Sent Events)",
    description=STREAM_DESCRIPTION,
    responses={
        200: documented_response(
            "The stream of events",
            content={"text/event-stream": {"schema": EVENT_SCHEMA, "example": STREAM_EXAMPLE}},
        ),
        **_json_errors({**error_responses(400, 401, 410, 503), **TOO_MANY_STREAMS}),
    },
)
async def stream_events(
    request: Request,
    caller: StreamCaller,
    db: DatabaseDep,
    since: SinceQuery = None,
    last_event_id: LastEventId = None,
) -> EventStream:
    return await open_stream(runtime_of(request), db, caller, resume_cursor(last_event_id, since))
