"""`CurrentUser`: the verified caller, with their `users` row guaranteed to exist."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from todo_api.auth.tokens import Identity
from todo_api.errors import InvalidToken
from todo_api.runtime import RuntimeDep

bearer_scheme = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="A JWT from Better Auth (JWKS) or signed with BETTER_AUTH_SECRET (HS256).",
)


async def current_user(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Identity:
    """Verify the bearer token; every `/api/tasks` route depends on this."""
    if credentials is None:
        if request.headers.get("authorization"):
            raise InvalidToken("Authorization header must be 'Bearer <token>'.")
        raise InvalidToken("Missing bearer token.")
    identity = await runtime.verifier.verify(credentials.credentials)
    await runtime.users.ensure(identity)
    request.state.user_id = identity.id
    return identity


CurrentUser = Annotated[Identity, Depends(current_user)]
