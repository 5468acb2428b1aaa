"""The /detect result caches: the in-memory LRU of embedded mode and the Redis one.

Redis tests use the test Redis (SIGNET_TEST_REDIS_URL) under a namespace of their own.
"""

import logging
import threading
import time

import pytest

from signet.cache import detection
from signet.cache.detection import MAX_VALUE_BYTES, MemoryDetectionCache, RedisDetectionCache


class FakeClock:
    """Stands in for the ``time`` module in signet.cache.detection: time moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_memory_cache_evicts_the_least_recently_used_entry():
    cache = MemoryDetectionCache(max_entries=3, ttl_seconds=60)
    for key in "abc":
        cache.put(key, key.encode())
    assert cache.get("a") == b"a"  # a is now the most recently used; b the least
    cache.put("d", b"d")
    assert cache.get("b") is None
    assert [cache.get(key) for key in "acd"] == [b"a", b"c", b"d"]
    cache.put("c", b"new c")  # a replaced entry is used, not added: nothing leaves
    assert len(cache) == 3 and cache.get("c") == b"new c"
    cache.put("e", b"e")
    assert cache.get("a") is None and len(cache) == 3


def test_memory_cache_entries_expire_after_their_ttl(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(detection, "time", clock)
    cache = MemoryDetectionCache(max_entries=10, ttl_seconds=30)
    cache.put("old", b"1")
    clock.now += 20
    cache.put("new", b"2")
    assert cache.get("old") == b"1"  # reading does not extend an entry's life
    clock.now += 10
    assert cache.get("old") is None and cache.get("new") == b"2"
    clock.now += 20
    assert cache.get("new") is None and len(cache) == 0


def test_memory_cache_holds_its_values_under_a_byte_budget():
    cache = MemoryDetectionCache(max_entries=100, ttl_seconds=60)
    cache.max_bytes = 25
    for key in "abc":
        cache.put(key, b"x" * 10)
    assert cache.get("a") is None and cache.get("b") == cache.get("c") == b"x" * 10


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_results_over_the_size_limit_are_not_cached(kind, request):
    if kind == "memory":
        cache = MemoryDetectionCache(max_entries=10, ttl_seconds=60)
    else:
        cache = RedisDetectionCache(request.getfixturevalue("redis_link"), ttl_seconds=60)
    cache.put("large", b"x" * (MAX_VALUE_BYTES + 1))
    cache.put("fits", b"x" * MAX_VALUE_BYTES)
    assert cache.get("large") is None and cache.get("fits") == b"x" * MAX_VALUE_BYTES


def test_memory_cache_survives_concurrent_use():
    cache = MemoryDetectionCache(max_entries=50, ttl_seconds=60)
    wrong: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for step in range(3000):
                key = str((seed * 7919 + step * 31) % 120)
                value = cache.get(key)
                if value is not None and value != key.encode():
                    wrong.append((key, value))
                cache.put(key, key.encode())
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and not wrong
    assert len(cache) == 50
    assert cache._size == sum(len(value) for _, value in cache._entries.values())


def test_redis_cache_round_trips_and_sets_the_ttl(redis_link):
    cache = RedisDetectionCache(redis_link, ttl_seconds=120)
    assert cache.get("abc") is None
    cache.put("abc", b'{"verdict": "watermarked"}')
    assert cache.get("abc") == b'{"verdict": "watermarked"}'
    name = redis_link.key("detect", "abc")
    assert name == f"{redis_link.namespace}:detect:abc"
    assert 110 <= redis_link.sync.ttl(name) <= 120


def test_redis_cache_expires_entries(redis_link):
    cache = RedisDetectionCache(redis_link, ttl_seconds=1)
    cache.put("short", b"1")
    assert cache.get("short") == b"1"
    time.sleep(1.2)
    assert cache.get("short") is None


def test_unreachable_redis_is_a_quick_miss_and_warned_about_once(unreachable_redis_link, caplog):
    cache = RedisDetectionCache(unreachable_redis_link, ttl_seconds=60)
    with caplog.at_level(logging.INFO, logger="signet.cache.detection"):
        for _ in range(3):
            started = time.monotonic()
            assert cache.get("abc") is None
            cache.put("abc", b"value")  # does not raise
            assert time.monotonic() - started < 1.0
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bypassed" in warnings[0].getMessage()
    assert "127.0.0.1" not in caplog.text and "redis://" not in caplog.text
