"""Public keys published as a JWKS (Better Auth's `/api/auth/jwks`), fetched and cached.

The keys come only from the configured URL: `jku`, `x5u` and `jwk` token headers are never
read. Fetching is asynchronous, concurrent refreshes share one request, an unknown `kid`
triggers at most one refetch per cooldown, and when the issuer is unreachable the keys already
held keep working.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

logger = logging.getLogger(__name__)

# The key types each algorithm may be verified with; a JWK without `alg` (older Better Auth
# releases) is matched to the token's algorithm through its type and curve.
_KEY_TYPES = {
    "EdDSA": ("OKP", {"Ed25519", "Ed448"}),
    "ES256": ("EC", {"P-256"}),
    "ES384": ("EC", {"P-384"}),
    "ES512": ("EC", {"P-521"}),
    **{name: ("RSA", set()) for name in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
}


class JwksUnavailable(Exception):
    """The JWKS could not be fetched and no keys are held."""


@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A key of the set, and its fingerprint: how a verification made with it is later checked
    against the keys the issuer still publishes."""

    key: PyJWK
    fingerprint: str


def _fingerprint(jwk: dict[str, Any]) -> str:
    return json.dumps(jwk, sort_keys=True, separators=(",", ":"), default=str)


def _fits(jwk: dict[str, Any], algorithm: str) -> bool:
    if jwk.get("use", "sig") != "sig":
        return False
    if "alg" in jwk:
        return bool(jwk["alg"] == algorithm)
    key_type, curves = _KEY_TYPES.get(algorithm, ("", set()))
    return jwk.get("kty") == key_type and (not curves or jwk.get("crv") in curves)


class JwksClient:
    """Holds the issuer's public keys; `key_for(kid, alg)` is called once per token."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        max_age_seconds: float = 300,
        cooldown_seconds: float = 30,
    ) -> None:
        self.url = url
        self._http = http
        self._max_age = max_age_seconds
        self._cooldown = cooldown_seconds
        self._keys: list[dict[str, Any]] = []
        self._published: frozenset[str] = frozenset()
        self._parsed: dict[tuple[str | None, str], PublishedKey] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._unknown_kid_refetch_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def key_count(self) -> int:
        return len(self._keys)

    async def key_for(self, kid: str | None, algorithm: str) -> PublishedKey | None:
        """The key that verifies a token with this `kid` and `alg`, or None if there is none."""
        if self._is_stale():
            await self.refresh()
        key = self._find(kid, algorithm)
        if key is None and self._cooled_down(self._unknown_kid_refetch_at):
            # Keys rotate: an unknown kid may be a new key. Ask again, but at most once per
            # cooldown, so tokens with made-up kids cannot make us hammer the issuer.
            self._unknown_kid_refetch_at = time.monotonic()
            await self.refresh()
            key = self._find(kid, algorithm)
        return key

    async def still_publishes(self, fingerprint: str) -> bool:
        """Whether the key with this fingerprint is in the set as last fetched (fetching it
        again first if it is due): a key the issuer withdrew verifies nothing from then on."""
        if self._is_stale():
            await self.refresh()
        return fingerprint in self._published

    async def refresh(self) -> None:
        """Fetch the key set; on failure keep the keys held (logged, never raised)."""
        attempt_started = time.monotonic()
        async with self._lock:
            if self._attempted_at is not None and self._attempted_at >= attempt_started:
                return  # another request refreshed while this one waited for the lock
            self._attempted_at = time.monotonic()
            try:
                response = await self._http.get(self.url)
                response.raise_for_status()
                keys = response.json()["keys"]
                if not isinstance(keys, list):
                    raise TypeError("'keys' is not a list")
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                logger.warning(
                    "JWKS fetch failed; keeping the keys held",
                    extra={
                        "jwks_url": self.url,
                        "error": type(exc).__name__,
                        "keys": len(self._keys),
                    },
                )
                return
            self._keys = [key for key in keys if isinstance(key, dict)]
            self._published = frozenset(_fingerprint(key) for key in self._keys)
            self._parsed = {}
            self._fetched_at = time.monotonic()
            logger.info("JWKS fetched", extra={"jwks_url": self.url, "keys": len(self._keys)})

    def _is_stale(self) -> bool:
        """Due for a fetch: never fetched, or older than max age; retried after a failure
        only once the cooldown has passed."""
        expired = self._fetched_at is None or time.monotonic() - self._fetched_at > self._max_age
        return expired and self._cooled_down(self._attempted_at)

    def _cooled_down(self, since: float | None) -> bool:
        return since is None or time.monotonic() - since >= self._cooldown

    def _find(self, kid: str | None, algorithm: str) -> PublishedKey | None:
        cached = self._parsed.get((kid, algorithm))
        if cached is not None:
            return cached
        if kid is not None:
            candidates = [key for key in self._keys if key.get("kid") == kid]
        else:
            # No kid: only unambiguous when exactly one held key fits the algorithm.
            candidates = [key for key in self._keys if _fits(key, algorithm)]
        if len(candidates) != 1 or not _fits(candidates[0], algorithm):
            return None
        try:
            key = PublishedKey(
                PyJWK(candidates[0], algorithm=algorithm), _fingerprint(candidates[0])
            )
        except PyJWKError:
            return None
        self._parsed[(kid, algorithm)] = key
        return key
