"""The worker side of the queue: take jobs, run them concurrently, reply, and take over
the jobs of workers that died.

Delivery is at least once. A job stays in the consumer group's pending list until its
outcome is stored; a worker keeps the jobs it runs fresh there (``XCLAIM ... JUSTID``
resets their idle time without counting a delivery), so a job idle for longer than
``claim_idle_seconds`` belongs to a dead or stuck worker and any worker takes it over
(``XAUTOCLAIM``). A job delivered more than ``max_deliveries`` times is moved to the
dead-letter stream and its caller told. Outcomes are stored under the request id with
``SET NX`` in the same script that replies and acknowledges, so a job run twice still
answers once. Every worker deletes jobs and dead letters older than the retention
(``XTRIM ... MINID``), so prompts do not stay in Redis past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from signet.engine.protocol import EngineError, EngineStatus
from signet.logs import bind_request_id
from signet.queue.jobs import (
    Job,
    JobOutcome,
    JobSigner,
    MalformedJob,
    QueueKeys,
    WorkerUnfit,
    entry_id_at,
    seconds_since_entry,
)
from signet.redis_link import CONNECTION_ERRORS, RedisLink

logger = logging.getLogger(__name__)

Handler = Callable[[Job], Awaitable[dict[str, Any]]]

# Store the outcome once, reply once, acknowledge and delete the entry: one atomic step,
# so a crash leaves the job either unanswered (and redelivered) or fully answered.
_FINISH = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
    redis.call('RPUSH', KEYS[2], ARGV[1])
    redis.call('EXPIRE', KEYS[2], ARGV[2])
    if ARGV[5] == '1' then
        redis.call('XADD', KEYS[4], '*', 'outcome', ARGV[1])
        redis.call('EXPIRE', KEYS[4], ARGV[2])
    end
end
redis.call('XACK', KEYS[3], ARGV[3], ARGV[4])
redis.call('XDEL', KEYS[3], ARGV[4])
return 1
"""

UNSIGNED_REASON = "its signature is missing or wrong: API processes and workers must hold the same job signing secret"
_DEAD_LETTER_MAXLEN = 10_000
# How often a worker deletes what passed the retention, at most: an entry outlives the
# retention by this much (or a tenth of the retention, if shorter) while any worker runs.
_EXPIRE_INTERVAL_SECONDS = 60.0
_RESULT_MIN_SECONDS = 60
_BLOCK_MS = 1000
_MAX_BACKOFF_SECONDS = 5.0
# How long a PiecePublisher made without a retry time tries a piece again when Redis does
# not answer it; ``signet worker`` passes its claim_idle_seconds. A worker gave a job up at
# its first timeout before: in a rolling restart on separate network hosts, one 2 s timeout
# while a replacement loaded its model failed a stream that was half sent, and an outcome
# not stored leaves the job to run again. A write is tried again only while a timeout still
# fits in the window, so claim_idle_seconds of at least 3 timeouts (15 s against 0.5 s by
# default) allow two more tries.
_WRITE_RETRY_SECONDS = 15.0


@dataclass(frozen=True)
class WorkerOptions:
    name: str
    concurrency: int
    claim_idle_seconds: float
    max_deliveries: int
    drain_seconds: float
    retention_seconds: float  # jobs and dead letters older than this are deleted


@dataclass
class _Running:
    task: asyncio.Task
    request_id: str | None
    cancelled_by_caller: bool = False


@dataclass
class _Counters:
    completed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    started_at: float = field(default_factory=time.time)


class JobWorker:
    def __init__(
        self, link: RedisLink, handlers: Mapping[str, Handler], options: WorkerOptions, *, signer: JobSigner
    ) -> None:
        """``signer`` checks each job's signature before anything else reads the job."""
        self.link = link
        self._signer = signer
        self.keys = QueueKeys(link)
        self.options = options
        self.counters = _Counters()
        self.unfit = False
        self._handlers = dict(handlers)
        self._running: dict[bytes, _Running] = {}  # by stream entry id
        self._slot_freed = asyncio.Event()
        self._client = link.async_client
        self._reader = link.blocking_client()
        self._finish = self._client.register_script(_FINISH)
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set (then drain) or the worker becomes unfit (then ``unfit``)."""
        self._stop = stop
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._ensure_group()  # else the intake loop creates it once Redis answers
        intake = [
            asyncio.create_task(self._intake(stop), name="intake"),
            asyncio.create_task(self._every(self.options.claim_idle_seconds / 2, self._reclaim, stop), name="reclaim"),
        ]
        # These run through the drain as well: a draining worker whose heartbeat stopped
        # would see its jobs taken over and run twice after claim_idle_seconds, and its
        # jobs' callers could no longer cancel them.
        leaving = asyncio.Event()
        upkeep = [
            asyncio.create_task(
                self._every(self.options.claim_idle_seconds / 3, self._heartbeat, leaving), name="beat"
            ),
            asyncio.create_task(self._every(self._expire_interval, self._expire, leaving), name="expire"),
            asyncio.create_task(self._cancellation_listener(), name="cancellations"),
        ]
        name, concurrency = self.options.name, self.options.concurrency
        logger.info("worker %s takes jobs from %s (concurrency %d)", name, self.keys.stream, concurrency)
        try:
            await stop.wait()
        finally:
            await _end(intake)
            try:
                await self._drain()
            finally:
                leaving.set()
                await _end(upkeep)
                await self._leave()

    # -- taking jobs -------------------------------------------------------------------

    @property
    def free_slots(self) -> int:
        return self.options.concurrency - len(self._running)

    async def _intake(self, stop: asyncio.Event) -> None:
        backoff = _Backoff()
        while not stop.is_set():
            if self.free_slots <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                batches = await self._reader.xreadgroup(
                    self.keys.group,
                    self.options.name,
                    {self.keys.stream: ">"},
                    count=self.free_slots,
                    block=_BLOCK_MS,
                )
            except redis.ResponseError as error:
                await self._recover_from(error, backoff)
                continue
            except CONNECTION_ERRORS as error:
                await backoff.wait(f"reading jobs: {type(error).__name__}")
                continue
            except Exception:
                logger.exception("worker %s: reading jobs failed; trying again", self.options.name)
                await asyncio.sleep(1.0)
                continue
            backoff.reset()
            for _, entries in batches or []:
                for entry_id, fields in entries:
                    self._start(entry_id, fields)

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]], until: asyncio.Event) -> None:
        """Run ``step`` every ``interval`` seconds until ``until`` is set; no failure ends the
        loop, or the worker would go on running jobs without keeping them fresh.

        Cancelling the loop is not enough to end it: on Python 3.11 redis-py's writes
        (asyncio.wait_for) lose a cancellation that lands as a write completes (CPython
        gh-86296; measured: 6 of 30 runs of a drain test left a stopped worker beating), so
        the loop checks ``until`` and its wait ends when ``until`` is set."""
        while not until.is_set():
            try:
                await step()
            except redis.exceptions.NoPermissionError as error:
                await self._recover_from(error, _Backoff())  # ACL rules without a command: logged
            except CONNECTION_ERRORS:
                pass  # the intake loop reports the outage
            except redis.ResponseError as error:
                await self._recover_from(error, _Backoff())  # a Redis that restarted lost the group
            except Exception:
                logger.exception("worker %s: %s failed; trying again", self.options.name, step.__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(until.wait(), timeout=interval)

    async def _reclaim(self) -> None:
        """Take over jobs no worker has reported on for claim_idle_seconds."""
        cursor: bytes | str = "0-0"
        min_idle_ms = int(self.options.claim_idle_seconds * 1000)
        while self.free_slots > 0:
            cursor, claimed, _deleted = await self._client.xautoclaim(
                self.keys.stream,
                self.keys.group,
                self.options.name,
                min_idle_time=min_idle_ms,
                start_id=cursor,
                count=self.free_slots,
            )
            for entry_id, fields in claimed:
                if entry_id in self._running:
                    # Its own job, which a late heartbeat let go idle: XAUTOCLAIM has made it fresh
                    # again. Starting it anew would run it twice here (seen in CI on a busy machine).
                    continue
                deliveries = await self._deliveries(entry_id)
                if deliveries > self.options.max_deliveries:
                    await self._dead_letter(entry_id, fields, f"delivered {deliveries} times without an outcome")
                else:
                    self.counters.reclaimed += 1
                    logger.warning("took over job %s (delivery %d)", entry_id.decode(), deliveries)
                    self._start(entry_id, fields)
            if cursor in (b"0-0", "0-0"):
                return

    async def _deliveries(self, entry_id: bytes) -> int:
        pending = await self._client.xpending_range(
            self.keys.stream, self.keys.group, min=entry_id, max=entry_id, count=1
        )
        return pending[0]["times_delivered"] if pending else 1

    def _start(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        request_id = fields.get(b"request_id", b"").decode(errors="replace") or None
        task = asyncio.create_task(self._process(entry_id, fields))
        self._running[entry_id] = _Running(task, request_id)
        task.add_done_callback(lambda _: self._forget(entry_id))

    def _forget(self, entry_id: bytes) -> None:
        self._running.pop(entry_id, None)
        self._slot_freed.set()

    # -- running one job ---------------------------------------------------------------

    async def _process(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            if not self._signer.verify(fields):
                # Never run and never retried: whoever wrote it lacks the signing secret (or
                # API and workers hold different ones, which every job then shows at once).
                await self._dead_letter(entry_id, fields, UNSIGNED_REASON)
                return
            try:
                job = Job.from_fields(fields)
            except MalformedJob as error:
                await self._dead_letter(entry_id, fields, str(error))
                return
            # This task's own context: the id marks this job's log lines only.
            bind_request_id(job.trace_id or job.request_id)
            await self._run(entry_id, job)
        except CONNECTION_ERRORS as failure:
            # The outcome could not be stored: the job stays pending and is redelivered.
            logger.warning("job %s: Redis failed while finishing it (%s)", entry_id.decode(), type(failure).__name__)

    async def _run(self, entry_id: bytes, job: Job) -> None:
        waited = seconds_since_entry(entry_id)  # the job starts now; the API observes this in its metrics
        if await self._client.exists(self.keys.result(job.request_id)):
            await self._acknowledge(entry_id)  # answered before, by a worker that died after replying
            return
        if await self._client.exists(self.keys.cancelled(job.request_id)):
            logger.info("job %s cancelled by its caller before it started", job.request_id)
            await self._acknowledge(entry_id)
            return
        if job.seconds_left <= 0:
            await self._store(entry_id, job, JobOutcome.failure(_deadline_passed(job)).with_wait(waited))
            return
        handler = self._handlers.get(job.kind)
        if handler is None:
            # A job from a newer API than this worker: another worker may know it; if none
            # does, it reaches the dead-letter stream after max_deliveries.
            logger.error("job %s: no handler for kind %r; leaving it to other workers", job.request_id, job.kind)
            return
        outcome = await self._outcome(entry_id, job, handler)
        if outcome is not None:
            await self._store(entry_id, job, outcome.with_wait(waited))

    async def _outcome(self, entry_id: bytes, job: Job, handler: Handler) -> JobOutcome | None:
        """The job's outcome, or None when it must stay pending (caller gone, worker stopping or broken)."""
        try:
            value = await asyncio.wait_for(handler(job), timeout=job.seconds_left)
        except EngineError as error:
            self.counters.failed += 1
            return JobOutcome.failure(error)
        except TimeoutError:
            self.counters.failed += 1
            return JobOutcome.failure(_deadline_passed(job))
        except asyncio.CancelledError:
            running = self._running.get(entry_id)
            if running is not None and running.cancelled_by_caller:
                # Logged first: once acknowledged the job is gone, and whoever watches the
                # queue may read this log at that moment.
                logger.info("job %s cancelled by its caller", job.request_id)
                await self._acknowledge(entry_id)
                return None
            raise  # the worker is stopping: leave the job pending for another worker
        except WorkerUnfit as error:
            logger.error("job %s: this worker can take no more jobs: %s", job.request_id, error)
            self.unfit = True
            self._stop.set()
            return None
        except Exception:
            # A bug or a job that breaks its handler: another delivery may succeed (a
            # different worker, a transient fault); repeated failures end on the
            # dead-letter stream. The traceback stays in this log, not in the reply.
            logger.exception("job %s (%s) failed; it will be redelivered", job.request_id, job.kind)
            return None
        self.counters.completed += 1
        return JobOutcome(value)

    async def _store(self, entry_id: bytes, job: Job, outcome: JobOutcome) -> None:
        keep_seconds = _keep_seconds(job)
        request_id = job.request_id
        keys = [
            self.keys.result(request_id),
            self.keys.reply(request_id),
            self.keys.stream,
            self.keys.deltas(request_id),
        ]
        arguments = [outcome.to_json(), keep_seconds, self.keys.group, entry_id, "1" if job.stream else "0"]
        # _FINISH stores with SET NX and replies only if that stored: a repeat changes nothing.
        await self.link.write_retried(lambda: self._finish(keys=keys, args=arguments), self.options.claim_idle_seconds)

    async def _acknowledge(self, entry_id: bytes) -> None:
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xack(self.keys.stream, self.keys.group, entry_id)
            pipe.xdel(self.keys.stream, entry_id)
            await pipe.execute()

    async def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], reason: str) -> None:
        """Set the job aside for an operator to inspect, and tell its caller."""
        self.counters.dead_lettered += 1
        logger.error("job %s moved to %s: %s", entry_id.decode(), self.keys.dead_letters, reason)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self.keys.dead_letters,
                {**fields, b"entry_id": entry_id, b"reason": reason.encode(), b"worker": self.options.name.encode()},
                maxlen=_DEAD_LETTER_MAXLEN,
                approximate=True,
            )
            # With no worker left to trim it, the stream still goes a retention after its last entry.
            pipe.expire(self.keys.dead_letters, int(self.options.retention_seconds))
            await pipe.execute()
        try:
            job = Job.from_fields(fields)
        except MalformedJob:
            await self._acknowledge(entry_id)  # no caller can be named
            return
        detail = (
            f"the job could not be completed ({reason}) and was set aside for inspection as request "
            f"{job.request_id}; retrying is unlikely to help"
        )
        await self._store(entry_id, job, JobOutcome(status=EngineStatus.FAILED, detail=detail))

    # -- keeping Redis clean -------------------------------------------------------------

    @property
    def _expire_interval(self) -> float:
        return min(_EXPIRE_INTERVAL_SECONDS, self.options.retention_seconds / 10)

    async def _expire(self) -> None:
        """Delete the jobs and dead letters older than the retention (stream ids are the
        milliseconds Redis added them at). Exact trimming: ``~`` would keep whole nodes of
        up to 100 entries past it. A job is that old only long after its deadline, and
        the settings hold the retention at or above the deadline."""
        oldest_kept = entry_id_at(time.time() - self.options.retention_seconds)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xtrim(self.keys.stream, minid=oldest_kept, approximate=False)
            pipe.xtrim(self.keys.dead_letters, minid=oldest_kept, approximate=False)
            trimmed = sum(await pipe.execute())
        if trimmed:
            logger.info("deleted %d jobs and dead letters older than %g s", trimmed, self.options.retention_seconds)

    # -- keeping the pending list honest ---------------------------------------------------

    async def _heartbeat(self) -> None:
        """Reset the idle time of the jobs this worker runs, and say it is alive."""
        running = list(self._running)
        if running:
            await self._client.xclaim(
                self.keys.stream, self.keys.group, self.options.name, min_idle_time=0, message_ids=running, justid=True
            )
        now = time.time()
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.zadd(self.keys.workers_alive, {self.options.name: now})
            pipe.zremrangebyscore(self.keys.workers_alive, "-inf", now - self._forget_after)
            self._write_stats(pipe)
            await pipe.execute()

    @property
    def _forget_after(self) -> float:
        """Seconds a worker silent that long counts as gone, and its counters are kept after it."""
        return self.options.claim_idle_seconds + 60

    def _write_stats(self, pipe: redis.asyncio.client.Pipeline) -> None:
        """The counters, for ``signet queue stats`` and the API's metrics."""
        stats = {
            "running": len(self._running),
            "concurrency": self.options.concurrency,
            **{name: value for name, value in vars(self.counters).items()},
        }
        pipe.hset(self.keys.worker_stats(self.options.name), mapping=stats)
        pipe.expire(self.keys.worker_stats(self.options.name), int(self._forget_after))

    async def _cancellation_listener(self) -> None:
        backoff = _Backoff()
        while True:
            try:
                async with await self.link.pubsub(self._reader) as pubsub:  # no read timeout: it waits
                    await pubsub.subscribe(self.keys.cancel_channel)
                    backoff.reset()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._cancel(message["data"].decode(errors="replace"))
            except CONNECTION_ERRORS as error:
                await backoff.wait(f"listening for cancellations: {type(error).__name__}")

    def _cancel(self, request_id: str) -> None:
        for running in self._running.values():
            if running.request_id == request_id and not running.task.done():
                running.cancelled_by_caller = True
                running.task.cancel()

    # -- starting and stopping ------------------------------------------------------------

    async def _ensure_group(self) -> None:
        """Create the stream and group if missing (a new or restarted Redis). From id 0:
        jobs queued before any worker existed are still delivered."""
        try:
            await self._client.xgroup_create(self.keys.stream, self.keys.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _recover_from(self, error: redis.ResponseError, backoff: _Backoff) -> None:
        if "NOGROUP" in str(error):
            logger.warning("the job stream or its group is gone (Redis restarted?); creating them again")
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self._ensure_group()
        else:
            await backoff.wait(f"Redis refused a queue command: {error}")

    async def _drain(self) -> None:
        """Give running jobs drain_seconds to finish, kept fresh and cancellable meanwhile;
        the rest stay pending for other workers, which take them claim_idle_seconds after
        the last heartbeat."""
        tasks = [running.task for running in self._running.values()]
        if not tasks:
            return
        logger.info("worker %s: finishing %d running jobs", self.options.name, len(tasks))
        _, unfinished = await asyncio.wait(tasks, timeout=self.options.drain_seconds)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        if unfinished:
            logger.warning("worker %s: left %d jobs to other workers", self.options.name, len(unfinished))

    async def _leave(self) -> None:
        """No longer alive; the counters as they end (the last heartbeat missed the drain's last jobs)."""
        with contextlib.suppress(*CONNECTION_ERRORS):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrem(self.keys.workers_alive, self.options.name)
                self._write_stats(pipe)
                await pipe.execute()
        await self._reader.aclose()


async def _end(loops: list[asyncio.Task]) -> None:
    for loop in loops:
        loop.cancel()
    await asyncio.gather(*loops, return_exceptions=True)


class _Backoff:
    """Doubling waits while Redis fails, logged once per outage."""

    def __init__(self) -> None:
        self._seconds = 0.0

    def reset(self) -> None:
        if self._seconds:
            logger.info("Redis answers again")
        self._seconds = 0.0

    async def wait(self, reason: str) -> None:
        if not self._seconds:
            logger.warning("Redis is unreachable (%s); retrying", reason)
        self._seconds = min(_MAX_BACKOFF_SECONDS, max(0.1, self._seconds * 2))
        await asyncio.sleep(self._seconds)


def _deadline_passed(job: Job) -> EngineError:
    return EngineError(EngineStatus.TIMED_OUT, f"job {job.request_id} passed its deadline before it finished")


class PiecePublisher:
    """How a streaming job's handler passes each piece to the API process streaming it."""

    def __init__(self, link: RedisLink, retry_seconds: float = _WRITE_RETRY_SECONDS) -> None:
        """``retry_seconds``: how long a piece Redis does not answer is tried again (the
        worker's claim_idle_seconds: about when other workers may take the job over)."""
        self._link = link
        self._keys = QueueKeys(link)
        self._retry_seconds = retry_seconds

    async def publish(self, job: Job, attempt: str, number: int, piece: dict[str, Any]) -> None:
        """``attempt`` names this run of the job, so the reader can tell a restart by a new
        worker; ``number`` (1, 2, ... within the attempt) lets it skip a piece written twice."""
        key = self._keys.deltas(job.request_id)
        fields = {"attempt": attempt, "number": number, "piece": json.dumps(piece, separators=(",", ":"))}

        async def write() -> None:
            async with self._link.async_client.pipeline(transaction=False) as pipe:
                pipe.xadd(key, fields)
                pipe.expire(key, _keep_seconds(job))
                await pipe.execute()

        await self._link.write_retried(write, self._retry_seconds)


def _keep_seconds(job: Job) -> int:
    """How long a job's outcome and pieces stay in Redis: past its deadline, and a minute at least."""
    return max(_RESULT_MIN_SECONDS, int(job.seconds_left) + _RESULT_MIN_SECONDS)
