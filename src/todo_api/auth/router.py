"""`/api/auth`: built-in signup, login and me (mounted when accounts are enabled)."""

from fastapi import APIRouter, Request, status

from todo_api.auth import accounts, repository
from todo_api.auth.dependencies import CurrentUser
from todo_api.auth.schemas import AccountUser, LoginRequest, SessionToken, SignupRequest
from todo_api.errors import ResourceNotFound, error_responses
from todo_api.runtime import DatabaseDep, RuntimeDep

router = APIRouter(prefix="/api/auth", tags=["accounts"], responses=error_responses(400, 503))


@router.post(
    "/signup",
    response_model=SessionToken,
    status_code=status.HTTP_201_CREATED,
    summary="Create an account and get a token",
    responses=error_responses(409, 413, 415),
)
async def signup(body: SignupRequest, runtime: RuntimeDep, db: DatabaseDep) -> SessionToken:
    return await accounts.sign_up(db, runtime.settings, body)


@router.post(
    "/login",
    response_model=SessionToken,
    summary="Log in and get a token",
    responses=error_responses(401, 413, 415, 429),
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
    responses=error_responses(401),
)
async def me(user: CurrentUser, db: DatabaseDep) -> AccountUser:
    row = await repository.get_user(db, user.id)
    if row is None:  # provisioned by CurrentUser; only a concurrent delete gets here
        raise ResourceNotFound("User not found")
    return AccountUser.model_validate(row)
