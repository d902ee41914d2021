"""Settings: environment parsing, secret rules, the generated development secret, `.env`, and
how the CLI reports a bad configuration."""

import os
import stat
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tests.conftest import TODO_API, environment_without_settings, settings_env_names
from todo_api.config import MIN_SECRET_BYTES, Settings

SECRET = "config-test-secret-long-enough-for-hs256-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No configuration leaks in from the outer environment or a `.env` in the repo."""
    names = settings_env_names()
    for key in list(os.environ):
        if key.lower() in names:
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cors_origins_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    assert Settings().cors_origins == ["http://localhost:3000"]


def test_cors_origins_are_split_on_commas_trimmed_and_without_trailing_slash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    monkeypatch.setenv("CORS_ORIGINS", " http://localhost:3000 , https://app.example.com/ ,, ")
    assert Settings().cors_origins == ["http://localhost:3000", "https://app.example.com"]


def test_neon_db_url_is_an_alias_of_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    neon = "postgresql://u:p@ep-x.neon.tech/db?sslmode=require"
    monkeypatch.setenv("NEON_DB_URL", neon)
    assert Settings().database_url == neon
    assert Settings().resolved_database_url == neon


def test_database_url_wins_over_neon_db_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    monkeypatch.setenv("NEON_DB_URL", "postgresql://u@neon.example/db")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@primary.example/db")
    assert Settings().database_url == "postgresql://u@primary.example/db"


def test_default_database_is_a_sqlite_file_in_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    assert Settings().resolved_database_url == "sqlite:///data/todo.db"


@pytest.mark.parametrize("secret", ["x" * (MIN_SECRET_BYTES - 1), "short"])
def test_secret_shorter_than_32_bytes_is_refused(
    monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("BETTER_AUTH_SECRET", secret)
    with pytest.raises(ValidationError, match="BETTER_AUTH_SECRET must be at least 32 bytes"):
        Settings()


def test_secret_length_is_counted_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # 16 characters, 32 bytes in UTF-8: long enough.
    monkeypatch.setenv("BETTER_AUTH_SECRET", "é" * 16)
    settings = Settings()
    assert settings.signing_secret == "é" * 16
    assert settings.secret_generated is False
    assert not Path("data").exists()


def test_production_without_key_material_names_the_missing_variables(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError) as error:
        Settings()
    message = str(error.value)
    assert "BETTER_AUTH_SECRET" in message
    assert "BETTER_AUTH_URL" in message
    # Production never falls back to a generated secret.
    assert not (clean_env / "data" / "jwt-secret").exists()


def test_production_accepts_a_secret_or_a_jwks_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("BETTER_AUTH_SECRET", SECRET)
    assert Settings().signing_secret == SECRET
    monkeypatch.delenv("BETTER_AUTH_SECRET")
    monkeypatch.setenv("BETTER_AUTH_URL", "https://auth.example.com")
    assert Settings().jwks_configured is True


def test_development_without_secret_generates_one_and_keeps_it(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    first = Settings()
    path = clean_env / "data" / "jwt-secret"
    assert first.secret_generated is True
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.signing_secret == path.read_text().strip()
    assert len(first.signing_secret.encode()) >= MIN_SECRET_BYTES

    second = Settings()
    assert second.secret_generated is True
    assert second.signing_secret == first.signing_secret


def test_a_too_short_kept_secret_is_refused(clean_env: Path) -> None:
    (clean_env / "data").mkdir()
    (clean_env / "data" / "jwt-secret").write_text("short\n")
    with pytest.raises(ValidationError, match="delete the file"):
        Settings()


def test_generated_secret_goes_to_data_dir(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    monkeypatch.setenv("DATA_DIR", str(clean_env / "state" / "nested"))
    settings = Settings()
    path = clean_env / "state" / "nested" / "jwt-secret"
    assert settings.signing_secret == path.read_text().strip()
    assert not (clean_env / "data").exists()
    assert settings.resolved_database_url == f"sqlite:///{clean_env / 'state' / 'nested'}/todo.db"


def test_dotenv_file_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    (clean_env / ".env").write_text(
        f"BETTER_AUTH_SECRET={SECRET}\n"
        "DATABASE_URL=postgresql://u@from-dotenv.example/db\n"
        "CORS_ORIGINS=https://a.example,https://b.example\n"
        "LOG_LEVEL=WARNING\n"
    )
    settings = Settings()
    assert settings.better_auth_secret == SecretStr(SECRET)
    assert settings.secret_generated is False
    assert settings.database_url == "postgresql://u@from-dotenv.example/db"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.log_level == "warning"

    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert Settings().log_level == "debug"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["token", "--sub", "x"], {"BETTER_AUTH_SECRET": "short"}),
        (["serve", "--port", "1"], {"ENVIRONMENT": "production"}),
    ],
    ids=["short-secret", "production-without-keys"],
)
def test_cli_reports_bad_configuration_without_a_traceback(
    clean_env: Path, args: list[str], env: dict[str, str]
) -> None:
    result = subprocess.run(
        [TODO_API, *args],
        cwd=clean_env,
        env={**environment_without_settings(), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    assert "todo-api: configuration error:" in result.stderr
    assert "BETTER_AUTH_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
