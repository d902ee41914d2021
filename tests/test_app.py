"""App-wide behaviour: CORS, last-resort 500s, the OpenAPI document."""

from fastapi import FastAPI
from httpx import AsyncClient


async def test_cors_preflight_allows_configured_origin(client: AsyncClient) -> None:
    response = await client.options(
        "/api/tasks",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_cors_exposes_headers_to_the_frontend(client: AsyncClient) -> None:
    response = await client.get("/health", headers={"Origin": "http://localhost:3000"})
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"
    exposed = response.headers["access-control-expose-headers"].lower()
    for header in ["etag", "link", "location", "x-request-id"]:
        assert header in exposed


async def test_cors_rejects_other_origins(client: AsyncClient) -> None:
    response = await client.options(
        "/api/tasks",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_unexpected_error_is_json_500_with_request_id(
    app: FastAPI, client: AsyncClient
) -> None:
    async def broken() -> None:
        raise RuntimeError("secret internals: SELECT * FROM users")

    app.add_api_route("/broken", broken)
    response = await client.get("/broken", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error", "request_id": "req-42"}
    assert response.headers["x-request-id"] == "req-42"
    assert "SELECT" not in response.text


async def test_openapi_declares_bearer_auth_on_task_routes(client: AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for operation in operations.values():
            secured = bool(operation.get("security"))
            needs_token = path.startswith(("/api/tasks", "/api/tags", "/api/events"))
            needs_token = needs_token or path == "/api/auth/me"
            assert secured is needs_token, path
