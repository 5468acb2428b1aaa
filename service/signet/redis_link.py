"""One Redis connection setup for the queue, the detection cache and the rate limits.

Redis going away must not take the API with it: ``/detect`` keeps answering without
its cache, and queued routes answer 503 at once instead of each waiting out a timeout.
``RedisLink`` remembers a failure for ``retry_interval`` seconds and refuses calls
until then (a circuit breaker), so at most one request per interval pays the timeout;
the first call after it tries Redis again, which is how service resumes on its own.

A Redis Cluster (``cluster=True``) gets redis-py's cluster clients, and the keys that
scripts and transactions use together are hash-tagged into one slot (``slot_key``).

A protected Redis (docs/DEPLOY.md, "Securing Redis"): ``rediss://`` URLs verify the server's
certificate against SIGNET_REDIS_CA_FILE (or the system's CAs) and its host name, always;
SIGNET_REDIS_USERNAME and SIGNET_REDIS_PASSWORD_FILE name an ACL user. Every client the link
makes (``sync``, ``async_client``, ``blocking_client``) connects so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.cluster
import redis.connection
import redis.retry
from redis.backoff import NoBackoff
from redis.driver_info import DriverInfo

from signet.config_files import read_password

if TYPE_CHECKING:
    from signet.settings import Settings

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The longest wait a blocking command (BLPOP, XREAD BLOCK) may ask of Redis; longer waits
# are asked for in turns. A blocking client's reads time out this long plus the link's
# timeout after they are sent: a Redis that went silent without a reset (a proxy that
# stopped forwarding) is noticed by then, and the reader reconnects. 2 s: a worker's 1 s
# reads fit, and 1000 waiting callers cost Redis 500 commands a second.
LONGEST_BLOCK_SECONDS = 2.0

# TCP keepalive on every connection: the one thing that notices a dead host under a
# connection that waits without a read timeout (a worker's cancellation subscription).
# Idle 10 s, then probes 5 s apart; with TCP_USER_TIMEOUT (below) the first probe left
# unanswered ends the connection at the next: such a host is found within 15 s. Options
# a platform lacks (macOS names no TCP_KEEPIDLE) are left out.
_KEEPALIVE_OPTIONS = {
    option: value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if (option := getattr(socket, name, None)) is not None
}


def _socket_options(timeout_seconds: float) -> dict[int, int]:
    """TCP options of every connection: keepalive, and TCP_USER_TIMEOUT at the link's timeout.

    The second bounds how long the kernel goes on sending a command Redis has not
    acknowledged: without it, a command that timed out during a partition stays in the
    send queue of its socket (closed by redis-py, kept by the kernel) and is sent again
    for minutes, so Redis may run it once the partition heals, long after Signet answered
    503. It narrows that window to the link's timeout but does not close it (measured on
    separate network hosts: 4 of 4 generations refused during a cut of Redis ran after the
    heal without it, 2 of 4 with it); JobQueue cancels such jobs (_cancel_once_reachable).
    On a live connection it fails nothing a command's own timeout would not have failed,
    and it ends one whose keepalive probe goes unanswered that long.
    """
    options = dict(_KEEPALIVE_OPTIONS)
    if (user_timeout := getattr(socket, "TCP_USER_TIMEOUT", None)) is not None:  # Linux
        options[user_timeout] = max(1, int(timeout_seconds * 1000))
    return options


# The most connections one async client opens. redis-py's pools stop at 100 and then raise
# MaxConnectionsError (a ConnectionError: it reads as Redis down and trips the breaker), and
# 150 callers at once reached that (tests/redis/test_job_queue.py). A pool opens only what
# its peak concurrency needs; Redis accepts 10,000 clients by default.
_MAX_CONNECTIONS = 1024

# Calls through ``call_async`` in flight at once on one link; the others wait for a turn
# before their timeout starts. Opening a connection costs the event loop 0.9 to 2 ms of CPU
# (redis-py 8.1), and a burst of callers that each opened one ran their connect timeouts out
# together: with the 0.5 s timeout, 1000 calls at once failed 1874 times in 3000 with
# TimeoutError (bench/redis_burst.py), which the breaker read as Redis down (503 for every
# caller), and 150 failed in CI on a loaded machine. Redis answers each short call in well
# under a millisecond: with 64 in flight, the same bursts took 0.12 to 0.43 of the time.
_CALLS_IN_FLIGHT = 64

# Driver metadata (CLIENT SETINFO) shared by every connection: without it redis-py reads the
# installed package's metadata for each new connection, half of its CPU cost (1.9 ms of the
# event loop down to 0.9 ms, measured over 400 connections).
_DRIVER_INFO = DriverInfo()

# What a lost, refused or slow Redis raises; command errors (a bad script, a wrong
# type) are bugs and propagate as they are. A command the ACL user may not run counts as
# refused: a deployment whose ACL rules lag behind the code then answers 503 naming the
# cause, and its workers back off, instead of failing each request with a 500.
CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.NoPermissionError, OSError)


def _reconnect_once(retry_class):
    """After Redis restarts, every pooled connection is dead and fails its next command:
    reconnect and send it once more instead of failing a request per stale connection.
    Timeouts are not retried, so a hung Redis still fails within one timeout."""
    return retry_class(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class _RenewedOnceClosed:
    """An async connection that counts as disconnected once its socket has failed, so redis-py
    connects it anew before its next command.

    Why: a partition longer than the keepalive's idle time plus one probe interval (15 s)
    makes the kernel end each idle pooled connection (ETIMEDOUT; TCP_USER_TIMEOUT is the
    link's timeout). The event loop closes the transport and keeps the error on the
    stream, but redis-py's pool checks a connection only for unread data or EOF, and hands it
    out. Its next command then raised the error at once; on Python 3.11 ETIMEDOUT is a
    TimeoutError, which redis-py reports as "Timeout writing to socket" and does not retry,
    and the link's breaker refused every caller for a second. Measured on separate network
    hosts: the first call after a 17 s cut of Redis failed in 0.4 ms, and in the fault tests
    two 503s in 7 ms and 2 ms followed a heal (tests/redis/test_partitioned_connections.py).
    A subscription gains most: redis-py's PubSub read the failed stream again and again
    without yielding (the event loop stood still for 17.1 s after a 20 s cut, so a worker's
    heartbeats would stop), where it now reconnects and subscribes anew.

    redis-py asks ``is_connected`` before each command, not only when the pool hands a
    connection out, so state a connection carries between commands (WATCH, CLIENT
    TRACKING) would be lost silently on renewal: the link uses none."""

    @property
    def is_connected(self) -> bool:
        return super().is_connected and not self._transport_failed

    @property
    def _transport_failed(self) -> bool:
        return self._writer is not None and self._writer.transport.is_closing()

    def _forget_failed_transport(self) -> None:
        """Drop a transport that failed, so that no writer again means not connected, as the
        rest of redis-py assumes (disconnect returns early, __del__ warns about a writer)."""
        if self._transport_failed:
            self._close()

    async def connect_check_health(self, *args, **kwargs) -> None:
        self._forget_failed_transport()
        await super().connect_check_health(*args, **kwargs)

    async def disconnect(self, *args, **kwargs) -> None:
        self._forget_failed_transport()
        await super().disconnect(*args, **kwargs)


class _Connection(_RenewedOnceClosed, redis.asyncio.Connection):
    pass


class _SSLConnection(_RenewedOnceClosed, redis.asyncio.SSLConnection):
    pass


# The classes redis-py picks from a URL's scheme, and what the link uses instead. Unix
# sockets are left as they are: no partition ends them.
_RENEWING_CLASSES = {redis.asyncio.Connection: _Connection, redis.asyncio.SSLConnection: _SSLConnection}


def _renewing_class(connection_class: type) -> type:
    return _RENEWING_CLASSES.get(connection_class, connection_class)


def _with_renewing_pool(client: redis.asyncio.Redis) -> redis.asyncio.Redis:
    """``client``, whose pool makes connections that are renewed once closed (_RenewedOnceClosed).
    Set after from_url, where the URL's scheme picks the class and would override one passed in."""
    client.connection_pool.connection_class = _renewing_class(client.connection_pool.connection_class)
    return client


# Connection errors that a write tried again would meet again: a wrong password, a
# certificate the link does not trust.
_NOT_RETRIED = (redis.exceptions.AuthenticationError, ssl.SSLError)

SyncClient = redis.Redis | redis.cluster.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster


class RedisUnavailable(Exception):
    """Redis did not answer; the message names the cause, never the URL (it may hold a password).
    ``sent``: the command may have reached Redis (False: the breaker refused it before it left)."""

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class RedisModeError(Exception):
    """SIGNET_REDIS_CLUSTER does not match the Redis SIGNET_REDIS_URL names; one line, no URL."""


@dataclass(frozen=True)
class RedisCredentials:
    """How the link proves itself to Redis and checks Redis in turn. TLS options apply to
    ``rediss://`` URLs only; verification is never turned off."""

    ca_file: Path | None = None  # None: the system's CAs
    cert_file: Path | None = None  # a client certificate, for servers that ask for one
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"RedisCredentials(ca_file={self.ca_file}, cert_file={self.cert_file}, username={self.username!r})"

    def options(self, url: str) -> dict[str, Any]:
        """redis-py's keyword arguments for ``url``."""
        options: dict[str, Any] = {}
        if self.username is not None:
            options["username"] = self.username
        if self.password is not None:
            options["password"] = self.password
        if url.startswith("rediss://"):
            options |= {
                "ssl_cert_reqs": "required",
                "ssl_check_hostname": True,
                "ssl_ca_certs": _text(self.ca_file),
                "ssl_certfile": _text(self.cert_file),
                "ssl_keyfile": _text(self.key_file),
            }
        return options

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisCredentials:
        password_file = settings.redis_password_file
        return cls(
            settings.redis_ca_file,
            settings.redis_cert_file,
            settings.redis_key_file,
            settings.redis_username,
            None if password_file is None else read_password(password_file),
        )


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


class RedisLink:
    def __init__(
        self,
        url: str,
        namespace: str,
        timeout_seconds: float,
        retry_interval: float = 1.0,
        credentials: RedisCredentials | None = None,
        cluster: bool = False,
    ) -> None:
        """``cluster``: ``url`` names one node of a Redis Cluster; the clients learn the others from it."""
        self.namespace = namespace
        self.cluster = cluster
        self._url = url
        self._timeout = timeout_seconds
        self._retry_interval = retry_interval
        self._down_until = 0.0
        self._last_error = ""
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()  # not _lock: making a cluster client may take a timeout per node
        self._credentials = (credentials or RedisCredentials()).options(url)
        options = {
            "socket_timeout": timeout_seconds,
            "socket_connect_timeout": timeout_seconds,
            "socket_keepalive": True,
            "socket_keepalive_options": _socket_options(timeout_seconds),
            "driver_info": _DRIVER_INFO,
            **self._credentials,
        }
        self._options = options
        self._turns: asyncio.Semaphore | None = None  # call_async's; made on the link's event loop
        # Thread-pool routes (/detect) use the synchronous client, async routes the other.
        self._sync: SyncClient | None = None
        if cluster:
            self.async_client: AsyncClient = _async_cluster_client(url, options)
        else:
            self._sync = redis.Redis.from_url(url, retry=_reconnect_once(redis.retry.Retry), **options)
            self.async_client = _with_renewing_pool(
                redis.asyncio.Redis.from_url(
                    url, retry=_reconnect_once(redis.asyncio.retry.Retry), max_connections=_MAX_CONNECTIONS, **options
                )
            )

    @property
    def sync(self) -> SyncClient:
        """The synchronous client. A cluster's is made at its first use: redis-py's
        synchronous RedisCluster asks a node for the slot map as it is made, and a process
        must start while Redis is down. redis.ConnectionError while no node answers."""
        if self._sync is None:
            with self._sync_lock:
                if self._sync is None:
                    self._sync = _sync_cluster_client(self._url, self._options)
        return self._sync

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisLink:
        """The link of ``signet serve`` and ``signet worker`` (SIGNET_REDIS_URL must be set)."""
        assert settings.redis_url is not None
        credentials = RedisCredentials.from_settings(settings)
        timeout = settings.redis_timeout_seconds
        return cls(
            settings.redis_url,
            settings.redis_namespace,
            timeout,
            credentials=credentials,
            cluster=settings.redis_cluster,
        )

    def key(self, *parts: str) -> str:
        """``<namespace>:<parts>``: a key used alone, which a cluster places by its own hash."""
        return ":".join((self.namespace, *parts))

    def slot_key(self, *parts: str) -> str:
        """A key that scripts and transactions may use together with every other ``slot_key``
        of the namespace. On a cluster ``{<namespace>}:<parts>``: Redis hashes only the part
        in braces, so all of them share one slot (a cluster refuses a script or MULTI whose
        keys lie in several slots: CROSSSLOT). Else the same as ``key``, so single-Redis
        deployments keep the names earlier versions used (a rolling upgrade keeps its jobs)."""
        if self.cluster:
            return ":".join((f"{{{self.namespace}}}", *parts))
        return self.key(*parts)

    @property
    def blocking_read_seconds(self) -> float:
        """How long a blocking command may go unanswered before its connection counts as lost."""
        return LONGEST_BLOCK_SECONDS + self._timeout

    def blocking_client(self, read_timeout: bool = True, max_connections: int = _MAX_CONNECTIONS) -> AsyncClient:
        """A client for blocking reads (BLPOP, XREADGROUP BLOCK) of at most LONGEST_BLOCK_SECONDS,
        with its own pool of up to ``max_connections`` (one a waiting caller), so waits do not
        starve the short calls. Its reads time out after
        ``blocking_read_seconds`` (redis.TimeoutError, and the connection is dropped).
        Subscriptions on it wait without a read timeout (redis-py reads them so).

        ``read_timeout=False``, for code whose tasks are cancelled (a caller hanging up): no
        socket timeout, and each command goes through ``blocking_read``. With a socket
        timeout redis-py bounds every write with asyncio.wait_for, which on Python 3.11 loses
        a cancellation that lands as the write completes (CPython gh-86296; measured: 2 of 6
        cancellations 1.5 to 4 ms into a first BLPOP), and the caller then waits to its deadline."""
        if self.cluster:
            return self._cluster_blocking_client(read_timeout)
        client = redis.asyncio.Redis.from_url(
            self._url,
            socket_connect_timeout=self._timeout,
            socket_timeout=self.blocking_read_seconds if read_timeout else None,
            socket_keepalive=True,
            socket_keepalive_options=_socket_options(self._timeout),
            health_check_interval=30,
            retry=_reconnect_once(redis.asyncio.retry.Retry),
            max_connections=max_connections,
            driver_info=_DRIVER_INFO,
            **self._credentials,
        )
        return _with_renewing_pool(client)

    def _cluster_blocking_client(self, read_timeout: bool) -> redis.asyncio.cluster.RedisCluster:
        """``blocking_client`` on a cluster: the same options, one pool per node."""
        options = {
            **self._options,
            "socket_timeout": self.blocking_read_seconds if read_timeout else None,
            "health_check_interval": 30,
        }
        return _async_cluster_client(self._url, options)

    async def pubsub(self, client: AsyncClient) -> redis.asyncio.client.PubSub:
        """A subscription on ``client`` (use it with ``async with``). A cluster client reads the
        slot map first: redis-py's cluster pub/sub looks the channel's node up in it, and
        fails on an empty map (KeyError) rather than reading it."""
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            await client.initialize()
        return client.pubsub()

    async def blocking_read(self, command: Awaitable[T]) -> T:
        """Await a command of a ``blocking_client(read_timeout=False)``: redis.TimeoutError (and
        its connection dropped) if Redis leaves it unanswered for ``blocking_read_seconds``."""
        try:
            async with asyncio.timeout(self.blocking_read_seconds):
                return await command
        except TimeoutError:  # asyncio's; the cancelled read dropped its connection
            raise redis.TimeoutError(
                f"Redis left a blocking read unanswered for {self.blocking_read_seconds:g} s"
            ) from None

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
            raise RedisUnavailable(f"Redis is unreachable ({self._last_error})", sent=False)

    def record_failure(self, error: BaseException) -> RedisUnavailable:
        with self._lock:
            self._down_until = time.monotonic() + self._retry_interval
            self._last_error = _cause(error)
        return RedisUnavailable(f"Redis is unreachable ({self._last_error})")

    def record_success(self) -> None:
        self._down_until = 0.0

    def call(self, operation: Callable[[redis.Redis], T]) -> T:
        """Run ``operation`` on the synchronous client; connection failures become RedisUnavailable."""
        self.check()
        with self._failures_recorded():
            result = operation(self.sync)
        self.record_success()
        return result

    async def call_async(self, operation: Callable[[redis.asyncio.Redis], Awaitable[T]]) -> T:
        """Run ``operation`` on the async client, at most _CALLS_IN_FLIGHT at once; connection
        failures become RedisUnavailable. A call that waited for its turn while the breaker
        tripped is refused without being sent."""
        self.check()
        if self._turns is None:
            self._turns = asyncio.Semaphore(_CALLS_IN_FLIGHT)
        async with self._turns:
            self.check()
            with self._failures_recorded():
                result = await operation(self.async_client)
        self.record_success()
        return result

    async def write_retried(self, write: Callable[[], Awaitable[T]], for_seconds: float) -> T:
        """Await ``write`` until Redis answers it: after a lost or silent connection, try again
        one timeout later, for up to ``for_seconds``; the last failure propagates, and so does
        a refusal (ACL, password, TLS) at once, since trying again cannot change it. Only for
        writes whose repetition changes nothing, since one that timed out may have been
        applied. Outside the breaker: a worker's job must not fail because another call failed."""
        give_up = time.monotonic() + for_seconds
        while True:
            try:
                return await write()
            except CONNECTION_ERRORS as error:
                if _is_refusal(error) or isinstance(error, _NOT_RETRIED) or time.monotonic() + self._timeout >= give_up:
                    raise
                logger.warning("Redis did not answer a write (%s); trying it again", _cause(error))
            await asyncio.sleep(self._timeout)  # a Redis catching up is not sent the same write at once

    @contextlib.contextmanager
    def _failures_recorded(self) -> Iterator[None]:
        """Connection failures and refusals become RedisUnavailable, and trip the breaker."""
        try:
            yield
        except CONNECTION_ERRORS as error:
            raise self.record_failure(error) from error
        except redis.ResponseError as error:
            if not _is_refusal(error):
                raise  # a bug (a bad script, a wrong type)
            raise self.record_failure(error) from error

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
        if self._sync is not None:
            self._sync.close()


def _connection_error(error: redis.exceptions.RedisClusterException) -> BaseException:
    """When no node answers, redis-py's cluster clients raise RedisClusterException (caused
    by the connection error) as they read the slot map: made a redis.ConnectionError, so
    every caller that handles a lost Redis (CONNECTION_ERRORS) handles a lost cluster.
    Other RedisClusterExceptions (keys in several slots) are bugs and stay as they are."""
    if isinstance(error.__cause__, CONNECTION_ERRORS):
        # not redis-py's words: they would do (node addresses, never a password), but are long
        return redis.ConnectionError("no node of the Redis cluster answered")
    return error


class _AsyncCluster(redis.asyncio.cluster.RedisCluster):
    def __init__(self, *args, **kwargs) -> None:
        """Its nodes' connections are renewed once closed (_RenewedOnceClosed): the nodes it
        was given and those it learns from the slot map."""
        super().__init__(*args, **kwargs)
        manager = self.nodes_manager
        manager.connection_kwargs["connection_class"] = _renewing_class(manager.connection_kwargs["connection_class"])
        for node in manager.startup_nodes.values():
            node.connection_class = _renewing_class(node.connection_class)

    async def initialize(self, *args, **kwargs) -> _AsyncCluster:
        """Commands, pipelines and our pub/sub (RedisLink.pubsub) read the slot map through here."""
        try:
            return await super().initialize(*args, **kwargs)
        except redis.exceptions.RedisClusterException as error:
            raise _connection_error(error) from error


class _SyncCluster(redis.cluster.RedisCluster):
    def execute_command(self, *args, **kwargs):
        """Scripts (EVALSHA) come through here too; the link uses no synchronous pipelines."""
        try:
            return super().execute_command(*args, **kwargs)
        except redis.exceptions.RedisClusterException as error:
            raise _connection_error(error) from error


def _async_cluster_client(url: str, options: dict) -> _AsyncCluster:
    """Connects at its first command. Its retry also follows a failover's new slot map (a
    node that went away is a ConnectionError, then the map is read again); it retries a
    timeout once too, so a hung node fails within two timeouts, not one."""
    return _AsyncCluster.from_url(url, retry=_reconnect_once(redis.asyncio.retry.Retry), **options)


def _sync_cluster_client(url: str, options: dict) -> _SyncCluster:
    """Reads the slot map as it is made (redis.ConnectionError while no node answers)."""
    try:
        return _SyncCluster.from_url(url, retry=_reconnect_once(redis.retry.Retry), **options)
    except redis.exceptions.RedisClusterException as error:
        raise _connection_error(error) from error


def check_redis_mode(settings: Settings) -> None:
    """RedisModeError when SIGNET_REDIS_CLUSTER does not match what the Redis at
    SIGNET_REDIS_URL says of itself: on a cluster addressed as one Redis, every command for a
    key another node holds fails (MOVED) and every script of the queue too (CROSSSLOT). Silent
    while Redis does not answer: it cannot tell then, and the service starts without Redis."""
    url, cluster, timeout_seconds = settings.redis_url, settings.redis_cluster, settings.redis_timeout_seconds
    assert url is not None
    database = redis.connection.parse_url(url).get("db", 0)
    if cluster and database:
        raise RedisModeError(f"SIGNET_REDIS_URL names database {database}: a Redis Cluster has database 0 only")
    credentials = RedisCredentials.from_settings(settings).options(url)
    probe = redis.Redis.from_url(
        url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, **credentials
    )
    try:
        enabled = bool(probe.info("cluster").get("cluster_enabled"))
    except (*CONNECTION_ERRORS, redis.ResponseError):  # ResponseError: a user whose ACL forbids INFO
        return
    finally:
        probe.close()
    if enabled and not cluster:
        raise RedisModeError(
            "SIGNET_REDIS_URL names a node of a Redis Cluster: set SIGNET_REDIS_CLUSTER=true "
            "(without it, commands for keys on other nodes fail with MOVED and the queue's scripts with CROSSSLOT)"
        )
    if cluster and not enabled:
        raise RedisModeError("SIGNET_REDIS_CLUSTER is true but SIGNET_REDIS_URL names a Redis without cluster mode")


def _cause(error: BaseException) -> str:
    """The failure's kind, for messages and /readyz: its type, and whether TLS refused the
    server. Never redis-py's message, which names the host (and, for some errors, more)."""
    text = str(error)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"{type(error).__name__}: the server's TLS certificate is not trusted (SIGNET_REDIS_CA_FILE)"
    if isinstance(error, redis.AuthenticationError):
        return f"{type(error).__name__}: Redis refused the user name or password"
    if _is_refusal(error):
        return f"{type(error).__name__}: the Redis user may not run a command it needs (check its ACL rules)"
    return type(error).__name__


def _is_refusal(error: BaseException) -> bool:
    """A command the ACL user may not run; inside a script Redis reports it without NOPERM."""
    return isinstance(error, redis.exceptions.NoPermissionError) or (
        isinstance(error, redis.ResponseError) and "can't run this command" in str(error)
    )
