"""Two tabs of a real browser following one account's tasks (SPEC §11, live events).

Headless Chromium loads a small frontend (`page/`: `follow-tasks.js`, the README's example)
from an origin of its own, listed in the API's `CORS_ORIGINS`; the API is `todo-api serve
--workers 2` on PostgreSQL. Both tabs sync, fetch a single-use ticket and open a real
`EventSource`. A task created with `fetch` in the first tab must show in the second within
1 s. Then the API is restarted (SIGTERM, started again on the same port and database): both
tabs must reconnect by themselves (a new ticket, `since` = the last event id they applied) and
catch up with a task written while the API was down and one written just after it came back,
each exactly once and in order. Screenshots go to `test-artifacts/two-tabs/`.
"""

import asyncio
import functools
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from playwright.sync_api import Browser, Page, Request

from tests.conftest import (
    SECRET,
    TODO_API,
    environment_without_settings,
    make_token,
    throwaway_database,
)
from tests.docs.test_browser import chromium  # noqa: F401 (a fixture, shared)
from tests.processes import Server, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PAGE = Path(__file__).parent / "page"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "two-tabs"
USER = "two-tabs"
CREATED_IN_A_TAB = 5
MAX_LATENCY_SECONDS = 1.0
START_TIMEOUT = 30.0
TIMEOUT_MS = 20_000


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files, without an access line per request in the test's output."""

    def log_message(self, format: str, *args: Any) -> None:
        return


@contextmanager
def frontend() -> Iterator[str]:
    """The test page served from its own origin (another port than the API's)."""
    handler = functools.partial(QuietHandler, directory=str(PAGE))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="frontend", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def api_server(port: int, cwd: Path, env: dict[str, str]) -> Iterator[Server]:
    """`todo-api serve --workers 2` on `port` (a restart comes back on the same one), waited
    for until it answers, and gone afterwards whatever happened."""
    stderr_path = cwd / "server.stderr.log"
    with stderr_path.open("ab") as stderr:
        process = subprocess.Popen(
            [TODO_API, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", stderr_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _healthy(server):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the API did not start:\n{server.stderr()}")
            time.sleep(0.1)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _healthy(server: Server) -> bool:
    try:
        return httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def database(postgres_admin_url: str) -> Iterator[str]:
    with throwaway_database(postgres_admin_url, "todo_api_two_tabs") as url:
        yield url


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _insert_task(database: str, title: str) -> str:
    """A task written while the API is down (by another instance, say): straight into the
    database, where the trigger numbers it like any other change. In a thread of its own:
    Playwright's event loop runs in this one."""
    task_id = uuid.uuid4()

    async def insert() -> None:
        connection = await asyncpg.connect(database)
        try:
            await connection.execute(
                "INSERT INTO tasks (id, user_id, title, created_at, updated_at)"
                " VALUES ($1, $2, $3, now(), now())",
                task_id,
                USER,
                title,
            )
        finally:
            await connection.close()

    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(asyncio.run, insert()).result()
    return str(task_id)


def _wait_for_live_change(tab: Page, task_id: str) -> dict[str, Any]:
    handle = tab.wait_for_function(
        "id => window.events.find(e => e.live && e.kind === 'upsert' && e.id === id)",
        arg=task_id,
    )
    event: dict[str, Any] = handle.json_value()
    return event


def _live_upserts(tab: Page) -> list[str]:
    ids: list[str] = tab.evaluate(
        "() => window.events.filter(e => e.live && e.kind === 'upsert').map(e => e.id)"
    )
    return ids


def _stream_requests(tab: Page) -> list[Request]:
    requests: list[Request] = []
    tab.on(
        "request",
        lambda request: (
            requests.append(request) if urlsplit(request.url).path == "/api/events" else None
        ),
    )
    return requests


def test_two_tabs_stay_in_step_across_a_restart(
    database: str,  # before the browser: Playwright's own event loop forbids asyncio.run
    chromium: Browser,  # noqa: F811 (the shared fixture)
    tmp_path: Path,
    artifacts: Path,
) -> None:
    token = make_token(USER, ttl=600)
    bearer = {"Authorization": f"Bearer {token}"}
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    errors: list[str] = []
    with frontend() as origin:
        env = {
            **environment_without_settings(),
            "DATABASE_URL": database,
            "BETTER_AUTH_SECRET": SECRET,
            "CORS_ORIGINS": origin,
            "LOG_FORMAT": "json",
            "DATA_DIR": str(tmp_path / "state"),
        }
        context = chromium.new_context(viewport={"width": 640, "height": 480})
        tabs = [context.new_page(), context.new_page()]
        streams_opened = [_stream_requests(tab) for tab in tabs]
        for tab in tabs:
            tab.set_default_timeout(TIMEOUT_MS)
            tab.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            tab.goto(f"{origin}/index.html")
            tab.wait_for_function("typeof window.start === 'function'")
        try:
            with api_server(port, tmp_path, env) as server:
                for tab in tabs:
                    tab.evaluate("([api, token]) => window.start(api, token)", [api, token])
                for tab in tabs:
                    tab.wait_for_function("window.status === 'live'")

                # A task created in the first tab shows in the second.
                latencies, created = [], []
                for n in range(CREATED_IN_A_TAB):
                    answer = tabs[0].evaluate(
                        "([token, title]) => window.createTask(token, title)",
                        [token, f"Created in tab 1, #{n}"],
                    )
                    assert answer["status"] == 201, answer
                    created.append(answer["task"]["id"])
                    seen = _wait_for_live_change(tabs[1], created[-1])
                    latencies.append((seen["at"] - answer["started"]) / 1000)
                    _wait_for_live_change(tabs[0], created[-1])  # its own write, too
                cursors_before = [tab.evaluate("() => window.events.at(-1).cursor") for tab in tabs]
                stopping = time.monotonic()
                assert server.stop() == 0, server.stderr()
                stopped_in = time.monotonic() - stopping

            # The API is down: both tabs notice, and keep trying.
            for tab in tabs:
                tab.wait_for_function("window.status === 'reconnecting'")
            while_down = _insert_task(database, "Written while the API was down")
            opened_before_restart = [len(requests) for requests in streams_opened]

            with api_server(port, tmp_path, env) as server:
                back = time.monotonic()
                after = httpx.post(
                    f"{api}/api/tasks",
                    json={"title": "Written just after the restart"},
                    headers=bearer,
                    timeout=10,
                )
                assert after.status_code == 201, after.text
                just_after = after.json()["id"]
                for tab in tabs:
                    _wait_for_live_change(tab, while_down)
                    _wait_for_live_change(tab, just_after)
                    tab.wait_for_function("window.status === 'live'")
                caught_up_in = time.monotonic() - back
                time.sleep(0.5)  # time for a duplicate to show up, if there were one
                received = [_live_upserts(tab) for tab in tabs]
                for n, tab in enumerate(tabs, start=1):
                    tab.screenshot(path=artifacts / f"tab-{n}.png")
                assert server.stop() == 0, server.stderr()
        finally:
            context.close()

    print(
        f"\ntab 1 -> tab 2: {CREATED_IN_A_TAB} tasks, latency max {max(latencies) * 1000:.0f} ms "
        f"(each: {', '.join(f'{s * 1000:.0f}' for s in latencies)} ms); "
        f"the API stopped {stopped_in:.2f} s after SIGTERM with both streams open; both tabs "
        f"caught up {caught_up_in:.2f} s after it answered again"
    )
    assert errors == []
    assert max(latencies) < MAX_LATENCY_SECONDS
    # Each tab saw every change once, in order: before, while down, just after the restart.
    for ids in received:
        assert ids == [*created, while_down, just_after]
    # And reconnected by itself: a new ticket, resuming after the last change it applied.
    for requests, cursor, before in zip(
        streams_opened, cursors_before, opened_before_restart, strict=True
    ):
        assert before == 1, [r.url for r in requests]
        reopened = [parse_qs(urlsplit(r.url).query) for r in requests[1:]]
        assert reopened, "the tab never reopened its stream"
        assert all(query["since"] == [cursor] for query in reopened), (reopened, cursor)
        tickets = {parse_qs(urlsplit(r.url).query)["ticket"][0] for r in requests}
        assert len(tickets) == len(requests), "a ticket was used twice"
