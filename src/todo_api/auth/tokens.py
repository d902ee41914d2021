"""Bearer token verification (SPEC §5) and dev-token issuing."""

import time
from dataclasses import dataclass
from typing import Any

import jwt

from todo_api.config import Settings
from todo_api.errors import InvalidToken

MAX_TOKEN_BYTES = 8192
MAX_SUBJECT_LENGTH = 255
SECRET_ALGORITHMS = ("HS256",)


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified caller: `id` is the token's `sub`; email and name when the token has them."""

    id: str
    email: str | None = None
    name: str | None = None


class TokenVerifier:
    """Checks signature, algorithm, expiry and (when configured) issuer and audience."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.signing_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds

    async def verify(self, token: str) -> Identity:
        """Return who the token speaks for, or raise `InvalidToken` saying why not."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("Token is too large.")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=list(SECRET_ALGORITHMS),
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("Token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("Token is not valid yet.") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"Token is missing the '{exc.claim}' claim.") from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise InvalidToken("Token was issued for another issuer or audience.") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("Token is malformed or its signature is invalid.") from None
        return identity_from_claims(claims)


def identity_from_claims(claims: dict[str, Any]) -> Identity:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise InvalidToken("Token subject must be a string of 1 to 255 characters.")
    if not subject.isprintable():
        raise InvalidToken("Token subject contains control characters.")
    email = claims.get("email")
    name = claims.get("name")
    return Identity(
        id=subject,
        email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
        name=name if isinstance(name, str) and name else None,
    )


def issue_token(
    settings: Settings,
    subject: str,
    *,
    email: str | None = None,
    name: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """Sign a token with the configured (or generated) secret, as the frontend would."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + ttl_seconds}
    if email:
        claims["email"] = email
    if name:
        claims["name"] = name
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.signing_secret, algorithm="HS256")
