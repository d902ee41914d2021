"""What the load consists of: tokens, deep-page cursors, and one request file per scenario.

A request file has one request template per line, `METHOD<TAB>PATH<TAB>TOKEN<TAB>BODY`;
bench/wrk/requests.lua replays them in rotation.
"""

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt

from bench.seed import SeededUser, TaskFactory

TOKEN_TTL_SECONDS = 7 * 24 * 3600
MAX_PAGE = 1000  # the API's largest `limit`
PAGE = 100  # the API's default `limit`, which every listing scenario uses
TASKS_SAMPLED_PER_USER = 40
CREATE_BODIES_PER_USER = 20
MIXED_LINES = 4000
# Mixed traffic: 70 % reads, 30 % writes.
MIXED_WEIGHTS = {"list-default": 35.0, "get-one": 35.0, "create": 15.0, "toggle": 15.0}


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    token: str
    body: str = ""

    def line(self) -> str:
        return "\t".join((self.method, self.path, self.token, self.body))


@dataclass(frozen=True, slots=True)
class Caller:
    """A seeded user as the load sees them: a token, some task ids, a deep cursor."""

    user: SeededUser
    token: str
    task_ids: list[str]
    deep_cursor: str | None = None


def sign_token(secret: str, user_id: str) -> str:
    """An HS256 token as the frontend would send: `sub` is the user id."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + TOKEN_TTL_SECONDS}, secret, "HS256")


def deep_position(task_count: int) -> int:
    """Rows before the deep page: the last page that is full and announces another, so it
    does the same work as the first page (the first page itself for tiny lists)."""
    return max(1, task_count - PAGE - 1)


def cursor_after(client: httpx.Client, api_url: str, token: str, rows: int) -> str:
    """Walk the caller's default listing through the API until `rows` rows are behind, and
    return the cursor its `Link: rel="next"` header gives for what follows."""
    cursor: str | None = None
    remaining = rows
    while remaining > 0:
        limit = min(MAX_PAGE, remaining)
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        response = client.get(
            f"{api_url}/api/tasks", params=params, headers={"Authorization": f"Bearer {token}"}
        )
        response.raise_for_status()
        next_url = response.links.get("next", {}).get("url")
        if next_url is None:
            raise RuntimeError(f"listing ended before row {rows}: no Link rel=next")
        cursor = parse_qs(urlsplit(next_url).query)["cursor"][0]
        remaining -= limit
    assert cursor is not None
    return cursor


def _bearer_lines(requests: Iterable[Request]) -> str:
    return "".join(request.line() + "\n" for request in requests)


def scenario_requests(scenario: str, callers: list[Caller], factory: TaskFactory) -> list[Request]:
    """The request templates of one scenario, spread over all callers."""
    match scenario:
        case "list-default":
            return [Request("GET", "/api/tasks", c.token) for c in callers]
        case "list-filtered":
            path = "/api/tasks?status=pending&sort=due_date"
            return [Request("GET", path, c.token) for c in callers]
        case "list-deep":
            return [
                Request("GET", f"/api/tasks?cursor={c.deep_cursor}", c.token)
                for c in callers
                if c.deep_cursor
            ]
        case "get-one":
            return [
                Request("GET", f"/api/tasks/{task_id}", c.token)
                for c in callers
                for task_id in c.task_ids
            ]
        case "toggle":
            return [
                Request("PATCH", f"/api/tasks/{task_id}/complete", c.token)
                for c in callers
                for task_id in c.task_ids
            ]
        case "create":
            return [
                Request("POST", "/api/tasks", c.token, json.dumps(factory.create_body()))
                for c in callers
                for _ in range(CREATE_BODIES_PER_USER)
            ]
        case "mixed":
            pools = {name: scenario_requests(name, callers, factory) for name in MIXED_WEIGHTS}
            names = factory.choices(list(MIXED_WEIGHTS), list(MIXED_WEIGHTS.values()), MIXED_LINES)
            cursor = dict.fromkeys(pools, 0)
            mixed = []
            for name in names:
                mixed.append(pools[name][cursor[name] % len(pools[name])])
                cursor[name] += 1
            return mixed
    raise ValueError(f"unknown scenario {scenario}")


def write_requests(path: Path, requests: list[Request], factory: TaskFactory) -> Path:
    """Write the templates in a shuffled order, so consecutive requests hit different users."""
    shuffled = list(requests)
    factory.shuffle(shuffled)
    path.write_text(_bearer_lines(shuffled))
    return path
