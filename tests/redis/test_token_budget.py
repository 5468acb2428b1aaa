"""The cost-weighted GCRA behind the detection budget: ``acquire``, ``check`` and ``debit`` in memory
(a fake clock, exact) and in Redis (its own clock, real time), and what the budget does while
Redis is down (per-process budgets, not none).

Redis tests use SIGNET_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a fresh
namespace and delete their keys; they fail when that Redis does not answer.
"""

from __future__ import annotations

import logging
import time

import pytest

from harness.services import redis_test_url
from signet.cache.rate_limit import MemoryRateLimiter, RateDecision, RedisRateLimiter
from signet.redis_link import RedisLink
from tests.redis.test_rate_limiters import FakeClock

REDIS_URL = redis_test_url()


def _budget(clock: FakeClock, tokens: int = 1000, seconds: float = 100.0) -> MemoryRateLimiter:
    """``tokens`` per ``seconds``: with the defaults, ten tokens back every second."""
    return MemoryRateLimiter(tokens * 60 / seconds, tokens, clock=clock)


# --- in memory ---


def test_costs_add_up_to_the_budget_and_the_retry_time_is_what_is_missing():
    clock = FakeClock()
    budget = _budget(clock)
    assert budget.acquire("t", 600).allowed and budget.acquire("t", 400).allowed  # exactly the budget
    refused = budget.acquire("t", 50)
    assert refused == RateDecision(False, pytest.approx(5.0))  # 50 tokens at 10 per second
    assert budget.acquire("t", 1).retry_after_seconds == pytest.approx(0.1)  # a refusal charged nothing
    clock.now += 5.0
    assert budget.acquire("t", 50).allowed
    assert not budget.acquire("t", 1).allowed


def test_cost_is_what_counts_not_requests():
    clock = FakeClock()
    budget = _budget(clock)
    assert all(budget.acquire("many", 1).allowed for _ in range(1000))
    assert not budget.acquire("many", 1).allowed
    assert budget.acquire("few", 1000).allowed and not budget.acquire("few", 1).allowed


def test_a_request_larger_than_the_budget_needs_a_full_bucket_and_leaves_a_debt():
    clock = FakeClock()
    budget = _budget(clock)
    assert budget.acquire("t", 1).allowed
    refused = budget.acquire("t", 3000)  # never fits: it waits for a full bucket, 0.1 s away
    assert refused == RateDecision(False, pytest.approx(0.1))
    clock.now += 0.1
    assert budget.acquire("t", 3000).allowed
    # 3,000 tokens taken from a bucket of 1,000: the next token fits once 2,001 are back
    assert budget.acquire("t", 1).retry_after_seconds == pytest.approx(200.1)
    assert budget.acquire("t", 0).allowed  # nothing to charge, nothing refused


def test_a_debit_is_taken_even_when_it_does_not_fit_and_leaves_a_debt():
    """The budget's charge: the answer's work is done, so its cost is taken refused or not."""
    clock = FakeClock()
    budget = _budget(clock)
    assert budget.debit("t", 800).allowed
    # 300 do not fit in the 200 left: refused, and taken (1,100 of 1,000). They would fit again
    # once 400 tokens are back: the 100 of the debt and the 300 themselves.
    assert budget.debit("t", 300) == RateDecision(False, pytest.approx(40.0))
    assert budget.check("t", 1) == RateDecision(False, pytest.approx(10.1))  # in debt: 101 tokens away
    clock.now += 40.0
    assert budget.debit("t", 300).allowed
    assert budget.debit("u", 0).allowed and budget.check("u", 1000).allowed  # nothing to take


def test_cost_one_is_the_request_limiter_unchanged():
    clock = FakeClock()
    limiter = MemoryRateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.acquire("a").allowed for _ in range(3)] == [True] * 3
    assert limiter.acquire("a") == RateDecision(False, pytest.approx(1.0))
    assert limiter.acquire("a", 2).retry_after_seconds == pytest.approx(2.0)


# --- in Redis ---


def _link(namespace: str, url: str = REDIS_URL) -> RedisLink:
    return RedisLink(url, namespace, 2.0)


def test_redis_charges_costs_and_refuses_with_the_time_until_they_fit(redis_namespace):
    budget = RedisRateLimiter(_link(redis_namespace), 1000 * 60 / 100, 1000, prefix="detect-budget")
    started = time.monotonic()
    assert budget.acquire("tenant:a", 700).allowed and budget.acquire("tenant:a", 300).allowed
    refused = budget.acquire("tenant:a", 200)  # 200 tokens at 10 per second: 20 s, less the time passed
    elapsed = time.monotonic() - started
    assert not refused.allowed and 20.0 - elapsed - 0.05 <= refused.retry_after_seconds <= 20.0
    assert budget.acquire("tenant:b", 1000).allowed  # tenants are independent


def test_redis_budget_is_shared_by_api_processes_and_kept_apart_from_rate_limits(redis_namespace):
    link = _link(redis_namespace)
    pod_a = RedisRateLimiter(link, 600.0, 1000, prefix="detect-budget")
    pod_b = RedisRateLimiter(_link(redis_namespace), 600.0, 1000, prefix="detect-budget")
    requests = RedisRateLimiter(link, per_minute=60, burst=1)  # the request limiter, same identity
    assert pod_a.acquire("tenant:a", 600).allowed and pod_b.acquire("tenant:a", 400).allowed
    assert not pod_a.acquire("tenant:a", 10).allowed and not pod_b.acquire("tenant:a", 10).allowed
    assert requests.acquire("tenant:a").allowed
    ttl_ms = link.sync.pttl(link.key("detect-budget", "tenant:a"))
    assert 99_000 < ttl_ms <= 100_000  # the key expires when the bucket would be full again


def test_redis_oversize_request_from_a_full_bucket_leaves_a_debt(redis_namespace):
    budget = RedisRateLimiter(_link(redis_namespace), 600.0, 1000, prefix="detect-budget")
    assert budget.acquire("tenant:a", 3000).allowed
    refused = budget.acquire("tenant:a", 1)  # 2,001 tokens to win back at 10 per second
    assert not refused.allowed and 199.0 < refused.retry_after_seconds <= 200.1


def test_redis_debits_a_refused_cost_and_refuses_with_the_time_until_it_fits_again(redis_namespace):
    link = _link(redis_namespace)
    budget = RedisRateLimiter(link, 600.0, 1000, prefix="detect-budget")
    started = time.monotonic()
    assert budget.debit("tenant:a", 800).allowed
    refused = budget.debit("tenant:a", 300)  # taken: 1,100 of 1,000; fits again 40 s later
    elapsed = time.monotonic() - started
    assert not refused.allowed and 40.0 - elapsed - 0.05 <= refused.retry_after_seconds <= 40.0
    assert not budget.check("tenant:a", 1).allowed  # in debt: refused before any work
    assert 109_000 < link.sync.pttl(link.key("detect-budget", "tenant:a")) <= 110_000  # the debt expires too


def test_while_redis_is_down_each_process_keeps_a_budget_of_its_own(unreachable_redis_link, caplog):
    clock = FakeClock()
    fallback = _budget(clock)
    budget = RedisRateLimiter(
        unreachable_redis_link, 600.0, 1000, prefix="detect-budget", fallback=fallback, name="detection budgets"
    )
    with caplog.at_level(logging.INFO, logger="signet.cache.rate_limit"):
        assert budget.acquire("tenant:a", 1000).allowed
        refused = budget.acquire("tenant:a", 10)
        assert not refused.allowed and refused.retry_after_seconds == pytest.approx(1.0)
        assert budget.acquire("tenant:b", 10).allowed
        # a debit falls back as a debit: refused and taken all the same
        assert not budget.debit("tenant:b", 995).allowed and not fallback.check("tenant:b", 1).allowed
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("detection budgets hold per API process until Redis")


def test_the_budget_is_on_by_default_in_redis_with_a_memory_fallback(redis_namespace):
    from signet.api.state import _detect_budget  # the factory ServiceState.load calls
    from signet.settings import Settings

    settings = Settings()
    assert (settings.detect_token_budget, settings.detect_token_budget_seconds) == (1_000_000, 3600)
    assert isinstance(_detect_budget(settings, None), MemoryRateLimiter)  # embedded mode
    assert _detect_budget(Settings(detect_token_budget=0), None) is None
    link = _link(redis_namespace)
    budget = _detect_budget(settings, link)
    assert isinstance(budget, RedisRateLimiter) and budget.burst == 1_000_000
    assert budget.acquire("tenant:a", 1_000_000).allowed
    refused = budget.acquire("tenant:a", 300)  # 1,000,000 an hour: 278 tokens come back a second
    assert not refused.allowed and 0.9 < refused.retry_after_seconds <= 1.08
    assert link.sync.exists(link.key("detect-budget", "tenant:a"))
