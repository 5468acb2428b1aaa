"""A burst of callers on a fresh link: every short call at once, as when a pod starts taking
traffic or a queue drains into many waiting callers. Side by side in one run, alternating:

- ``link``: ``RedisLink.call_async`` as the service calls Redis (calls in flight bounded,
  driver metadata shared by every connection);
- ``unbounded``: the same calls straight on a redis-py client made as before (a connection
  each, each reading the package's metadata), which is what the link did until now.

    .venv/bin/python -m bench.redis_burst [--callers 400 1000] [--rounds 3] [--timeout 0.5]

Reports per mode and burst size: calls that failed, wall time of the burst, and the event
loop's CPU time, with the link's ratios to the unbounded client. Uses the local Redis
(SIGNET_TEST_REDIS_URL or 127.0.0.1:6379); each burst gets a new client, so every call of
the first turn opens its connection.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

import redis.asyncio

from harness.services import redis_test_url
from signet.redis_link import RedisLink


async def _burst(call, callers: int) -> tuple[int, float, float]:
    """(failed calls, wall seconds, CPU seconds) of ``callers`` calls started together."""
    wall, cpu = time.monotonic(), time.process_time()
    outcomes = await asyncio.gather(*(call() for _ in range(callers)), return_exceptions=True)
    failed = sum(isinstance(outcome, BaseException) for outcome in outcomes)
    return failed, time.monotonic() - wall, time.process_time() - cpu


async def through_link(callers: int, timeout: float) -> tuple[int, float, float]:
    link = RedisLink(redis_test_url(), f"bench-{uuid.uuid4().hex[:8]}", timeout_seconds=timeout)
    try:
        return await _burst(lambda: link.call_async(lambda client: client.ping()), callers)
    finally:
        await link.aclose()


async def unbounded(callers: int, timeout: float) -> tuple[int, float, float]:
    client = redis.asyncio.Redis.from_url(
        redis_test_url(), socket_timeout=timeout, socket_connect_timeout=timeout, max_connections=1024
    )
    try:
        return await _burst(client.ping, callers)
    finally:
        await client.aclose()


async def main(callers: list[int], rounds: int, timeout: float) -> None:
    modes = {"link": through_link, "unbounded": unbounded}
    for size in callers:
        totals = {name: [0, 0.0, 0.0] for name in modes}
        for _ in range(rounds):
            for name, run in modes.items():
                for index, value in enumerate(await run(size, timeout)):
                    totals[name][index] += value
        for name, (failed, wall, cpu) in totals.items():
            print(
                f"{size:5d} callers  {name:9s}  failed {failed:4d}/{size * rounds}  "
                f"wall {wall / rounds * 1000:7.1f} ms  loop CPU {cpu / rounds * 1000:7.1f} ms"
            )
        link, other = totals["link"], totals["unbounded"]
        print(f"{size:5d} callers  link/unbounded: wall {link[1] / other[1]:.2f}  loop CPU {link[2] / other[2]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=0.5, help="the link's timeout (SIGNET_REDIS_TIMEOUT_SECONDS)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.callers, arguments.rounds, arguments.timeout))
