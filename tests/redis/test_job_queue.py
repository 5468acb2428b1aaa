"""The queue's semantics against a real Redis, with small in-process handlers in place of
the engine (the engine runs in tests/e2e/test_distributed.py): delivery, backpressure,
deadlines, cancellation, take-over of a dead consumer's jobs, dead letters, idempotency."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from harness.services import free_port, redis_test_url, signer_for_test_keys
from signet.engine.protocol import EngineError, EngineStatus
from signet.logs import bind_request_id, current_request_id, unbind_request_id
from signet.queue.consumer import PiecePublisher
from signet.queue.jobs import Job
from signet.queue.producer import JobQueue
from signet.redis_link import RedisLink
from tests.redis.conftest import CLAIM_IDLE_SECONDS


async def echo(job: Job) -> dict:
    return {"echo": job.payload}


async def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def depth_is(queue: JobQueue, depth: int):
    async def check() -> bool:
        return await queue.depth() == depth

    return check


@pytest.mark.asyncio
async def test_a_job_runs_and_its_entry_is_deleted(queue, start_worker):
    worker = await start_worker({"echo": echo})
    assert await queue.run("echo", {"n": 1}, timeout_seconds=10) == {"echo": {"n": 1}}
    assert await queue.depth() == 0
    assert worker.counters.completed == 1


@pytest.mark.asyncio
async def test_jobs_run_concurrently_up_to_the_bound(queue, start_worker):
    running, most = 0, 0

    async def slow(job: Job) -> dict:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.2)
        running -= 1
        return job.payload

    await start_worker({"slow": slow}, concurrency=3)
    results = await asyncio.gather(*(queue.run("slow", {"i": i}, 20) for i in range(9)))
    assert [result["i"] for result in results] == list(range(9))
    assert most == 3  # never more than the bound, and the bound is used


@pytest.mark.asyncio
async def test_a_full_queue_refuses_with_retry_after(link):
    queue = JobQueue(link, max_jobs=2, retry_after_seconds=7, signer=signer_for_test_keys())
    waiting = [asyncio.create_task(queue.run("echo", {}, 30)) for _ in range(2)]  # no worker: they stay queued
    try:
        await wait_until(depth_is(queue, 2))
        with pytest.raises(EngineError) as refused:
            await queue.run("echo", {}, 30)
        assert refused.value.status is EngineStatus.UNAVAILABLE and refused.value.retry_after == 7
        assert "full" in refused.value.detail
    finally:
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        await queue.aclose()


@pytest.mark.asyncio
async def test_past_its_deadline_the_caller_gets_504_and_no_worker_runs_the_job(queue, start_worker):
    calls = []

    async def record(job: Job) -> dict:
        calls.append(job.payload)
        return job.payload

    started = time.monotonic()
    with pytest.raises(EngineError) as timed_out:
        await queue.run("record", {"late": True}, timeout_seconds=0.3)
    assert timed_out.value.status is EngineStatus.TIMED_OUT
    assert time.monotonic() - started < 2
    await start_worker({"record": record})
    await wait_until(depth_is(queue, 0))
    assert calls == []


@pytest.mark.asyncio
async def test_a_caller_that_goes_away_cancels_its_running_job(queue, start_worker):
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
    caller.cancel()
    await asyncio.wait_for(cancelled.wait(), 5)
    await wait_until(depth_is(queue, 0))  # acknowledged: nobody will run it again


@pytest.mark.asyncio
async def test_a_dead_consumers_job_is_taken_over(link, queue, start_worker):
    caller = asyncio.create_task(queue.run("echo", {"survives": True}, 30))
    await wait_until(depth_is(queue, 1))
    # A consumer reads the job and dies without a word: what kill -9 leaves behind.
    await link.async_client.xgroup_create(queue.keys.stream, queue.keys.group, id="0", mkstream=True)
    taken = await link.async_client.xreadgroup(queue.keys.group, "ghost", {queue.keys.stream: ">"}, count=1)
    assert taken and len(taken[0][1]) == 1
    worker = await start_worker({"echo": echo})
    assert await asyncio.wait_for(caller, 15) == {"echo": {"survives": True}}
    assert worker.counters.reclaimed == 1


@pytest.mark.asyncio
async def test_a_job_that_always_fails_is_dead_lettered_and_its_caller_told(link, queue, start_worker):
    calls = 0

    async def broken(job: Job) -> dict:
        nonlocal calls
        calls += 1
        raise RuntimeError("a bug")

    await start_worker({"broken": broken}, max_deliveries=2)
    with pytest.raises(EngineError) as failed:
        await queue.run("broken", {}, timeout_seconds=30)
    assert failed.value.status is EngineStatus.FAILED and "set aside" in failed.value.detail
    assert calls == 2
    dead = await link.async_client.xrange(queue.keys.dead_letters)
    assert len(dead) == 1 and dead[0][1][b"kind"] == b"broken"
    assert b"delivered 3 times" in dead[0][1][b"reason"]
    assert await queue.depth() == 0


@pytest.mark.asyncio
async def test_a_job_delivered_again_after_its_outcome_is_not_run_again(link, queue, start_worker):
    calls = 0

    async def count(job: Job) -> dict:
        nonlocal calls
        calls += 1
        return {"calls": calls}

    await start_worker({"count": count})
    job = Job(uuid.uuid4().hex, "count", {}, time.time() + 30)
    fields = job.to_fields()
    fields["signature"] = signer_for_test_keys().sign(fields)
    for _ in range(2):  # the same job again once it has an outcome, as a redelivery would bring it
        await link.async_client.xadd(queue.keys.stream, fields)
        await wait_until(depth_is(queue, 0))
    assert calls == 1
    assert len(await link.async_client.lrange(queue.keys.reply(job.request_id), 0, -1)) == 1


@pytest.mark.asyncio
async def test_a_malformed_entry_goes_straight_to_the_dead_letters(link, queue, start_worker):
    await start_worker({"echo": echo})
    await link.async_client.xadd(queue.keys.stream, {"what": "not a job"})
    await wait_until(depth_is(queue, 0))
    dead = await link.async_client.xrange(queue.keys.dead_letters)
    assert len(dead) == 1 and b"signature is missing" in dead[0][1][b"reason"]  # checked before its fields
    assert await queue.run("echo", {"still": "working"}, 10) == {"echo": {"still": "working"}}


@pytest.mark.asyncio
async def test_a_worker_recreates_the_stream_after_redis_lost_it(link, queue, start_worker):
    await start_worker({"echo": echo})
    assert await queue.run("echo", {"before": 1}, 10) == {"echo": {"before": 1}}
    await link.async_client.delete(queue.keys.stream)  # what a restarted Redis without persistence holds
    assert await queue.run("echo", {"after": 1}, 15) == {"echo": {"after": 1}}


@pytest.mark.asyncio
async def test_an_unreachable_redis_refuses_in_well_under_a_second():
    link = RedisLink(f"redis://:hunter2@127.0.0.1:{free_port()}/0", "signet-test-down", timeout_seconds=0.5)
    queue = JobQueue(link, max_jobs=10, retry_after_seconds=3, signer=signer_for_test_keys())
    try:
        for _ in range(3):  # the first finds out, the others are refused by the circuit breaker
            started = time.monotonic()
            with pytest.raises(EngineError) as refused:
                await queue.run("echo", {}, 10)
            assert time.monotonic() - started < 1.0
            assert refused.value.status is EngineStatus.UNAVAILABLE and refused.value.retry_after == 3
            assert "hunter2" not in refused.value.detail  # the URL's password is never echoed
    finally:
        await queue.aclose()
        await link.aclose()


@pytest.mark.asyncio
async def test_a_running_job_outlives_redis_losing_the_stream(link, queue, start_worker):
    started = asyncio.Event()

    async def slow(job: Job) -> dict:
        started.set()
        await asyncio.sleep(3 * CLAIM_IDLE_SECONDS)  # heartbeats run meanwhile, against a missing group
        return job.payload

    worker = await start_worker({"slow": slow})
    caller = asyncio.create_task(queue.run("slow", {"kept": True}, 30))
    await asyncio.wait_for(started.wait(), 10)
    await link.async_client.delete(queue.keys.stream, queue.keys.workers_alive)  # as a restarted Redis would
    assert await asyncio.wait_for(caller, 15) == {"kept": True}
    assert await queue.run("slow", {"next": 1}, 15) == {"next": 1}
    assert worker.counters.completed == 2
    assert await link.async_client.zscore(queue.keys.workers_alive, worker.options.name) is not None


def streaming_handler(link: RedisLink, pieces: int, fail_with: EngineError | None = None, pause: float = 0.0):
    publisher = PiecePublisher(link)

    async def handler(job: Job) -> dict:
        for index in range(pieces):
            await publisher.publish(job, "attempt-1", index + 1, {"index": index})
            await asyncio.sleep(pause)
        if fail_with is not None:
            raise fail_with
        return {"pieces": pieces}

    return handler


@pytest.mark.asyncio
async def test_a_streaming_job_yields_its_pieces_in_order(link, queue, start_worker):
    await start_worker({"stream": streaming_handler(link, 5)})
    pieces = [piece async for piece in await queue.stream("stream", {}, 10)]
    assert pieces == [{"index": index} for index in range(5)]
    assert await queue.depth() == 0


@pytest.mark.asyncio
async def test_a_streaming_job_that_fails_midway_raises_after_its_pieces(link, queue, start_worker):
    failure = EngineError(EngineStatus.INVALID, "too long", "max_tokens")
    await start_worker({"stream": streaming_handler(link, 2, failure)})
    received = []
    with pytest.raises(EngineError) as failed:
        async for piece in await queue.stream("stream", {}, 10):
            received.append(piece)
    assert received == [{"index": 0}, {"index": 1}]
    assert failed.value.status is EngineStatus.INVALID and failed.value.field == "max_tokens"


@pytest.mark.asyncio
async def test_a_stream_restarted_by_another_worker_ends_with_502(link, queue):
    publisher = PiecePublisher(link)
    stream = await queue.stream("stream", {}, 10)
    first = asyncio.ensure_future(stream.__anext__())
    await wait_until(depth_is(queue, 1))
    entry = (await link.async_client.xrange(queue.keys.stream))[0][1]
    job = Job.from_fields(entry)
    await publisher.publish(job, "first-worker", 1, {"index": 0})
    assert await asyncio.wait_for(first, 5) == {"index": 0}
    await publisher.publish(job, "second-worker", 1, {"index": 0})  # the job taken over, starting again
    with pytest.raises(EngineError) as broken:
        await stream.__anext__()
    assert broken.value.status is EngineStatus.FAILED
    await stream.aclose()


@pytest.mark.asyncio
async def test_closing_a_stream_early_cancels_its_job(link, queue, start_worker):
    await start_worker({"stream": streaming_handler(link, 1000, pause=0.01)})
    stream = await queue.stream("stream", {}, 30)
    assert await stream.__anext__() == {"index": 0}
    await stream.aclose()
    await wait_until(depth_is(queue, 0))  # the worker dropped it long before its 1000 pieces
    cancelled = await link.async_client.keys(queue.keys.cancelled("*"))
    assert len(cancelled) == 1


@pytest.mark.asyncio
async def test_a_stream_past_its_deadline_ends_with_504(queue):
    with pytest.raises(EngineError) as timed_out:
        async for _ in await queue.stream("stream", {}, 0.3):  # no worker
            pass
    assert timed_out.value.status is EngineStatus.TIMED_OUT


@pytest.mark.asyncio
async def test_a_workers_log_lines_for_a_job_carry_the_callers_request_id(queue, start_worker):
    seen_in_handler = []

    async def note(job: Job) -> dict:
        seen_in_handler.append(current_request_id())
        return {}

    await start_worker({"note": note})
    token = bind_request_id("http-request-7f3a")  # what the API's middleware binds for a request
    try:
        await queue.run("note", {}, 10)
    finally:
        unbind_request_id(token)
    await queue.run("note", {}, 10)  # queued outside any HTTP request: the job's own id
    assert seen_in_handler[0] == "http-request-7f3a"
    assert seen_in_handler[1] not in (None, "http-request-7f3a")
    assert current_request_id() is None  # the worker's binding stayed in its job's task


@pytest.mark.asyncio
async def test_more_waiting_callers_than_redis_pys_default_pool_all_get_their_answers(redis_namespace, start_worker):
    """Each waiting caller holds a connection (BLPOP). redis-py's pools stop at 100 and then
    raise MaxConnectionsError, which read as Redis down: 150 callers got 503 and tripped the
    breaker for everyone. The waiters' pool is sized by the queue's bound instead.

    A link timeout of 2 s, not the fixture's 0.5 s: this is about the pool's size. 150 waiters
    open their connections at once, and on a loaded CI machine that burst alone ran enqueue
    calls past 0.5 s twice (calls in flight are bounded, waiters' connections not yet)."""
    link = RedisLink(redis_test_url(), redis_namespace, timeout_seconds=2.0)
    queue = JobQueue(link, max_jobs=200, retry_after_seconds=2, signer=signer_for_test_keys())

    async def slow(job: Job) -> dict:
        await asyncio.sleep(0.3)
        return job.payload

    await start_worker({"slow": slow}, concurrency=150)
    try:
        results = await asyncio.gather(*(queue.run("slow", {"i": index}, 20) for index in range(150)))
    finally:
        await queue.aclose()
        await link.aclose()
    assert [result["i"] for result in results] == list(range(150))
