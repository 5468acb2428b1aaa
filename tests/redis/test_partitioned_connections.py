"""A partition that outlasts TCP keepalive: the kernel ends every idle pooled connection,
and the link must connect anew after the heal, not fail its next calls (and open its
breaker) on the dead ones.

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
from signet.redis_link import RedisLink, RedisUnavailable

REDIS_PORT = 6379
TIMEOUT_SECONDS = 2.0
# The link's keepalive probes an idle connection after 10 s, then every 5 s; with
# TCP_USER_TIMEOUT at the link's timeout the kernel ends it at the second unanswered
# probe, 15 s in. 17 s leaves every idle connection ended, with a margin.
CUT_SECONDS = 17
POOLED = 4  # idle connections in each pool when the cut begins


@pytest.fixture
def hosts(tmp_path) -> Iterator[tuple[Host, Host]]:
    try:
        network = Network()
    except NetworkUnavailable as error:
        pytest.fail(f"this test cannot run here: {error}")
    with network:
        server, client = network.host("redis", 1), network.host("client", 2)
        command = ["redis-server", "--bind", server.address, "--port", str(REDIS_PORT),
                   "--protected-mode", "no", "--save", "", "--appendonly", "no"]  # fmt: skip
        process = subprocess.Popen(server.command(command), cwd=tmp_path, stdout=subprocess.DEVNULL)
        try:
            yield server, client
        finally:
            process.terminate()
            process.wait(10)


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


def test_connections_a_partition_ended_are_replaced_after_the_heal(hosts):
    server, client = hosts

    async def work() -> list[tuple[str, float, str]]:
        link = RedisLink(f"redis://{server.address}:{REDIS_PORT}/0", "partition", TIMEOUT_SECONDS)
        waiter = link.blocking_client(read_timeout=False)
        deadline = time.monotonic() + 10
        while not await link.ping():  # redis-server may still be starting
            assert time.monotonic() < deadline, "redis-server did not start"
            await asyncio.sleep(0.1)

        def empty_read():
            return link.blocking_read(waiter.blpop(["partition:none"], timeout=0.05))

        # Fill each pool with idle connections, as a busy API's are.
        await asyncio.gather(*(link.call_async(lambda c: c.ping()) for _ in range(POOLED)))
        await asyncio.gather(*(empty_read() for _ in range(POOLED)))
        link.call(lambda c: c.ping())
        server.cut()
        try:
            await asyncio.sleep(CUT_SECONDS)
        finally:
            server.heal()
        calls = {
            "short call": lambda: link.call_async(lambda c: c.ping()),
            "blocking read": empty_read,
            "thread-pool call": lambda: asyncio.to_thread(link.call, lambda c: c.ping()),
        }
        outcomes = []
        for name, call in calls.items():
            for _ in range(POOLED):  # as many calls as there were idle connections
                started = time.monotonic()
                try:
                    await call()
                    outcome = "answered"
                except (RedisUnavailable, redis.RedisError, OSError) as error:
                    outcome = f"{type(error).__name__}: {error}"
                outcomes.append((name, time.monotonic() - started, outcome))
        outcomes.append(("breaker", 0.0, "closed" if link.is_up else "open"))
        await waiter.aclose()
        await link.aclose()
        return outcomes

    outcomes = _on(client, work)
    assert all(outcome in ("answered", "closed") for _, _, outcome in outcomes), outcomes
    # Each call is one round trip on a new connection, not a timeout waited out.
    assert max(seconds for _, seconds, _ in outcomes) < TIMEOUT_SECONDS / 2, outcomes
