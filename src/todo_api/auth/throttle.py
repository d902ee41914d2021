"""Failed-login throttling that a stranger cannot turn against an account's owner.

Failures are counted over a sliding window in three ways, and a login is refused (429) while
any of its counters is full:
- per email and client address: one client guessing one account's password (low limit);
- per client address: one client trying many accounts (password spraying);
- per email, from every client together: a distributed guess at one account. Its limit is
  much higher, so reaching it takes many addresses; and a client that has logged in to that
  account before is not held by it, so the owner's usual devices keep working even then.

A stranger who types the owner's email wrongly from their own address fills only their own
counters: the owner, elsewhere, is not locked out.
"""

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Bounded memory however many distinct emails an attacker tries; the oldest entries go first.
MAX_TRACKED_KEYS = 100_000
# How long a client that logged in to an account stays exempt from that account's ceiling.
KNOWN_CLIENT_SECONDS = 30 * 24 * 3600


class LoginThrottle:
    """Counts failed logins in this process; see the module docstring for the three limits."""

    def __init__(
        self,
        per_email_and_client: int,
        per_client: int,
        per_email: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_email_and_client = per_email_and_client
        self._per_client = per_client
        self._per_email = per_email
        self._window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._known_clients: OrderedDict[tuple[str, str], float] = OrderedDict()

    def retry_after(self, email: str, client: str) -> int | None:
        """Seconds until a login for this email from this client may be tried; None if now."""
        pair, from_client, for_email = _keys(email, client)
        waits = [
            self._wait(pair, self._per_email_and_client),
            self._wait(from_client, self._per_client),
        ]
        if not self._is_known(email, client):
            waits.append(self._wait(for_email, self._per_email))
        longest = max(waits)
        return math.ceil(longest) if longest > 0 else None

    def record_failure(self, email: str, client: str) -> None:
        now = self._clock()
        for key in _keys(email, client):
            self._failures.setdefault(key, deque()).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)

    def record_success(self, email: str, client: str) -> None:
        """Clears this client's failures for the account and remembers it as the owner's."""
        pair, _, _ = _keys(email, client)
        self._failures.pop(pair, None)
        self._known_clients[(email, client)] = self._clock()
        self._known_clients.move_to_end((email, client))
        while len(self._known_clients) > MAX_TRACKED_KEYS:
            self._known_clients.popitem(last=False)

    def _is_known(self, email: str, client: str) -> bool:
        since = self._known_clients.get((email, client))
        return since is not None and self._clock() - since < KNOWN_CLIENT_SECONDS

    def _wait(self, key: str, limit: int) -> float:
        failures = self._failures.get(key)
        if not failures:
            return 0
        horizon = self._clock() - self._window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if len(failures) < limit:
            return 0
        return failures[-limit] - horizon


def _keys(email: str, client: str) -> tuple[str, str, str]:
    """The counters a login attempt touches: this email from this client, this client, this
    email from anywhere."""
    return f"pair:{client}:{email}", f"client:{client}", f"email:{email}"
