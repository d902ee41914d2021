"""The attack corpus: every forged, tampered or misdirected token is a 401 that touches no data
and makes no request anywhere but the configured JWKS."""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text

from tests.auth.conftest import RecordingServer, SigningKey, better_auth_claims, make_key
from tests.conftest import SECRET, running
from todo_api.config import Settings

CHALLENGE = 'Bearer error="invalid_token"'


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


def hs256_with(key_bytes: bytes, claims: dict[str, Any], **header: Any) -> str:
    """HS256 by hand: PyJWT itself refuses to use a public key as an HMAC secret."""
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT', **header})}.{segment(claims)}"
    signature = hmac.new(key_bytes, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(alg: str, claims: dict[str, Any], kid: str) -> str:
    return f"{segment({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{segment(claims)}."


def public_pem(key: SigningKey) -> bytes:
    pem: bytes = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


Forge = Callable[[RecordingServer, dict[str, SigningKey], RecordingServer], str]


def _claims(issuer: RecordingServer, **changes: Any) -> dict[str, Any]:
    claims = better_auth_claims(issuer, sub="victim-user-id-000000000000000000")
    claims.update(changes)
    return {key: value for key, value in claims.items() if value is not None}


def _tampered(issuer: RecordingServer, keys: dict[str, SigningKey], _: RecordingServer) -> str:
    header, _payload, signature = keys["EdDSA"].sign(_claims(issuer)).split(".")
    return f"{header}.{segment(_claims(issuer, sub='attacker'))}.{signature}"


def _embedded_jwk(issuer: RecordingServer, keys: dict[str, SigningKey], _: RecordingServer) -> str:
    attacker = make_key("EdDSA", "attacker-key")
    return attacker.sign(_claims(issuer), jwk=attacker.public_jwk)


def _pointing_elsewhere(header: str) -> Forge:
    def forge(issuer: RecordingServer, keys: dict[str, SigningKey], there: RecordingServer) -> str:
        attacker = make_key("EdDSA", "attacker-key")
        there.publish(attacker)
        return attacker.sign(_claims(issuer), **{header: f"{there.origin}/api/auth/jwks"})

    return forge


def _jwe_shaped(issuer: RecordingServer, keys: dict[str, SigningKey], _: RecordingServer) -> str:
    header = segment({"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": keys["RS256"].kid})
    return ".".join([header, b64(b"k" * 256), b64(b"iv" * 6), b64(b"ciphertext"), b64(b"t" * 16)])


ATTACKS: dict[str, Forge] = {
    "alg none": lambda i, k, _: unsigned("none", _claims(i), k["EdDSA"].kid),
    "alg None": lambda i, k, _: unsigned("None", _claims(i), k["EdDSA"].kid),
    "alg NONE": lambda i, k, _: unsigned("NONE", _claims(i), k["EdDSA"].kid),
    "empty signature": lambda i, k, _: k["EdDSA"].sign(_claims(i)).rsplit(".", 1)[0] + ".",
    "HS256 with the RSA public key": lambda i, k, _: hs256_with(
        public_pem(k["RS256"]), _claims(i), kid=k["RS256"].kid
    ),
    "HS256 with the EC public key": lambda i, k, _: hs256_with(
        public_pem(k["ES256"]), _claims(i), kid=k["ES256"].kid
    ),
    "HS256 with the JWK as text": lambda i, k, _: hs256_with(
        json.dumps(k["EdDSA"].public_jwk).encode(), _claims(i), kid=k["EdDSA"].kid
    ),
    "tampered payload": _tampered,
    "wrong key, real kid": lambda i, k, _: SigningKey(
        k["EdDSA"].kid, "EdDSA", make_key("EdDSA").private_key, {}
    ).sign(_claims(i)),
    "expired": lambda i, k, _: k["EdDSA"].sign(_claims(i, exp=int(time.time()) - 120)),
    "not valid yet": lambda i, k, _: k["EdDSA"].sign(_claims(i, nbf=int(time.time()) + 600)),
    "wrong iss": lambda i, k, _: k["EdDSA"].sign(_claims(i, iss="https://evil.example")),
    "missing iss": lambda i, k, _: k["EdDSA"].sign(_claims(i, iss=None)),
    "wrong aud": lambda i, k, _: k["EdDSA"].sign(_claims(i, aud="https://evil.example")),
    "missing aud": lambda i, k, _: k["EdDSA"].sign(_claims(i, aud=None)),
    "missing exp": lambda i, k, _: k["EdDSA"].sign(_claims(i, exp=None)),
    "missing sub": lambda i, k, _: k["EdDSA"].sign(_claims(i, sub=None)),
    "kid with a path": lambda i, k, _: SigningKey(
        "../../../etc/passwd", "EdDSA", k["EdDSA"].private_key, {}
    ).sign(_claims(i)),
    "kid with SQL": lambda i, k, _: SigningKey(
        "' OR 1=1; DROP TABLE tasks; --", "EdDSA", k["EdDSA"].private_key, {}
    ).sign(_claims(i)),
    "jku elsewhere": _pointing_elsewhere("jku"),
    "x5u elsewhere": _pointing_elsewhere("x5u"),
    "embedded jwk": _embedded_jwk,
    "JWE-shaped": _jwe_shaped,
    "9 KB token": lambda i, k, _: k["EdDSA"].sign(_claims(i, padding="x" * 9 * 1024)),
    # Header members of the wrong type, each signed with the real secret: refused for its
    # type, before it is used (a list as `alg` once reached a set lookup and answered 500).
    "alg as a list": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i), alg=["HS256"]),
    "alg as a number": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i), alg=256),
    "alg as an object": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i), alg={"HS256": 1}),
    "alg null": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i), alg=None),
    "kid as an object": lambda i, k, _: hs256_with(
        SECRET.encode(), _claims(i), alg="EdDSA", kid={"kid": k["EdDSA"].kid}
    ),
    "crit naming an unknown extension": lambda i, k, _: hs256_with(
        SECRET.encode(), _claims(i), crit=["exp"]
    ),
    # Claims of the wrong type or value, signed with the real secret.
    "exp infinite": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i, exp=float("inf"))),
    "exp as text": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i, exp="tomorrow")),
    "sub blank": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i, sub=" \t ")),
    "sub as a number": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i, sub=42)),
    "sub with NUL": lambda i, k, _: hs256_with(SECRET.encode(), _claims(i, sub="someone\x00")),
    "sub with a lone surrogate": lambda i, k, _: hs256_with(
        SECRET.encode(), _claims(i, sub="someone\udfff")
    ),
}


@pytest.fixture
async def guarded(
    issuer: RecordingServer, sqlite_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    """Both key sources on, issuer and audience enforced: the widest surface to attack."""
    settings = Settings(
        database_url=sqlite_url,
        better_auth_url=issuer.origin,
        better_auth_secret=SECRET,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
    )
    async with running(settings) as started:
        yield started


async def _rows_for(app: FastAPI, sql: str) -> int:
    async with app.state.runtime.engine.connect() as connection:
        return int((await connection.execute(text(sql))).scalar_one())


@pytest.mark.parametrize("forge", ATTACKS.values(), ids=ATTACKS.keys())
async def test_attack_is_401_and_touches_nothing(
    guarded: tuple[FastAPI, AsyncClient],
    issuer: RecordingServer,
    elsewhere: RecordingServer,
    keys: dict[str, SigningKey],
    forge: Forge,
) -> None:
    app, client = guarded
    token = forge(issuer, keys, elsewhere)
    users_before = await _rows_for(app, "SELECT count(*) FROM users")
    tasks_before = await _rows_for(app, "SELECT count(*) FROM tasks")

    for method, path, body in [
        ("POST", "/api/tasks", {"title": "planted"}),
        ("GET", "/api/tasks", None),
        ("GET", "/api/tasks/stats", None),
    ]:
        response = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == CHALLENGE
        assert set(response.json()) == {"detail"}
        assert "victim" not in response.text

    assert await _rows_for(app, "SELECT count(*) FROM users") == users_before
    assert await _rows_for(app, "SELECT count(*) FROM tasks") == tasks_before
    assert elsewhere.hits == []  # no token header ever makes the API fetch anything


async def test_a_genuine_token_passes_the_same_gate(
    guarded: tuple[FastAPI, AsyncClient], issuer: RecordingServer, keys: dict[str, SigningKey]
) -> None:
    """The corpus fails for its flaw, not because the set-up refuses everything."""
    _, client = guarded
    token = keys["EdDSA"].sign(_claims(issuer))
    response = await client.get("/api/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
