"""Built-in accounts: signup, login and me, in the shapes a Better Auth frontend reads."""

import json
import statistics
import time
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from tests.conftest import DatabaseProbe, running
from todo_api.config import Settings

PASSWORD = "correct horse battery"
# Bodies sent as JSON text with \u escapes: httpx's `json=` cannot encode a lone surrogate.
JSON = {"Content-Type": "application/json"}


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
        # Text no column can hold: a lone surrogate or NUL in any field.
        ({"name": "Ann\udfff", "email": "a@example.com", "password": PASSWORD}, "name"),
        ({"name": "A", "email": "a\ud800@example.com", "password": PASSWORD}, "email"),
        ({"name": "A", "email": "a@example.com", "password": PASSWORD + "\udfff"}, "password"),
        ({"name": "A", "email": "a\x00@example.com", "password": PASSWORD}, "email"),
        ({"name": "A", "email": "a@example.com", "password": PASSWORD + "\x00"}, "password"),
        # 312 characters as sent, 612 once lower-cased: too long for the column as stored.
        ({"name": "A", "email": "\u0130" * 300 + "@example.com", "password": PASSWORD}, "email"),
    ],
)
async def test_signup_rejects_invalid_input(
    client: AsyncClient, db: DatabaseProbe, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/auth/signup", content=json.dumps(body), headers=JSON)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    assert [error["field"] for error in response.json()["errors"]] == [field]
    assert await db.rows("SELECT id FROM users") == []


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a\udfff@example.com", "password": PASSWORD},
        {"email": "a@example.com", "password": "\ud800" + PASSWORD},
        {"email": "a@example.com\x00", "password": PASSWORD},
        {"email": "a@example.com", "password": "\x00" + PASSWORD},
    ],
)
async def test_login_refuses_unstorable_text_with_a_400(
    client: AsyncClient, body: dict[str, Any]
) -> None:
    response = await client.post("/api/auth/login", content=json.dumps(body), headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] in body


async def test_names_in_any_script_are_kept_exactly(client: AsyncClient, db: DatabaseProbe) -> None:
    name = "\u0645\u0631\u064a\u0645 \u202eZo\u00eb\u202c e\u0301 \U0001f469\u200d\U0001f4bb"
    response = await signup(client, email="mariam@example.com", name=name)
    assert response.status_code == 201, response.text
    assert response.json()["user"]["name"] == name
    assert await db.rows("SELECT name FROM users") == [{"name": name}]


async def test_me_needs_a_token(client: AsyncClient) -> None:
    response = await client.get("/api/auth/me")
    assert response.status_code == 401


def from_address(app: FastAPI, address: str) -> AsyncClient:
    """A client whose requests come from `address`, as the throttle sees it. The throttle's
    counts live in the database (tests/auth/test_throttle_shared.py), which `running` does not
    empty: each test below uses addresses and emails of its own."""
    transport = ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return AsyncClient(transport=transport, base_url="http://testserver")


async def login(client: AsyncClient, password: str, email: str) -> int:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    return response.status_code


async def test_failures_from_one_client_throttle_that_client_only(settings: Settings) -> None:
    throttled = settings.model_copy(update={"login_max_failures": 3})
    async with (
        running(throttled) as (app, _),
        from_address(app, "198.51.100.7") as stranger,
        from_address(app, "203.0.113.20") as owner,
    ):
        assert (await signup(owner, email="owner1@example.com")).status_code == 201
        assert [
            await login(stranger, "wrong password", "owner1@example.com") for _ in range(3)
        ] == [401] * 3
        blocked = await stranger.post(
            "/api/auth/login", json={"email": "owner1@example.com", "password": PASSWORD}
        )
        assert blocked.status_code == 429  # even the right password waits, from there
        assert 0 < int(blocked.headers["retry-after"]) <= throttled.login_failure_window_seconds
        assert await login(stranger, "x" * 8, "someone@example.com") == 401
        # The owner, elsewhere, is not locked out by a stranger typing their email.
        assert await login(owner, PASSWORD, "owner1@example.com") == 200


async def test_distributed_guessing_meets_the_per_email_ceiling(settings: Settings) -> None:
    """Many addresses guessing one account: the ceiling counts them all together, yet the
    owner's own client, which logged in before, is not held by it."""
    throttled = settings.model_copy(
        update={"login_max_failures": 3, "login_max_failures_per_email": 6}
    )
    async with running(throttled) as (app, _), from_address(app, "203.0.113.21") as owner:
        assert (await signup(owner, email="owner2@example.com")).status_code == 201
        assert await login(owner, PASSWORD, "owner2@example.com") == 200
        for n in range(2):
            async with from_address(app, f"198.51.100.{n + 1}") as guesser:
                assert [
                    await login(guesser, "wrong password", "owner2@example.com") for _ in range(3)
                ] == [401] * 3
        async with from_address(app, "198.51.100.99") as newcomer:
            assert await login(newcomer, PASSWORD, "owner2@example.com") == 429
        assert await login(owner, PASSWORD, "owner2@example.com") == 200


async def test_login_success_clears_that_clients_failures(settings: Settings) -> None:
    throttled = settings.model_copy(update={"login_max_failures": 3})
    async with running(throttled) as (app, _), from_address(app, "203.0.113.22") as owner:
        assert (await signup(owner, email="owner3@example.com")).status_code == 201
        for _ in range(3):
            assert [
                await login(owner, "typo password", "owner3@example.com") for _ in range(2)
            ] == [401] * 2
            assert await login(owner, PASSWORD, "owner3@example.com") == 200


async def test_repeated_failures_are_throttled_per_client(settings: Settings) -> None:
    throttled = settings.model_copy(update={"login_max_failures_per_client": 4})
    async with running(throttled) as (app, _), from_address(app, "192.0.2.14") as client:
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
