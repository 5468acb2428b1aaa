"""The API side of the queue: add a job, wait for its outcome, cancel it when nobody waits."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import redis

from signet import metrics
from signet.engine.protocol import EngineError, EngineStatus
from signet.logs import current_request_id
from signet.queue.jobs import Job, JobOutcome, JobSigner, QueueKeys
from signet.redis_link import CONNECTION_ERRORS, LONGEST_BLOCK_SECONDS, RedisLink, RedisUnavailable

logger = logging.getLogger(__name__)

# Refuse at the bounds in the same step as adding, so API processes racing each other
# cannot overfill the queue. Acknowledged jobs are deleted, so XLEN counts the jobs
# waiting plus those running. A tenant's jobs are a sorted set of request ids scored by
# deadline (KEYS[3]; no tenant: no KEYS[3], since a cluster refuses a script whose keys lie in
# several slots and an ACL user's key patterns refuse a key named ''): each caller removes its own when it has its
# answer, and entries past their deadline are pruned here first, so the jobs of an API
# process that crashed free their tenant's share by their deadline at the latest.
# A job whose cancellation mark (KEYS[2]) exists is not added: its caller gave up on adding
# it (see JobQueue._cancel_once_reachable) before this command, delayed in the network,
# reached Redis.
_ENQUEUE_WITHIN_BOUNDS = """
if redis.call('EXISTS', KEYS[2]) == 1 then
    return {'cancelled'}
end
if KEYS[3] then
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[9])
    if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then
        return {'share'}
    end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
    return {'full'}
end
local entry_id = redis.call('XADD', KEYS[1], '*', 'request_id', ARGV[2], 'kind', ARGV[3], 'deadline', ARGV[4],
                            'payload', ARGV[5], 'stream', ARGV[6], 'trace_id', ARGV[7], 'signature', ARGV[10])
if KEYS[3] then
    redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
    local latest = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')[2]
    redis.call('EXPIREAT', KEYS[3], math.ceil(tonumber(latest)) + 60)
end
return {'added', entry_id}
"""

# ARGV[2:8] of the script above; ARGV[10] is the signature (JobSigner).
_FIELD_ORDER = ("request_id", "kind", "deadline", "payload", "stream", "trace_id")

# Mark the job cancelled (KEYS[1], for ARGV[1] seconds) and tell its worker on the cancel
# channel (ARGV[2]), in one round trip. A script, not a pipeline: redis-py's cluster
# pipelines refuse PUBLISH. On a cluster PUBLISH reaches subscribers on every node.
_CANCEL = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
"""

# How long a cancellation mark outlives the deadline it cancels: the margin for clocks
# apart (a worker past the deadline by its own clock drops the job anyway).
_CANCEL_MARK_MARGIN_SECONDS = 60

# How often a job whose adding failed midway is cancelled again until Redis takes the mark
# (JobQueue._cancel_once_reachable), and how many such jobs one process follows at most:
# only requests in flight when Redis went away are, since the link's breaker refuses the
# rest before they send anything.
_UNSURE_RETRY_SECONDS = 0.25
# Waiter connections beyond max_jobs: callers whose job just left the queue still reading its reply.
_SPARE_WAITERS = 64
_MAX_UNSURE_JOBS = 1000

# How long past its deadline a caller waits for Redis' answer before giving up on a
# silent Redis: Redis ends a block up to 1/hz late (measured up to 101 ms at the default
# hz 10). A caller hears 504 by its deadline, this, and one link timeout (the cancellation).
_LATE_ANSWER_SECONDS = 0.25


class JobQueue:
    def __init__(
        self,
        link: RedisLink,
        max_jobs: int,
        retry_after_seconds: int,
        tenant_share: float = 1.0,
        *,
        signer: JobSigner,
    ) -> None:
        """``tenant_share``: the fraction of ``max_jobs`` one tenant may hold waiting or running;
        ``signer`` signs every job (workers run no job without a valid signature)."""
        self.link = link
        self._signer = signer
        self.keys = QueueKeys(link)
        self._max_jobs = max_jobs
        self._tenant_share = tenant_share
        self.tenant_max_jobs = max(1, int(tenant_share * max_jobs))
        self.retry_after = retry_after_seconds  # of every UNAVAILABLE error: seconds until a retry may succeed
        self._enqueue = link.async_client.register_script(_ENQUEUE_WITHIN_BOUNDS)
        self._cancel = link.async_client.register_script(_CANCEL)
        # One connection a waiting caller: at most one a job, and the queue holds at most max_jobs.
        # No read timeout: callers are cancelled (see blocking_client).
        self._waiter = link.blocking_client(read_timeout=False, max_connections=max_jobs + _SPARE_WAITERS)
        self._unsure: set[asyncio.Task] = set()  # _cancel_once_reachable, one a job

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
            _raise_lost_cancellation()
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
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Queue a streaming job, then return the pieces its worker publishes; they end, or
        raise EngineError as ``run`` does. Two steps, so that a refusal (the queue full or
        unreachable, the tenant's share held) is raised by this await, before any piece.
        Closing the pieces, read or not, cancels the job if it may still run.

        A job taken over by another worker starts again from its first piece: if pieces
        were already passed on, the stream cannot be mended and ends failed (EngineStatus.FAILED)."""
        job = Job(uuid.uuid4().hex, kind, payload, time.time() + timeout_seconds, True, current_request_id())
        pieces = self._queued_pieces(job, timeout_seconds, tenant)
        await anext(pieces)  # runs up to the queueing: a refusal is raised here
        return pieces  # type: ignore[return-value]  # the None above was the only one

    async def _queued_pieces(
        self, job: Job, timeout_seconds: float, tenant: str | None
    ) -> AsyncGenerator[dict[str, Any] | None, None]:
        """Yields None once the job is queued, then its pieces. Suspended inside ``try`` from
        then on, so closing it cancels the job and frees the tenant's place even if nobody
        reads a piece (a client gone before the response began)."""
        await self._add(job, tenant)
        finished = False
        try:
            _raise_lost_cancellation()
            yield None
            async for piece in self._pieces(job, timeout_seconds):
                yield piece
            finished = True
        finally:
            await asyncio.shield(self._release(job, tenant, cancel=not finished))

    async def _release(self, job: Job, tenant: str | None, cancel: bool) -> None:
        """The caller is done with the job: cancel it if it may still run, and free its place
        in the tenant's share."""
        if cancel:
            await self.cancel(job)
        if tenant is not None:
            try:
                await self.link.call_async(lambda client: client.zrem(self.keys.tenant_jobs(tenant), job.request_id))
            except RedisUnavailable:
                logger.warning("could not free job %s from its tenant's share; its deadline frees it", job.request_id)

    async def tenant_depth(self, tenant: str) -> int:
        """Jobs ``tenant`` holds (waiting or running, or gone from callers that crashed, until their deadline)."""
        return await self.link.call_async(lambda client: client.zcard(self.keys.tenant_jobs(tenant)))

    async def _pieces(self, job: Job, timeout_seconds: float) -> AsyncIterator[dict]:
        key, last_id, attempt, number = self.keys.deltas(job.request_id), "0-0", None, 0
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
                # A worker tries a piece again when Redis did not answer it, and the first try
                # may have been applied: the same number again is that piece. Workers from
                # before pieces were numbered send none (0), and each of theirs counts.
                if (piece_number := int(fields.get(b"number", 0))) and piece_number <= number:
                    continue
                number = piece_number
                yield json.loads(fields[b"piece"])

    async def _read_deltas(self, key: str, last_id: bytes | str, job: Job, timeout_seconds: float) -> list:
        """The pieces after ``last_id``, waiting for them LONGEST_BLOCK_SECONDS at most: [] if none came."""
        if job.seconds_left <= 0:
            raise _deadline_passed(timeout_seconds)  # stream() cancels the job as the error leaves it
        try:
            async with asyncio.timeout(job.seconds_left + _LATE_ANSWER_SECONDS):
                response = await self.link.blocking_read(self._waiter.xread({key: last_id}, block=_block_ms(job)))
        except TimeoutError:  # asyncio's: Redis was silent up to the deadline
            raise _deadline_passed(timeout_seconds) from None
        except redis.TimeoutError:
            return []  # a silent connection, now dropped: the next read asks again from last_id on a new one
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

    async def cancel(self, job: Job) -> None:
        """Mark the job cancelled until past its deadline (a worker that has not started it
        drops it, and it can no longer be added) and tell the worker running it, if any, to stop."""
        try:
            await self._mark_cancelled(job)
        except CONNECTION_ERRORS as error:
            self.link.record_failure(error)  # so freeing the tenant's share next fails at once, not after a timeout
            logger.warning("could not cancel job %s: Redis is unreachable; its deadline still ends it", job.request_id)

    async def _mark_cancelled(self, job: Job) -> None:
        mark_seconds = max(0, math.ceil(job.seconds_left)) + _CANCEL_MARK_MARGIN_SECONDS
        await self._cancel(
            keys=[self.keys.cancelled(job.request_id)],
            args=[mark_seconds, self.keys.cancel_channel, job.request_id],
        )

    def _cancel_later(self, job: Job) -> None:
        """Cancel, once Redis answers again, a job whose adding failed after it was sent."""
        if len(self._unsure) >= _MAX_UNSURE_JOBS:
            logger.warning("job %s may still be added by a late command; its deadline ends it", job.request_id)
            return
        task = asyncio.create_task(self._cancel_once_reachable(job), name=f"cancel {job.request_id}")
        self._unsure.add(task)
        task.add_done_callback(self._unsure.discard)

    async def _cancel_once_reachable(self, job: Job) -> None:
        """The caller heard 503, but the command adding its job may still reach Redis: a
        partition holds it, and the kernel sends it again once the partition heals (measured:
        2 of 4 generations refused during a cut of Redis ran after it, with TCP_USER_TIMEOUT
        set). Setting the job's cancellation mark stops that: the enqueue script refuses a
        marked job, a worker drops one, and one already running hears the cancellation.
        Tried every _UNSURE_RETRY_SECONDS until the deadline, outside the link's breaker
        (these tries must not keep it open for everyone else)."""
        while job.seconds_left > 0:
            await asyncio.sleep(_UNSURE_RETRY_SECONDS)
            try:
                await self._mark_cancelled(job)
                return
            except CONNECTION_ERRORS:
                continue

    async def _add(self, job: Job, tenant: str | None) -> None:
        fields = job.to_fields()
        arguments = [
            self._max_jobs,
            *(fields[name] for name in _FIELD_ORDER),
            self.tenant_max_jobs,
            repr(time.time()),
            self._signer.sign(fields),
        ]
        keys = [self.keys.stream, self.keys.cancelled(job.request_id)]
        if tenant is not None:
            keys.append(self.keys.tenant_jobs(tenant))
        try:
            added = await self.link.call_async(lambda client: self._enqueue(keys=keys, args=arguments))
        except RedisUnavailable as error:
            if error.sent:
                self._cancel_later(job)
            detail = f"the job queue is unavailable: {error}; retry later"
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after) from None
        except asyncio.CancelledError:
            # Redis may have added the job before the cancellation reached us: cancel it too.
            await asyncio.shield(self._release(job, tenant, cancel=True))
            raise
        if added[0] == b"share":
            detail = (
                f"tenant {tenant!r} holds its share of the job queue: {self.tenant_max_jobs} of "
                f"{self._max_jobs} jobs (SIGNET_QUEUE_TENANT_SHARE={self._tenant_share:g}); retry later"
            )
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after)
        if added[0] == b"full":
            detail = f"the job queue is full ({self._max_jobs} jobs); retry later"
            raise EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after)
        if added[0] == b"cancelled":  # its id was cancelled before: only a replayed job gets here
            raise EngineError(EngineStatus.FAILED, "the job was cancelled before it was queued")

    async def _wait(self, job: Job, timeout_seconds: float) -> JobOutcome:
        try:
            async with asyncio.timeout(job.seconds_left + _LATE_ANSWER_SECONDS):
                return await self._reply(job, timeout_seconds)
        except TimeoutError:  # asyncio's: Redis was silent up to the deadline
            raise _deadline_passed(timeout_seconds) from None

    async def _reply(self, job: Job, timeout_seconds: float) -> JobOutcome:
        """Wait for the job's reply in turns of LONGEST_BLOCK_SECONDS at most, until its deadline."""
        reply_key, silent = self.keys.reply(job.request_id), False
        while True:
            try:
                if silent:
                    # A reply BLPOP took whose answer the silence swallowed is gone from its
                    # list, but the worker stored the same outcome as the job's result.
                    stored = await self.link.blocking_read(self._waiter.get(self.keys.result(job.request_id)))
                    if stored is not None:
                        return JobOutcome.from_json(stored)
                    silent = False
                popped = await self.link.blocking_read(self._waiter.blpop([reply_key], timeout=_block_ms(job) / 1000))
            except redis.TimeoutError:
                silent = True  # the connection was dropped: ask again on a new one
                continue
            except CONNECTION_ERRORS as error:
                raise self._connection_lost(error, "waiting for the result") from error
            if popped is not None:
                return JobOutcome.from_json(popped[1])
            if job.seconds_left <= 0:
                raise _deadline_passed(timeout_seconds)

    def _connection_lost(self, error: BaseException, doing: str) -> EngineError:
        self.link.record_failure(error)
        detail = f"lost the connection to the job queue while {doing}; retry later"
        return EngineError(EngineStatus.UNAVAILABLE, detail, retry_after=self.retry_after)

    async def aclose(self) -> None:
        for task in list(self._unsure):
            task.cancel()
        await asyncio.gather(*self._unsure, return_exceptions=True)
        await self._waiter.aclose()


def _raise_lost_cancellation() -> None:
    """Raise the cancellation a write of the link's client may have lost (see
    RedisLink.blocking_client): else a caller cancelled while its job was being added
    would wait out the deadline, and its job run for nobody. A task counts the
    cancellations it was asked for, lost or not."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _block_ms(job: Job) -> int:
    """How long the next blocking read may wait: until the deadline, LONGEST_BLOCK_SECONDS at
    most, and 10 ms at least (Redis counts whole milliseconds and reads 0 as "forever")."""
    return max(10, int(min(job.seconds_left, LONGEST_BLOCK_SECONDS) * 1000))


def _deadline_passed(timeout_seconds: float) -> EngineError:
    detail = f"no result within the deadline of {timeout_seconds:g} s; the job was cancelled"
    return EngineError(EngineStatus.TIMED_OUT, detail)
