"""``GET /metrics``: the Prometheus exposition of ``signet.metrics``.

Never rate limited or authenticated (like the probes): it holds counts and timings only,
no text, key or tenant. Each scrape first samples the job queue in distributed mode
(see ``signet.queue.stats``), so its gauges are as fresh as the scrape.

With several API processes on one port (``signet.processes``) a scrape reaches one of
them, which answers for all: prometheus_client's multiprocess mode sums every process's
counters and histograms from PROMETHEUS_MULTIPROC_DIR. The queue's gauges read Redis, which
every process sees alike, so the answering one adds its own sample. The process collectors
(``process_*``, ``python_*``) describe one process and are left out there.
"""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from signet import metrics
from signet.api.state import ServiceState, StateDependency
from signet.queue.stats import read_stats
from signet.redis_link import RedisUnavailable

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics_route(request: Request, state: StateDependency) -> Response:
    await sample_queue(state)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    # In a thread: with several processes it reads and sums every process's file.
    return Response(await run_in_threadpool(encode, _registry()), media_type=content_type)


def _registry() -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)
    registry.register(metrics.QUEUE)
    return registry


async def sample_queue(state: ServiceState) -> None:
    queue = state.queue  # None when embedded
    if state.redis is None or queue is None:
        metrics.QUEUE.clear()
        return
    try:
        stats = await read_stats(queue, state.settings.job_claim_idle_seconds)
    except RedisUnavailable:
        metrics.QUEUE.unreachable()
        return
    metrics.QUEUE.update(
        depth=stats.depth,
        workers_busy=stats.workers_busy,
        workers_idle=stats.workers_idle,
        slots_busy=stats.slots_busy,
        slots_idle=stats.slots_idle,
    )
