"""`/api/auth`: built-in signup, login and me (mounted when accounts are enabled)."""

from fastapi import APIRouter, Request, status

from todo_api.auth import accounts, repository
from todo_api.auth.dependencies import CurrentUser
from todo_api.auth.schemas import AccountUser, LoginRequest, SessionToken, SignupRequest
from todo_api.errors import (
    InvalidCredentials,
    ResourceNotFound,
    error_body,
    error_response,
    error_responses,
)
from todo_api.openapi import documented_response
from todo_api.runtime import DatabaseDep, RuntimeDep

router = APIRouter(prefix="/api/auth", tags=["accounts"], responses=error_responses(503))
BODY_ERRORS = error_responses(400, 408, 413, 415)
WRONG_CREDENTIALS = error_response(
    "Wrong email or password: the same answer for both", error_body(InvalidCredentials.detail)
)


@router.post(
    "/signup",
    response_model=SessionToken,
    status_code=status.HTTP_201_CREATED,
    summary="Create an account and get a token",
    responses={
        201: documented_response("The new account, and a token for it"),
        **BODY_ERRORS,
        **error_responses(409),
    },
)
async def signup(body: SignupRequest, runtime: RuntimeDep, db: DatabaseDep) -> SessionToken:
    return await accounts.sign_up(db, runtime.settings, body)


@router.post(
    "/login",
    response_model=SessionToken,
    summary="Log in and get a token",
    responses={
        200: documented_response("A token, and who it is for"),
        401: WRONG_CREDENTIALS,
        **BODY_ERRORS,
        **error_responses(429),
    },
)
async def login(
    body: LoginRequest, request: Request, runtime: RuntimeDep, db: DatabaseDep
) -> SessionToken:
    client = request.client.host if request.client else "unknown"
    return await accounts.log_in(db, runtime.settings, runtime.login_throttle, body, client)


@router.get(
    "/me",
    response_model=AccountUser,
    summary="Who the token is for",
    responses={200: documented_response("The account"), **error_responses(401)},
)
async def me(user: CurrentUser, db: DatabaseDep) -> AccountUser:
    row = await repository.get_user(db, user.id)
    if row is None:  # provisioned by CurrentUser; only a concurrent delete gets here
        raise ResourceNotFound("User not found")
    return AccountUser.model_validate(row)
