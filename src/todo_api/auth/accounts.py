"""Built-in accounts (`ACCOUNTS_ENABLED`): sign up and log in with email and password, and get
the same kind of HS256 bearer token the shared-secret mode accepts."""

import secrets

from sqlalchemy.ext.asyncio import AsyncConnection

from todo_api.auth import repository
from todo_api.auth.passwords import hash_password, verify_password
from todo_api.auth.repository import UserRow
from todo_api.auth.schemas import AccountUser, LoginRequest, SessionToken, SignupRequest
from todo_api.auth.throttle import LoginThrottle
from todo_api.auth.tokens import issue_token
from todo_api.config import Settings
from todo_api.errors import EmailTaken, InvalidCredentials, TooManyAttempts


def new_user_id() -> str:
    """32 URL-safe random characters, the shape of a Better Auth user id."""
    return secrets.token_urlsafe(24)


def _session_token(settings: Settings, user: UserRow) -> SessionToken:
    token = issue_token(
        settings,
        user.id,
        email=user.email,
        name=user.name,
        ttl_seconds=settings.account_token_ttl_seconds,
    )
    return SessionToken(token=token, user=AccountUser.model_validate(user))


async def sign_up(
    connection: AsyncConnection, settings: Settings, body: SignupRequest
) -> SessionToken:
    if await repository.find_user_by_email(connection, body.email) is not None:
        raise EmailTaken()
    user = await repository.create_account(
        connection,
        user_id=new_user_id(),
        email=body.email,
        name=body.name,
        password_hash=await hash_password(body.password),
    )
    return _session_token(settings, user)


async def log_in(
    connection: AsyncConnection,
    settings: Settings,
    throttle: LoginThrottle,
    body: LoginRequest,
    client: str,
) -> SessionToken:
    """Unknown email and wrong password answer alike, in about the same time."""
    wait = await throttle.retry_after(connection, body.email, client)
    if wait is not None:
        raise TooManyAttempts(wait)
    user = await repository.find_user_by_email(connection, body.email)
    # Always verify, even without a user: the hash check is what makes both answers take as long.
    password_hash = user.password_hash if user is not None else None
    password_matches = await verify_password(body.password, password_hash)
    if user is None or not password_matches:
        await throttle.record_failure(connection, body.email, client)
        raise InvalidCredentials()
    await throttle.record_success(connection, body.email, client)
    return _session_token(settings, user)
