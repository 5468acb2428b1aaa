"""The queue's numbers for ``GET /metrics``: its depth, and the workers busy or idle.

Workers serve no API (only their engine's metrics), but each writes a heartbeat hash
every few seconds (``JobWorker._heartbeat``: ``running``, ``concurrency``, counters). The API reads the
hashes of the workers seen within the liveness window at each scrape: one ZRANGEBYSCORE
and one pipelined round trip, however many workers there are.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from signet.queue.producer import JobQueue


@dataclass(frozen=True)
class QueueStats:
    depth: int  # jobs waiting or running
    workers_busy: int  # running at least one job
    workers_idle: int
    slots_busy: int  # jobs running, over all workers
    slots_idle: int  # jobs the workers could start now


def summarize(depth: int, heartbeats: Sequence[Sequence[bytes | str | None]]) -> QueueStats:
    """``heartbeats``: (running, concurrency) of each live worker, as HMGET returns them
    (None for a field, or a whole hash, that has expired)."""
    workers_busy = workers_idle = slots_busy = slots_idle = 0
    for running_field, concurrency_field in heartbeats:
        running, concurrency = _count(running_field), _count(concurrency_field)
        if running > 0:
            workers_busy += 1
        else:
            workers_idle += 1
        slots_busy += running
        slots_idle += max(0, concurrency - running)
    return QueueStats(depth, workers_busy, workers_idle, slots_busy, slots_idle)


def _count(field: bytes | str | None) -> int:
    try:
        return max(0, int(field)) if field is not None else 0
    except ValueError:
        return 0


async def read_stats(queue: JobQueue, within_seconds: float) -> QueueStats:
    """RedisUnavailable when Redis does not answer (at once while its breaker is open)."""
    keys = queue.keys
    since = time.time() - within_seconds

    async def read(client) -> tuple[int, list]:
        names = await client.zrangebyscore(keys.workers_alive, since, "+inf")
        async with client.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.stream)
            for name in names:
                pipe.hmget(keys.worker_stats(name.decode(errors="replace")), "running", "concurrency")
            replies = await pipe.execute()
        return replies[0], replies[1:]

    depth, heartbeats = await queue.link.call_async(read)
    return summarize(depth, heartbeats)
