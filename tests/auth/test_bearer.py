"""Every `/api/tasks` route needs a valid bearer token; anything else is a 401 that says why."""

import base64
import json
import time

import jwt
import pytest
from httpx import AsyncClient

from tests.conftest import SECRET, DatabaseProbe, auth, make_token

CHALLENGE = 'Bearer error="invalid_token"'


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _unsigned(alg: str) -> str:
    header = _b64({"alg": alg, "typ": "JWT"})
    payload = _b64({"sub": "alice", "exp": int(time.time()) + 600})
    return f"{header}.{payload}."


BAD_AUTHORIZATION = {
    "garbage": "Bearer not-a-jwt",
    "empty token": "Bearer ",
    "wrong scheme": f"Basic {make_token()}",
    "token without scheme": make_token(),
    "bad signature": f"Bearer {make_token(secret='another-secret-that-is-also-32-bytes-long')}",
    "expired": f"Bearer {make_token(ttl=-120)}",
    "not yet valid": f"Bearer {make_token(nbf=int(time.time()) + 600)}",
    "missing exp": f"Bearer {make_token(exp=None)}",
    "missing sub": f"Bearer {make_token(sub=None)}",
    "empty sub": f"Bearer {make_token(sub='')}",
    "numeric sub": f"Bearer {jwt.encode({'sub': 5, 'exp': int(time.time()) + 60}, SECRET)}",
    "alg none": f"Bearer {_unsigned('none')}",
    "alg None": f"Bearer {_unsigned('None')}",
    "alg NONE": f"Bearer {_unsigned('NONE')}",
    "HS384": f"Bearer {jwt.encode({'sub': 'a', 'exp': int(time.time()) + 60}, SECRET, 'HS384')}",
    "oversized": f"Bearer {make_token(padding='x' * 9000)}",
    "tampered payload": "Bearer "
    + ".".join(
        [
            make_token().split(".")[0],
            _b64({"sub": "bob", "exp": 9999999999}),
            make_token().split(".")[2],
        ]
    ),
}


@pytest.mark.parametrize("header", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
async def test_rejected_with_401_and_challenge(
    client: AsyncClient, db: DatabaseProbe, header: str
) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "x"}, headers={"Authorization": header}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    detail = response.json()["detail"]
    assert detail
    assert "eyJ" not in response.text
    assert await db.count_tasks() == 0
    assert await db.rows("SELECT id FROM users") == []


async def test_missing_header_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/tasks")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE
    assert response.json() == {"detail": "Missing bearer token."}


async def test_expired_token_says_so(client: AsyncClient) -> None:
    response = await client.get("/api/tasks", headers=auth(ttl=-120))
    assert response.json() == {"detail": "Token has expired."}


async def test_missing_claim_is_named(client: AsyncClient) -> None:
    response = await client.get("/api/tasks", headers=auth(exp=None))
    assert response.json() == {"detail": "Token is missing the 'exp' claim."}


async def test_leeway_accepts_just_expired_token(client: AsyncClient) -> None:
    response = await client.get("/api/tasks", headers=auth(ttl=-5))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/tasks"),
        ("POST", "/api/tasks"),
        ("GET", "/api/tasks/stats"),
        ("GET", "/api/tasks/2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10"),
        ("PUT", "/api/tasks/2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10"),
        ("PATCH", "/api/tasks/2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10"),
        ("DELETE", "/api/tasks/2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10"),
        ("PATCH", "/api/tasks/2b0f8a3c-52a8-4a43-9d55-6a4b5d2f6e10/complete"),
    ],
)
async def test_every_task_route_needs_a_token(client: AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == CHALLENGE


async def test_public_routes_need_no_token(client: AsyncClient) -> None:
    for path in ["/health", "/health/ready", "/openapi.json", "/docs", "/redoc"]:
        response = await client.get(path)
        assert response.status_code == 200, path


# `email` and `name` only describe the caller; one the `users` row could not hold (NUL, an
# unpaired surrogate, longer than the column once lower-cased, not an address) is dropped, and
# the request goes on. The user is the same either way: the id is `sub`.
UNUSABLE_DECORATIVE_CLAIMS = {
    "email with NUL": {"email": "ann\x00@example.com"},
    "email with a lone surrogate": {"email": "ann\udfff@example.com"},
    "email of 321 characters": {"email": "a" * 309 + "@example.com"},
    "email longer than its column once lower-cased": {"email": "\u0130" * 300 + "@example.com"},
    "email that is no address": {"email": "not an address"},
    "email as a list": {"email": ["ann@example.com"]},
    "name with NUL": {"name": "Ann\x00"},
    "name with a lone surrogate": {"name": "\ud800Ann"},
    "name of 101 characters": {"name": "n" * 101},
    "name blank": {"name": " \u2028 "},
}


@pytest.mark.parametrize(
    "claims", UNUSABLE_DECORATIVE_CLAIMS.values(), ids=UNUSABLE_DECORATIVE_CLAIMS.keys()
)
async def test_unusable_email_or_name_claims_are_dropped(
    client: AsyncClient, db: DatabaseProbe, claims: dict[str, object]
) -> None:
    sent = {"email": "ann@example.com", "name": "Ann Lee", **claims}
    for _ in range(2):  # the first request creates the row, the second finds it
        response = await client.get("/api/tasks", headers=auth("ann", **sent))
        assert response.status_code == 200, response.text
    rows = await db.rows("SELECT id, email, name FROM users")
    kept = {
        "id": "ann",
        "email": None if "email" in claims else "ann@example.com",
        "name": None if "name" in claims else "Ann Lee",
    }
    assert rows == [kept]


async def test_usable_claims_are_stored_as_sent(client: AsyncClient, db: DatabaseProbe) -> None:
    # Accents, Hebrew, an emoji, a combining mark.
    name = "Zoë \u05e9\u05dc\u05d5\u05dd \U0001f600 e\u0301"
    response = await client.get(
        "/api/tasks", headers=auth("ann", email=" Ann@Example.COM ", name=name)
    )
    assert response.status_code == 200
    assert await db.rows("SELECT email, name FROM users") == [
        {"email": "ann@example.com", "name": name}
    ]


async def test_expiry_beyond_any_float_is_not_a_500(client: AsyncClient) -> None:
    """`exp` is an integer of any size in JSON; one past the float range once crashed the
    token cache. Signed by the issuer, it is simply a token that expires very late."""
    response = await client.get("/api/tasks", headers=auth("ann", exp=10**400))
    assert response.status_code == 200, response.text
