"""One Redis connection setup for the queue, the detection cache and the rate limits.

Redis going away must not take the API with it: ``/detect`` keeps answering without
its cache, and queued routes answer 503 at once instead of each waiting out a timeout.
``RedisLink`` remembers a failure for ``retry_interval`` seconds and refuses calls
until then (a circuit breaker), so at most one request per interval pays the timeout;
the first call after it tries Redis again, which is how service resumes on its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.retry
from redis.backoff import NoBackoff

T = TypeVar("T")

# What a lost, refused or slow Redis raises; command errors (a bad script, a wrong
# type) are bugs and propagate as they are.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def _reconnect_once(retry_class):
    """After Redis restarts, every pooled connection is dead and fails its next command:
    reconnect and send it once more instead of failing a request per stale connection.
    Timeouts are not retried, so a hung Redis still fails within one timeout."""
    return retry_class(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class RedisUnavailable(Exception):
    """Redis did not answer; the message names the cause, never the URL (it may hold a password)."""


class RedisLink:
    def __init__(self, url: str, namespace: str, timeout_seconds: float, retry_interval: float = 1.0) -> None:
        self.namespace = namespace
        self._url = url
        self._timeout = timeout_seconds
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self._last_error = ""
        self._lock = threading.Lock()
        options = {"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds}
        # Thread-pool routes (/detect) use the synchronous client, async routes the other.
        self.sync = redis.Redis.from_url(url, retry=_reconnect_once(redis.retry.Retry), **options)
        self.async_client = redis.asyncio.Redis.from_url(
            url, retry=_reconnect_once(redis.asyncio.retry.Retry), **options
        )

    def key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def blocking_client(self) -> redis.asyncio.Redis:
        """A client for blocking reads (BLPOP, XREADGROUP BLOCK): no read timeout, so a long
        wait is not mistaken for a dead server, and its own pool, so waits do not starve
        the short calls."""
        return redis.asyncio.Redis.from_url(
            self._url,
            socket_connect_timeout=self._timeout,
            socket_timeout=None,
            health_check_interval=30,
            retry=_reconnect_once(redis.asyncio.retry.Retry),
        )

    @property
    def is_up(self) -> bool:
        """False while a recent failure is remembered; True does not promise the next call works."""
        return time.monotonic() >= self._down_until

    @property
    def last_error(self) -> str:
        return self._last_error

    def check(self) -> None:
        """Fail fast while Redis is known to be down."""
        if not self.is_up:
            raise RedisUnavailable(f"Redis is unreachable ({self._last_error})")

    def record_failure(self, error: BaseException) -> RedisUnavailable:
        with self._lock:
            self._down_until = time.monotonic() + self._retry_interval
            self._last_error = type(error).__name__
        return RedisUnavailable(f"Redis is unreachable ({self._last_error})")

    def record_success(self) -> None:
        self._down_until = 0.0

    def call(self, operation: Callable[[redis.Redis], T]) -> T:
        """Run ``operation`` on the synchronous client; connection failures become RedisUnavailable."""
        self.check()
        try:
            result = operation(self.sync)
        except CONNECTION_ERRORS as error:
            raise self.record_failure(error) from error
        self.record_success()
        return result

    async def call_async(self, operation: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        self.check()
        try:
            result = await operation(self.async_client)
        except CONNECTION_ERRORS as error:
            raise self.record_failure(error) from error
        self.record_success()
        return result

    async def ping(self) -> bool:
        """Ask Redis now, whatever the breaker remembers: for health checks."""
        try:
            await self.async_client.ping()
        except CONNECTION_ERRORS as error:
            self.record_failure(error)
            return False
        self.record_success()
        return True

    async def aclose(self) -> None:
        await self.async_client.aclose()
        self.sync.close()
