"""GCRA rate limiters: in memory (a fake clock) and in Redis (its own clock, real time).

Redis tests use SIGNET_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) under a fresh
namespace and delete their keys; they fail when that Redis does not answer.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest

from harness.services import free_port, redis_test_url
from signet.cache.rate_limit import MemoryRateLimiter, RateDecision, RedisRateLimiter
from signet.redis_link import RedisLink, RedisUnavailable

REDIS_URL = redis_test_url()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- in memory ---


def test_memory_allows_a_burst_then_refuses_for_about_one_interval():
    clock = FakeClock()
    limiter = MemoryRateLimiter(per_minute=60, burst=3, clock=clock)  # one per second
    assert [limiter.acquire("a").allowed for _ in range(3)] == [True] * 3
    refused = limiter.acquire("a")
    assert refused == RateDecision(False, pytest.approx(1.0))
    clock.now += 0.4
    assert limiter.acquire("a").retry_after_seconds == pytest.approx(0.6)  # a refusal costs nothing
    clock.now += 0.6
    assert limiter.acquire("a") == RateDecision(True, 0.0)
    assert not limiter.acquire("a").allowed  # one slot came back, not the burst


def test_memory_sustains_the_per_minute_rate_and_refills_the_burst_when_idle():
    clock = FakeClock()
    limiter = MemoryRateLimiter(per_minute=120, burst=2, clock=clock)
    assert limiter.acquire("a").allowed and limiter.acquire("a").allowed
    for _ in range(10):  # one request every interval (0.5 s): always allowed
        clock.now += 0.5
        assert limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    clock.now += 60
    assert limiter.acquire("a").allowed and limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed


def test_memory_burst_of_one_means_one_request_per_interval():
    clock = FakeClock()
    limiter = MemoryRateLimiter(per_minute=6, burst=1, clock=clock)
    assert limiter.acquire("a").allowed
    assert limiter.acquire("a").retry_after_seconds == pytest.approx(10.0)


def test_memory_identities_are_independent():
    clock = FakeClock()
    limiter = MemoryRateLimiter(per_minute=6, burst=2, clock=clock)
    assert limiter.acquire("a").allowed and limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed and limiter.acquire("b").allowed
    assert not limiter.acquire("b").allowed


def test_memory_forgets_idle_callers_first_and_stays_bounded():
    clock = FakeClock()
    limiter = MemoryRateLimiter(per_minute=60, burst=2, max_identities=100, clock=clock)
    for number in range(100):
        limiter.acquire(f"idle-{number}")  # TAT: now + 1 s
    clock.now += 5  # every TAT has passed
    limiter.acquire("idle-0")
    limiter.acquire("idle-0")  # TAT now + 2 s: refused until now + 1 s
    assert len(limiter) == 100
    limiter.acquire("new")  # makes room: the idle callers go, the live ones stay
    assert len(limiter) == 2
    assert not limiter.acquire("idle-0").allowed
    for number in range(1000):  # all live at once: the ones closest to a full bucket go first
        limiter.acquire(f"flood-{number}")
        assert len(limiter) <= 100
    assert not limiter.acquire("idle-0").allowed  # the most limited caller is never forgotten


def test_memory_is_thread_safe():
    limiter = MemoryRateLimiter(per_minute=1, burst=50)  # no refill during the test
    results: list[bool] = []
    lock = threading.Lock()

    def hammer():
        for _ in range(25):
            allowed = limiter.acquire("shared").allowed
            with lock:
                results.append(allowed)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 50 and len(results) == 200


@pytest.mark.parametrize("per_minute, burst", [(0, 1), (1, 0)])
def test_limits_must_be_positive(per_minute, burst):
    with pytest.raises(ValueError):
        MemoryRateLimiter(per_minute, burst)


# --- in Redis ---


def _link(namespace: str, url: str = REDIS_URL, timeout: float = 2.0) -> RedisLink:
    return RedisLink(url, namespace, timeout)


def test_redis_allows_a_burst_then_refuses_for_about_one_interval_then_recovers(redis_namespace):
    # one per second: the four requests must land within 1 s, which a busy machine still does
    limiter = RedisRateLimiter(_link(redis_namespace), per_minute=60, burst=3)
    started = time.monotonic()
    assert [limiter.acquire("a").allowed for _ in range(3)] == [True] * 3
    refused = limiter.acquire("a")
    elapsed = time.monotonic() - started
    assert not refused.allowed
    assert 1.0 - elapsed - 0.05 <= refused.retry_after_seconds <= 1.0
    time.sleep(refused.retry_after_seconds + 0.05)
    assert limiter.acquire("a").allowed


def test_redis_identities_are_independent(redis_namespace):
    limiter = RedisRateLimiter(_link(redis_namespace), per_minute=6, burst=2)
    assert limiter.acquire("a").allowed and limiter.acquire("a").allowed
    assert not limiter.acquire("a").allowed
    assert limiter.acquire("b").allowed and limiter.acquire("b").allowed
    assert not limiter.acquire("b").allowed


def test_redis_limits_are_shared_by_api_processes(redis_namespace):
    pod_a = RedisRateLimiter(_link(redis_namespace), per_minute=6, burst=3)
    pod_b = RedisRateLimiter(_link(redis_namespace), per_minute=6, burst=3)
    assert pod_a.acquire("caller").allowed and pod_b.acquire("caller").allowed and pod_a.acquire("caller").allowed
    refused = pod_b.acquire("caller")
    assert not refused.allowed and 8.0 < refused.retry_after_seconds <= 10.0
    assert not pod_a.acquire("caller").allowed


def test_redis_key_is_namespaced_and_expires_when_the_caller_would_be_idle(redis_namespace):
    link = _link(redis_namespace)
    limiter = RedisRateLimiter(link, per_minute=6, burst=3)
    limiter.acquire("caller")
    limiter.acquire("caller")
    ttl_ms = link.sync.pttl(link.key("rate", "caller"))
    assert 18_000 < ttl_ms <= 20_000  # the TAT is two intervals ahead


def test_redis_reloads_its_script_after_a_script_flush(redis_namespace):
    link = _link(redis_namespace)
    limiter = RedisRateLimiter(link, per_minute=6, burst=2)
    assert limiter.acquire("caller").allowed
    link.sync.script_flush()  # as after a Redis restart
    assert limiter.acquire("caller").allowed
    assert not limiter.acquire("caller").allowed


def test_redis_unreachable_fails_open_quickly_and_warns_once_without_the_url(caplog):
    url = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RedisRateLimiter(_link("signet-test-unused", url, timeout=0.5), per_minute=1, burst=1)
    with caplog.at_level(logging.INFO, logger="signet.cache.rate_limit"):
        started = time.monotonic()
        decisions = [limiter.acquire("caller") for _ in range(5)]
        assert time.monotonic() - started < 1.0
    assert all(decision.allowed for decision in decisions)
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "rate limits are off" in warnings[0].getMessage()
    assert "hunter2" not in caplog.text and str(url) not in caplog.text


def test_redis_warns_again_on_the_next_outage_after_a_recovery(redis_namespace, caplog, monkeypatch):
    link = _link(redis_namespace)
    limiter = RedisRateLimiter(link, per_minute=600, burst=100)
    real_call = link.call
    down = {"now": True}

    def flaky_call(operation):
        if down["now"]:
            raise RedisUnavailable("Redis is unreachable (ConnectionError)")
        return real_call(operation)

    monkeypatch.setattr(link, "call", flaky_call)
    with caplog.at_level(logging.INFO, logger="signet.cache.rate_limit"):
        for state in (True, True, False, False, True, True):
            down["now"] = state
            assert limiter.acquire("caller").allowed
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "back on" in caplog.text
