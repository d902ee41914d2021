"""Bearer token verification (SPEC §5) and dev-token issuing."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from todo_api.auth.jwks import JwksClient, PublishedKey
from todo_api.auth.schemas import MAX_NAME, normalise_email
from todo_api.config import Settings
from todo_api.errors import InvalidToken
from todo_api.text import trim, unstorable

MAX_TOKEN_BYTES = 8192
MALFORMED = "Token is malformed or its signature is invalid."
# Verified tokens remembered per process (see `TokenVerifier._remember`).
MAX_REMEMBERED_TOKENS = 10_000
MAX_REMEMBERED_TOKEN_BYTES = 2048
MAX_REMEMBER_SECONDS = 300
MAX_SUBJECT_LENGTH = 255
SECRET_ALGORITHMS = ("HS256",)
# 9999-12-31T23:59:59Z: a later `exp` is kept as this, a number any float holds.
LATEST_EXPIRY = 253_402_300_799


@dataclass(frozen=True, slots=True)
class Identity:
    """The verified caller: `id` is the token's `sub`; email and name when the token has them.

    `expires_at` is when the token stops being accepted (its `exp` plus the leeway, Unix
    seconds): an event stream ends then. It is not part of who the caller is, so two
    identities of the same person compare equal whichever token they came from."""

    id: str
    email: str | None = None
    name: str | None = None
    expires_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class _KeyRules:
    """What a token verified by one key source must satisfy."""

    issuer: str | None
    audience: str | None


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token checked once: who it is for, until when that holds, and the fingerprint of the
    JWKS key that verified it (None for the shared secret)."""

    identity: Identity
    good_until: float
    jwks_key: str | None


class TokenVerifier:
    """Checks signature, algorithm, expiry and (when configured) issuer and audience.

    The token's `alg` picks the key source, and each source has its own allow-list: HS256
    only with the shared secret, public-key algorithms only with the JWKS. So an HS256 token
    "signed" with a public key, or `alg: none`, finds no key at all.
    """

    def __init__(self, settings: Settings, jwks: JwksClient | None = None) -> None:
        self._secret = settings.signing_secret
        self._jwks = jwks
        self._jwks_algorithms = frozenset(settings.jwt_algorithms) if jwks else frozenset()
        self._leeway = settings.jwt_leeway_seconds
        self._secret_rules = _KeyRules(settings.jwt_issuer, settings.jwt_audience)
        self._verified: dict[str, _Verified] = {}
        self._jwks_rules = _KeyRules(settings.jwks_issuer, settings.jwks_audience)

    async def verify(self, token: str) -> Identity:
        """Return who the token speaks for, or raise `InvalidToken` saying why not."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("Token is too large.", reason="too_large")
        remembered = self._verified.get(token)
        if remembered is not None and await self._still_valid(remembered):
            return remembered.identity
        verified = await self._verify_signed(token)
        self._remember(token, verified)
        return verified.identity

    async def _still_valid(self, remembered: _Verified) -> bool:
        if time.time() >= remembered.good_until:
            return False
        if remembered.jwks_key is None:
            return True
        return self._jwks is not None and await self._jwks.still_publishes(remembered.jwks_key)

    def _remember(self, token: str, verified: _Verified) -> None:
        """Keep a verified token's identity until it expires (or for a few minutes at most):
        a frontend sends the same token on every request, and checking its signature and
        claims again each time costs more than the database query the request then makes."""
        if len(token) > MAX_REMEMBERED_TOKEN_BYTES:
            return
        if len(self._verified) >= MAX_REMEMBERED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified.pop(token, None)  # re-inserted as the newest
        self._verified[token] = verified

    async def _verify_signed(self, token: str) -> _Verified:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken(MALFORMED, reason="malformed") from None
        key, rules = await self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key if isinstance(key, str) else key.key,
                algorithms=[header["alg"]],
                issuer=rules.issuer,
                audience=rules.audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": rules.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("Token has expired.", reason="expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("Token is not valid yet.", reason="not_yet_valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(
                f"Token is missing the '{exc.claim}' claim.", reason="missing_claim"
            ) from None
        except (jwt.InvalidIssuerError, jwt.InvalidAudienceError):
            raise InvalidToken(
                "Token was issued for another issuer or audience.", reason="wrong_issuer"
            ) from None
        except jwt.InvalidTokenError:
            raise InvalidToken(MALFORMED, reason="bad_signature") from None
        # `exp` passed PyJWT's integer check; it may still be far beyond any float.
        accepted_until = min(int(claims["exp"]) + self._leeway, LATEST_EXPIRY)
        good_until = min(accepted_until, time.time() + MAX_REMEMBER_SECONDS)
        jwks_key = None if isinstance(key, str) else key.fingerprint
        return _Verified(identity_from_claims(claims, accepted_until), good_until, jwks_key)

    async def _key_for(self, header: dict[str, Any]) -> tuple[str | PublishedKey, _KeyRules]:
        # The header is the sender's JSON: each member's type is checked before it is used.
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise InvalidToken(MALFORMED, reason="malformed")
        if algorithm in SECRET_ALGORITHMS and self._secret is not None:
            return self._secret, self._secret_rules
        if algorithm in self._jwks_algorithms and self._jwks is not None:
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise InvalidToken(MALFORMED, reason="malformed")
            key = await self._jwks.key_for(kid, algorithm)
            if key is None:
                raise InvalidToken("Token was signed with an unknown key.", reason="unknown_key")
            return key, self._jwks_rules
        raise InvalidToken("Token algorithm is not accepted.", reason="algorithm_not_accepted")


def identity_from_claims(claims: dict[str, Any], expires_at: float | None = None) -> Identity:
    """The caller's id from `sub`, which must be usable as it is (else 401); `email` and `name`
    are only informative, so one that could not be stored as an account's is dropped;
    `expires_at` is when the verifier stops accepting the token."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
        raise InvalidToken(
            "Token subject must be a string of 1 to 255 characters.", reason="bad_subject"
        )
    # isprintable() is False for NUL, every other control character and unpaired surrogates.
    if not subject.isprintable():
        raise InvalidToken("Token subject contains control characters.", reason="bad_subject")
    if not trim(subject):
        raise InvalidToken("Token subject is blank.", reason="bad_subject")
    return Identity(
        id=subject,
        email=_decorative_claim(claims.get("email"), normalise_email),
        name=_decorative_claim(claims.get("name"), _trimmed_name),
        expires_at=expires_at,
    )


def _decorative_claim(value: Any, normalise: Callable[[str], str]) -> str | None:
    """The claim as `normalise` would store it, or None where the users row could not hold it
    (not text, text no column takes, or refused by `normalise` with a ValueError)."""
    if not isinstance(value, str) or unstorable(value) is not None:
        return None
    try:
        return normalise(value)
    except ValueError:
        return None


def _trimmed_name(value: str) -> str:
    name = trim(value)
    if not 0 < len(name) <= MAX_NAME:
        raise ValueError("not a name an account could have")
    return name


def issue_token(
    settings: Settings,
    subject: str,
    *,
    email: str | None = None,
    name: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """Sign a token with the configured (or generated) secret, as the frontend would."""
    secret = settings.signing_secret
    if secret is None:
        raise ValueError("no BETTER_AUTH_SECRET is configured to sign tokens with")
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
    return jwt.encode(claims, secret, algorithm="HS256")
