"""A real JWKS server on localhost, real key pairs of every type Better Auth can use, and an
app that verifies tokens against that server."""

import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from httpx import AsyncClient
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from tests.conftest import running
from todo_api.config import Settings

JWKS_PATH = "/api/auth/jwks"


@dataclass(frozen=True)
class SigningKey:
    """A private key and the public JWK a Better Auth server would publish for it."""

    kid: str
    alg: str
    private_key: Any
    public_jwk: dict[str, Any]

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


def _public_jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def make_key(alg: str, kid: str | None = None) -> SigningKey:
    private_key: Any
    if alg == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES512":
        private_key = ec.generate_private_key(ec.SECP521R1())
    else:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = kid or f"{alg.lower()}-key"
    return SigningKey(kid, alg, private_key, _public_jwk(private_key, kid, alg))


@pytest.fixture(scope="session")
def keys() -> dict[str, SigningKey]:
    """One key per algorithm Better Auth's jwt plugin offers (RSA generation is slow: once)."""
    rsa_key = make_key("RS256", "rsa-key")
    return {
        "EdDSA": make_key("EdDSA"),
        "ES256": make_key("ES256"),
        "ES512": make_key("ES512"),
        "RS256": rsa_key,
        "PS256": SigningKey(
            "rsa-pss-key",
            "PS256",
            rsa_key.private_key,
            {**rsa_key.public_jwk, "kid": "rsa-pss-key", "alg": "PS256"},
        ),
    }


@dataclass
class RecordingServer:
    """An HTTP server on 127.0.0.1 that serves `body` at `JWKS_PATH` and counts every request."""

    body: dict[str, Any] = field(default_factory=lambda: {"keys": []})
    status: int = 200
    hits: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def publish(self, *keys: SigningKey, without_alg: bool = False) -> None:
        jwks = [dict(key.public_jwk) for key in keys]
        if without_alg:
            for jwk in jwks:
                jwk.pop("alg")
        self.body = {"keys": jwks}

    def jwks_hits(self) -> int:
        return sum(1 for path in self.hits if path == JWKS_PATH)


def _serve(server: RecordingServer) -> Iterator[RecordingServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.hits.append(self.path)
            payload = json.dumps(server.body).encode()
            if self.path != JWKS_PATH:
                self.send_response(404)
                payload = b"{}"
            else:
                self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def issuer(keys: dict[str, SigningKey]) -> Iterator[RecordingServer]:
    """The Better Auth stand-in: publishes every key of `keys` at /api/auth/jwks."""
    server = RecordingServer()
    server.publish(*keys.values())
    yield from _serve(server)


@pytest.fixture
def elsewhere() -> Iterator[RecordingServer]:
    """A server a malicious token might point at (`jku`, `x5u`); it must never be called."""
    yield from _serve(RecordingServer())


@pytest.fixture
def jwks_settings(sqlite_url: str, tmp_path: Path, issuer: RecordingServer) -> Settings:
    return Settings(
        database_url=sqlite_url,
        better_auth_url=issuer.origin,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
        jwt_jwks_cooldown_seconds=30,
    )


@pytest.fixture
async def jwks_client(jwks_settings: Settings) -> AsyncIterator[AsyncClient]:
    async with running(jwks_settings) as (_, client):
        yield client


def better_auth_claims(
    issuer: RecordingServer, sub: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The claims Better Auth's jwt plugin puts in a token (15 minutes, iss = aud = origin);
    `sub` is a fresh 32-character id unless given."""
    sub = sub or secrets.token_urlsafe(24)
    now = int(time.time())
    return {
        "sub": sub,
        "id": sub,
        "email": f"{sub.lower()}@example.com",
        "name": "Ann Lee",
        "emailVerified": True,
        "image": None,
        "iat": now,
        "exp": now + 900,
        "iss": issuer.origin,
        "aud": issuer.origin,
        **extra,
    }
