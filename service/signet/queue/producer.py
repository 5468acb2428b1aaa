"""The API side of the queue: add a job, wait for its outcome, cancel it when nobody waits."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from signet import metrics
from signet.engine.protocol import EngineError, EngineStatus
from signet.logs import current_request_id
from signet.queue.jobs import Job, JobOutcome, QueueKeys
from signet.redis_link import CONNECTION_ERRORS, RedisLink, RedisUnavailable

logger = logging.getLogger(__name__)

# Refuse at the bounds in the same step as adding, so API processes racing each other
# cannot overfill the queue. Acknowledged jobs are deleted, so XLEN counts the jobs
# waiting plus those running. A tenant's jobs are a sorted set of request ids scored by
# deadline (KEYS[2], '' for no tenant): each caller removes its own when it has its
# answer, and entries past their deadline are pruned here first, so the jobs of an API
# process that crashed free their tenant's share by their deadline at the latest.
_ENQUEUE_WITHIN_BOUNDS = """
if KEYS[2] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[9])
    if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[8]) then
        return {'share'}
    end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return {'full'}
end
local entry_id = redis.call('XADD', KEYS[1], '*', 'request_id', ARGV[2], 'kind', ARGV[3], 'deadline', ARGV[4],
                            'payload', ARGV[5], 'stream', ARGV[6], 'trace_id', ARGV[7])
if KEYS[2] ~= '' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
    local latest = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2]
    redis.call('EXPIREAT', KEYS[2], math.ceil(tonumber(latest)) + 60)
end
return {'added', entry_id}
"""

_FIELD_ORDER = ("request_id", "kind", "deadline", "payload", "stream", "trace_id")  # ARGV[2:8] of the script above

# How long a cancellation mark outlives the deadline it cancels.
_CANCEL_MARK_SECONDS = 60


class JobQueue:
    def __init__(self, link: RedisLink, max_jobs: int, retry_after_seconds: int, tenant_share: float = 1.0) -> None:
        """``tenant_share``: the fraction of ``max_jobs`` one tenant may hold waiting or running."""
        self.link = link
        self.keys = QueueKeys(link)
        self._max_jobs = max_jobs
        self._tenant_share = tenant_share
        self.tenant_max_jobs = max(1, int(tenant_share * max_jobs))
        self.retry_after = retry_after_seconds  # of every UNAVAILABLE error: seconds until a retry may succeed
        self._enqueue = link.async_client.register_script(_ENQUEUE_WITHIN_BOUNDS)
        self._waiter = link.blocking_client()

    async def run(
        self, kind: str, payload: dict[str, Any], timeout_seconds: float, tenant: str | None = None
    ) -> dict[str, Any]:
        """Queue a job and return its value; EngineError for every way it can fail (the queue
        is full or unreachable, ``tenant`` holds its share of it, the deadline passed, or the
        worker's own error). Cancelling the caller cancels the job."""
        job = Job(uuid.uuid4().hex, kind, payload, time.time() + timeout_seconds, trace_id=current_request_id())
        await self._add(job, tenant)
        finished = False
        try:
            outcome = await self._wait(job, timeout_seconds)
            finished = True
        finally:
            # Shielded: a second cancellation (the request's other jobs failing as the client
            # hangs up) must not stop the job's worker from hearing of the first.
            await asyncio.shield(self._release(job, tenant, cancel=not finished))
        metrics.observe_job_wait(outcome.waited_seconds)
        return outcome.unwrap(self.retry_after)

    async def stream(
        self, kind: str, payload: dict[str, Any], timeout_seconds: float, tenant: str | None = None
    ) -> AsyncIterator[dict]:
        """Queue a streaming job and yield the pieces its worker publishes; then return, or
        raise EngineError as ``run`` does. Closing the iterator early cancels the job.

        A job taken over by another worker starts again from its first piece: if pieces
        were already passed on, the stream cannot be mended and ends failed (EngineStatus.FAILED)."""
        job = Job(uuid.uuid4().hex, kind, payload, time.time() + timeout_seconds, True, current_request_id())
        await self._add(job, tenant)
        finished = False
        try:
            async for piece in self._pieces(job, timeout_seconds):
                yield piece
            finished = True
        finally:
            await asyncio.shield(self._release(job, tenant, cancel=not finished))

    async def _release(self, job: Job, tenant: str | None, cancel: bool) -> None:
        """The caller is done with the job: cancel it if it may still run, and free its place
        in the tenant's share."""
        if cancel:
            await self.cancel(job.request_id)
        if tenant is not None:
            try:
                await self.link.call_async(lambda client: client.zrem(self.keys.tenant_jobs(tenant), job.request_id))
            except RedisUnavailable:
                logger.warning("could not free job %s from its tenant's share; its deadline frees it", job.request_id)

    async def tenant_depth(self, tenant: str) -> int:
        """Jobs ``tenant`` holds (waiting or running, or gone from callers that crashed, until their deadline)."""
        return await self.link.call_async(lambda client: client.zcard(self.keys.tenant_jobs(tenant)))

    async def _pieces(self, job: Job, timeout_seconds: float) -> AsyncIterator[dict]:
        key, last_id, attempt = self.keys.deltas(job.request_id), "0-0", None
        while True:
            entries = await self._read_deltas(key, last_id, job, timeout_seconds)
            for entry_id, fields in entries:
                last_id = entry_id
                if b"outcome" in fields:
                    outcome = JobOutcome.from_json(fields[b"outcome"])
                    metrics.observe_job_wait(outcome.waited_seconds)
                    outcome.unwrap(self.retry_after)
                    return
                if attempt is not None and fields[b"attempt"] != attempt:
                    detail = "the worker generating this stream stopped midway; retry the request"
                    raise EngineError(EngineStatus.FAILED, detail)
                attempt = fields[b"attempt"]
                yield json.loads(fields[b"piece"])

    async def _read_deltas(self, key: str, last_id: bytes | str, job: Job, timeout_seconds: float) -> list:
        block_ms = int(job.seconds_left * 1000)
        if block_ms <= 0:
            raise _deadline_passed(timeout_seconds)  # stream() cancels the job as the error leaves it
        try:
            # XREAD reads BLOCK 0 as "forever": block_ms is at least 1 here.
            response = await self._waiter.xread({key: last_id}, block=block_ms)
        except CONNECTION_ERRORS as error:
            raise self._connection_lost(error, "streaming") from error
        return response[0][1] if response else []

    async def depth(self) -> int:
        """Jobs waiting or running."""
        return await self.link.call_async(lambda client: client.xlen(self.keys.stream))

    async def workers_alive(self, within_seconds: float) -> int:
        """Workers whose last heartbeat is at most ``within_seconds`` old."""
        since = time.time() - within_seconds
        return await self.link.call_async(lambda client: client.zcount(self.keys.workers_alive, since, "+inf"))

    async def cancel(self, request_id: str) -> None:
        """Mark the job cancelled (a worker that has not started it drops it) and tell
        the worker running it, if any, to stop."""
        try:
            async with self.link.async_client.pipeline(transaction=False) as pipe:
                pipe.set(self.keys.cancelled(request_id), 1, ex=_CANCEL_MARK_SECONDS)
                pipe.publish(self.keys.cancel_channel, request_id)
                await pipe.execute()
        except CONNECTION_ERRORS:
            logger.warning("could not cancel job %s: Redis is unreachable; its deadline still ends it", request_id)

    async def _add(self, job: Job, tenant: str | None) -> None:
        fields = job.to_fields()
        arguments = [self._max_jobs, *(fields[name] for name in _FIELD_ORDER), self.tenant_max_jobs, repr(time.time())]
        keys = [self.keys.stream, self.keys.tenant_jobs(tenant) if tenant is not None else ""]
        try:
            added = await self.link.call_async(lambda client: self._enqueue(keys=keys, args=arguments))
        except RedisUnavailable as error:
            detail = f"the job queue is unavailable: {error}; retry later"
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after) from None
        if added[0] == b"share":
            detail = (
                f"tenant {tenant!r} holds its share of the job queue: {self.tenant_max_jobs} of "
                f"{self._max_jobs} jobs (SIGNET_QUEUE_TENANT_SHARE={self._tenant_share:g}); retry later"
            )
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after)
        if added[0] == b"full":
            detail = f"the job queue is full ({self._max_jobs} jobs); retry later"
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after)

    async def _wait(self, job: Job, timeout_seconds: float) -> JobOutcome:
        reply_key = self.keys.reply(job.request_id)
        # BLPOP counts whole milliseconds and reads 0 as "forever": never ask for less than 10 ms.
        seconds_left = max(job.seconds_left, 0.01)
        try:
            popped = await self._waiter.blpop([reply_key], timeout=seconds_left)
        except CONNECTION_ERRORS as error:
            raise self._connection_lost(error, "waiting for the result") from error
        if popped is None:
            await self.cancel(job.request_id)
            raise _deadline_passed(timeout_seconds)
        return JobOutcome.from_json(popped[1])

    def _connection_lost(self, error: BaseException, doing: str) -> EngineError:
        self.link.record_failure(error)
        detail = f"lost the connection to the job queue while {doing}; retry later"
        return EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after)

    async def aclose(self) -> None:
        await self._waiter.aclose()


def _deadline_passed(timeout_seconds: float) -> EngineError:
    detail = f"no result within the deadline of {timeout_seconds:g} s; the job was cancelled"
    return EngineError(EngineStatus.TIMED_OUT, detail)
