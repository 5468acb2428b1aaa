"""Per-caller rate limits and budgets: GCRA, in memory (embedded mode) or in Redis (shared by API processes).

GCRA (the generic cell rate algorithm) keeps one number per caller, the *theoretical
arrival time* (TAT): when the caller's bucket would be full again if it sent nothing
more. Each unit of cost (a request, or a scored token for the /detect budget) takes the
emission interval ``T`` seconds (``60 / per_minute``); the bucket holds ``burst`` units,
``C = burst * T`` seconds. A request of ``cost`` units at time ``now`` is handled as::

    tat = max(stored_tat, now)                # an idle caller's TAT lies in the past: start from now
    allow_at = tat - max(0, C - cost * T)     # when `cost` units fit in the bucket
    if now < allow_at:
        refuse; retry after allow_at - now
    else:
        allow; stored_tat = tat + cost * T    # the cost pushes the TAT further

So a fresh caller gets ``burst`` units at once, then one every ``T``; a refused request
changes nothing, and with ``cost`` 1 the retry time of the first refusal after a burst is
(nearly) one interval. ``debit`` is the exception: it takes the cost refused or not, for
work already done (the /detect budget charges an answer after computing it), and a
refused debit's retry time counts from the debt it left. A request that costs more than
the whole bucket is allowed only from a full bucket (``allow_at = tat``) and leaves the
caller in debt until it is paid back: the long-run rate holds, and no request is refused
for ever. Once ``stored_tat <= now`` the entry says nothing a missing one would not, so
it can be dropped: the memory limiter prunes such entries and the Redis key expires then.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.commands.core import Script

from signet.redis_link import RedisLink, RedisUnavailable, SyncClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after_seconds: float  # 0.0 when allowed


ALLOWED = RateDecision(True, 0.0)


class RateLimiter(Protocol):
    def acquire(self, identity: str, cost: int = 1) -> RateDecision:
        """Take ``cost`` units when they fit; a refusal takes nothing."""
        ...

    def debit(self, identity: str, cost: int) -> RateDecision:
        """Take ``cost`` units whether they fit or not: the price of work already done. The
        decision says whether they fitted; a refusal's retry time is when ``cost`` would fit
        again, counted after this debit."""
        ...

    def check(self, identity: str, cost: int = 1) -> RateDecision:
        """Whether ``cost`` units would fit now, taking nothing."""
        ...


def _check_limits(per_minute: float, burst: int) -> None:
    if not per_minute > 0:
        raise ValueError(f"per_minute must be positive, not {per_minute}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst}")


# What a decision takes: nothing (check), the cost if it fits (acquire), the cost in any
# case (debit). The numbers are the Redis script's ARGV[4].
_CHECK, _TAKE_IF_IT_FITS, _TAKE_ALWAYS = 0, 1, 2


def _allow_at(tat: float, cost: int, interval: float, capacity: float) -> float:
    """When ``cost`` units fit in a bucket of ``capacity`` (seconds) whose TAT is ``tat``."""
    return tat - max(0.0, capacity - cost * interval)


class MemoryRateLimiter:
    """GCRA in this process's memory, for embedded mode; thread-safe.

    At most about ``max_identities`` callers are remembered: past that, callers whose TAT
    has passed are forgotten (losing nothing), and if that is not enough, those whose TAT
    comes soonest (the ones closest to a full bucket anyway) are.
    """

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        max_identities: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_limits(per_minute, burst)
        self.per_minute = per_minute
        self.burst = burst
        self._interval = 60.0 / per_minute
        self._capacity = burst * self._interval
        self._max_identities = max(1, max_identities)
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, identity: str, cost: int = 1) -> RateDecision:
        return self._decide(identity, cost, _TAKE_IF_IT_FITS)

    def check(self, identity: str, cost: int = 1) -> RateDecision:
        return self._decide(identity, cost, _CHECK)

    def debit(self, identity: str, cost: int) -> RateDecision:
        return self._decide(identity, cost, _TAKE_ALWAYS)

    def _decide(self, identity: str, cost: int, take: int) -> RateDecision:
        if cost <= 0:
            return ALLOWED  # nothing to charge: even a caller in debt may have it
        with self._lock:
            now = self._clock()
            tat = max(self._tats.get(identity, now), now)
            when = _allow_at(tat, cost, self._interval, self._capacity)
            fits = now >= when
            if take == _CHECK or (take == _TAKE_IF_IT_FITS and not fits):
                return ALLOWED if fits else RateDecision(False, when - now)
            if identity not in self._tats and len(self._tats) >= self._max_identities:
                self._prune(now)
            self._tats[identity] = tat + cost * self._interval
            if fits:
                return ALLOWED
            return RateDecision(False, _allow_at(self._tats[identity], cost, self._interval, self._capacity) - now)

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
# ARGV: emission interval, capacity (microseconds), cost (units), and what to take: 0
# nothing (check), 1 the cost if it fits (acquire), 2 the cost in any case (debit).
# Returns {allowed, retry after (µs)}. Lua numbers are doubles: TATs
# (about 1.8e15 µs) are exact below 2**53.
# Redis runs a script atomically, so API processes sharing the key cannot both take the
# last slot; TIME is the one clock they all see. Redis >= 5 replicates a script's effects
# rather than the script, which makes TIME before a write legal (3.2-4 need the call).
_GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local room = math.max(0, capacity - cost * interval)
local fits = now >= tat - room
if ARGV[4] == '0' or (ARGV[4] == '1' and not fits) then
    if fits then return {1, 0} end
    return {0, math.ceil(tat - room - now)}
end
local new_tat = math.ceil(tat + cost * interval)
local ttl_ms = math.max(1, math.ceil((new_tat - now) / 1000))
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
if fits then return {1, 0} end
return {0, math.ceil(new_tat - room - now)}
"""


class RedisRateLimiter:
    """GCRA in Redis: one key per caller, shared by every API process of the deployment.

    While Redis is unreachable it asks ``fallback`` (a per-process limiter) instead, or,
    without one, fails open: every request is allowed (limits are a protection, not a
    reason to refuse service). One warning per outage, naming the limits by ``name``.
    """

    def __init__(
        self,
        link: RedisLink,
        per_minute: float,
        burst: int,
        *,
        prefix: str = "rate",
        fallback: RateLimiter | None = None,
        name: str = "rate limits",
    ) -> None:
        _check_limits(per_minute, burst)
        self.per_minute = per_minute
        self.burst = burst
        self._link = link
        self._prefix = prefix
        self._fallback = fallback
        self._name = name
        interval_us = 60_000_000 / per_minute
        self._limits = (interval_us, burst * interval_us)
        self._script: Script | None = None  # made at the first call: see _run
        self._outage = False
        self._outage_lock = threading.Lock()

    def acquire(self, identity: str, cost: int = 1) -> RateDecision:
        return self._decide(identity, cost, _TAKE_IF_IT_FITS)

    def check(self, identity: str, cost: int = 1) -> RateDecision:
        return self._decide(identity, cost, _CHECK)

    def debit(self, identity: str, cost: int) -> RateDecision:
        return self._decide(identity, cost, _TAKE_ALWAYS)

    def _decide(self, identity: str, cost: int, take: int) -> RateDecision:
        if cost <= 0:
            return ALLOWED  # nothing to charge: no round trip
        key = self._link.key(self._prefix, identity)
        arguments = (*self._limits, cost, take)
        try:
            allowed, retry_after_us = self._link.call(lambda client: self._run(client, key, arguments))
        except RedisUnavailable as error:
            self._note_outage(error)
            if self._fallback is None:
                return ALLOWED
            fallback = {
                _CHECK: self._fallback.check,
                _TAKE_IF_IT_FITS: self._fallback.acquire,
                _TAKE_ALWAYS: self._fallback.debit,
            }
            return fallback[take](identity, cost)
        self._note_recovery()
        if allowed:
            return ALLOWED
        return RateDecision(False, max(int(retry_after_us), 1) / 1_000_000)

    def _run(self, client: SyncClient, key: str, arguments: tuple) -> list:
        """EVALSHA, with a SCRIPT LOAD when Redis does not know the script (after a restart).
        Registered with the client at its first use: a cluster's is made then (RedisLink.sync)."""
        if self._script is None:
            self._script = client.register_script(_GCRA_SCRIPT)  # two threads racing make equal ones
        return self._script(keys=[key], args=arguments, client=client)

    def _note_outage(self, error: RedisUnavailable) -> None:
        with self._outage_lock:
            if self._outage:
                return
            self._outage = True
        # RedisUnavailable names the cause, never the URL
        effect = "are off" if self._fallback is None else "hold per API process"
        logger.warning("%s %s until Redis answers again: %s", self._name, effect, error)

    def _note_recovery(self) -> None:
        if not self._outage:
            return
        with self._outage_lock:
            if not self._outage:
                return
            self._outage = False
        logger.info("Redis answers again; %s are back on", self._name)
