"""Fixtures of the queue tests: a real Redis under a namespace of their own, a queue on
it, and in-process workers that are stopped after each test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from harness.services import redis_test_url, signer_for_test_keys
from signet.queue.consumer import JobWorker, WorkerOptions
from signet.queue.jobs import JobSigner
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink

CLAIM_IDLE_SECONDS = 0.6  # take-over after 0.6 s idle, heartbeats every 0.2 s


def worker_options(
    name: str = "w1",
    concurrency: int = 4,
    max_deliveries: int = 2,
    retention_seconds: float = 3600.0,
    claim_idle_seconds: float = CLAIM_IDLE_SECONDS,
) -> WorkerOptions:
    return WorkerOptions(name, concurrency, claim_idle_seconds, max_deliveries, 1.0, retention_seconds)


@pytest_asyncio.fixture
async def link(redis_namespace) -> AsyncIterator[RedisLink]:
    link = RedisLink(redis_test_url(), redis_namespace, timeout_seconds=0.5)
    yield link
    await link.aclose()


@pytest_asyncio.fixture
async def queue(link) -> AsyncIterator[JobQueue]:
    queue = JobQueue(link, max_jobs=10, retry_after_seconds=2, signer=signer_for_test_keys())
    yield queue
    await queue.aclose()


@pytest_asyncio.fixture
async def start_worker(link) -> AsyncIterator[Callable[..., Awaitable[JobWorker]]]:
    """Starts workers on ``link``, or on the link ``on`` (options as worker_options takes them;
    ``signer``: the test keys' by default); every one is stopped after the test."""
    running: list[tuple[asyncio.Event, asyncio.Task]] = []

    async def start(
        handlers: dict, signer: JobSigner | None = None, on: RedisLink | None = None, **options
    ) -> JobWorker:
        signer = signer or signer_for_test_keys()  # the queue fixture's
        worker = JobWorker(on or link, handlers, worker_options(**options), signer=signer)
        stop = asyncio.Event()
        running.append((stop, asyncio.create_task(worker.run(stop))))
        await asyncio.sleep(0.05)  # the consumer group exists once run() has begun
        return worker

    yield start
    for stop, task in running:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
