"""The API side of the queue: add a job, wait for its outcome, cancel it when nobody waits."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from signet.queue.jobs import Job, JobError, JobOutcome, QueueKeys
from signet.redis_link import CONNECTION_ERRORS, RedisLink, RedisUnavailable

logger = logging.getLogger(__name__)

# Refuse at the bound in the same step as adding, so API processes racing each other
# cannot overfill the queue. Acknowledged jobs are deleted, so XLEN counts the jobs
# waiting plus those running.
_ENQUEUE_WITHIN_BOUND = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return false
end
return redis.call('XADD', KEYS[1], '*', 'request_id', ARGV[2], 'kind', ARGV[3], 'deadline', ARGV[4], 'payload', ARGV[5])
"""

# How long a cancellation mark outlives the deadline it cancels.
_CANCEL_MARK_SECONDS = 60


class JobQueue:
    def __init__(self, link: RedisLink, max_jobs: int, retry_after_seconds: int) -> None:
        self.link = link
        self.keys = QueueKeys(link)
        self._max_jobs = max_jobs
        self._retry_after = retry_after_seconds
        self._enqueue = link.async_client.register_script(_ENQUEUE_WITHIN_BOUND)
        self._waiter = link.blocking_client()

    async def run(self, kind: str, payload: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        """Queue a job and return its value; JobError for every way it can fail (503, 504,
        or the worker's own error). Cancelling the caller cancels the job."""
        job = Job(uuid.uuid4().hex, kind, payload, time.time() + timeout_seconds)
        await self._add(job)
        try:
            outcome = await self._wait(job, timeout_seconds)
        except asyncio.CancelledError:
            await self.cancel(job.request_id)
            raise
        return outcome.unwrap()

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

    async def _add(self, job: Job) -> None:
        fields = job.to_fields()
        arguments = [self._max_jobs, fields["request_id"], fields["kind"], fields["deadline"], fields["payload"]]
        try:
            entry_id = await self.link.call_async(lambda client: self._enqueue(keys=[self.keys.stream], args=arguments))
        except RedisUnavailable as error:
            detail = f"the job queue is unavailable: {error}; retry later"
            raise JobError(503, detail, retry_after=self._retry_after) from None
        if entry_id is None:
            raise JobError(
                503, f"the job queue is full ({self._max_jobs} jobs); retry later", retry_after=self._retry_after
            )

    async def _wait(self, job: Job, timeout_seconds: float) -> JobOutcome:
        reply_key = self.keys.reply(job.request_id)
        # BLPOP counts whole milliseconds and reads 0 as "forever": never ask for less than 10 ms.
        seconds_left = max(job.seconds_left, 0.01)
        try:
            popped = await self._waiter.blpop([reply_key], timeout=seconds_left)
        except CONNECTION_ERRORS as error:
            self.link.record_failure(error)
            raise JobError(
                503,
                "lost the connection to the job queue while waiting for the result; retry later",
                retry_after=self._retry_after,
            ) from error
        if popped is None:
            await self.cancel(job.request_id)
            raise JobError(504, f"no result within the deadline of {timeout_seconds:g} s; the job was cancelled")
        return JobOutcome.from_json(popped[1])

    async def aclose(self) -> None:
        await self._waiter.aclose()
