"""A partition that outlasts TCP keepalive: the kernel ends every idle pooled connection,
and the link must connect anew after the heal, not fail its next calls (and open its
breaker) on the dead ones, nor spin on a dead subscription.

Real hosts and a real partition: Redis and the client each in a network namespace of
their own (harness/netns.py), cut with iptables. Needs root, iproute2 and iptables, as CI
has; without them the test fails, never skips."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from harness.netns import Host, Network, NetworkUnavailable
from harness.redis_servers import redis_on_host
from signet.redis_link import RedisLink, RedisUnavailable

REDIS_PORT = 6379
TIMEOUT_SECONDS = 2.0
# The link's keepalive probes an idle connection after 10 s, then every 5 s; with
# TCP_USER_TIMEOUT at the link's timeout the kernel ends it at the second unanswered
# probe, 15 s in (timers may fire up to about 1.5 s late). The test checks they are gone.
CUT_SECONDS = 20
POOLED = 4  # idle connections in each pool when the cut begins


@pytest.fixture
def hosts(tmp_path) -> Iterator[tuple[Host, Host]]:
    try:
        network = Network()
    except NetworkUnavailable as error:
        pytest.fail(f"this test cannot run here: {error}")
    with network:
        server, client = network.host("redis", 1), network.host("client", 2)
        with redis_on_host(server, REDIS_PORT, tmp_path):
            yield server, client


def _on(host: Host, work) -> object:
    """Run coroutine function ``work`` on an event loop in a thread inside ``host``'s network."""
    result: dict[str, object] = {}

    def run() -> None:
        host.join_this_thread()
        try:
            result["value"] = asyncio.run(work())
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _established(host: Host, server: Host) -> int:
    """TCP connections from ``host`` to Redis that its kernel still counts as established."""
    command = host.command(["ss", "-Htn", "state", "established", "dst", f"{server.address}:{REDIS_PORT}"])
    return len(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines())


class _Listener:
    """A subscription kept as the worker keeps its cancellation listener
    (JobWorker._cancellation_listener): subscribe, listen, subscribe again after a failure."""

    def __init__(self, link: RedisLink, client, channel: str) -> None:
        self.link, self.client, self.channel = link, client, channel
        self.subscribed = asyncio.Event()
        self.messages: list[bytes] = []

    async def run(self) -> None:
        while True:
            try:
                async with await self.link.pubsub(self.client) as pubsub:
                    await pubsub.subscribe(self.channel)
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self.messages.append(message["data"])
            except (redis.RedisError, OSError):
                await asyncio.sleep(0.5)


async def _tick_lateness(gaps: list[float]) -> None:
    """Append how late each 0.1 s tick of the event loop came: a loop held up shows here."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(0.1)
        gaps.append(time.monotonic() - started - 0.1)


def test_connections_a_partition_ended_are_replaced_after_the_heal(hosts):
    server, client = hosts
    checks: dict[str, object] = {}

    async def work() -> list[tuple[str, float, str]]:
        link = RedisLink(f"redis://{server.address}:{REDIS_PORT}/0", "partition", TIMEOUT_SECONDS)
        waiter = link.blocking_client(read_timeout=False)
        subscriber = link.blocking_client(read_timeout=False)
        deadline = time.monotonic() + 10
        while not await link.ping():  # redis-server may still be starting
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.1)

        def empty_read():
            return link.blocking_read(waiter.blpop(["partition:none"], timeout=0.05))

        # Fill each pool with idle connections, as a busy API's are, and subscribe, as a worker does.
        await asyncio.gather(*(link.call_async(lambda c: c.ping()) for _ in range(POOLED)))
        await asyncio.gather(*(empty_read() for _ in range(POOLED)))
        link.call(lambda c: c.ping())
        listener = _Listener(link, subscriber, "partition:channel")
        listening = asyncio.create_task(listener.run())
        await asyncio.wait_for(listener.subscribed.wait(), 5)
        listener.subscribed.clear()
        gaps: list[float] = []
        ticking = asyncio.create_task(_tick_lateness(gaps))
        checks["established before the cut"] = await asyncio.to_thread(_established, client, server)
        server.cut()
        try:
            await asyncio.sleep(CUT_SECONDS)
            checks["established at the heal"] = await asyncio.to_thread(_established, client, server)
        finally:
            server.heal()
        # As many calls at once as each pool held idle connections, as callers come after a heal.
        calls = {
            "short call": lambda: link.call_async(lambda c: c.ping()),
            "blocking read": empty_read,
            "thread-pool call": lambda: asyncio.to_thread(link.call, lambda c: c.ping()),
        }

        async def timed(name, call) -> tuple[str, float, str]:
            started = time.monotonic()
            try:
                await call()
                outcome = "answered"
            except (RedisUnavailable, redis.RedisError, OSError) as error:
                outcome = f"{type(error).__name__}: {error}"
            return name, time.monotonic() - started, outcome

        outcomes = []
        for name, call in calls.items():
            outcomes += await asyncio.gather(*(timed(name, call) for _ in range(POOLED)))
        outcomes.append(("breaker", 0.0, "closed" if link.is_up else "open"))
        # The subscription is back: a message published after the heal reaches it.
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        checks["publish"] = await timed(
            "publish", lambda: link.call_async(lambda c: c.publish("partition:channel", b"after the heal"))
        )
        deadline = time.monotonic() + 5
        while not listener.messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        checks["messages"] = listener.messages
        checks["largest gap"] = max(gaps)
        for task in (listening, ticking):
            task.cancel()
        await asyncio.gather(listening, ticking, return_exceptions=True)
        for closing in (waiter, subscriber, link):
            await closing.aclose()
        return outcomes

    outcomes = _on(client, work)
    # The partition did end the pooled connections (else this test shows nothing).
    assert checks["established before the cut"] >= 2 * POOLED + 2, checks
    assert checks["established at the heal"] == 0, checks
    assert all(outcome in ("answered", "closed") for _, _, outcome in outcomes), outcomes
    # Each call is one round trip on a new connection, not a timeout waited out.
    assert max(seconds for _, seconds, _ in outcomes) < TIMEOUT_SECONDS / 2, outcomes
    assert checks["messages"] == [b"after the heal"], checks
    # Nothing held the event loop: a worker's heartbeats would have stopped with it.
    assert checks["largest gap"] < 1.0, checks
