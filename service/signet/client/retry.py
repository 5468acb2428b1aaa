"""When to try a request again, and after how long.

429 (rate limited) and 503 (no engine ready, queue full or Redis away) say "not now", and the
request did nothing, so sending it again is safe, even for generation. The server's
``Retry-After`` is honoured as a minimum; without one the wait doubles with each try, with
jitter so that many clients refused at once do not come back at once.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

RETRYABLE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 4
    backoff_seconds: float = 0.5
    max_wait_seconds: float = 60.0

    def delay(self, attempt: int, retry_after: str | None) -> float | None:
        """Seconds to wait before retry number ``attempt + 1``; None: give up."""
        if attempt >= self.max_retries:
            return None
        backoff = min(self.backoff_seconds * 2**attempt, self.max_wait_seconds)
        backoff = random.uniform(backoff / 2, backoff)
        asked = retry_after_seconds(retry_after)
        if asked is None:
            return backoff
        # A server asking for more than we would wait at most will refuse us again sooner
        # than that: fail now, with its answer, rather than come back early.
        return None if asked > self.max_wait_seconds else max(asked, backoff)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 section 10.2.3)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)
