"""What the OpenAPI document says about responses beyond their bodies: the headers.

Each header is described once, here; routes name the ones they send. Every documented response
also carries `X-Request-ID`, because every response does.
"""

from typing import Any

RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "This request's id: the client's own `X-Request-ID` when it sent a sane "
        "one (1 to 128 of `A-Z a-z 0-9 . _ : -`), else a generated one. Quote it when "
        "reporting a problem; it is in the server's log line for the request.",
        "schema": {"type": "string"},
        "example": "9f1c2b7e4d3a4c5b8e6f7a8b9c0d1e2f",
    },
    "ETag": {
        "description": "The task's version. Send it back in `If-Match` to change the task "
        "only if nobody else has (else 412), or in `If-None-Match` to get 304 if unchanged.",
        "schema": {"type": "string"},
        "example": '"62f2c5b6d0e1a"',
    },
    "Location": {
        "description": "Path of the created task.",
        "schema": {"type": "string"},
        "example": "/api/tasks/0b7f6f1e-4c1e-4a53-9b7e-2f0f7f2b8a11",
    },
    "Link": {
        "description": 'The next page, when there is one: `<url>; rel="next"`; the URL repeats '
        "the query with the next `cursor`. Absent on the last page.",
        "schema": {"type": "string"},
        "example": '<http://127.0.0.1:8000/api/tasks?limit=20&cursor=eyJ2Ijpb...>; rel="next"',
    },
    "X-Next-Cursor": {
        "description": "The `cursor` of the next page, when there is one (the same as in `Link`).",
        "schema": {"type": "string"},
        "example": "eyJ2Ijpb...",
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
        "example": 2,
    },
    "WWW-Authenticate": {
        "description": "Why the token was refused, as RFC 6750 names it.",
        "schema": {"type": "string"},
        "example": 'Bearer error="invalid_token"',
    },
    "RateLimit-Policy": {
        "description": "The per-user limit (draft-ietf-httpapi-ratelimit-headers): `q` "
        "requests per window of `w` seconds, counted over `/api/…` and `/mcp` together. "
        "Absent when the server runs without a limit (`RATE_LIMIT_PER_MINUTE=0`).",
        "schema": {"type": "string"},
        "example": '"default";q=600;w=60',
    },
    "RateLimit": {
        "description": "What is left of it: `r` more requests in this window, which ends in "
        "`t` seconds. `r` is the answering server's best knowledge; other instances may "
        "have used some of it since.",
        "schema": {"type": "string"},
        "example": '"default";r=42;t=17',
    },
}


def documented_response(description: str, *headers: str, **fields: Any) -> dict[str, Any]:
    """One `responses=` entry: its description, the named headers plus `X-Request-ID`, and any
    other OpenAPI response fields (`model`, `content`)."""
    names = ["X-Request-ID", *headers]
    return {
        "description": description,
        "headers": {name: RESPONSE_HEADERS[name] for name in names},
        **fields,
    }


def json_example(example: Any) -> dict[str, Any]:
    """The `content=` of a JSON response with this example body."""
    return {"application/json": {"example": example}}
