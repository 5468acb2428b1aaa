"""Cached /detect results: opaque bytes under opaque keys, for a limited time.

The caller builds the keys (digests, never secrets or texts) and the values; this
module only stores them. A cache is an optimisation, so it never fails a request:
an unreachable Redis is a miss on ``get`` and nothing on ``put``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Protocol

from signet import metrics
from signet.redis_link import RedisLink, RedisUnavailable

logger = logging.getLogger(__name__)

# A result with every token's details for a long text, tested against many keys, runs
# to megabytes. Such results are not cached: a few of them would push out thousands of
# small ones, and in Redis each GET of one would eat into the command timeout.
MAX_VALUE_BYTES = 1 << 20


class DetectionCache(Protocol):
    # True: entries stay in this process's memory; False: others can read them (Redis).
    private: bool

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


class MemoryDetectionCache:
    """Least recently used entries go first; each lasts ``ttl_seconds``.

    Thread-safe: /detect runs in FastAPI's thread pool. Besides ``max_entries``, the
    values together are held under ``max_bytes``, so large results cannot grow the
    process by gigabytes before the entry count is reached.
    """

    max_bytes: int = 256 << 20
    private = True

    def __init__(self, max_entries: int, ttl_seconds: float) -> None:
        if max_entries < 1 or ttl_seconds <= 0:
            raise ValueError("a detection cache needs max_entries >= 1 and ttl_seconds > 0")
        self._max_entries = max_entries
        self._ttl = ttl_seconds
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # key -> (expiry, value)
        self._size = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        value = self._get(key)
        metrics.count_cache_lookup("miss" if value is None else "hit")
        return value

    def _get(self, key: str) -> bytes | None:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expiry, value = entry
            if now >= expiry:
                self._remove(key)
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > MAX_VALUE_BYTES:
            return
        expiry = time.monotonic() + self._ttl
        with self._lock:
            if key in self._entries:
                self._remove(key)
            self._entries[key] = (expiry, value)
            self._size += len(value)
            # Expired entries are not swept: they age to the front and leave first.
            while len(self._entries) > self._max_entries or self._size > self.max_bytes:
                self._remove(next(iter(self._entries)))

    def _remove(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self._size -= len(value)


class RedisDetectionCache:
    """Entries under ``<namespace>:detect:<key>``, expired by Redis itself (``SET ... EX``).

    Calls go through the link's circuit breaker: while Redis is down they fail at once,
    so /detect goes on uncached without waiting out a timeout per request.
    """

    private = False

    def __init__(self, link: RedisLink, ttl_seconds: int) -> None:
        if ttl_seconds < 1:
            raise ValueError("a detection cache needs ttl_seconds >= 1")
        self._link = link
        self._ttl = ttl_seconds
        self._outage = False  # logged once per outage, not once per request
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        name = self._link.key("detect", key)
        try:
            value = self._link.call(lambda client: client.get(name))
        except RedisUnavailable as error:
            self._note_outage(error)
            metrics.count_cache_lookup("bypass")
            return None
        self._note_recovery()
        metrics.count_cache_lookup("miss" if value is None else "hit")
        return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > MAX_VALUE_BYTES:
            return
        name = self._link.key("detect", key)
        try:
            self._link.call(lambda client: client.set(name, value, ex=self._ttl))
        except RedisUnavailable as error:
            self._note_outage(error)
            return
        self._note_recovery()

    def _note_outage(self, error: RedisUnavailable) -> None:
        with self._lock:
            first = not self._outage
            self._outage = True
        if first:
            # The message names the cause only; RedisLink keeps the URL (and any password) out of it.
            logger.warning("detection cache bypassed: %s", error)

    def _note_recovery(self) -> None:
        with self._lock:
            recovered = self._outage
            self._outage = False
        if recovered:
            logger.info("detection cache in use again: Redis answers")
