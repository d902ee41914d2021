"""What one app instance holds (settings, pool, verifier), and the dependencies that hand it out."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from todo_api.auth.jwks import JwksClient
from todo_api.auth.provisioning import UserProvisioner
from todo_api.auth.throttle import LoginThrottle
from todo_api.auth.tokens import TokenVerifier
from todo_api.config import Settings
from todo_api.db import create_engine, create_sessionmaker, session_scope

JWKS_FETCH_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    jwks: JwksClient | None
    verifier: TokenVerifier
    users: UserProvisioner
    login_throttle: LoginThrottle

    @classmethod
    def from_settings(cls, settings: Settings) -> "Runtime":
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        http = httpx.AsyncClient(timeout=JWKS_FETCH_TIMEOUT_SECONDS, follow_redirects=False)
        jwks = None
        if settings.jwks_url is not None:
            jwks = JwksClient(
                settings.jwks_url,
                http,
                max_age_seconds=settings.jwt_jwks_cache_seconds,
                cooldown_seconds=settings.jwt_jwks_cooldown_seconds,
            )
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            http=http,
            jwks=jwks,
            verifier=TokenVerifier(settings, jwks),
            users=UserProvisioner(sessionmaker),
            login_throttle=LoginThrottle(
                per_email=settings.login_max_failures_per_email,
                per_client=settings.login_max_failures_per_client,
                window_seconds=settings.login_failure_window_seconds,
            ),
        )

    async def close(self) -> None:
        await self.http.aclose()
        await self.engine.dispose()


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """The request's transaction: committed when the route returns, before the response is
    sent (so a 2xx means the write is durable), rolled back if it raises."""
    async with session_scope(runtime.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
