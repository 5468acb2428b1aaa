"""Per-caller rate limits: GCRA, in memory (embedded mode) or in Redis (shared by API processes).

GCRA (the generic cell rate algorithm) keeps one number per caller, the *theoretical
arrival time* (TAT): when the caller's bucket would be empty again if it sent nothing
more. With the emission interval ``T = 60 / per_minute`` seconds and the tolerance
``tau = (burst - 1) * T``, a request at time ``now`` is handled as::

    tat = max(stored_tat, now)        # an idle caller's TAT lies in the past: start from now
    if now < tat - tau:               # more than `burst` requests' worth still outstanding
        refuse; retry after (tat - tau) - now
    else:
        allow; stored_tat = tat + T   # each request pushes the TAT one interval further

So a fresh caller gets ``burst`` requests at once, then one every ``T``; a refused
request changes nothing, and the retry time of the first refusal after a burst is
(nearly) one interval. Once ``stored_tat <= now`` the entry says nothing a missing one
would not, so it can be dropped: the memory limiter prunes such entries and the Redis
key expires then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from signet.redis_link import RedisLink, RedisUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: float  # 0.0 when allowed


ALLOWED = RateDecision(True, 0.0)


class RateLimiter(Protocol):
    def acquire(self, identity: str) -> RateDecision: ...


def _check_limits(per_minute: int, burst: int) -> None:
    if per_minute < 1:
        raise ValueError(f"per_minute must be at least 1, not {per_minute}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst}")


class MemoryRateLimiter:
    """GCRA in this process's memory, for embedded mode; thread-safe.

    At most about ``max_identities`` callers are remembered: past that, callers whose TAT
    has passed are forgotten (losing nothing), and if that is not enough, those whose TAT
    comes soonest (the ones closest to a full bucket anyway) are.
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        *,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_limits(per_minute, burst)
        self.per_minute = per_minute
        self.burst = burst
        self._interval = 60.0 / per_minute
        self._tolerance = (burst - 1) * self._interval
        self._max_identities = max(1, max_identities)
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, identity: str) -> RateDecision:
        with self._lock:
            now = self._clock()
            tat = max(self._tats.get(identity, now), now)
            allow_at = tat - self._tolerance
            if now < allow_at:
                return RateDecision(False, allow_at - now)
            if identity not in self._tats and len(self._tats) >= self._max_identities:
                self._prune(now)
            self._tats[identity] = tat + self._interval
            return ALLOWED

    def __len__(self) -> int:
        return len(self._tats)

    def _prune(self, now: float) -> None:
        """Make room: down to three quarters of the bound, so the next prune is far off."""
        self._tats = {identity: tat for identity, tat in self._tats.items() if tat > now}
        keep = self._max_identities * 3 // 4
        if len(self._tats) > keep:
            latest = sorted(self._tats.items(), key=lambda item: item[1])[len(self._tats) - keep :]
            self._tats = dict(latest)


# KEYS[1]: the caller's TAT (microseconds since the epoch, Redis's clock);
# ARGV: emission interval, tolerance (microseconds). Returns {allowed, retry after (µs)}.
# Redis runs a script atomically, so API processes sharing the key cannot both take the
# last slot; TIME is the one clock they all see. Redis >= 5 replicates a script's effects
# rather than the script, which makes TIME before a write legal (3.2-4 need the call).
_GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then
    return {0, allow_at - now}
end
local new_tat = tat + interval
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, 0}
"""


class RedisRateLimiter:
    """GCRA in Redis: one key per caller, shared by every API process of the deployment.

    Fails open: while Redis is unreachable every request is allowed (limits are a
    protection, not a reason to refuse service), with one warning per outage.
    """

    def __init__(self, link: RedisLink, per_minute: int, burst: int) -> None:
        _check_limits(per_minute, burst)
        self.per_minute = per_minute
        self.burst = burst
        self._link = link
        interval_us = max(1, round(60_000_000 / per_minute))
        self._args = (interval_us, (burst - 1) * interval_us)
        # EVALSHA, with a SCRIPT LOAD when Redis does not know the script (after a restart)
        self._script = link.sync.register_script(_GCRA_SCRIPT)
        self._outage = False
        self._outage_lock = threading.Lock()

    def acquire(self, identity: str) -> RateDecision:
        key = self._link.key("rate", identity)
        try:
            allowed, retry_after_us = self._link.call(
                lambda client: self._script(keys=[key], args=self._args, client=client)
            )
        except RedisUnavailable as error:
            self._note_outage(error)
            return ALLOWED
        self._note_recovery()
        if allowed:
            return ALLOWED
        return RateDecision(False, max(int(retry_after_us), 1) / 1_000_000)

    def _note_outage(self, error: RedisUnavailable) -> None:
        with self._outage_lock:
            if self._outage:
                return
            self._outage = True
        # RedisUnavailable names the cause, never the URL
        logger.warning("rate limits are off until Redis answers again: %s", error)

    def _note_recovery(self) -> None:
        if not self._outage:
            return
        with self._outage_lock:
            if not self._outage:
                return
            self._outage = False
        logger.info("Redis answers again; rate limits are back on")
