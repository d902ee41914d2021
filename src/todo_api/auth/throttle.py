"""Failed-login throttling: per email and per client address, over a sliding window."""

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

# Bounded memory however many distinct emails an attacker tries; the oldest entries go first.
MAX_TRACKED_KEYS = 100_000


class LoginThrottle:
    """Counts failed logins in this process. Each key ("email:…", "client:…") may fail
    `limit` times per `window_seconds`; after that, `retry_after` says how long to wait."""

    def __init__(
        self,
        per_email: int,
        per_client: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = {"email": per_email, "client": per_client}
        self._window = window_seconds
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, email: str, client: str) -> int | None:
        """Seconds until a login for this email from this client may be tried; None if now."""
        waits = [
            self._wait(f"{kind}:{value}", self._limits[kind])
            for kind, value in (("email", email), ("client", client))
        ]
        longest = max(waits)
        return math.ceil(longest) if longest > 0 else None

    def record_failure(self, email: str, client: str) -> None:
        now = self._clock()
        for key in (f"email:{email}", f"client:{client}"):
            self._failures.setdefault(key, deque()).append(now)
            self._failures.move_to_end(key)
        while len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.popitem(last=False)

    def reset(self, email: str) -> None:
        """A successful login clears the email's failures (not the client's)."""
        self._failures.pop(f"email:{email}", None)

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
