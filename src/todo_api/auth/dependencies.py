"""`CurrentUser`: the verified caller, with their `users` row guaranteed to exist."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from todo_api import metrics
from todo_api.auth.tokens import Identity
from todo_api.errors import InvalidToken
from todo_api.runtime import runtime_of


class BearerAuthentication(HTTPBearer):
    """The bearer scheme of the OpenAPI document, and the check itself: one dependency that
    verifies the token, counts the request against the user's rate limit and provisions the
    user (each dependency level costs per request)."""

    async def __call__(self, request: Request) -> Identity:  # type: ignore[override]
        runtime = runtime_of(request)
        try:
            identity = await runtime.verifier.verify(_bearer_token(request))
        except InvalidToken as refused:
            metrics.AUTH_FAILURES.labels(refused.reason).inc()
            raise
        request.state.user_id = identity.id
        if runtime.rate_limiter is not None:
            # Counted before anything is written; the answer carries these headers
            # (observability.py), a 429 its own.
            request.state.rate_limit_headers = await runtime.rate_limiter.admit(identity.id)
        await runtime.users.ensure(identity)
        return identity


def _bearer_token(request: Request) -> str:
    authorization = request.headers.get("authorization")
    if not authorization:
        raise InvalidToken("Missing bearer token.", reason="missing")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("Authorization header must be 'Bearer <token>'.", reason="not_bearer")
    return token.strip()


bearer_authentication = BearerAuthentication(
    auto_error=False,
    bearerFormat="JWT",
    scheme_name="HTTPBearer",
    description="A JWT from Better Auth (JWKS) or signed with BETTER_AUTH_SECRET (HS256).",
)

CurrentUser = Annotated[Identity, Depends(bearer_authentication)]
