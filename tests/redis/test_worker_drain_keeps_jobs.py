"""A draining worker (its stop event set, as SIGTERM sets it) keeps the jobs it runs: it
goes on reporting on them, so no live worker's job is taken over, and on hearing their
callers' cancellations. It takes no new job, and what it has not finished when its
drain_seconds run out goes to other workers.

Timing: take-over after 1 s idle, heartbeats every 0.33 s, so a heartbeat would have to be
late by 0.67 s for a live job to be taken: the event loop of a test process does not
stall that long. A slow machine can only make jobs last longer, never shorter, which
these tests tolerate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import pytest_asyncio

from harness.services import signer_for_test_keys
from signet.queue.consumer import JobWorker, PiecePublisher, WorkerOptions
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink

CLAIM_IDLE_SECONDS = 1.0
JOB_SECONDS = 3.0  # runs on for 2 s and more after its take-over would come, were A silent


@dataclass
class Started:
    worker: JobWorker
    stop: asyncio.Event
    task: asyncio.Task


StartWorker = Callable[..., Awaitable[Started]]


@pytest_asyncio.fixture
async def start(link) -> AsyncIterator[StartWorker]:
    """Starts workers whose stop events the test holds; every one is stopped after the test."""
    started: list[Started] = []

    async def start_one(name: str, handlers: dict, drain_seconds: float) -> Started:
        options = WorkerOptions(name, 4, CLAIM_IDLE_SECONDS, 3, drain_seconds, 3600.0)
        worker, stop = JobWorker(link, handlers, options, signer=signer_for_test_keys()), asyncio.Event()
        one = Started(worker, stop, asyncio.create_task(worker.run(stop)))
        started.append(one)
        await asyncio.sleep(0.05)  # the consumer group exists once run() has begun
        return one

    yield start_one
    for one in started:
        one.stop.set()
    await asyncio.wait_for(asyncio.gather(*(one.task for one in started)), timeout=20)


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def echo(job: Job) -> dict:
    return job.payload


@pytest.mark.asyncio
async def test_a_draining_workers_long_job_is_not_run_again_elsewhere(link: RedisLink, queue: JobQueue, start):
    publisher = PiecePublisher(link)
    runs: list[str] = []
    ended_at: list[float] = []

    def slow_stream(worker_name: str):
        async def handler(job: Job) -> dict:
            runs.append(worker_name)
            pieces = 12
            for index in range(pieces):
                await publisher.publish(job, worker_name, index + 1, {"index": index})  # each run is its own attempt
                await asyncio.sleep(JOB_SECONDS / pieces)
            ended_at.append(time.monotonic())
            return {"pieces": pieces}

        return handler

    a = await start("A", {"stream": slow_stream("A")}, drain_seconds=6.0)
    stream = await queue.stream("stream", {}, 30)
    received = [await asyncio.wait_for(stream.__anext__(), 10)]  # A runs it: no other worker exists yet
    b = await start("B", {"stream": slow_stream("B"), "echo": echo}, drain_seconds=6.0)
    a.stop.set()
    stopped_at = time.monotonic()
    # A stream restarted by another worker ends in 502 (EngineStatus.FAILED) here.
    received += [piece async for piece in stream]

    assert received == [{"index": index} for index in range(12)]
    assert runs == ["A"]
    assert b.worker.counters.reclaimed == 0
    await wait_until(a.task.done, 3.0, "A to leave once its job ended")
    left_at = time.monotonic()
    assert left_at - stopped_at < 6.0  # the drain ended with the job, not at drain_seconds
    assert left_at - ended_at[0] < 1.5
    assert a.worker.counters.completed == 1
    # What it left in Redis counts the job its drain finished (its heartbeats ran before the end).
    stats = await link.async_client.hgetall(queue.keys.worker_stats("A"))
    assert (stats[b"completed"], stats[b"running"]) == (b"1", b"0")
    assert await queue.depth() == 0
    assert await asyncio.wait_for(queue.run("echo", {"n": 1}, 10), 10) == {"n": 1}  # B was at work all along


@pytest.mark.asyncio
async def test_a_callers_cancellation_reaches_a_draining_worker(queue: JobQueue, start):
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def forever(job: Job) -> dict:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return {}

    a = await start("A", {"forever": forever}, drain_seconds=10.0)
    caller = asyncio.create_task(queue.run("forever", {}, 60))
    await asyncio.wait_for(started.wait(), 10)
    a.stop.set()
    await asyncio.sleep(0.2)  # not a check: lets A begin its drain before the caller goes
    caller.cancel()
    await asyncio.wait_for(cancelled.wait(), 5)  # else it would run on until drain_seconds
    await wait_until(a.task.done, 3.0, "A to leave once its only job was cancelled")
    assert await queue.depth() == 0  # acknowledged: no other worker will run it


@pytest.mark.asyncio
async def test_a_drained_worker_leaves_its_unfinished_jobs_and_the_queue_to_others(
    link: RedisLink, queue: JobQueue, start
):
    started = asyncio.Event()
    runs: list[tuple[str, int]] = []

    async def hang(job: Job) -> dict:
        runs.append(("A", job.payload["n"]))
        started.set()
        await asyncio.sleep(3600)
        return {}

    async def answer(job: Job) -> dict:
        runs.append(("B", job.payload["n"]))
        return {"by": "B", "n": job.payload["n"]}

    drain_seconds = 1.0
    a = await start("A", {"job": hang}, drain_seconds=drain_seconds)
    first = asyncio.create_task(queue.run("job", {"n": 1}, 30))
    await asyncio.wait_for(started.wait(), 10)
    a.stop.set()
    stopped_at = time.monotonic()
    second = asyncio.create_task(queue.run("job", {"n": 2}, 30))  # queued while A drains: A must not take it
    await wait_until(a.task.done, drain_seconds + 2.0, "A to leave at the end of its drain")
    assert time.monotonic() - stopped_at >= drain_seconds  # it waited for its job that long
    assert await link.async_client.zscore(queue.keys.workers_alive, "A") is None
    assert not first.done() and not second.done()

    b = await start("B", {"job": answer}, drain_seconds=drain_seconds)
    assert await asyncio.wait_for(first, 10) == {"by": "B", "n": 1}  # taken over once idle
    assert await asyncio.wait_for(second, 10) == {"by": "B", "n": 2}
    assert sorted(runs) == [("A", 1), ("B", 1), ("B", 2)]
    assert b.worker.counters.reclaimed >= 1  # job 1; job 2 too if A's last read had taken it
    assert await queue.depth() == 0


@pytest.mark.asyncio
async def test_a_worker_whose_heartbeat_was_late_does_not_take_over_its_own_job(queue: JobQueue, start, monkeypatch):
    """A worker's heartbeat can come late (a busy machine, a stalled loop): its own running job
    then looks idle, and its own reclaim loop took it over and ran it a second time alongside
    (CI: tests/api/test_score_queue.py saw a job run twice and one copy left running)."""
    runs = []

    async def slow(job: Job) -> dict:
        runs.append(time.monotonic())
        await asyncio.sleep(4 * CLAIM_IDLE_SECONDS)
        return {}

    async def never(self: JobWorker) -> None:
        pass  # as if every heartbeat came too late

    monkeypatch.setattr(JobWorker, "_heartbeat", never)
    a = await start("A", {"slow": slow}, drain_seconds=1.0)
    await queue.run("slow", {}, 30)
    assert len(runs) == 1
    assert a.worker.counters.reclaimed == 0
