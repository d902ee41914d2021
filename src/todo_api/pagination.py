"""Opaque keyset cursors: the position after the last row of a page, as URL-safe text."""

import base64
import binascii
import json
from typing import Any

from starlette.datastructures import URL

from todo_api.errors import BadRequest

INVALID_CURSOR = "Invalid cursor: pass the value from the previous page's Link header unchanged."


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position a cursor names; a cursor that was not made by `encode_cursor` → 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError):
        raise BadRequest(INVALID_CURSOR) from None
    if not isinstance(position, dict):
        raise BadRequest(INVALID_CURSOR)
    return position


def next_page_link(url: URL, cursor: str, public_base_url: str | None) -> str:
    """`Link` to the page after this one: the same query with the new cursor, as a reference
    relative to this origin (RFC 8288 allows it), or absolute under the configured public base
    URL. Never built from the request's `Host`, which the client chooses."""
    target = url.include_query_params(cursor=cursor)
    return f'<{public_base_url or ""}{target.path}?{target.query}>; rel="next"'
