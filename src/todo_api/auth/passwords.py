"""Argon2id password hashing, off the event loop."""

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

_HASHER = PasswordHash((Argon2Hasher(),))
# Verified against when the email is unknown, so that answer takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash("not a real password, only here to spend the same time")


async def hash_password(password: str) -> str:
    """Argon2id (about 0.1 s of CPU, in a worker thread so other requests keep flowing)."""
    return await anyio.to_thread.run_sync(_HASHER.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether `password` matches; with no hash, spend the same time and say no."""
    matches = await anyio.to_thread.run_sync(_HASHER.verify, password, password_hash or _DUMMY_HASH)
    return matches and password_hash is not None
