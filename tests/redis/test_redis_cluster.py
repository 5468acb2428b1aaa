"""Signet on a real Redis Cluster (three masters of redis-server on loopback ports, started
once for this module): the queue end to end with stand-in handlers, as the other tests
here run it, the detection cache and rate limits, where the keys land, and the check of
SIGNET_REDIS_CLUSTER against what Redis says of itself."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from harness.redis_cluster import RunningCluster, running_redis_cluster
from harness.services import free_port, redis_test_url, signer_for_test_keys
from signet import cli
from signet.cache.detection import RedisDetectionCache
from signet.cache.rate_limit import RedisRateLimiter
from signet.engine.protocol import EngineError, EngineStatus
from signet.queue.jobs import Job, QueueKeys
from signet.queue.producer import JobQueue
from signet.queue.stats import QueueStats, read_stats
from signet.redis_link import RedisLink, RedisModeError, RedisUnavailable, check_redis_mode
from signet.settings import Settings
from tests.redis.test_job_queue import depth_is, echo, streaming_handler, wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[RunningCluster]:
    with running_redis_cluster() as running:
        yield running


@pytest_asyncio.fixture
async def link(cluster) -> AsyncIterator[RedisLink]:
    """Replaces conftest's ``link``, so its ``queue`` and ``start_worker`` run on the cluster."""
    link = RedisLink(cluster.url, f"signet-test-{uuid.uuid4().hex}", timeout_seconds=0.5, cluster=True)
    yield link
    await link.aclose()


def keys_by_node(cluster: RunningCluster, namespace: str) -> dict[int, list[str]]:
    """The namespace's keys each master holds (by port)."""
    found = {}
    for port in cluster.ports:
        listed = cluster.cli("--scan", "--pattern", f"*{namespace}*", port=port).split()
        if listed:
            found[port] = listed
    return found


def slot_of(cluster: RunningCluster, key: str) -> int:
    return int(cluster.cli("CLUSTER", "KEYSLOT", key))


@pytest.mark.asyncio
async def test_a_job_round_trip_keeps_the_queue_in_one_slot(cluster, link, queue, start_worker, caplog):
    worker = await start_worker({"echo": echo})
    assert await queue.run("echo", {"n": 1}, timeout_seconds=10) == {"echo": {"n": 1}}
    assert await queue.depth() == 0 and worker.counters.completed == 1
    # the worker's heartbeat (a pipeline of three keys) reaches the API's metrics; waited for,
    # as a beat while the job ran says "busy" until the next beat 0.2 s later
    idle = QueueStats(depth=0, workers_busy=0, workers_idle=1, slots_busy=0, slots_idle=4)

    async def reported_idle() -> bool:
        return await read_stats(queue, 10) == idle

    await wait_until(reported_idle, timeout=5)
    # nor did its loops (take-over, expiry) fail on the cluster
    assert [record.message for record in caplog.records if record.levelno >= logging.ERROR] == []

    held = keys_by_node(cluster, link.namespace)
    assert len(held) == 1  # one node holds the whole queue
    names = next(iter(held.values()))
    # stream, heartbeat set and hash, the job's result and reply at least
    assert {f"{{{link.namespace}}}:jobs", f"{{{link.namespace}}}:workers:alive"} <= set(names)
    assert any(name.startswith(f"{{{link.namespace}}}:result:") for name in names)
    assert {slot_of(cluster, name) for name in names} == {slot_of(cluster, link.namespace)}


def test_every_queue_key_is_tagged_with_the_namespace(link):
    keys = QueueKeys(link)
    names = [
        keys.stream,
        keys.group,
        keys.dead_letters,
        keys.cancel_channel,
        keys.workers_alive,
        keys.worker_stats("w1"),
        keys.reply("r"),
        keys.result("r"),
        keys.cancelled("r"),
        keys.tenant_jobs("t"),
        keys.deltas("r"),
    ]
    assert all(name.startswith(f"{{{link.namespace}}}:") for name in names)
    assert link.key("detect", "d") == f"{link.namespace}:detect:d"  # used alone: left to spread


@pytest.mark.asyncio
async def test_a_streamed_job_yields_its_pieces_in_order(link, queue, start_worker):
    await start_worker({"stream": streaming_handler(link, 5)})
    pieces = [piece async for piece in await queue.stream("stream", {}, 10)]
    assert pieces == [{"index": index} for index in range(5)]
    assert await queue.depth() == 0


@pytest.mark.asyncio
async def test_a_malformed_entry_goes_to_the_dead_letters(link, queue, start_worker):
    """Setting it aside is a transaction (MULTI) over the job stream and the dead letters.
    An entry no API wrote fails its signature check first."""
    await start_worker({"echo": echo})
    await link.async_client.xadd(queue.keys.stream, {"what": "not a job"})
    await wait_until(depth_is(queue, 0))
    dead = await link.async_client.xrange(queue.keys.dead_letters)
    assert len(dead) == 1 and b"signature is missing or wrong" in dead[0][1][b"reason"]


@pytest.mark.asyncio
async def test_a_caller_that_goes_away_cancels_its_running_job(queue, start_worker):
    """The worker hears of it on its subscription to the cancel channel (pub/sub on a cluster)."""
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(job: Job) -> dict:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return job.payload

    await start_worker({"forever": forever})
    caller = asyncio.create_task(queue.run("forever", {}, 60))
    await asyncio.wait_for(started.wait(), 10)
    began = time.monotonic()
    caller.cancel()
    await asyncio.wait_for(cancelled.wait(), 5)
    assert time.monotonic() - began < 1.0  # told at once, not found at the deadline
    await wait_until(depth_is(queue, 0))  # acknowledged: nobody will run it again


@pytest.mark.asyncio
async def test_a_tenant_over_its_share_gets_503_while_others_still_queue(link):
    queue = JobQueue(link, max_jobs=4, retry_after_seconds=3, tenant_share=0.25, signer=signer_for_test_keys())
    held = [asyncio.create_task(queue.run("echo", {}, 30, "moderation"))]  # no worker: it stays queued
    try:
        await wait_until(depth_is(queue, 1))
        assert await queue.tenant_depth("moderation") == 1
        with pytest.raises(EngineError) as refused:
            await queue.run("echo", {}, 30, "moderation")
        assert refused.value.status is EngineStatus.UNAVAILABLE and "holds its share" in refused.value.detail
        held += [asyncio.create_task(queue.run("echo", {}, 30, tenant)) for tenant in ("research", None)]
        await wait_until(depth_is(queue, 3))
    finally:
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        await queue.aclose()
    assert await queue.tenant_depth("moderation") == 0  # the caller gone, its place is free again


def test_the_detection_cache_spreads_its_entries_over_the_nodes(cluster, link):
    cache = RedisDetectionCache(link, ttl_seconds=60)
    for index in range(30):
        cache.put(f"digest-{index}", f"result {index}".encode())
    assert [cache.get(f"digest-{index}") for index in range(30)] == [f"result {index}".encode() for index in range(30)]
    # 30 keys on one of three nodes by chance: 3 * (1/3)**30, never
    assert len(keys_by_node(cluster, link.namespace)) > 1


def test_rate_limits_hold_on_a_cluster(link):
    limiter = RedisRateLimiter(link, per_minute=60, burst=3)
    decisions = [limiter.acquire(f"caller-{index % 2}") for index in range(8)]
    allowed = [decision.allowed for decision in decisions]
    assert allowed == [True] * 6 + [False] * 2  # three each, then each is refused
    assert 0 < decisions[-1].retry_after_seconds <= 1.0


async def assert_unreachable(link: RedisLink, secret: str = "hunter2") -> None:
    """Calls fail as on a single Redis that is down: RedisUnavailable, a failed ping, a 503;
    no message names the URL's password."""
    with pytest.raises(RedisUnavailable) as sync_error:
        link.call(lambda client: client.get("x"))
    link.record_success()  # else the breaker refuses the next calls before they reach the client
    with pytest.raises(RedisUnavailable) as async_error:
        await link.call_async(lambda client: client.get("x"))
    assert not await link.ping()
    link.record_success()
    queue = JobQueue(link, max_jobs=10, retry_after_seconds=2, signer=signer_for_test_keys())
    with pytest.raises(EngineError) as refused:
        await queue.run("echo", {}, 5)
    assert refused.value.status is EngineStatus.UNAVAILABLE
    await queue.aclose()
    messages = [str(sync_error.value), str(async_error.value), refused.value.detail, link.last_error]
    assert not any(secret in message for message in messages)


@pytest.mark.asyncio
async def test_a_cluster_link_starts_while_no_node_answers():
    """The synchronous cluster client reads the slot map when it is made: made at first
    use, a process starts without Redis. redis-py raises RedisClusterException when no
    node answers; the link's callers see a lost connection, as with a single Redis."""
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    link = RedisLink(url, "signet", timeout_seconds=0.2, cluster=True)
    await assert_unreachable(link)
    link.record_success()
    limiter = RedisRateLimiter(link, per_minute=60, burst=1)
    assert limiter.acquire("caller").allowed  # fails open, as on a single Redis that is down
    assert limiter.acquire("caller").allowed
    await link.aclose()


@pytest.mark.asyncio
async def test_a_cluster_that_goes_away_is_a_lost_connection():
    with running_redis_cluster() as lost:
        link = RedisLink(lost.url, "signet", timeout_seconds=0.2, cluster=True)
        link.call(lambda client: client.set("a", 1))
        await link.call_async(lambda client: client.set("b", 1))
    await assert_unreachable(link)
    await link.aclose()


def _settings(url: str, cluster: bool, timeout_seconds: float) -> Settings:
    return Settings(redis_url=url, redis_cluster=cluster, redis_timeout_seconds=timeout_seconds)


def test_a_cluster_named_as_one_redis_is_refused_at_start(cluster):
    with pytest.raises(RedisModeError, match="set SIGNET_REDIS_CLUSTER=true"):
        check_redis_mode(_settings(cluster.url, False, 1.0))
    with pytest.raises(RedisModeError, match="names a Redis without cluster mode"):
        check_redis_mode(_settings(redis_test_url(), True, 1.0))
    check_redis_mode(_settings(cluster.url, True, 1.0))
    check_redis_mode(_settings(redis_test_url(), False, 1.0))
    check_redis_mode(_settings(f"redis://127.0.0.1:{free_port()}/0", True, 0.2))  # cannot tell: starts
    with pytest.raises(RedisModeError, match="names database 2: a Redis Cluster has database 0 only"):
        check_redis_mode(_settings(cluster.url.removesuffix("/0") + "/2", True, 1.0))


def test_a_worker_pointed_at_a_cluster_without_the_setting_exits_with_one_line(cluster, monkeypatch, capsys):
    password_url = cluster.url.replace("redis://", "redis://:hunter2-secret@")
    monkeypatch.setenv("SIGNET_REDIS_URL", password_url)
    monkeypatch.delenv("SIGNET_REDIS_CLUSTER", raising=False)
    assert cli.main(["worker"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "SIGNET_REDIS_CLUSTER=true" in error
    assert "hunter2" not in error and "Traceback" not in error
