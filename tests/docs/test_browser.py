"""The docs as a frontend developer uses them: in Chromium, with no network beyond localhost.

Against a real `todo-api serve` process: authorise in Swagger UI with a token, create a task and
list it through the page's own "Try it out", then read the task routes in ReDoc. Every request
the pages make is recorded; one to anywhere but this machine is blocked and fails the test.
Needs Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it); without it the test is
skipped, except under CI=true where that is a failure. Screenshots and the request log are
written to `test-artifacts/docs-browser/`.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from tests.conftest import IN_CI, SECRET, environment_without_settings, make_token
from tests.processes import Server, running_server

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    # Below the recorder: even a request that slipped past it could not resolve a name.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "docs-browser"
TIMEOUT_MS = 30_000  # generous: the machine may be busy with the rest of the suite
expect.set_options(timeout=TIMEOUT_MS)


@dataclass
class RequestLog:
    """Every request the pages made ("GET http://…"); the ones off this machine were blocked."""

    local: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

    def handle(self, route: Route) -> None:
        url = route.request.url
        entry = f"{route.request.method} {url}"
        if urlsplit(url).hostname in LOCAL_HOSTS or url.startswith(("data:", "blob:")):
            self.local.append(entry)
            route.continue_()
        else:
            self.outside.append(entry)
            route.abort("blockedbyclient")


@pytest.fixture
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true makes the browser test required")
        pytest.skip(f"{reason}; the docs browser test needs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {
        **environment_without_settings(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'todo.db'}",
        "BETTER_AUTH_SECRET": SECRET,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_FORMAT": "json",
    }
    with running_server(["--host", "127.0.0.1"], cwd=tmp_path, env=env) as running:
        yield running


@pytest.fixture
def artifacts(capsys: pytest.CaptureFixture[str]) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():
        print(f"\n  docs browser test: screenshots and request log in {ARTIFACTS}")
    return ARTIFACTS


def test_swagger_ui_and_redoc_work_offline(
    chromium: Browser, server: Server, artifacts: Path
) -> None:
    token = make_token("docs-reader")
    title = f"Tried in the browser {uuid.uuid4().hex[:8]}"
    requests = RequestLog()
    errors: list[str] = []
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.route("**/*", requests.handle)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("console", lambda message: _keep_errors(message, errors))
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    try:
        _authorize(page, server.base_url, token, artifacts)
        _create_task(page, title, artifacts)
        _list_tasks(page, title, artifacts)
        _read_redoc(page, server.base_url, artifacts)
    finally:
        (artifacts / "requests.json").write_text(
            json.dumps({"local": requests.local, "outside": requests.outside}, indent=2) + "\n"
        )
        context.close()

    assert requests.outside == [], f"the docs pages reached outside localhost: {requests.outside}"
    assert errors == [], f"the browser reported errors: {errors}"
    made = {(entry.split()[0], urlsplit(entry.split()[1]).path) for entry in requests.local}
    assert {
        ("GET", "/docs"),
        ("GET", "/docs/assets/swagger-ui/swagger-ui-bundle.js"),
        ("GET", "/docs/assets/swagger-ui/swagger-ui.css"),
        ("GET", "/openapi.json"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks"),
        ("GET", "/redoc"),
        ("GET", "/docs/assets/redoc/redoc.standalone.js"),
    } <= made
    # The page's requests reached the real server: the task is there, for the token's user.
    listed = httpx.get(
        f"{server.base_url}/api/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert [task["title"] for task in listed.json()] == [title]


def _keep_errors(message: ConsoleMessage, errors: list[str]) -> None:
    # Content-Security-Policy violations and failed loads are reported as console errors.
    if message.type == "error":
        errors.append(f"console: {message.text}")


def _authorize(page: Page, base_url: str, token: str, artifacts: Path) -> None:
    page.goto(f"{base_url}/docs")
    expect(page.locator("#operations-tasks-create_task_api_tasks_post")).to_be_visible()
    page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    # The bearer scheme's own form (the dialog also offers the event streams' ticket).
    bearer = dialog.locator("form").filter(has_text="HTTPBearer")
    bearer.locator("#auth-bearer-value").fill(token)
    bearer.get_by_role("button", name="Apply credentials").click()
    expect(bearer.get_by_role("button", name="Remove authorization")).to_be_visible()
    page.screenshot(path=artifacts / "1-docs-authorized.png")
    bearer.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def _create_task(page: Page, title: str, artifacts: Path) -> None:
    operation = _try_out(page, "operations-tasks-create_task_api_tasks_post")
    body = {"title": title, "priority": "high", "due_date": "2026-12-01"}
    operation.locator("textarea.body-param__text").fill(json.dumps(body))
    operation.locator("button.execute").click()
    response = operation.locator(".live-responses-table tr.response")
    expect(response.locator(".response-col_status")).to_have_text("201")
    expect(response.locator(".response-col_description")).to_contain_text(title)
    # Execute, the request it sent and the answer in one picture (the README shows it).
    operation.locator("button.execute").evaluate("e => e.scrollIntoView()")
    page.screenshot(path=artifacts / "2-docs-created.png")


def _list_tasks(page: Page, title: str, artifacts: Path) -> None:
    operation = _try_out(page, "operations-tasks-list_tasks_api_tasks_get")
    operation.locator("button.execute").click()
    response = operation.locator(".live-responses-table tr.response")
    expect(response.locator(".response-col_status")).to_have_text("200")
    expect(response.locator(".response-col_description")).to_contain_text(title)
    response.scroll_into_view_if_needed()
    page.screenshot(path=artifacts / "3-docs-listed.png")


def _try_out(page: Page, operation_id: str) -> Locator:
    """Expand an operation and press its "Try it out"."""
    operation = page.locator(f"#{operation_id}")
    operation.locator(".opblock-summary").first.click()
    operation.get_by_role("button", name="Try it out").click()
    return operation


def _read_redoc(page: Page, base_url: str, artifacts: Path) -> None:
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    summaries = {
        operation["summary"]
        for operations in document["paths"].values()
        for operation in operations.values()
        if "tasks" in operation["tags"]
    }
    page.goto(f"{base_url}/redoc")
    page.get_by_role("menuitem", name="tasks", exact=True).click()
    for summary in summaries:
        expect(page.get_by_role("menuitem", name=summary, exact=True).first).to_be_visible()
    page.get_by_role("menuitem", name="Create a task", exact=True).click()
    expect(page.locator("h2", has_text="Create a task")).to_be_in_viewport()
    page.screenshot(path=artifacts / "4-redoc.png")
