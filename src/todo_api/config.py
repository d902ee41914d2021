"""Settings, read from the environment and `.env` (see `.env.example`)."""

import logging
import secrets
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AliasChoices, Field, HttpUrl, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

logger = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32
# Better Auth's `jwt` plugin signs with one of these (EdDSA by default).
DEFAULT_JWKS_ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
ASYMMETRIC_ALGORITHMS = frozenset(
    {"EdDSA", "ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
)
GENERATED_SECRET_FILE = "jwt-secret"  # noqa: S105 (a file name)


class Settings(BaseSettings):
    """Everything the service can be told; each field is one environment variable."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("data")

    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "NEON_DB_URL", "database_url")
    )
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=5.0, gt=0)
    db_statement_cache: bool = True
    # Seconds one SQL statement may run before it is cancelled (503); 0 turns it off.
    db_statement_timeout: float = Field(default=5.0, ge=0)

    better_auth_secret: SecretStr | None = None
    better_auth_url: HttpUrl | None = None
    jwt_jwks_url: HttpUrl | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = list(DEFAULT_JWKS_ALGORITHMS)
    jwt_leeway_seconds: int = Field(default=30, ge=0)
    jwt_jwks_cache_seconds: int = Field(default=300, ge=1)
    jwt_jwks_cooldown_seconds: float = Field(default=30.0, ge=0)

    accounts_enabled: bool | None = None
    account_token_ttl_seconds: int = Field(default=86400, ge=60)
    # Failed logins per window: for one email from one client, from one client for any email,
    # and for one email from all clients together (auth/throttle.py says why three).
    login_max_failures: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=20, ge=1)
    login_max_failures_per_email: int = Field(default=100, ge=1)
    login_failure_window_seconds: int = Field(default=900, ge=1)

    cors_origins: Annotated[list[str], NoDecode] = ["http://localhost:3000"]
    # Where clients reach the API, for absolute links (`Link: rel="next"`); relative without it.
    public_base_url: HttpUrl | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    log_format: Literal["json", "text"] = Field(
        default_factory=lambda: "text" if sys.stderr.isatty() else "json"
    )
    auto_migrate: bool = True
    max_body_bytes: int = Field(default=65536, ge=1024)
    # Bounds on each connection and worker (todo_api/server.py)
    server_max_header_bytes: int = Field(default=16384, ge=1024)
    server_header_timeout: float = Field(default=10.0, gt=0)
    server_body_timeout: float = Field(default=10.0, gt=0)
    server_write_timeout: float = Field(default=30.0, gt=0)
    server_keepalive_timeout: int = Field(default=5, ge=1)
    server_max_concurrency: int = Field(default=1000, ge=1)
    # How long the change feed keeps deleted tasks' tombstones (SPEC §11); older cursors: 410.
    sync_retention_days: float = Field(default=30, gt=0)
    # Seconds between two rounds of each worker's reminder delivery (sync/reminders.py).
    reminder_poll_seconds: float = Field(default=1.0, gt=0)
    # Live events (SPEC §11, sync/events.py): the LISTEN connection's database (DATABASE_URL
    # when empty; set it where DATABASE_URL is a transaction pooler, which cannot LISTEN), the
    # keep-alive comment's period, open streams per user, and how long one write to a stream
    # may wait on a client that stopped reading before the stream is dropped.
    events_database_url: str = ""
    events_heartbeat_seconds: float = Field(default=15.0, gt=0)
    events_max_streams_per_user: int = Field(default=10, ge=1)
    events_send_timeout_seconds: float = Field(default=30.0, gt=0)
    # A stream ends after this long and its client resumes: long-lived connections then spread
    # over the instances that serve at the time (after a deploy or a scale-out).
    events_max_stream_seconds: float = Field(default=3600.0, gt=0)
    # Security headers and metrics (SPEC §8)
    hsts_max_age: int = Field(default=0, ge=0)
    metrics_enabled: bool = True
    # How long a write's `Idempotency-Key` replays its first answer (SPEC §11: 24 h).
    idempotency_ttl_seconds: int = Field(default=86400, ge=60)
    # Several instances (SPEC §13): where the state they share lives. Empty: the database;
    # `redis://…`: Redis (rate limits, failed logins, stream tickets).
    redis_url: str = ""
    # Requests per user per minute on /api/… and /mcp; 0 turns the limit off.
    rate_limit_per_minute: int = Field(default=600, ge=0)

    # True when no secret was configured and one was generated into `data_dir`.
    secret_generated: bool = Field(default=False, exclude=True)

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _only_asymmetric(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in ASYMMETRIC_ALGORITHMS]
        if unknown or not value:
            raise ValueError(
                f"JWT_ALGORITHMS may only name public-key algorithms "
                f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); got {', '.join(unknown) or 'none'}"
            )
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator(
        "better_auth_secret",
        "better_auth_url",
        "jwt_jwks_url",
        "jwt_issuer",
        "jwt_audience",
        "public_base_url",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("better_auth_secret")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"BETTER_AUTH_SECRET must be at least {MIN_SECRET_BYTES} bytes; "
                "generate one with: openssl rand -base64 32"
            )
        return value

    @model_validator(mode="after")
    def _require_key_material(self) -> Self:
        if self.accounts_enabled and self.better_auth_secret is None and self.jwks_configured:
            raise ValueError("ACCOUNTS_ENABLED needs BETTER_AUTH_SECRET to sign account tokens")
        if self.better_auth_secret is not None or self.jwks_configured:
            return self
        if self.environment == "production":
            raise ValueError(
                "ENVIRONMENT=production needs key material: set BETTER_AUTH_SECRET "
                "(shared HS256 secret) or BETTER_AUTH_URL / JWT_JWKS_URL (Better Auth JWKS)"
            )
        self.better_auth_secret = SecretStr(_load_or_create_local_secret(self.data_dir))
        self.secret_generated = True
        return self

    @property
    def jwks_configured(self) -> bool:
        """Whether tokens can be verified with published keys (Better Auth's `jwt` plugin)."""
        return bool(self.better_auth_url or self.jwt_jwks_url)

    @property
    def jwks_url(self) -> str | None:
        """`JWT_JWKS_URL`, else Better Auth's endpoint under `BETTER_AUTH_URL`."""
        if self.jwt_jwks_url is not None:
            return str(self.jwt_jwks_url)
        if self.better_auth_url is not None:
            return str(self.better_auth_url).rstrip("/") + "/api/auth/jwks"
        return None

    @property
    def jwks_issuer(self) -> str | None:
        """Expected `iss` of JWKS-verified tokens: Better Auth uses its origin."""
        return self.jwt_issuer or self.better_auth_origin

    @property
    def jwks_audience(self) -> str | None:
        return self.jwt_audience or self.better_auth_origin

    @property
    def better_auth_origin(self) -> str | None:
        url = self.better_auth_url
        if url is None:
            return None
        port = (
            f":{url.port}"
            if url.port and url.port != {"http": 80, "https": 443}.get(url.scheme)
            else ""
        )
        return f"{url.scheme}://{url.host}{port}"

    @property
    def accounts_active(self) -> bool:
        """Built-in signup/login: as configured, else on with a secret and no JWKS."""
        if self.accounts_enabled is not None:
            return self.accounts_enabled and self.better_auth_secret is not None
        return self.better_auth_secret is not None and not self.jwks_configured

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file in `data_dir` when none is set."""
        return self.database_url or f"sqlite:///{self.data_dir / 'todo.db'}"

    @property
    def signing_secret(self) -> str | None:
        """The HS256 key, configured or generated; None when only JWKS is configured."""
        if self.better_auth_secret is None:
            return None
        return self.better_auth_secret.get_secret_value()


def announce_generated_secret(settings: Settings) -> None:
    logger.warning(
        "No BETTER_AUTH_SECRET set: using a generated development secret kept in %s. "
        "Get a token with: todo-api token --sub demo",
        settings.data_dir / GENERATED_SECRET_FILE,
    )


def _load_or_create_local_secret(data_dir: Path) -> str:
    """Keep a generated development secret across restarts, so issued tokens stay valid."""
    path = data_dir / GENERATED_SECRET_FILE
    if path.exists():
        secret = path.read_text().strip()
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"{path} holds a secret shorter than {MIN_SECRET_BYTES} bytes; "
                "delete the file to generate a new one, or set BETTER_AUTH_SECRET"
            )
        return secret
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret + "\n")
    return secret
