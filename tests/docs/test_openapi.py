"""The OpenAPI document is the contract a frontend developer builds against: it must say what
the API really does (security, every error, headers, listing parameters, examples), and the
checked-in `openapi.json` must be exactly the app's document, so a change shows up in review."""

import difflib
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from pydantic import BaseModel

from tests.conftest import (
    SECRET,
    TODO_API,
    TaskFactory,
    auth,
    environment_without_settings,
    running,
)
from todo_api.app import create_app
from todo_api.auth.schemas import LoginRequest, SignupRequest
from todo_api.config import Settings
from todo_api.errors import ErrorResponse, IdempotencyKeyReused
from todo_api.tasks.schemas import TaskCompletion, TaskCreate, TaskUpdate
from todo_api.tasks.tags_router import TagRename

CHECKED_IN = Path(__file__).resolve().parents[2] / "openapi.json"
BEARER: list[dict[str, list[str]]] = [{"HTTPBearer": []}]

# A write sent with an `Idempotency-Key`: in flight (409), reused for another request (422).
KEYED_WRITE = {409, 422}
# Every operation, and the errors it can answer: the contract's table, kept here on purpose so
# that a route added or an error dropped has to be decided on.
ERRORS: dict[tuple[str, str], set[int]] = {
    ("get", "/health"): set(),
    ("get", "/health/ready"): {503},
    ("get", "/.well-known/oauth-protected-resource"): set(),
    ("get", "/.well-known/oauth-protected-resource/mcp"): set(),
    ("get", "/api/tasks"): {400, 401, 429, 503},
    ("post", "/api/tasks"): {400, 401, 408, 413, 415, 429, 503, *KEYED_WRITE},
    ("get", "/api/tasks/stats"): {401, 429, 503},
    ("get", "/api/tasks/{task_id}"): {400, 401, 403, 404, 429, 503},
    ("put", "/api/tasks/{task_id}"): {
        *{400, 401, 403, 404, 408, 412, 413, 415, 429, 503},
        *KEYED_WRITE,
    },
    ("patch", "/api/tasks/{task_id}"): {
        *{400, 401, 403, 404, 408, 412, 413, 415, 429, 503},
        *KEYED_WRITE,
    },
    ("delete", "/api/tasks/{task_id}"): {400, 401, 403, 404, 429, 503, *KEYED_WRITE},
    ("patch", "/api/tasks/{task_id}/complete"): {
        *{400, 401, 403, 404, 408, 413, 415, 429, 503},
        *KEYED_WRITE,
    },
    ("post", "/api/auth/signup"): {400, 408, 409, 413, 415, 503},
    ("post", "/api/auth/login"): {400, 401, 408, 413, 415, 429, 503},
    ("get", "/api/auth/me"): {401, 429, 503},
    ("get", "/api/tasks/changes"): {400, 401, 410, 429, 503},
    ("get", "/api/tags"): {401, 429, 503},
    ("patch", "/api/tags/{name}"): {400, 401, 404, 408, 413, 415, 429, 503, *KEYED_WRITE},
    ("delete", "/api/tags/{name}"): {400, 401, 404, 429, 503, *KEYED_WRITE},
    ("get", "/api/events"): {400, 401, 410, 429, 503},
    ("post", "/api/events/tickets"): {401, 429, 503},
}
# Headers a successful answer carries besides X-Request-ID, which every answer carries.
SUCCESS_HEADERS: dict[tuple[str, str, str], set[str]] = {
    ("get", "/api/tasks", "200"): {"Link", "X-Next-Cursor"},
    ("post", "/api/tasks", "201"): {"Location", "ETag", "Idempotent-Replayed"},
    ("get", "/api/tasks/{task_id}", "200"): {"ETag"},
    ("get", "/api/tasks/{task_id}", "304"): {"ETag"},
    ("put", "/api/tasks/{task_id}", "200"): {"ETag", "Idempotent-Replayed"},
    ("patch", "/api/tasks/{task_id}", "200"): {"ETag", "Idempotent-Replayed"},
    ("delete", "/api/tasks/{task_id}", "204"): {"Idempotent-Replayed"},
    ("patch", "/api/tasks/{task_id}/complete", "200"): {"ETag", "Idempotent-Replayed"},
    ("patch", "/api/tags/{name}", "200"): {"Idempotent-Replayed"},
    ("delete", "/api/tags/{name}", "204"): {"Idempotent-Replayed"},
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate"},
    409: {"Retry-After"},
    429: {"Retry-After"},
    503: {"Retry-After"},
}
# Every answer to a request with the bearer token says what is left of the caller's rate limit
# (SPEC §13): its successes, and its 429 (whatever else a 429 of that route may mean).
RATE_LIMIT_HEADERS = {"RateLimit-Policy", "RateLimit"}
REQUEST_BODY_MODELS: list[type[BaseModel]] = [
    TaskCreate,
    TaskUpdate,
    TaskCompletion,
    TagRename,
    SignupRequest,
    LoginRequest,
]
REQUEST_BODIES = {model.__name__: model for model in REQUEST_BODY_MODELS}


def reference_settings(tmp_path: Path) -> Settings:
    """The set-up `openapi.json` describes: a shared secret, so built-in accounts are on."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'todo.db'}",
        better_auth_secret=SECRET,
        accounts_enabled=True,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
    )


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    built: dict[str, Any] = create_app(reference_settings(tmp_path)).openapi()
    return built


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
    ]


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in schema:
        return schema
    name = schema["$ref"].removeprefix("#/components/schemas/")
    resolved: dict[str, Any] = document["components"]["schemas"][name]
    return resolved


def examples_of(document: dict[str, Any], media: dict[str, Any]) -> list[Any]:
    """The examples a media type offers, on itself or on its (array item) schema."""
    if "example" in media:
        return [media["example"]]
    if "examples" in media:
        return [example["value"] for example in media["examples"].values()]
    schema = resolve(document, media.get("schema", {}))
    if schema.get("type") == "array":
        return [[item] for item in examples_of(document, {"schema": schema["items"]})]
    found: list[Any] = schema.get("examples", [])
    return found


def test_checked_in_openapi_json_is_what_make_openapi_writes(tmp_path: Path) -> None:
    # As `make openapi` runs it: nothing from the environment or a .env but ACCOUNTS_ENABLED.
    env = {
        **environment_without_settings(),
        "ACCOUNTS_ENABLED": "true",
        "BETTER_AUTH_SECRET": SECRET,
    }
    result = subprocess.run(
        [TODO_API, "openapi"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    generated = json.loads(result.stdout)
    checked_in = json.loads(CHECKED_IN.read_text())
    if generated != checked_in:
        diff = difflib.unified_diff(
            json.dumps(checked_in, indent=2).splitlines(),
            json.dumps(generated, indent=2).splitlines(),
            "openapi.json (checked in)",
            "todo-api openapi (the app now)",
            lineterm="",
        )
        pytest.fail(
            "openapi.json is not the app's document any more: run `make openapi` and commit "
            "the result (review the change: it is the API contract).\n" + "\n".join(list(diff)[:80])
        )


def test_document_does_not_depend_on_other_settings(tmp_path: Path) -> None:
    """Only whether accounts are on changes the document; the database, the key sources, CORS
    and the body limit do not, so the checked-in one holds for every deployment with accounts."""
    other = reference_settings(tmp_path).model_copy(
        update={
            "database_url": "postgresql://someone@db.example:5432/todo",
            "jwt_jwks_url": "https://auth.example/api/auth/jwks",
            "cors_origins": ["https://app.example"],
            "max_body_bytes": 4096,
        }
    )
    assert create_app(other).openapi() == create_app(reference_settings(tmp_path)).openapi()


def test_every_operation_and_its_errors_are_the_contracts(document: dict[str, Any]) -> None:
    documented = {
        (method, path): {int(status) for status in operation["responses"] if int(status) >= 400}
        for method, path, operation in operations(document)
    }
    assert documented == ERRORS
    statuses = set().union(*ERRORS.values())
    assert statuses == {400, 401, 403, 404, 408, 409, 410, 412, 413, 415, 422, 429, 503}


def test_422_is_only_a_reused_idempotency_key(document: dict[str, Any]) -> None:
    """Invalid input is a 400 (FastAPI's own 422 is gone); the one 422 is SPEC §11's."""
    for method, path, operation in operations(document):
        keyed = "Idempotency-Key" in [p["name"] for p in operation.get("parameters", [])]
        assert keyed == ("422" in operation["responses"]), (method, path)
        if keyed:
            media = operation["responses"]["422"]["content"]["application/json"]
            assert media["example"] == {"detail": IdempotencyKeyReused.detail}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_write_documents_the_idempotency_key(document: dict[str, Any]) -> None:
    writes = {"post", "put", "patch", "delete"}
    for method, path, operation in operations(document):
        names = [parameter["name"] for parameter in operation.get("parameters", [])]
        keyed = method in writes and path.startswith(("/api/tasks", "/api/tags"))
        assert names.count("Idempotency-Key") == (1 if keyed else 0), (method, path)
        if keyed:
            (parameter,) = (p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
            assert parameter["in"] == "header"
            assert parameter["required"] is False
            assert parameter["schema"]["maxLength"] == 255
            assert parameter["description"]
            assert operation["responses"]["409"]["headers"]["Retry-After"]["example"] == 1


def takes_bearer(operation: dict[str, Any]) -> bool:
    return any("HTTPBearer" in entry for entry in operation.get("security", []))


def test_task_routes_take_a_bearer_token(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["HTTPBearer"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": scheme["description"],
    }
    for method, path, operation in operations(document):
        needs_token = path.startswith(("/api/tasks", "/api/tags", "/api/events"))
        needs_token = needs_token or path == "/api/auth/me"
        expected = BEARER if needs_token else None
        if path == "/api/events":  # or a ticket, for EventSource, which cannot send headers
            expected = [*BEARER, {"StreamTicket": []}]
        assert operation.get("security") == expected, (method, path)


def test_every_error_is_an_error_body_with_a_valid_example(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            if int(status) < 400 or path == "/health/ready":  # readiness has its own shape
                continue
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}, (
                method,
                path,
                status,
            )
            (example,) = examples_of(document, media)
            ErrorResponse.model_validate(example)


def test_every_answer_documents_its_headers(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            expected = {"X-Request-ID"}
            expected |= SUCCESS_HEADERS.get((method, path, status), set())
            expected |= ERROR_HEADERS.get(int(status), set())
            if takes_bearer(operation) and (status[0] in "23" or status == "429"):
                expected |= RATE_LIMIT_HEADERS
            if (method, path, status) == ("post", "/api/auth/login", "401"):
                expected -= {"WWW-Authenticate"}  # wrong password: no bearer challenge
            if (method, path, status) == ("post", "/api/auth/signup", "409"):
                expected -= {"Retry-After"}  # a taken email: retrying will not help
            assert set(response.get("headers", {})) == expected, (method, path, status)
            for header in response["headers"].values():
                assert header["description"], (method, path, status)
                assert "example" in header, (method, path, status)


def test_every_body_has_an_example(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        body = operation.get("requestBody")
        if body is not None:
            media = body["content"]["application/json"]
            examples = examples_of(document, media)
            assert examples, (method, path)
            # The completion toggle's body is optional: its schema is "TaskCompletion or null".
            (reference,) = re.findall(r'"#/components/schemas/(\w+)"', json.dumps(media["schema"]))
            model = REQUEST_BODIES[reference]
            for example in examples:
                model.model_validate(example)
        for status, response in operation["responses"].items():
            for media in response.get("content", {}).values():
                assert examples_of(document, media), (method, path, status)


def test_listing_parameters_have_their_values_and_defaults(document: dict[str, Any]) -> None:
    parameters = {
        parameter["name"]: parameter
        for parameter in document["paths"]["/api/tasks"]["get"]["parameters"]
    }
    assert list(parameters) == [
        "status",
        "priority",
        "q",
        "sort",
        "order",
        "limit",
        "cursor",
        "tag",
        "due",
        "tz",
        "due_from",
        "due_to",
        "remind_before",
    ]
    schemas = {name: parameter["schema"] for name, parameter in parameters.items()}
    # Each choice also offers the empty value, which the API reads as "not given".
    assert all(parameter["in"] == "query" for parameter in parameters.values())
    assert not any(parameter["required"] for parameter in parameters.values())
    assert schemas["status"]["enum"] == ["all", "pending", "completed", ""]
    assert schemas["status"]["default"] == "all"
    assert schemas["priority"]["enum"] == ["low", "medium", "high", ""]
    assert schemas["sort"]["enum"] == ["created", "title", "due_date", "priority", "updated", ""]
    assert schemas["sort"]["default"] == "created"
    assert schemas["order"]["enum"] == ["asc", "desc", ""]
    assert (schemas["limit"]["minimum"], schemas["limit"]["maximum"]) == (1, 1000)
    assert schemas["limit"]["default"] == 100
    assert schemas["q"]["type"] == schemas["cursor"]["type"] == "string"
    assert schemas["tag"]["type"] == "array"
    assert schemas["tag"]["items"]["maxLength"] == 50
    assert schemas["due"]["enum"] == ["overdue", "today", "none", ""]
    assert schemas["tz"]["default"] == "UTC"
    for moment in ("due_from", "due_to", "remind_before"):
        # A date or a date-time, read in `tz`: no JSON Schema format says that.
        assert (schemas[moment]["type"], schemas[moment]["maxLength"]) == ("string", 64)
        assert "format" not in schemas[moment]
    for name, parameter in parameters.items():
        assert parameter["description"], name
        assert "null" not in json.dumps(parameter["schema"]), name  # absent, never null


# The examples are real answers: provoke each error and compare with what the document shows.


async def documented_example(client: AsyncClient, method: str, path: str, status: int) -> Any:
    document = (await client.get("/openapi.json")).json()
    media = document["paths"][path][method]["responses"][str(status)]["content"]
    return media["application/json"]["example"]


async def test_400_example_is_what_a_bad_body_gets(client: AsyncClient) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "A task", "priority": "urgent"}, headers=auth()
    )
    assert response.status_code == 400
    assert response.json() == await documented_example(client, "post", "/api/tasks", 400)


async def test_403_example_is_what_someone_elses_task_gets(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task("alice")
    response = await client.get(f"/api/tasks/{task['id']}", headers=auth("bob"))
    assert response.status_code == 403
    assert response.json() == await documented_example(client, "get", "/api/tasks/{task_id}", 403)


async def test_404_example_is_what_a_missing_task_gets(client: AsyncClient) -> None:
    response = await client.get(f"/api/tasks/{uuid.uuid4()}", headers=auth())
    assert response.status_code == 404
    assert response.json() == await documented_example(client, "get", "/api/tasks/{task_id}", 404)


async def test_412_example_is_what_a_stale_if_match_gets(
    client: AsyncClient, create_task: TaskFactory
) -> None:
    task = await create_task("alice")
    response = await client.patch(
        f"/api/tasks/{task['id']}",
        json={"title": "Changed"},
        headers={**auth(), "If-Match": '"1"'},
    )
    assert response.status_code == 412
    assert response.json() == await documented_example(client, "patch", "/api/tasks/{task_id}", 412)


async def test_413_and_415_examples_are_what_bad_bodies_get(client: AsyncClient) -> None:
    too_large = await client.post("/api/tasks", content=b"{" + b" " * 70_000 + b"}", headers=auth())
    assert too_large.status_code == 413
    assert too_large.json() == await documented_example(client, "post", "/api/tasks", 413)
    not_json = await client.post(
        "/api/tasks", content=b"title=x", headers={**auth(), "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415
    assert not_json.json() == await documented_example(client, "post", "/api/tasks", 415)


async def test_409_example_is_what_a_taken_email_gets(client: AsyncClient) -> None:
    account = {"name": "Ann Lee", "email": "ann@example.com", "password": "correct horse"}
    assert (await client.post("/api/auth/signup", json=account)).status_code == 201
    response = await client.post("/api/auth/signup", json=account)
    assert response.status_code == 409
    assert response.json() == await documented_example(client, "post", "/api/auth/signup", 409)


async def test_429_example_is_what_a_rate_limited_request_gets(settings: Settings) -> None:
    async with running(settings.model_copy(update={"rate_limit_per_minute": 1})) as (_, client):
        user = f"limited-{uuid.uuid4().hex[:8]}"
        assert (await client.get("/api/tasks", headers=auth(user))).status_code == 200
        response = await client.get("/api/tasks", headers=auth(user))
        assert response.status_code == 429
        assert response.json() == await documented_example(client, "get", "/api/tasks", 429)
