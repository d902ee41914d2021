"""Bodies of the built-in account routes, in the shapes Better Auth frontends already read."""

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Deliberately loose: a real check is the confirmation email this API does not send.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL = 320


def normalise_email(value: Any) -> Any:
    """Trimmed and lower-cased, so `Ann@Example.com ` and `ann@example.com` are one account."""
    if not isinstance(value, str):
        return value
    email = value.strip().lower()
    if len(email) > MAX_EMAIL or not _EMAIL.fullmatch(email):
        raise ValueError("must be an email address")
    return email


def _trimmed_name(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if not value:
            raise ValueError("name must not be blank")
        if "\x00" in value:
            raise ValueError("must not contain NUL characters")
    return value


def _password(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Email = Annotated[str, BeforeValidator(normalise_email)]
Password = Annotated[str, BeforeValidator(_password), Field(min_length=8, max_length=128)]
Name = Annotated[str, BeforeValidator(_trimmed_name), Field(max_length=100)]


class SignupRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Ann Lee", "email": "ann@example.com", "password": "correct horse"}
            ]
        }
    )

    name: Name
    email: Email
    password: Password


class LoginRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "ann@example.com", "password": "correct horse"}]}
    )

    email: Email
    # Any length is checked against the hash; only the upper bound protects the hasher.
    password: Annotated[str, Field(min_length=1, max_length=128)]


class AccountUser(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "k3Jq9xVbT2mWcR8sLpN4dF7gH1aZ6eYu",
                    "email": "ann@example.com",
                    "name": "Ann Lee",
                }
            ]
        },
    )

    id: str
    email: str | None
    name: str | None


class SessionToken(BaseModel):
    """A bearer token for the task routes, and who it is for."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJrM0pxOXhWYlQyb...",
                    "user": {
                        "id": "k3Jq9xVbT2mWcR8sLpN4dF7gH1aZ6eYu",
                        "email": "ann@example.com",
                        "name": "Ann Lee",
                    },
                }
            ]
        }
    )

    token: str
    user: AccountUser
