"""`todo-api token | openapi | migrate`, run as a user runs them: the installed console script."""

import json
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import jwt
import pytest

from tests.conftest import TODO_API, environment_without_settings

SECRET = "cli-test-secret-that-is-long-enough-for-hs256-0123456789"


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `todo-api` with only the given settings (nothing from the outer environment)."""
    return subprocess.run(
        [TODO_API, *args],
        cwd=cwd,
        env={**environment_without_settings(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_token_is_a_jwt_signed_with_the_secret(tmp_path: Path) -> None:
    before = int(time.time())
    result = run_cli(
        "token",
        "--sub",
        "u1",
        "--email",
        "a@b.c",
        "--name",
        "N",
        "--ttl",
        "60",
        cwd=tmp_path,
        BETTER_AUTH_SECRET=SECRET,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "email", "name", "iat", "exp"}
    assert (claims["sub"], claims["email"], claims["name"]) == ("u1", "a@b.c", "N")
    assert claims["exp"] - claims["iat"] == 60
    assert before <= claims["iat"] <= int(time.time())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, SECRET + "x", algorithms=["HS256"])


def test_token_defaults_to_one_hour_and_only_a_subject(tmp_path: Path) -> None:
    result = run_cli("token", "--sub", "u2", cwd=tmp_path, BETTER_AUTH_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "iat", "exp"}
    assert claims["exp"] - claims["iat"] == 3600


def test_openapi_prints_the_document(tmp_path: Path) -> None:
    result = run_cli("openapi", cwd=tmp_path, BETTER_AUTH_SECRET=SECRET)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Todo API"
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/api/tasks"])
    assert {"get", "put", "patch", "delete"} <= set(paths["/api/tasks/{task_id}"])
    assert "patch" in paths["/api/tasks/{task_id}/complete"]
    assert "get" in paths["/api/tasks/stats"]
    schemes = document["components"]["securitySchemes"]
    bearer = [s for s in schemes.values() if s["type"] == "http" and s["scheme"] == "bearer"]
    assert len(bearer) == 1
    (name,) = (key for key, value in schemes.items() if value is bearer[0])
    assert {name: []} in paths["/api/tasks"]["get"]["security"]
    # Printing the document touches no database.
    assert not (tmp_path / "data" / "todo.db").exists()


def test_migrate_creates_the_schema_in_a_fresh_sqlite_file(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "todo.db"
    result = run_cli(
        "migrate",
        cwd=tmp_path,
        DATABASE_URL=f"sqlite:///{database}",
        BETTER_AUTH_SECRET=SECRET,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "database schema is up to date\n"
    with closing(sqlite3.connect(database)) as connection:
        tables = {
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"users", "tasks", "alembic_version"} <= tables
    assert version

    again = run_cli(
        "migrate", cwd=tmp_path, DATABASE_URL=f"sqlite:///{database}", BETTER_AUTH_SECRET=SECRET
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == "database schema is up to date\n"


def test_migrate_reports_an_unreachable_database_without_a_traceback(tmp_path: Path) -> None:
    result = run_cli(
        "migrate",
        cwd=tmp_path,
        DATABASE_URL="postgresql://postgres:hunter2-secret@127.0.0.1:1/nowhere",
        BETTER_AUTH_SECRET=SECRET,
    )
    assert result.returncode != 0
    assert (
        "cannot migrate the database at postgresql+asyncpg://postgres:***@127.0.0.1:1/nowhere"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_serve_takes_host_port_and_workers_from_the_environment() -> None:
    """A container's command line is fixed (`todo-api serve`); `PORT` and friends set it."""
    script = (
        "from todo_api.cli import build_parser; "
        "args = build_parser().parse_args(['serve']); "
        "print(args.host, args.port, args.workers)"
    )
    python = str(Path(TODO_API).parent / "python")
    env = {**environment_without_settings(), "HOST": "10.1.2.3", "PORT": "8080", "WORKERS": "3"}
    configured = subprocess.run(
        [python, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    assert configured.stdout.split() == ["10.1.2.3", "8080", "3"]
    unset = subprocess.run(
        [python, "-c", script],
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert unset.stdout.split() == ["127.0.0.1", "8000", "1"]
