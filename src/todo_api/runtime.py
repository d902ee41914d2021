"""What one app instance holds (settings, pool, verifier), and the dependencies that hand it out."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from todo_api.auth.provisioning import UserProvisioner
from todo_api.auth.tokens import TokenVerifier
from todo_api.config import Settings
from todo_api.db import create_engine, create_sessionmaker, session_scope


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    verifier: TokenVerifier
    users: UserProvisioner

    @classmethod
    def from_settings(cls, settings: Settings) -> "Runtime":
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            verifier=TokenVerifier(settings),
            users=UserProvisioner(sessionmaker),
        )


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
