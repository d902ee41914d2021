"""`/mcp` behind a Better Auth that signs with EdDSA keys published as a JWKS (a real key
server on localhost): its tokens work on the tools as on REST, the metadata names Better
Auth's origin as where to sign in, and a token signed by a key it does not publish is a 401
with the challenge."""

from typing import Any

from httpx import AsyncClient

from tests.auth.conftest import RecordingServer, SigningKey, better_auth_claims, make_key

HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    params = {"name": tool, "arguments": arguments}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


async def test_a_better_auth_token_manages_tasks_through_the_tools(
    issuer: RecordingServer, keys: dict[str, SigningKey], jwks_client: AsyncClient
) -> None:
    claims = better_auth_claims(issuer)
    bearer = {**HEADERS, "Authorization": f"Bearer {keys['EdDSA'].sign(claims)}"}
    added = await jwks_client.post(
        "/mcp", json=call("add_task", {"title": "Via MCP"}), headers=bearer
    )
    assert added.status_code == 200, added.text
    task = added.json()["result"]["structuredContent"]
    assert (task["title"], task["user_id"]) == ("Via MCP", claims["sub"])
    listed = await jwks_client.get("/api/tasks", headers={"Authorization": bearer["Authorization"]})
    assert [item["id"] for item in listed.json()] == [task["id"]]


async def test_the_metadata_names_better_auth_as_the_authorization_server(
    issuer: RecordingServer, jwks_client: AsyncClient
) -> None:
    response = await jwks_client.get("/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200
    assert response.json()["authorization_servers"] == [issuer.origin]
    assert response.json()["resource"] == "http://testserver/mcp"


async def test_a_token_from_an_unpublished_key_gets_the_challenge(
    issuer: RecordingServer, jwks_client: AsyncClient
) -> None:
    stranger = make_key("EdDSA", kid="not-published")
    bearer = {**HEADERS, "Authorization": f"Bearer {stranger.sign(better_auth_claims(issuer))}"}
    response = await jwks_client.post("/mcp", json=call("add_task", {"title": "x"}), headers=bearer)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", '
        'resource_metadata="http://testserver/.well-known/oauth-protected-resource/mcp"'
    )
    assert response.json() == {"detail": "Token was signed with an unknown key."}
