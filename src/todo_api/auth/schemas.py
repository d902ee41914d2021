"""Bodies of the built-in account routes, in the shapes Better Auth frontends already read."""

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from todo_api.text import (
    EMAIL_CORE_PATTERN,
    EMAIL_PATTERN,
    NOT_BLANK_PATTERN,
    STORABLE_TEXT_PATTERN,
    InputModel,
    trim,
)

_EMAIL = re.compile(EMAIL_CORE_PATTERN)
MAX_EMAIL = 320
MAX_NAME = 100


def normalise_email(value: Any) -> Any:
    """Trimmed and lower-cased, so `Ann@Example.com ` and `ann@example.com` are one account."""
    if not isinstance(value, str):
        return value
    # As sent (the document's maxLength; also before the pattern, which must not meet a huge
    # string) and as stored: lower-casing can lengthen it ("İ" becomes "i" and a dot above).
    if len(value) > MAX_EMAIL:
        raise ValueError(f"must be at most {MAX_EMAIL} characters")
    email = trim(value).lower()
    if not _EMAIL.fullmatch(email):
        raise ValueError("must be an email address")
    if len(email) > MAX_EMAIL:
        raise ValueError(f"must be at most {MAX_EMAIL} characters")
    return email


def _trimmed_name(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_NAME:  # before trimming, as the document's maxLength says
            raise ValueError(f"must be at most {MAX_NAME} characters")
        value = trim(value)
        if not value:
            raise ValueError("name must not be blank")
    return value


# The patterns describe what the validators enforce, for the OpenAPI document's readers.
Email = Annotated[
    str,
    BeforeValidator(normalise_email),
    Field(json_schema_extra={"pattern": EMAIL_PATTERN, "maxLength": MAX_EMAIL}),
]
Password = Annotated[
    str,
    Field(min_length=8, max_length=128, json_schema_extra={"pattern": STORABLE_TEXT_PATTERN}),
]
Name = Annotated[
    str,
    BeforeValidator(_trimmed_name),
    Field(max_length=MAX_NAME, json_schema_extra={"pattern": NOT_BLANK_PATTERN}),
]


class SignupRequest(InputModel):
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


class LoginRequest(InputModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"email": "ann@example.com", "password": "correct horse"}]}
    )

    email: Email
    # Any length is checked against the hash; only the upper bound protects the hasher.
    password: Annotated[
        str,
        Field(min_length=1, max_length=128, json_schema_extra={"pattern": STORABLE_TEXT_PATTERN}),
    ]


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
