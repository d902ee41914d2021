"""Built-in accounts: signup, login and me, in the shapes a Better Auth frontend reads."""

import statistics
import time
from typing import Any

import pytest
from httpx import AsyncClient

from tests.conftest import DatabaseProbe, running
from todo_api.config import Settings

PASSWORD = "correct horse battery"


async def signup(client: AsyncClient, email: str = "Ann@Example.com", **extra: Any) -> Any:
    body = {"name": "Ann Lee", "email": email, "password": PASSWORD, **extra}
    return await client.post("/api/auth/signup", json=body)


async def test_signup_returns_token_and_user(client: AsyncClient, db: DatabaseProbe) -> None:
    response = await signup(client)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"token", "user"}
    user = body["user"]
    assert user["email"] == "ann@example.com"
    assert user["name"] == "Ann Lee"
    assert len(user["id"]) == 32
    rows = await db.rows("SELECT id, email, name, password_hash FROM users")
    assert len(rows) == 1
    assert rows[0]["id"] == user["id"]
    assert rows[0]["email"] == "ann@example.com"
    assert rows[0]["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in rows[0]["password_hash"]


async def test_signup_token_works_for_tasks_and_me(client: AsyncClient) -> None:
    body = (await signup(client)).json()
    headers = {"Authorization": f"Bearer {body['token']}"}
    created = await client.post("/api/tasks", json={"title": "first"}, headers=headers)
    assert created.status_code == 201
    assert created.json()["user_id"] == body["user"]["id"]
    me = await client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json() == body["user"]


async def test_login_with_any_case_of_the_email(client: AsyncClient) -> None:
    user = (await signup(client)).json()["user"]
    response = await client.post(
        "/api/auth/login", json={"email": "  ANN@example.COM ", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    assert response.json()["user"] == user
    tasks = await client.get(
        "/api/tasks", headers={"Authorization": f"Bearer {response.json()['token']}"}
    )
    assert tasks.status_code == 200


async def test_duplicate_email_is_409(client: AsyncClient, db: DatabaseProbe) -> None:
    assert (await signup(client)).status_code == 201
    again = await signup(client, email="ANN@example.com", name="Other")
    assert again.status_code == 409
    assert again.json() == {"detail": "An account with this email already exists."}
    assert len(await db.rows("SELECT id FROM users")) == 1


async def test_wrong_password_and_unknown_email_answer_alike(client: AsyncClient) -> None:
    await signup(client)

    async def attempt(email: str, password: str) -> tuple[int, Any, float]:
        started = time.perf_counter()
        response = await client.post("/api/auth/login", json={"email": email, "password": password})
        return response.status_code, response.json(), time.perf_counter() - started

    wrong = [await attempt("ann@example.com", "wrong password") for _ in range(2)]
    unknown = [await attempt("nobody@example.com", "wrong password") for _ in range(2)]
    assert {(status, json_body["detail"]) for status, json_body, _ in wrong + unknown} == {
        (401, "Invalid email or password.")
    }
    # An unknown email still costs a password hash check, so timing does not tell them apart.
    wrong_time = statistics.median(seconds for *_, seconds in wrong)
    unknown_time = statistics.median(seconds for *_, seconds in unknown)
    assert unknown_time > 0.4 * wrong_time


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "A", "email": "a@example.com", "password": "short7!"}, "password"),
        ({"name": "A", "email": "a@example.com", "password": "x" * 129}, "password"),
        ({"name": "A", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"name": "   ", "email": "a@example.com", "password": PASSWORD}, "name"),
        ({"email": "a@example.com", "password": PASSWORD}, "name"),
        ({"name": "A", "email": "a@example.com"}, "password"),
    ],
)
async def test_signup_rejects_invalid_input(
    client: AsyncClient, db: DatabaseProbe, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/auth/signup", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert await db.rows("SELECT id FROM users") == []


async def test_me_needs_a_token(client: AsyncClient) -> None:
    response = await client.get("/api/auth/me")
    assert response.status_code == 401


async def test_repeated_failures_are_throttled_per_email(settings: Settings) -> None:
    throttled = settings.model_copy(update={"login_max_failures_per_email": 3})
    async with running(throttled) as (_, client):
        await signup(client, email="throttle@example.com")
        wrong = {"email": "throttle@example.com", "password": "wrong password"}
        for _ in range(3):
            assert (await client.post("/api/auth/login", json=wrong)).status_code == 401
        blocked = await client.post("/api/auth/login", json=wrong)
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= throttled.login_failure_window_seconds
        right = {"email": "throttle@example.com", "password": PASSWORD}
        still_blocked = await client.post("/api/auth/login", json=right)
        assert still_blocked.status_code == 429  # even the right password waits
        other = await client.post(
            "/api/auth/login", json={"email": "someone@example.com", "password": "x" * 8}
        )
        assert other.status_code == 401  # other emails are not locked by this one


async def test_repeated_failures_are_throttled_per_client(settings: Settings) -> None:
    throttled = settings.model_copy(update={"login_max_failures_per_client": 4})
    async with running(throttled) as (_, client):
        for n in range(4):
            response = await client.post(
                "/api/auth/login", json={"email": f"user{n}@example.com", "password": "x" * 8}
            )
            assert response.status_code == 401
        blocked = await client.post(
            "/api/auth/login", json={"email": "fresh@example.com", "password": "x" * 8}
        )
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0


async def test_accounts_can_be_switched_off(settings: Settings) -> None:
    async with running(settings.model_copy(update={"accounts_enabled": False})) as (_, client):
        response = await signup(client)
        assert response.status_code == 404
