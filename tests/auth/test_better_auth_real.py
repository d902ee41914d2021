"""A real Better Auth server (Node, `jwt` plugin) signs a user in; this API accepts its token.

`tests/better_auth/server.mjs` runs Better Auth with email/password sign-in and the `jwt` plugin
over an in-memory database. Each test signs a fresh user up there, takes the session cookie to
`GET /api/auth/token`, and calls this API with the JWT it gets back, the way the Next.js frontend
does. Needs `node` and `npm ci --prefix tests/better_auth` (`make test` runs it); skipped without
them, except under CI=true where their absence is a failure.
"""

import base64
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jwt
import pytest
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import text

from tests.conftest import IN_CI
from todo_api.app import create_app
from todo_api.config import Settings

pytestmark = pytest.mark.slow

SERVER_DIR = Path(__file__).resolve().parent.parent / "better_auth"
SERVER_SCRIPT = SERVER_DIR / "server.mjs"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
# What the server signs with; Better Auth's secret only encrypts its private keys here.
BETTER_AUTH_SECRET = "better-auth-test-secret-0123456789-abcdefghijklmnop"
# Better Auth's `jwt` plugin: tokens live 15 minutes unless configured otherwise.
TOKEN_LIFETIME_SECONDS = 15 * 60
CHALLENGE = 'Bearer error="invalid_token"'


@dataclass(frozen=True)
class BetterAuthServer:
    base_url: str
    alg: str
    output: list[str]


@dataclass(frozen=True)
class SignedInUser:
    id: str
    email: str
    name: str
    token: str


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true makes the real Better Auth test required)")
    pytest.skip(reason)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH; the real Better Auth test needs Node.js 20+")
    if not (SERVER_DIR / "node_modules" / "better-auth").is_dir():
        _unavailable("Better Auth is not installed; run `npm ci --prefix tests/better_auth`")
    return node


@pytest.fixture(scope="module", params=["EdDSA", "ES256", "RS256"])
def better_auth(request: pytest.FixtureRequest) -> Iterator[BetterAuthServer]:
    """A Better Auth server signing with the given algorithm, on a port the OS picks."""
    alg: str = request.param
    node = _node()
    env = {
        **os.environ,
        "PORT": "0",
        "JWT_ALG": alg,
        "BETTER_AUTH_SECRET": BETTER_AUTH_SECRET,
    }
    env.pop("BETTER_AUTH_URL", None)
    output: list[str] = []
    ports: queue.Queue[int | None] = queue.Queue()
    with subprocess.Popen(
        [node, str(SERVER_SCRIPT)],
        cwd=SERVER_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        stdout = process.stdout
        assert stdout is not None

        def pump() -> None:
            # Keep draining the pipe so a chatty server never blocks on a full buffer.
            for line in stdout:
                output.append(line.rstrip("\n"))
                ready = re.fullmatch(r"READY (\d+)", line.strip())
                if ready:
                    ports.put(int(ready.group(1)))
            ports.put(None)

        reader = threading.Thread(target=pump, name=f"better-auth-{alg}", daemon=True)
        reader.start()
        try:
            try:
                port = ports.get(timeout=READY_TIMEOUT)
            except queue.Empty:
                pytest.fail(f"Better Auth did not start in {READY_TIMEOUT} s: {output}")
            if port is None:
                pytest.fail(f"Better Auth exited with {process.wait()}: {output}")
            yield BetterAuthServer(base_url=f"http://127.0.0.1:{port}", alg=alg, output=output)
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(timeout=STOP_TIMEOUT)


def _session_cookie(response: Response) -> str:
    """`name=value` of Better Auth's session cookie from a sign-in/sign-up response."""
    for header in response.headers.get_list("set-cookie"):
        pair = header.split(";", 1)[0]
        if pair.split("=", 1)[0].endswith("session_token"):
            return pair
    raise AssertionError(f"no session cookie in {response.headers.get_list('set-cookie')}")


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _tampered(token: str) -> str:
    """The same token with one bit of its signature flipped."""
    header, payload, signature = token.split(".")
    raw = bytearray(jwt.utils.base64url_decode(signature))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{jwt.utils.base64url_encode(bytes(raw)).decode()}"


async def _sign_up(server: BetterAuthServer) -> SignedInUser:
    """Sign a new user up on Better Auth and get the JWT its `jwt` plugin issues for them."""
    email = f"ba-{uuid.uuid4().hex[:12]}@example.com"
    name = "Better Auth User"
    async with AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        # A browser sends its Origin; Better Auth refuses a foreign one (403 INVALID_ORIGIN) and,
        # on cookie-carrying POSTs, a missing one (403 MISSING_OR_NULL_ORIGIN).
        signed_up = await http.post(
            "/api/auth/sign-up/email",
            json={"email": email, "password": "correct horse battery staple", "name": name},
            headers={"Origin": server.base_url},
        )
        assert signed_up.status_code == 200, (signed_up.text, server.output)
        user = signed_up.json()["user"]
        cookie = _session_cookie(signed_up)

        issued = await http.get("/api/auth/token", headers={"Cookie": cookie})
        assert issued.status_code == 200, (issued.text, server.output)
        token: str = issued.json()["token"]

        # The same plugin also hands the JWT out on every session read.
        session = await http.get("/api/auth/get-session", headers={"Cookie": cookie})
        assert session.status_code == 200, session.text
        from_session = session.headers.get("set-auth-jwt")
        assert from_session, dict(session.headers)
        assert _segment(from_session, 1)["sub"] == user["id"]

        jwks = (await http.get("/api/auth/jwks")).json()

    header = _segment(token, 0)
    assert header["alg"] == server.alg, header
    assert header.get("kid"), header
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}, (header, jwks)

    # Independently of the API: PyJWT verifies it with the published key.
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[server.alg],
        audience=server.base_url,
        issuer=server.base_url,
    )
    assert claims["sub"] == user["id"]
    assert claims["email"] == email
    assert claims["name"] == name
    assert claims["exp"] - claims["iat"] == TOKEN_LIFETIME_SECONDS
    return SignedInUser(id=user["id"], email=email, name=name, token=token)


async def test_api_accepts_real_better_auth_token(
    better_auth: BetterAuthServer, database_url: str, tmp_path: Path
) -> None:
    user = await _sign_up(better_auth)

    settings = Settings(
        database_url=database_url,
        better_auth_url=better_auth.base_url,
        environment="test",
        data_dir=tmp_path,
        auto_migrate=False,
        log_format="json",
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = ASGITransport(app=application, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as api:
            bearer = {"Authorization": f"Bearer {user.token}"}

            listed = await api.get("/api/tasks", headers=bearer)
            assert listed.status_code == 200, listed.text
            assert listed.json() == []

            created = await api.post(
                "/api/tasks", json={"title": "From Better Auth"}, headers=bearer
            )
            assert created.status_code == 201, created.text
            assert created.json()["user_id"] == user.id

            listed = await api.get("/api/tasks", headers=bearer)
            assert [task["id"] for task in listed.json()] == [created.json()["id"]]

            async with application.state.runtime.engine.connect() as connection:
                result = await connection.execute(
                    text("SELECT id, email, name FROM users WHERE id = :id"), {"id": user.id}
                )
                rows = [dict(row._mapping) for row in result]
            assert rows == [{"id": user.id, "email": user.email, "name": user.name}]

            forged = await api.get(
                "/api/tasks", headers={"Authorization": f"Bearer {_tampered(user.token)}"}
            )
            assert forged.status_code == 401, forged.text
            assert forged.headers["www-authenticate"].startswith(CHALLENGE)
