"""Tokens signed with published keys (Better Auth's JWKS): every algorithm it can use, key
rotation, refetch limits, and an issuer that is briefly down."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import text

from tests.auth.conftest import (
    RecordingServer,
    SigningKey,
    better_auth_claims,
    make_key,
)
from tests.conftest import SECRET, make_token, running
from todo_api.config import Settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Keys older than a second are fetched again, with no cooldown between fetches.
REFETCH_AT_ONCE: dict[str, Any] = {"jwt_jwks_cache_seconds": 1, "jwt_jwks_cooldown_seconds": 0}


def jwks_only(sqlite_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": sqlite_url,
        "environment": "test",
        "data_dir": tmp_path,
        "auto_migrate": False,
        **overrides,
    }
    return Settings(**values)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "ES512", "RS256", "PS256"])
async def test_token_of_each_algorithm_is_accepted(
    issuer: RecordingServer, keys: dict[str, SigningKey], jwks_client: AsyncClient, alg: str
) -> None:
    claims = better_auth_claims(issuer)
    created = await jwks_client.post(
        "/api/tasks", json={"title": alg}, headers=bearer(keys[alg].sign(claims))
    )
    assert created.status_code == 201, created.text
    assert created.json()["user_id"] == claims["sub"]
    listed = await jwks_client.get("/api/tasks", headers=bearer(keys[alg].sign(claims)))
    assert [task["title"] for task in listed.json()] == [alg]


async def test_keys_without_alg_as_older_releases_publish(
    issuer: RecordingServer, keys: dict[str, SigningKey], jwks_settings: Settings
) -> None:
    issuer.publish(keys["EdDSA"], keys["ES256"], keys["RS256"], without_alg=True)
    async with running(jwks_settings) as (_, client):
        for alg in ("EdDSA", "ES256", "RS256", "PS256"):
            # PS256 with the RS256 key's kid: the RSA key without `alg` serves both.
            key = keys["RS256"] if alg == "PS256" else keys[alg]
            signing = SigningKey(key.kid, alg, key.private_key, key.public_jwk)
            response = await client.get(
                "/api/tasks", headers=bearer(signing.sign(better_auth_claims(issuer)))
            )
            assert response.status_code == 200, (alg, response.text)
        # A key without `alg` still only verifies the algorithms of its type.
        wrong_type = SigningKey(keys["ES256"].kid, "EdDSA", keys["EdDSA"].private_key, {})
        response = await client.get(
            "/api/tasks", headers=bearer(wrong_type.sign(better_auth_claims(issuer)))
        )
        assert response.status_code == 401


async def test_user_row_takes_email_and_name_from_the_claims(
    issuer: RecordingServer, keys: dict[str, SigningKey], jwks_settings: Settings
) -> None:
    claims = better_auth_claims(issuer, email="Ann.Lee@Example.com")
    token = keys["EdDSA"].sign(claims)
    async with running(jwks_settings) as (app, client):
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
        # With JWKS and no secret, built-in accounts are off: no /api/auth routes.
        assert (await client.get("/api/auth/me", headers=bearer(token))).status_code == 404
        async with app.state.runtime.engine.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT email, name FROM users WHERE id = :id"), {"id": claims["sub"]}
                )
            ).one()
    assert tuple(row) == ("ann.lee@example.com", "Ann Lee")


async def test_rotation_is_picked_up_without_restart(
    issuer: RecordingServer, keys: dict[str, SigningKey], jwks_client: AsyncClient
) -> None:
    old = keys["EdDSA"]
    first = await jwks_client.get(
        "/api/tasks", headers=bearer(old.sign(better_auth_claims(issuer)))
    )
    assert first.status_code == 200
    new = make_key("EdDSA", "rotated-key")
    issuer.publish(new, old)  # the old key stays published for a grace period
    response = await jwks_client.get(
        "/api/tasks", headers=bearer(new.sign(better_auth_claims(issuer)))
    )
    assert response.status_code == 200, response.text
    still_old = await jwks_client.get(
        "/api/tasks", headers=bearer(old.sign(better_auth_claims(issuer)))
    )
    assert still_old.status_code == 200


async def test_a_withdrawn_key_stops_verifying_remembered_tokens(
    sqlite_url: str, tmp_path: Path, issuer: RecordingServer, keys: dict[str, SigningKey]
) -> None:
    """Verified tokens are remembered per worker; once a refresh of the JWKS no longer lists
    the key that verified one, it is checked again, and refused."""
    settings = jwks_only(sqlite_url, tmp_path, better_auth_url=issuer.origin, **REFETCH_AT_ONCE)
    withdrawn, kept = keys["EdDSA"], keys["ES256"]
    async with running(settings) as (_, client):
        old_token = withdrawn.sign(better_auth_claims(issuer))
        kept_token = kept.sign(better_auth_claims(issuer))
        for token in (old_token, kept_token):
            assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
        issuer.publish(kept)
        await asyncio.sleep(1.2)  # past JWT_JWKS_CACHE_SECONDS: the next use refetches
        refused = await client.get("/api/tasks", headers=bearer(old_token))
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"detail": "Token was signed with an unknown key."}
        still = await client.get("/api/tasks", headers=bearer(kept_token))
        assert still.status_code == 200


async def test_unknown_kid_refetches_once_not_per_request(
    issuer: RecordingServer, jwks_client: AsyncClient
) -> None:
    hits_after_start = issuer.jwks_hits()
    assert hits_after_start == 1  # fetched at start-up
    stranger = make_key("EdDSA", "never-published")
    answers = await asyncio.gather(
        *(
            jwks_client.get("/api/tasks", headers=bearer(stranger.sign(better_auth_claims(issuer))))
            for _ in range(20)
        )
    )
    assert {answer.status_code for answer in answers} == {401}
    assert answers[0].json() == {"detail": "Token was signed with an unknown key."}
    assert issuer.jwks_hits() == hits_after_start + 1
    again = await jwks_client.get(
        "/api/tasks", headers=bearer(stranger.sign(better_auth_claims(issuer)))
    )
    assert again.status_code == 401
    assert issuer.jwks_hits() == hits_after_start + 1  # still within the cooldown


async def test_issuer_down_cached_keys_still_verify(
    issuer: RecordingServer, keys: dict[str, SigningKey], sqlite_url: str, tmp_path: Path
) -> None:
    settings = jwks_only(sqlite_url, tmp_path, better_auth_url=issuer.origin, **REFETCH_AT_ONCE)
    async with running(settings) as (_, client):
        token = keys["EdDSA"].sign(better_auth_claims(issuer))
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200
        issuer.status = 503
        await asyncio.sleep(1.1)  # the keys are now past their age: a refetch is attempted
        hits = issuer.jwks_hits()
        fresh = keys["EdDSA"].sign(better_auth_claims(issuer))  # not one already verified
        response = await client.get("/api/tasks", headers=bearer(fresh))
        assert response.status_code == 200, response.text
        assert issuer.jwks_hits() > hits  # it did try, and kept the keys it held


async def test_issuer_down_at_start_recovers_when_it_is_back(
    issuer: RecordingServer, keys: dict[str, SigningKey], sqlite_url: str, tmp_path: Path
) -> None:
    issuer.status = 503
    settings = jwks_only(
        sqlite_url, tmp_path, better_auth_url=issuer.origin, jwt_jwks_cooldown_seconds=0
    )
    async with running(settings) as (_, client):
        token = keys["EdDSA"].sign(better_auth_claims(issuer))
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 401
        issuer.status = 200
        assert (await client.get("/api/tasks", headers=bearer(token))).status_code == 200


async def test_secret_and_jwks_together(
    issuer: RecordingServer, keys: dict[str, SigningKey], sqlite_url: str, tmp_path: Path
) -> None:
    settings = jwks_only(
        sqlite_url, tmp_path, better_auth_url=issuer.origin, better_auth_secret=SECRET
    )
    async with running(settings) as (_, client):
        by_jwks = keys["ES256"].sign(better_auth_claims(issuer, sub="jwks-user"))
        by_secret = make_token("secret-user")
        for token, user in ((by_jwks, "jwks-user"), (by_secret, "secret-user")):
            response = await client.post("/api/tasks", json={"title": "t"}, headers=bearer(token))
            assert response.status_code == 201, response.text
            assert response.json()["user_id"] == user


async def test_explicit_jwks_url_issuer_and_audience(
    issuer: RecordingServer, keys: dict[str, SigningKey], sqlite_url: str, tmp_path: Path
) -> None:
    settings = jwks_only(
        sqlite_url,
        tmp_path,
        jwt_jwks_url=f"{issuer.origin}/api/auth/jwks",
        jwt_issuer="https://auth.example.com",
        jwt_audience="todo-api",
    )
    async with running(settings) as (_, client):
        good = better_auth_claims(issuer, iss="https://auth.example.com", aud="todo-api")
        ok = await client.get("/api/tasks", headers=bearer(keys["EdDSA"].sign(good)))
        assert ok.status_code == 200, ok.text
        wrong = await client.get(
            "/api/tasks", headers=bearer(keys["EdDSA"].sign(better_auth_claims(issuer)))
        )
        assert wrong.status_code == 401
        assert wrong.json() == {"detail": "Token was issued for another issuer or audience."}


async def test_jwt_algorithms_narrows_what_the_jwks_accepts(
    issuer: RecordingServer, keys: dict[str, SigningKey], sqlite_url: str, tmp_path: Path
) -> None:
    settings = jwks_only(
        sqlite_url, tmp_path, better_auth_url=issuer.origin, jwt_algorithms="EdDSA"
    )
    async with running(settings) as (_, client):
        eddsa = keys["EdDSA"].sign(better_auth_claims(issuer))
        rs256 = keys["RS256"].sign(better_auth_claims(issuer))
        assert (await client.get("/api/tasks", headers=bearer(eddsa))).status_code == 200
        refused = await client.get("/api/tasks", headers=bearer(rs256))
        assert refused.status_code == 401
        assert refused.json() == {"detail": "Token algorithm is not accepted."}


def test_jwt_algorithms_refuses_symmetric_ones() -> None:
    with pytest.raises(ValueError, match="public-key algorithms"):
        Settings(better_auth_url="http://localhost:3000", jwt_algorithms="EdDSA,HS256")
